"""Files that are never seen half-written (atomic replace, the sweep of killed writers' temp files) and file locks that exclude threads too."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout


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


class LockBusy(TimeoutError):
    """A lock stayed taken for the whole timeout; the caller says what could not be done."""


# Holders of one lock file in this process queue on one threading.Lock (by
# resolved path, whichever object they use); the FileLock taken after it
# excludes other processes. filelock's own lock is re-entrant per object, so
# it alone would let every thread sharing an object in at once.
_PATH_LOCKS: dict[str, threading.Lock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def path_lock(path: str | os.PathLike) -> threading.Lock:
    """The one thread lock of this process for ``path``."""
    key = os.path.realpath(path)
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def exclusive(thread_lock: threading.Lock, lock_file: str, timeout: float,
              poll_interval: float = 0.005) -> Iterator[None]:
    """Hold ``thread_lock``, then ``lock_file``'s flock, within ``timeout`` seconds in all.

    A fresh FileLock each time: its own file descriptor, so flock excludes
    another object or process holding the same file. Raises LockBusy.
    """
    deadline = time.monotonic() + timeout
    if not thread_lock.acquire(timeout=timeout):
        raise LockBusy(lock_file)
    try:
        lock = FileLock(lock_file, thread_local=False, timeout=max(0.0, deadline - time.monotonic()))
        try:
            lock.acquire(poll_interval=poll_interval)
        except Timeout:
            raise LockBusy(lock_file) from None
        try:
            yield
        finally:
            lock.release()
    finally:
        thread_lock.release()
