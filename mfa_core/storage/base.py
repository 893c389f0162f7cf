"""The storage interface the engine is written against: a per-user transaction and the audit trail.

A backend keeps two kinds of record, each changed only inside a transaction
under its own lock: a user's record (``transaction(username)``) and records
keyed by an opaque key (``keyed_transaction(key)``: the password throttle of
one source address, the owner of a session id, a one-time cookie ticket). The audit events a transaction logs commit with it: a backend never
reports a transaction as failed after its record was committed.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import secrets
import sqlite3
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

import orjson

from ..errors import RecordDamaged

Record = dict[str, Any]
Event = dict[str, Any]

LOCK_TIMEOUT = 30.0
# The audit events that count as an enrollment in the coverage report's per-day series.
ENROLLMENT_EVENTS = frozenset({"totp_enabled", "passkey_added"})
# What a backend may raise when its files or database cannot be used (the engine reports StorageError).
IO_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)


class DatabaseError(OSError):
    """A database server's failure: ``PostgresStore`` re-raises every ``psycopg.Error`` as this.

    An ``OSError``, so in ``IO_ERRORS`` without importing psycopg here (~0.4 s
    that every process, the PAM helper included, would pay for the embedded store).
    """


class Transaction:
    """One record, open for change under its lock.

    ``record`` is the caller's own copy (freshly parsed): the store writes it
    back only if the block ends without an exception and it changed. ``log``
    queues audit events, which commit with the record (see each backend).
    ``damaged`` is True when the store found a damaged record and the caller
    asked to replace it (``repair=True``): ``record`` then starts empty.
    """

    def __init__(self, username: str, record: Record | None, *, damaged: bool = False) -> None:
        self.username = username
        self.existed = record is not None
        self.damaged = damaged
        self.record: Record = record if record is not None else {"username": username}
        self._original = _canonical(self.record) if record is not None else None
        self.events: list[Event] = []
        # Ties this transaction's audit lines together (an aborted one is marked by it).
        self.txn_id = secrets.token_hex(8)

    def log(self, event: Event) -> None:
        self.events.append({**event, "txn": self.txn_id})

    @property
    def blank(self) -> bool:
        """A new record nothing was put in: never written (a user who has none keeps none)."""
        return (self._original is None and not self.damaged
                and set(self.record) == {"username"} and self.record.get("username") == self.username)

    @property
    def changed(self) -> bool:
        if self.damaged or self._original is None:
            return not self.blank
        return _canonical(self.record) != self._original

    def serialized(self) -> str | None:
        """The record as the JSON to write, or None when it did not change (one encoding)."""
        if self.damaged or self._original is None:
            return None if self.blank else _canonical(self.record)
        text = _canonical(self.record)
        return None if text == self._original else text


def open_transaction(username: str, load: Callable[[], Record | None], *,
                     repair: bool) -> Transaction:
    """A user's transaction on what ``load()`` reads.

    A damaged record raises RecordDamaged, unless ``repair``: then the
    transaction starts empty and is marked ``damaged``.
    """
    try:
        return Transaction(username, load())
    except RecordDamaged:
        if not repair:
            raise
        return Transaction(username, None, damaged=True)


def _canonical(record: Record) -> str:
    return canonical_json(record).decode("utf-8")


def canonical_json(value: Any) -> bytes:
    """``value`` as compact JSON with sorted keys: equal values, equal bytes (the change check).

    orjson (a sign-in encodes a record of a few kB three times; the standard
    library took ~0.1 ms each). What orjson will not encode (an integer beyond 64
    bits, a key that is not a string, a lone surrogate) goes through the standard
    library. NaN and infinity never reach here: ``parse_record`` refuses them.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def commit_after_audit(txn: Transaction, audit: Any, write: Any) -> bool:
    """Commit ``txn`` to a file backend: its events first, then its record (``write()``).

    Write-ahead: if the append fails nothing is committed and the caller hears
    so; if the record write fails, the events are marked aborted (best effort;
    see ``audit_log``). Returns whether a record was written.
    """
    changed = txn.changed
    if txn.events:
        audit.append(txn.events)
    if not changed:
        return False
    try:
        write()
    except BaseException:
        if txn.events:
            with contextlib.suppress(OSError):
                audit.abort(txn.txn_id, txn.events[-1]["time"])
        raise
    return True


