"""
How many rows does a group need before the audit can rule out a harm?
=====================================================================

A check *passes* only when the data rule out a harm as large as the policy's tolerance, and *fails* only when the
harm is both material and significant; in between it is *inconclusive*. This example plants a known excess accuracy
drop in one group (``ticketaudit.simulate``: known truth) and counts, over repeated simulated audits, how often
that group's check passes, fails or stays inconclusive as the group grows.
"""

import matplotlib.pyplot as plt

from ticketaudit.simulate import outcome_rates

sizes = [200, 600, 1500, 3000]
planted = {"no harm": 0.0, "5-point harm": 0.05}
runs = 20
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for ax, (title, harm) in zip(axes, planted.items()):
    rates = [outcome_rates({"minority": n, "majority": 3 * n}, {"minority": harm}, group="minority", runs=runs,
                           seed=0) for n in sizes]
    passed = [r["check_pass"] for r in rates]
    failed = [r["check_fail"] for r in rates]
    ax.plot(sizes, passed, "o-", label="pass")
    ax.plot(sizes, failed, "s-", label="fail")
    ax.plot(sizes, [1 - p - f for p, f in zip(passed, failed)], "^-", label="inconclusive")
    ax.set(title=title, xlabel="rows in the group", xscale="log")
axes[0].set_ylabel(f"share of {runs} simulated audits")
axes[0].legend()
fig.tight_layout()
plt.show()

# %%
# With no harm, small groups stay inconclusive (the data cannot rule out a 2-point drop) and pass once they are
# large enough; with a 5-point harm, the check fails more often as the group grows. It never reports "pass" for
# what the data cannot show.
