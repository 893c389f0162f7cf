"""Files that are never seen half-written: atomic replace, and the sweep of killed writers' temp files."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half.

    Temp file in the same directory, fsync, ``os.replace``, then fsync the
    directory so the rename itself survives a power cut.
    """
    path = os.fspath(path)
    parent, name = os.path.split(path)
    parent = parent or "."
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# What write_atomic's temp files are called: ".<target name>.<random>.tmp".
_TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
LEFTOVER_AGE = 3600  # seconds: a temp file this old has no live writer (a write takes ms)


def sweep_leftovers(data_dir: str | os.PathLike, older_than: float = LEFTOVER_AGE) -> int:
    """Remove temp files that writers killed mid-write left behind; returns how many.

    Only ``write_atomic``'s temp files older than ``older_than`` seconds (file
    time, not the engine's clock) are touched: a live writer's file is younger,
    and the file it replaces was never changed, so nothing committed is lost.
    """
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)):
        raise TypeError("older_than must be a number of seconds")
    if not older_than >= 0:
        raise ValueError("older_than must not be negative.")
    cutoff = time.time() - older_than
    removed = 0
    for parent, _dirs, names in os.walk(os.fspath(data_dir)):
        for name in names:
            if not _TEMP_FILE.fullmatch(name):
                continue
            path = os.path.join(parent, name)
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                if os.lstat(path).st_mtime <= cutoff:
                    os.unlink(path)
                    removed += 1
    return removed