def audit_filter(username: str | None, since: float | None, until: float | None, *,
                 user_column: str, placeholder: str) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of an audit query on a SQL backend."""
    clauses, args = [], []
    for value, clause in ((username, f"{user_column} = {placeholder}"),
                          (since, f"time >= {placeholder}"), (until, f"time < {placeholder}")):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return " WHERE " + " AND ".join(clauses) if clauses else "", args


def check_record(raw: Any, what: str) -> Record:
    """``raw`` if it is a record (a JSON object), else RecordDamaged."""
    if not isinstance(raw, dict):
        raise RecordDamaged(detail=f"{what} is not an object")
    return raw


def parse_record(text: str | bytes, what: str) -> Record:
    """The record in ``text``; RecordDamaged when it is not a JSON object (NaN and infinity,
    which are not JSON, included)."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses and the standard library reads: a byte-order mark, big integers
            raw = json.loads(text, parse_constant=_not_json)
        except (ValueError, TypeError):
            raise RecordDamaged(detail=f"{what} is not JSON") from None
    except TypeError:
        raise RecordDamaged(detail=f"{what} is not JSON") from None
    return check_record(raw, what)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def utc_day(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d")


def user_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8")).hexdigest()


class Store(ABC):
    """The storage interface the engine is written against."""

    # True for a database several replicas share: the user directory and the API client
    # registry then live in it too, and nothing shared is kept in the data dir.
    database = False

    @abstractmethod
    def read(self, username: str) -> Record | None:
        """The user's committed record, or None when there is none. Needs no lock.

        Raises RecordDamaged when a record exists but cannot be read as one.
        """

    @abstractmethod
    @contextlib.contextmanager
    def transaction(self, username: str, *, repair: bool = False) -> Iterator[Transaction]:
        """Read, change and write one user's record under that user's lock.

        A damaged record raises RecordDamaged, unless ``repair``: then the
        transaction starts from an empty record (``txn.damaged``) and the
        backend keeps the damaged copy aside when it writes the new one.
        """

    @abstractmethod
    @contextlib.contextmanager
    def keyed_transaction(self, key: str, *, repair: bool = False) -> Iterator[Transaction]:
        """A record that belongs to no one user, by an opaque ``key``, under its own lock.

        The password throttle of one source, a session id's owner, a one-time
        cookie ticket. May be opened inside a user's transaction (never the
        other way round). A damaged record raises RecordDamaged, unless
        ``repair``: then the transaction starts empty (``txn.damaged``) and
        what the block leaves replaces it.
        """

    def holding_keyed(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        """Hold the locks of the keyed records ``keys`` together, taken in one fixed order.

        For a caller that opens transactions on more than one of them, one inside
        the other (an unknown name: its place's record, then its bind budget's):
        where keys share a set of locks (the embedded store's stripes), two such
        callers whose keys cross would otherwise take the same two locks in
        opposite orders and wait on each other. Transactions on ``keys`` opened
        inside find their locks held already. Nothing to do where every key has
        a lock of its own (a database row).
        """
        return contextlib.nullcontext()

    def own_keyed_transaction(self, key: str) -> contextlib.AbstractContextManager[Transaction]:
        """A keyed transaction committed at its end even inside a user's transaction.

        Not a part of the user's transaction: its lock is held only while its
        own block runs. A backend whose keyed transactions already commit at
        their end (the files) needs nothing else; PostgreSQL gives it its own
        connection (a nested keyed transaction there is a savepoint, its lock
        held until the outer commit).
        """
        return self.keyed_transaction(key)

    @abstractmethod
    def sweep_keyed(self, expired: Callable[[str, Record], bool]) -> int:
        """Remove every keyed record for which ``expired(key, record)`` holds; returns how many.

        For records nothing needs any more (a redeemed cookie ticket, a used passkey
        challenge, an ended session's owner). Each candidate is read again under its
        lock and removed only if ``expired`` still holds, so a record changed in
        between (a challenge issued again under the same key) stays. Damaged
        records are left alone.
        """

    @abstractmethod
    def read_keyed(self, key: str) -> Record | None:
        """The committed keyed record, or None. Needs no lock; RecordDamaged if unreadable."""

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

    def use_pepper(self, pepper: bytes) -> None:
        """The server's pepper, for names a backend keeps outside its records (the sharded
        store's second witness of two-step). A database needs none: nothing is lost there by
        deleting a file."""

    def summaries(self) -> dict[str, dict[str, Any]]:
        """username -> coverage summary (``mfa_core.summary``) of every user who has one.

        The portal's backends keep these as records change; this fallback reads
        every record (the benchmark's baselines).
        """
        from ..summary import summarize
        found = {}
        for name in self.usernames():
            try:
                summary = summarize(self.read(name))
            except RecordDamaged:
                continue
            if summary is not None:
                found[name] = summary
        return found

    def coverage_columns(self) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
        """(kinds key -> usernames with an authenticator, target -> {username: grace start} of
        the users without one); see ``mfa_core.summary``'s columnar index."""
        from ..summary import index_put, new_index
        index = new_index()
        for name, summary in self.summaries().items():
            index_put(index, name, summary, fresh=True)
        return index["k"], index["s"]

    def enrollments_per_day(self, since: float, until: float) -> dict[str, int]:
        """"YYYY-MM-DD" (UTC) -> how many ``ENROLLMENT_EVENTS`` the audit trail holds in
        ``since <= time < until``."""
        days: dict[str, int] = {}
        for event in self.query_audit(None, since, until):
            if event.get("event") in ENROLLMENT_EVENTS and event.get("outcome", "success") == "success":
                day = utc_day(event["time"])
                days[day] = days.get(day, 0) + 1
        return days

    def put(self, username: str, record: Record) -> None:
        """Write a record without reading it first (for building large stores)."""
        with self.transaction(username, repair=True) as txn:
            txn.record = record

    def close(self) -> None:
        pass
