"""Files that are never seen half-written (atomic replace, the sweep of killed writers' temp files) and file locks that exclude threads too."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator



def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, mtime_ns: int | None = None) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half.

    Temp file in the same directory, fsync, ``os.replace``, then fsync the
    directory so the rename itself survives a power cut. ``mtime_ns``: the new
    file's modification time (set before it is renamed in: no reader sees another).
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
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
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
    _fsync_dir(parent)


def make_dirs(path: str | os.PathLike) -> None:
    """``os.makedirs(path, exist_ok=True)``, each folder it creates fsynced into its parent.

    ``write_atomic`` makes a file's entry in its folder durable; a folder made for
    it (a shard's first record) needs its own entry made durable too, or a power
    cut could lose the folder with the committed record in it.
    """
    path = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:  # made meanwhile by another writer: synced here all the same,
            if not os.path.isdir(folder):  # as this writer's record must not wait on theirs
                raise
        _fsync_dir(os.path.dirname(folder))


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    The file is opened afresh each time: its own open file description, so
    flock excludes another process (or another opener in this one) holding
    the same file. Raises LockBusy.

    Plain ``fcntl.flock`` rather than the filelock package, whose own
    bookkeeping (path resolution, a registry, fork tracking: ~15 system calls
    and ~0.5 ms of CPU a lock) was the largest cost of a verification. The
    same flock, so it excludes a filelock ``FileLock`` on the same file too.
    """
    deadline = time.monotonic() + timeout
    if not thread_lock.acquire(timeout=timeout):
        raise LockBusy(lock_file)
    try:
        fd = _open_lock_file(lock_file)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LockBusy(lock_file) from None
                    time.sleep(min(poll_interval, left))  # another process holds it
            try:
                yield
            finally:
                # Unlock before closing: a child forked meanwhile shares this
                # open file description, and its copy must not keep the lock.
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        thread_lock.release()


_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def _open_lock_file(lock_file: str) -> int:
    try:
        return os.open(lock_file, _LOCK_FLAGS, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(lock_file) or ".", exist_ok=True)
        return os.open(lock_file, _LOCK_FLAGS, 0o644)
