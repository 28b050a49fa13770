"""File helpers: hashing inputs and writing outputs atomically (temp file + rename)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ._validation import MSG_OUTPUT_DIR, fail


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (sorted names and contents)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(bytes.fromhex(sha256_file(child)))
    return digest.hexdigest()


def check_writable(path: Path, *, what: str) -> None:
    """Fail early (before any work) when ``path`` cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        fail(MSG_OUTPUT_DIR.format(what=what, path=path, reason="it is a directory"))
    if not parent.is_dir():
        fail(MSG_OUTPUT_DIR.format(what=what, path=path, reason=f"directory '{parent}' does not exist"))
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError:
        fail(MSG_OUTPUT_DIR.format(what=what, path=path, reason=f"directory '{parent}' is not writable"))


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
    finally:
        temp.unlink(missing_ok=True)


def write_atomically(outputs: Mapping[Path, bytes]) -> None:
    """Write every file or none: all go to temp files first, then each is renamed into place."""
    with contextlib.ExitStack() as stack:
        temps: dict[Path, Path] = {}
        for path, payload in outputs.items():
            temp = stack.enter_context(_temp_beside(path))
            temp.write_bytes(payload)
            temps[path] = temp
        mode = 0o666 & ~_umask()
        for path, temp in temps.items():
            os.chmod(temp, mode)
            os.replace(temp, path)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
