"""The one place that finds shipped files: ``templates/`` and ``datasets/``.

In an installed wheel they live in ``ticketaudit/_data/``; in a source checkout (editable
install) they are the repository's top-level folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _find(name: str) -> Path:
    packaged = resources.files("ticketaudit").joinpath("_data", name)
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / name
    if source.is_dir():
        return source
    raise RuntimeError(f"ticketaudit is installed without its '{name}' folder; reinstall it.")


def templates_dir() -> Path:
    """Folder holding the Jinja templates of the report."""
    return _find("templates")


def datasets_dir() -> Path:
    """Folder holding the bundled datasets (UCI Adult)."""
    return _find("datasets")
