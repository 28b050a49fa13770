"""``ticketaudit demo``: train a dense MLP and an IMP-with-rewinding ticket on Adult, then audit them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .audit import AuditResult, audit
from .datasets import ADULT_CATEGORICAL, ADULT_LABELS, ADULT_NUMERIC, load_adult
from .models import build_architecture
from .preprocess import MISSING, Preprocessor
from .pruning.alternatives import PruneSettings
from .pruning.imp import TrainSettings, iterative_magnitude_pruning
from .tickets.bundle import save_bundle

HIDDEN = [128, 64]
ROUNDS = {"mlp": 5, "transformer": 3}
FINAL_DENSITY = {"mlp": 0.08, "transformer": 0.15}
EPOCHS = {"mlp": 4, "transformer": 2}
ALTERNATIVE_EPOCHS = 2
Architecture = Literal["mlp", "transformer"]


def fit_preprocess(train: pd.DataFrame) -> Preprocessor:
    """Standardise numeric columns and one-hot the categorical ones with scikit-learn, saved as JSON."""
    scaler = StandardScaler().fit(train[list(ADULT_NUMERIC)].to_numpy(dtype=np.float64))
    categorical = train[list(ADULT_CATEGORICAL)].astype("string").fillna(MISSING).astype(object)
    encoder = OneHotEncoder(handle_unknown="ignore").fit(categorical)
    inputs = [{"column": c, "kind": "numeric", "mean": float(m), "std": float(s)}
              for c, m, s in zip(ADULT_NUMERIC, scaler.mean_, scaler.scale_)]
    inputs += [{"column": c, "kind": "onehot", "categories": [str(v) for v in cats]}
               for c, cats in zip(ADULT_CATEGORICAL, encoder.categories_)]
    return Preprocessor.from_dict({"version": 1, "inputs": inputs})


def run_demo(out: Path, *, seed: int = 0, model: Architecture = "mlp",
             progress: Callable[[str, int, int], None] | None = None) -> AuditResult:
    """Write dense/ and ticket/ bundles, adult_test.csv, report.html and report.json into ``out``.

    ``model="transformer"`` trains a small FT-Transformer (one token per column) instead of the MLP.
    """
    from .outputs import write_report

    step = progress or (lambda *_: None)
    torch.manual_seed(seed)
    train_frame, test_frame = load_adult("train"), load_adult("test")
    preprocess = fit_preprocess(train_frame)
    features = torch.as_tensor(preprocess.transform(train_frame), dtype=torch.float32)
    labels = torch.tensor((train_frame["income"] == ADULT_LABELS[1]).to_numpy(dtype=np.int64))
    if model == "mlp":
        architecture, arguments = "mlp", {"in_features": preprocess.width, "hidden": HIDDEN, "out_features": 2}
    else:
        architecture = "ft-transformer"
        arguments = {"in_features": preprocess.width, "column_sizes": [s.width for s in preprocess.inputs],
                     "out_features": 2}
    network = build_architecture(architecture, arguments)
    rounds, epochs = ROUNDS[model], EPOCHS[model]
    total_epochs = epochs * (rounds + 1)
    done = 0

    def epoch_done() -> None:
        nonlocal done
        done += 1
        step("Training dense model and ticket (IMP with rewinding)", done, total_epochs)

    dense, ticket, mask = iterative_magnitude_pruning(
        network, features, labels, rounds=rounds, final_density=FINAL_DENSITY[model],
        settings=TrainSettings(epochs=epochs, seed=seed), on_epoch=epoch_done)
    out.mkdir(parents=True, exist_ok=True)
    save_bundle(out / "dense", dense, architecture=architecture, arguments=arguments, labels=ADULT_LABELS,
                preprocess=preprocess)
    save_bundle(out / "ticket", ticket, architecture=architecture, arguments=arguments, labels=ADULT_LABELS,
                preprocess=preprocess, mask=mask)
    data_path, train_path = out / "adult_test.csv", out / "adult_train.csv"
    test_frame.to_csv(data_path, index=False)
    train_frame.to_csv(train_path, index=False)
    result = audit(dense=out / "dense", ticket=out / "ticket", data=data_path, target="income",
                   sensitive=["sex", "race"], seed=seed, progress=progress,
                   alternatives=PruneSettings(recover="finetune", epochs=ALTERNATIVE_EPOCHS) if model == "mlp" else False,
                   train_data=train_path if model == "mlp" else None)
    command = (f"ticketaudit report --dense {out / 'dense'} --ticket {out / 'ticket'} --data {data_path} "
               f"--target income --sensitive sex,race --seed {seed} --out {out / 'report.html'} "
               f"--json {out / 'report.json'}"
               + (f" --alternatives --train-data {train_path} --recover finetune" if model == "mlp" else ""))
    write_report(result, html_path=out / "report.html", json_path=out / "report.json", command=command)
    return result
