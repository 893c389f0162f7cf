"""Where the engine keeps its state: one interface (``base``), three backends, the audit trail.

``ShardedTinyDBStore`` (``sharded``) is the portal's: one small TinyDB file
per user. ``SingleFileTinyDBStore`` and ``SQLiteStore`` (``baselines``) are
the benchmark's baselines. ``files`` writes files atomically, ``audit_log``
keeps the embedded audit trail. One contract suite runs against every backend.
"""

from __future__ import annotations

from .audit_log import JSONLinesAuditLog
from .base import IO_ERRORS, LOCK_TIMEOUT, Event, Record, Store, Transaction, user_key
from .baselines import SingleFileTinyDBStore, SQLiteStore
from .files import LEFTOVER_AGE, sweep_leftovers, write_atomic
from .sharded import AtomicJSONStorage, ShardedTinyDBStore, StripedLocks

_user_key = user_key  # the name older tests and tools use

BACKENDS: dict[str, type[Store]] = {
    "tinydb": ShardedTinyDBStore,
    "tinydb-single-file": SingleFileTinyDBStore,
    "sqlite": SQLiteStore,
}

__all__ = [
    "AtomicJSONStorage", "BACKENDS", "Event", "IO_ERRORS", "JSONLinesAuditLog", "LEFTOVER_AGE",
    "LOCK_TIMEOUT", "Record", "SQLiteStore", "ShardedTinyDBStore", "SingleFileTinyDBStore",
    "Store", "StripedLocks", "Transaction", "sweep_leftovers", "user_key", "write_atomic",
]
