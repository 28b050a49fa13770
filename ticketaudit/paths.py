"""Every default file location in one place."""

from __future__ import annotations

import time
from pathlib import Path

REPORTS_DIR = Path("reports")
DEMO_DIR = REPORTS_DIR / "demo"
IMAGE_DEMO_DIR = REPORTS_DIR / "demo-cnn"
LLM_DEMO_DIR = REPORTS_DIR / "demo-llm"
BUNDLE_CONFIG = "config.json"
BUNDLE_WEIGHTS = "model.safetensors"
BUNDLE_MASK = "mask.safetensors"
BUNDLE_PREPROCESS = "preprocess.json"


def default_report_path() -> Path:
    """``reports/ticketaudit-<UTC timestamp>.html``."""
    return REPORTS_DIR / time.strftime("ticketaudit-%Y%m%dT%H%M%SZ.html", time.gmtime())


def default_history_path() -> Path:
    """``reports/ticketaudit-history-<UTC timestamp>.html``."""
    return REPORTS_DIR / time.strftime("ticketaudit-history-%Y%m%dT%H%M%SZ.html", time.gmtime())
