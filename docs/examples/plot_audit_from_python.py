"""
Audit a pruned model from Python
================================

Train a small classifier on generated data with two groups, prune half of its weights by magnitude, and audit the
ticket against the dense model with ``ticketaudit.audit``: the verdict, each group's paired accuracy change with
its interval, and the checks.
"""

import numpy as np
import pandas as pd
import torch
from torch import nn

import ticketaudit as ta

rng = np.random.default_rng(0)
n = 4000
group = rng.choice(["a", "b"], size=n, p=[0.8, 0.2])
x = rng.normal(size=(n, 6)).astype(np.float32)
x[group == "b", 0] += 1.0  # group b's label leans on a feature that group a rarely uses
logit = x[:, 1] - x[:, 2] + np.where(group == "b", 2 * x[:, 0], 0.3 * x[:, 0])
label = (logit + rng.normal(scale=0.5, size=n) > 0).astype(int)
features = [f"x{i}" for i in range(6)]
frame = pd.DataFrame(x, columns=features).assign(group=group, label=label)

torch.manual_seed(0)
dense = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
optimiser = torch.optim.Adam(dense.parameters(), lr=0.01)
inputs, targets = torch.from_numpy(x[:2000]), torch.from_numpy(label[:2000])
for _ in range(300):
    optimiser.zero_grad()
    nn.functional.cross_entropy(dense(inputs), targets).backward()
    optimiser.step()

weights = torch.cat([p.detach().abs().flatten() for p in dense.parameters() if p.dim() > 1])
threshold = weights.quantile(0.5)
pruned = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
pruned.load_state_dict(dense.state_dict())
with torch.no_grad():
    for p in pruned.parameters():
        if p.dim() > 1:
            p.mul_(p.abs() > threshold)

result = ta.audit(dense=dense, ticket=pruned, data=frame.iloc[2000:], target="label", sensitive=["group"],
                  features=features, analyses="metrics", seed=0, n_boot=200)
print("verdict:", result.verdict)
for g in result.performance.subgroups:
    accuracy = g.metrics["accuracy"]
    print(f"{g.group}: {accuracy.dense:.3f} -> {accuracy.ticket:.3f}, change {accuracy.delta:+.3f} "
          f"[{accuracy.ci[0]:+.3f}, {accuracy.ci[1]:+.3f}]")
for check in result.checks:
    print(f"{check.status:>12}  {check.id}")

# %%
# ``result.to_dict()`` is the JSON document; ``ta.render_html(result, "report.html")`` writes the report.
