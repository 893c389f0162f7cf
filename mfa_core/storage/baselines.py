"""The benchmark's baselines, and proof that the interface fits a SQL backend with a row lock.

``SingleFileTinyDBStore`` keeps every user in one TinyDB file (rewritten
whole on each write: what the sharded store avoids); ``SQLiteStore`` keeps a
row per user and writes the record and its audit events in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from filelock import FileLock
from tinydb import TinyDB
from tinydb.table import Document

from ..errors import RecordDamaged
from .audit_log import JSONLinesAuditLog
from .base import (LOCK_TIMEOUT, Event, Record, Store, Transaction, audit_filter, check_record,
                   commit_after_audit, open_transaction, parse_record, user_key)
from .sharded import AtomicJSONStorage, _replace


def _doc_id(username: str) -> int:
    # TinyDB keys documents by integer id: derive a stable one from the name.
    return int(user_key(username)[:15], 16)


class SingleFileTinyDBStore(Store):
    """Baseline: every user in one TinyDB file, one lock for all, rewritten whole on each write."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "mfa.json"
        self.sources_path = self.root / "sources.json"
        self._lock = threading.Lock()
        self._file_lock = str(self.root / "mfa.json.lock")
        self._source_lock = threading.Lock()
        self._source_file_lock = str(self.root / "sources.json.lock")
        self.audit = JSONLinesAuditLog(self.root / "audit")

    @staticmethod
    def _get(db: TinyDB, table: str, doc_id: int) -> Record | None:
        try:
            doc = db.table(table).get(doc_id=doc_id)
        except (TypeError, AttributeError, KeyError, ValueError):
            raise RecordDamaged(detail="the store file has the wrong layout") from None
        return dict(check_record(doc, "A record")) if doc is not None else None

    def _db(self, path: Path | None = None) -> TinyDB:
        return TinyDB(path or self.path, storage=AtomicJSONStorage)

    def read(self, username: str) -> Record | None:
        return self._get(self._db(), "users", _doc_id(username))

    @contextlib.contextmanager
    def transaction(self, username: str, *, repair: bool = False) -> Iterator[Transaction]:
        with self._lock, FileLock(self._file_lock, timeout=LOCK_TIMEOUT, thread_local=False):
            db = self._db()
            txn = open_transaction(username, lambda: self._get(db, "users", _doc_id(username)),
                                   repair=repair)
            yield txn
            commit_after_audit(txn, self.audit,
                               lambda: _replace(db.table("users"), _doc_id(username), txn.record))

    def read_keyed(self, key: str) -> Record | None:
        return self._get(self._db(self.sources_path), "sources", _doc_id(key))

    @contextlib.contextmanager
    def keyed_transaction(self, key: str, *, repair: bool = False) -> Iterator[Transaction]:
        with self._source_lock, FileLock(self._source_file_lock, timeout=LOCK_TIMEOUT,
                                          thread_local=False):
            db = self._db(self.sources_path)
            txn = open_transaction(key, lambda: self._get(db, "sources", _doc_id(key)), repair=repair)
            yield txn
            commit_after_audit(txn, self.audit,
                               lambda: _replace(db.table("sources"), _doc_id(key), txn.record))

    def sweep_keyed(self, expired: Callable[[str, Record], bool]) -> int:
        with self._source_lock, FileLock(self._source_file_lock, timeout=LOCK_TIMEOUT,
                                          thread_local=False):
            table = self._db(self.sources_path).table("sources")
            gone = [doc.doc_id for doc in table.all()
                    if isinstance(doc.get("username"), str) and expired(doc["username"], dict(doc))]
            if gone:
                table.remove(doc_ids=gone)
            return len(gone)

    def put_many(self, records: dict[str, Record]) -> None:
        with self._lock, FileLock(self._file_lock, timeout=LOCK_TIMEOUT, thread_local=False):
            table = self._db().table("users")
            table.insert_multiple(Document(r, doc_id=_doc_id(u)) for u, r in records.items())

    def usernames(self) -> Iterator[str]:
        for doc in self._db().table("users").all():
            if isinstance(doc, dict) and isinstance(doc.get("username"), str):
                yield doc["username"]

    def append_audit(self, events: Sequence[Event]) -> None:
        self.audit.append(events)

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        return self.audit.query(username, since, until)


