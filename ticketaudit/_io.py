"""File helpers: hashing inputs and writing outputs atomically (temp file + rename)."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

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


def input_paths(value: object) -> list[Path]:
    """The files or directories an input option names, resolved: the path itself, or each match of a glob."""
    if not isinstance(value, (str, Path)) or str(value) in ("", "-"):
        return []
    text = str(value)
    if os.path.exists(text):
        return [Path(os.path.realpath(text))]
    if any(ch in text for ch in "*?["):
        return [Path(os.path.realpath(match)) for match in sorted(glob.glob(text, recursive=True))]
    return []


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, so a hard link to an input is caught too."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def check_not_input(outputs: Mapping[str, Path], inputs: Mapping[str, object]) -> None:
    """No output may be an input (the same path, a symlink to it, or a hard link of it), or lie inside an input
    directory (a bundle, a data folder); a glob input protects every file it matches."""
    resolved = [(option, source) for option, value in inputs.items() for source in input_paths(value)]
    for out_option, path in outputs.items():
        target = Path(os.path.realpath(path))
        target_id = _identity(target)
        for in_option, source in resolved:
            same = target == source or (target_id is not None and target_id == _identity(source))
            if same or (source.is_dir() and source in target.parents):
                where = "is" if same else "is inside"
                fail(f"{out_option} '{path}' {where} the input given with {in_option} ('{source}'); ticketaudit never "
                     "writes over its inputs. Choose another output path.")


def check_outputs_not_among(outputs: Mapping[str, Path], paths: Iterable[str], *, what: str) -> None:
    """No output may be one of ``paths`` (files the audit reads, e.g. every image of the data), as a path, a
    symlink or a hard link; checked in one pass over ``paths``."""
    by_path = {Path(os.path.realpath(path)): option for option, path in outputs.items()}
    by_id = {identity: option for target, option in by_path.items() if (identity := _identity(target)) is not None}
    for path in paths:
        real = Path(os.path.realpath(path))
        option = by_path.get(real) or (by_id.get(_identity(real)) if by_id else None)  # type: ignore[arg-type]
        if option is not None:
            fail(f"{option} '{outputs[option]}' is {what} '{path}'; ticketaudit never writes over its inputs. "
                 "Choose another output path.")


def check_appendable(path: Path, *, what: str, inputs: Mapping[str, object], outputs: Mapping[str, Path]) -> None:
    """A file the run appends to (``$GITHUB_STEP_SUMMARY``): a regular writable file or a new file in an existing
    writable directory, and neither an input nor another output."""
    check_not_input({what: path}, inputs)
    identity, real = _identity(path), Path(os.path.realpath(path))
    for option, output in outputs.items():
        if real == Path(os.path.realpath(output)) or (identity is not None and identity == _identity(output)):
            fail(f"{what} '{path}' is the {option} output of this run; point it at a file of its own.")
    if os.path.lexists(path):
        if not os.path.exists(path) or not stat.S_ISREG(os.stat(path).st_mode):
            fail(f"{what} '{path}' is not a regular file; point it at a file the summary can be appended to.")
        if not os.access(path, os.W_OK):
            fail(f"{what} '{path}' is not writable; fix its permissions or point it elsewhere.")
        return
    parent = real.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        fail(f"{what} '{path}' cannot be created: directory '{parent}' does not exist or is not writable.")


def _is_regular_target(path: Path) -> bool:
    """Whether ``path`` is (or would be) a regular file: devices and pipes are written through instead."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while files are renamed into place, so a run ends with all of its
    outputs or none; a signal that came meanwhile is acted on right after.

    Python runs signal handlers in the main thread whichever thread the OS delivered the signal to
    (torch's worker threads included), so swapping the handlers defers them reliably; blocking with
    ``pthread_sigmask`` would only hold them for the calling thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


WRITTEN: list[Path] = []
"""Every output ``write_atomically`` put in place since the CLI cleared this list (so the message
after an interrupt can be true)."""


def _io_error(path: Path, error: OSError) -> NoReturn:
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}.get(
        error.errno or 0, error.strerror or type(error).__name__)
    fail(f"cannot write '{path}': {reason}. Nothing was written; free space or choose another location.")


def write_atomically(outputs: Mapping[Path, bytes]) -> None:
    """Write every file or none: each goes to a temp file beside its target (a symlink's target), then
    all are renamed into place with SIGINT/SIGTERM held; a failed rename restores what was there.
    Devices and pipes (``/dev/stdout``) are written through after the files."""
    regular = {Path(path): _is_regular_target(Path(path)) for path in outputs}
    files = {Path(os.path.realpath(path)): payload for path, payload in outputs.items() if regular[Path(path)]}
    streams = {Path(path): payload for path, payload in outputs.items() if not regular[Path(path)]}
    temps: dict[Path, Path] = {}
    target = Path(".")
    try:
        for target, payload in files.items():
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temps[target] = Path(name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(name, 0o666 & ~_umask())
        with _signals_deferred():  # a signal held here arrives once WRITTEN tells the truth
            _replace_all(temps)
            WRITTEN.extend(path for path in regular if regular[path])
    except OSError as error:
        _io_error(target, error)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    for target, payload in streams.items():
        try:
            with open(target, "wb") as handle:
                handle.write(payload)
        except OSError as error:
            _io_error(target, error)
        WRITTEN.append(target)


def _backup(path: Path) -> Path:
    """A second name for ``path``'s current file (a hard link, else a copy), to restore it from."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    os.close(fd)
    try:
        os.unlink(name)
        os.link(path, name)
    except OSError:  # no hard links on this file system
        shutil.copy2(path, name)
    return Path(name)


def _replace_all(temps: Mapping[Path, Path]) -> None:
    """Rename each temp onto its target; on any failure put every earlier target back as it was."""
    backups: dict[Path, Path | None] = {}
    try:
        for path, temp in temps.items():
            backups[path] = _backup(path) if path.exists() else None
            os.replace(temp, path)
    except OSError:
        for path, backup in backups.items():
            if backup is not None:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
