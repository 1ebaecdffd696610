"""Files the platform keeps are readable by their owner only: the DuckDB warehouse (and the
write-ahead log and spill files DuckDB makes beside it), the Dagster home the CLI creates, and the
model store (warehouse/model_store.py does its own). They hold every rep's figures and the
instance's event log; nobody else on the machine needs them (docs/decisions.md, "Security").

Directories created here are 0700 and files 0600, whatever the process umask. Something that
already exists is left as it is: a folder the operator made, with the permissions they chose."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

_lock = threading.Lock()
_depth = 0
_saved_umask: int | None = None


@contextlib.contextmanager
def owner_only_umask() -> Iterator[None]:
    """While inside, files and directories the process creates are owner-only (umask 077): for
    files made by a library that takes no mode (DuckDB's database file, its WAL and temp files).
    The umask is the process's, so nested and concurrent uses share one saved value and the last
    to leave restores it; meanwhile other threads' new files are owner-only too, which is only
    stricter."""
    global _depth, _saved_umask
    with _lock:
        if _depth == 0:
            _saved_umask = os.umask(0o077)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_umask is not None:
                os.umask(_saved_umask)
                _saved_umask = None


def make_private_dir(path: str | Path) -> Path:
    """``path`` and any missing parents, each created 0700; existing folders are left as they are."""
    path = Path(path)
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    return path


def write_private_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` as a file only its owner can read (0600), replacing any content."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
    return path