class SQLiteStore(Store):
    """Baseline and proof of the interface: an indexed SQLite table, a row per user.

    ``BEGIN IMMEDIATE`` stands in for a row lock (SQLite locks the database);
    the record and its audit events commit in one transaction. A source's
    transaction inside a user's is a savepoint of the same transaction.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "mfa.sqlite3"
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS sources (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
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

    @staticmethod
    def _doc(row: Any, what: str) -> Record | None:
        return parse_record(row[0], what) if row else None

    def read(self, username: str) -> Record | None:
        row = self._conn().execute("SELECT doc FROM users WHERE username = ?", (username,)).fetchone()
        return self._doc(row, "Your account's record")

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        nested = conn.in_transaction
        conn.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("RELEASE nested" if nested else "COMMIT")
        except BaseException:
            if nested:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
            else:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def transaction(self, username: str, *, repair: bool = False) -> Iterator[Transaction]:
        with self._begin() as conn:
            row = conn.execute("SELECT doc FROM users WHERE username = ?", (username,)).fetchone()
            txn = open_transaction(username, lambda: self._doc(row, "Your account's record"),
                                   repair=repair)
            yield txn
            if txn.changed:
                conn.execute("INSERT OR REPLACE INTO users (username, doc) VALUES (?, ?)",
                             (username, json.dumps(txn.record)))
            self._insert_audit(conn, txn.events)

    def read_keyed(self, key: str) -> Record | None:
        row = self._conn().execute("SELECT doc FROM sources WHERE key = ?", (key,)).fetchone()
        return self._doc(row, "A keyed record")

    @contextlib.contextmanager
    def keyed_transaction(self, key: str, *, repair: bool = False) -> Iterator[Transaction]:
        with self._begin() as conn:
            row = conn.execute("SELECT doc FROM sources WHERE key = ?", (key,)).fetchone()
            txn = open_transaction(key, lambda: self._doc(row, "A keyed record"), repair=repair)
            yield txn
            if txn.changed:
                conn.execute("INSERT OR REPLACE INTO sources (key, doc) VALUES (?, ?)",
                             (key, json.dumps(txn.record)))
            self._insert_audit(conn, txn.events)

    def sweep_keyed(self, expired: Callable[[str, Record], bool]) -> int:
        removed = 0
        with self._begin() as conn:
            for key, doc in conn.execute("SELECT key, doc FROM sources").fetchall():
                try:
                    record = parse_record(doc, "A keyed record")
                except RecordDamaged:
                    continue
                if expired(key, record):  # unless written again meanwhile (in this thread)
                    removed += conn.execute("DELETE FROM sources WHERE key = ? AND doc = ?",
                                            (key, doc)).rowcount
        return removed

    def put_many(self, records: dict[str, Record]) -> None:
        with self._begin() as conn:
            conn.executemany("INSERT OR REPLACE INTO users (username, doc) VALUES (?, ?)",
                             ((u, json.dumps(r)) for u, r in records.items()))

    def usernames(self) -> Iterator[str]:
        for (name,) in self._conn().execute("SELECT username FROM users ORDER BY username"):
            yield name

    @staticmethod
    def _insert_audit(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        conn.executemany("INSERT INTO audit (time, user, doc) VALUES (?, ?, ?)",
                         ((e["time"], e.get("user"), json.dumps(e)) for e in events))

    def append_audit(self, events: Sequence[Event]) -> None:
        with self._begin() as conn:
            self._insert_audit(conn, events)

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        where, args = audit_filter(username, since, until, user_column="user", placeholder="?")
        return [json.loads(d) for (d,) in
                self._conn().execute(f"SELECT doc FROM audit{where} ORDER BY time", args)]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
