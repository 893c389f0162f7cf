"""Where the engine keeps its state: one per-user transaction interface, three backends.

``Store`` is the whole interface: a per-user transaction (read, change, write
under that user's lock), a lock-free read, the list of users, and the audit
trail. ``ShardedTinyDBStore`` is the portal's (one small TinyDB file per user,
so a write costs the same at 100 or 100,000 users); ``SingleFileTinyDBStore``
and ``SQLiteStore`` are the benchmark's baselines and prove the interface fits
a SQL backend with a row lock. One contract suite runs against all three.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator, Sequence

from filelock import FileLock, Timeout
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document

from .errors import StorageError

Record = dict[str, Any]
Event = dict[str, Any]

LOCK_TIMEOUT = 30.0
# What a backend may raise when its files or database cannot be used (the engine reports StorageError).
IO_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)


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


class AtomicJSONStorage(Storage):
    """TinyDB storage that never rewrites a file in place (TinyDB's own JSONStorage does).

    One instance serves one transaction: the file is parsed once and what was
    read or written is kept, so TinyDB's several reads per operation cost one.
    Locking is not its job: the store takes the user's lock around the whole
    read-change-write.
    """

    def __init__(self, path: str | Path, create_dirs: bool = True, **_: Any) -> None:
        self.path = os.fspath(path)
        self._create_dirs = create_dirs  # on the first write, not on every open
        self._data: dict[str, dict[str, Any]] | None = None
        self._loaded = False

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self._loaded:
            self._data = self._read_file()
            self._loaded = True
        # Like TinyDB's MemoryStorage, hand out the object itself: TinyDB changes
        # it only on the way to write(), and an instance lives for one
        # transaction, so nothing else ever sees a half-changed copy.
        return self._data

    def _read_file(self) -> dict[str, dict[str, Any]] | None:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise StorageError(f"The MFA store file {os.path.basename(self.path)} is damaged.") from exc

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        try:
            write_atomic(self.path, body)
        except FileNotFoundError:
            if not self._create_dirs:
                raise
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_atomic(self.path, body)
        self._data = data
        self._loaded = True

    def close(self) -> None:
        pass


class Transaction:
    """One user's record, open for change under that user's lock.

    ``record`` is the caller's own copy (freshly parsed): the store writes it
    back only if the block ends without an exception and it changed. ``log``
    queues audit events, written after the record.
    """

    def __init__(self, username: str, record: Record | None) -> None:
        self.username = username
        self.existed = record is not None
        self.record: Record = record if record is not None else {"username": username}
        self._original = _canonical(self.record)
        self.events: list[Event] = []

    def log(self, event: Event) -> None:
        self.events.append(event)

    @property
    def changed(self) -> bool:
        return _canonical(self.record) != self._original


def _canonical(record: Record) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


class Store(ABC):
    """The storage interface the engine is written against."""

    @abstractmethod
    def read(self, username: str) -> Record | None:
        """The user's committed record, or None. Needs no lock."""

    @abstractmethod
    @contextlib.contextmanager
    def transaction(self, username: str) -> Iterator[Transaction]:
        """Read, change and write one user's record under that user's lock."""

    @abstractmethod
    def usernames(self) -> Iterator[str]:
        """Every user with a record."""

    @abstractmethod
    def append_audit(self, events: Sequence[Event]) -> None:
        ...

    @abstractmethod
    def query_audit(self, username: str | None = None, since: float | None = None,
                    until: float | None = None) -> list[Event]:
        """Events, oldest first, filtered by user and by ``since <= time < until``."""

    def put(self, username: str, record: Record) -> None:
        """Write a record without reading it first (for building large stores)."""
        with self.transaction(username) as txn:
            txn.record = record

    def close(self) -> None:
        pass


def _user_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8")).hexdigest()


class _StripedLocks:
    """Locks that hold across Streamlit's threads and across processes.

    A fixed set of lock files (users hash onto them) keeps the directory small;
    a thread lock in front of each spares threads of one process filelock's polling.
    """

    def __init__(self, directory: Path, stripes: int = 256) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stripes = stripes
        self._thread_locks = [threading.Lock() for _ in range(stripes)]
        self._paths = [str(directory / f"{n:03d}.lock") for n in range(stripes)]

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        n = int(key[:8], 16) % self.stripes
        if not self._thread_locks[n].acquire(timeout=LOCK_TIMEOUT):
            raise StorageError()
        try:
            # A fresh FileLock each time: its own file descriptor, so flock
            # excludes other processes even if another object exists here.
            lock = FileLock(self._paths[n], timeout=LOCK_TIMEOUT, thread_local=False)
            try:
                lock.acquire(poll_interval=0.001)
            except Timeout as exc:
                raise StorageError() from exc
            try:
                yield
            finally:
                lock.release()
        finally:
            self._thread_locks[n].release()


class JSONLinesAuditLog:
    """Append-only audit trail, one JSON-lines file a day (UTC).

    An append costs the same however long the trail is; a line torn by a crash
    is skipped when read.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> None:
        by_day: dict[str, list[str]] = {}
        for event in events:
            day = dt.datetime.fromtimestamp(event["time"], dt.timezone.utc).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).append(json.dumps(event, separators=(",", ":")) + "\n")
        with self._lock:
            for day, lines in by_day.items():
                fd = os.open(self.directory / f"{day}.jsonl",
                             os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    data = "".join(lines).encode("utf-8")
                    # A line torn by a crash has no newline: start on a fresh
                    # line, or this batch's first event would be lost with it.
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        data = b"\n" + data
                    # One write per batch: O_APPEND keeps concurrent writers'
                    # lines whole and in one piece.
                    # No fsync: the write reaches the OS before the call
                    # returns, so a killed process loses nothing; only a power
                    # cut could, and each event is also in the user's own
                    # record (fsynced, ``activity``) until 25 newer ones pass.
                    os.write(fd, data)
                finally:
                    os.close(fd)

    def query(self, username: str | None = None, since: float | None = None,
              until: float | None = None) -> list[Event]:
        first = _day(since) if since is not None else None
        last = _day(until) if until is not None else None
        events: list[Event] = []
        for path in sorted(self.directory.glob("*.jsonl")):
            day = path.stem
            if (first and day < first) or (last and day > last):
                continue
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a line torn by a crash mid-append
                    if username is not None and event.get("user") != username:
                        continue
                    t = event.get("time", 0)
                    if (since is not None and t < since) or (until is not None and t >= until):
                        continue
                    events.append(event)
        events.sort(key=lambda e: e.get("time", 0))
        return events


def _day(timestamp: float) -> str:
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        # Beyond the dates a datetime holds: a bound before or after every file.
        return "0000-00-00" if timestamp < 0 else "9999-99-99"


class ShardedTinyDBStore(Store):
    """One TinyDB file per user under ``users/<2 hex>/<sha256>.json``.

    File names are hashes, so no username can reach outside the directory,
    and each write rewrites one small file.
    """

    TABLE = "mfa"

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.users_dir = self.root / "users"
        self.users_dir.mkdir(parents=True, exist_ok=True)
        self._users_root = str(self.users_dir)
        self._locks = _StripedLocks(self.root / "locks")
        self.audit = JSONLinesAuditLog(self.root / "audit")

    def _path(self, key: str) -> str:
        # Plain strings: pathlib's parsing showed up in the per-call profile.
        return os.path.join(self._users_root, key[:2], key + ".json")

    def _table(self, path: Path):
        return TinyDB(path, storage=AtomicJSONStorage).table(self.TABLE)

    @staticmethod
    def _get(table) -> Record | None:
        doc = table.get(doc_id=1)
        return dict(doc) if doc is not None else None

    def _load(self, path: Path) -> Record | None:
        return self._get(self._table(path))

    def read(self, username: str) -> Record | None:
        return self._load(self._path(_user_key(username)))

    @contextlib.contextmanager
    def transaction(self, username: str) -> Iterator[Transaction]:
        key = _user_key(username)
        path = self._path(key)
        with self._locks.hold(key):
            table = self._table(path)
            txn = Transaction(username, self._get(table))
            yield txn
            if txn.changed:
                _replace(table, 1, txn.record, exists=txn.existed)
        if txn.events:
            self.audit.append(txn.events)

    def _save(self, path: Path, record: Record) -> None:
        _replace(self._table(path), 1, record)

    def put(self, username: str, record: Record) -> None:
        self._save(self._path(_user_key(username)), record)

    def usernames(self) -> Iterator[str]:
        for shard in sorted(self.users_dir.iterdir()):
            if not shard.is_dir():
                continue
            for path in sorted(shard.glob("*.json")):
                record = self._load(path)
                if record is not None and "username" in record:
                    yield record["username"]

    def append_audit(self, events: Sequence[Event]) -> None:
        self.audit.append(events)

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        return self.audit.query(username, since, until)


class SingleFileTinyDBStore(Store):
    """Baseline: every user in one TinyDB file, one lock for all, rewritten whole on each write."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "mfa.json"
        self._lock = threading.Lock()
        self._file_lock = str(self.root / "mfa.json.lock")
        self.audit = JSONLinesAuditLog(self.root / "audit")

    def _db(self) -> TinyDB:
        return TinyDB(self.path, storage=AtomicJSONStorage)

    def read(self, username: str) -> Record | None:
        doc = self._db().table("users").get(doc_id=_doc_id(username))
        return dict(doc) if doc is not None else None

    @contextlib.contextmanager
    def transaction(self, username: str) -> Iterator[Transaction]:
        with self._lock, FileLock(self._file_lock, timeout=LOCK_TIMEOUT, thread_local=False):
            db = self._db()
            table = db.table("users")
            doc = table.get(doc_id=_doc_id(username))
            txn = Transaction(username, dict(doc) if doc is not None else None)
            yield txn
            if txn.changed:
                _replace(table, _doc_id(username), txn.record)
        if txn.events:
            self.audit.append(txn.events)

    def put_many(self, records: dict[str, Record]) -> None:
        with self._lock, FileLock(self._file_lock, timeout=LOCK_TIMEOUT, thread_local=False):
            table = self._db().table("users")
            table.insert_multiple(Document(r, doc_id=_doc_id(u)) for u, r in records.items())

    def usernames(self) -> Iterator[str]:
        for doc in self._db().table("users").all():
            yield doc["username"]

    def append_audit(self, events: Sequence[Event]) -> None:
        self.audit.append(events)

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        return self.audit.query(username, since, until)


def _replace(table, doc_id: int, record: Record, exists: bool | None = None) -> None:
    """Put ``record`` as document ``doc_id``, dropping keys it no longer has, in one write.

    (TinyDB's upsert merges fields, so a key removed from the record would survive.)
    ``exists`` spares a look-up when the caller just read the document.
    """
    if exists if exists is not None else table.contains(doc_id=doc_id):
        def swap(doc: dict) -> None:
            doc.clear()
            doc.update(record)
        table.update(swap, doc_ids=[doc_id])
    else:
        table.insert(Document(record, doc_id=doc_id))


def _doc_id(username: str) -> int:
    # TinyDB keys documents by integer id: derive a stable one from the name.
    return int(_user_key(username)[:15], 16)


class SQLiteStore(Store):
    """Baseline and proof of the interface: an indexed SQLite table, a row per user.

    ``BEGIN IMMEDIATE`` stands in for a row lock (SQLite locks the database).
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "mfa.sqlite3"
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS audit (time REAL NOT NULL, user TEXT, doc TEXT NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS audit_user_time ON audit (user, time)")
            conn.execute("CREATE INDEX IF NOT EXISTS audit_time ON audit (time)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None)
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def read(self, username: str) -> Record | None:
        row = self._conn().execute("SELECT doc FROM users WHERE username = ?", (username,)).fetchone()
        return json.loads(row[0]) if row else None

    @contextlib.contextmanager
    def transaction(self, username: str) -> Iterator[Transaction]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT doc FROM users WHERE username = ?", (username,)).fetchone()
            txn = Transaction(username, json.loads(row[0]) if row else None)
            yield txn
            if txn.changed:
                conn.execute("INSERT OR REPLACE INTO users (username, doc) VALUES (?, ?)",
                             (username, json.dumps(txn.record)))
            self._insert_audit(conn, txn.events)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def put_many(self, records: dict[str, Record]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO users (username, doc) VALUES (?, ?)",
                         ((u, json.dumps(r)) for u, r in records.items()))
        conn.execute("COMMIT")

    def usernames(self) -> Iterator[str]:
        for (name,) in self._conn().execute("SELECT username FROM users ORDER BY username"):
            yield name

    @staticmethod
    def _insert_audit(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        conn.executemany("INSERT INTO audit (time, user, doc) VALUES (?, ?, ?)",
                         ((e["time"], e.get("user"), json.dumps(e)) for e in events))

    def append_audit(self, events: Sequence[Event]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        self._insert_audit(conn, events)
        conn.execute("COMMIT")

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        sql, args = "SELECT doc FROM audit WHERE 1=1", []
        if username is not None:
            sql += " AND user = ?"
            args.append(username)
        if since is not None:
            sql += " AND time >= ?"
            args.append(since)
        if until is not None:
            sql += " AND time < ?"
            args.append(until)
        return [json.loads(d) for (d,) in self._conn().execute(sql + " ORDER BY time", args)]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


BACKENDS: dict[str, type[Store]] = {
    "tinydb": ShardedTinyDBStore,
    "tinydb-single-file": SingleFileTinyDBStore,
    "sqlite": SQLiteStore,
}
