"""Where the engine keeps its state: one interface (``base``), three backends, the audit trail.

``ShardedTinyDBStore`` (``sharded``) is the portal's: one small TinyDB file
per user. ``SingleFileTinyDBStore`` and ``SQLiteStore`` (``baselines``) are
the benchmark's baselines. ``files`` writes files atomically, ``audit_log``
keeps the embedded audit trail. One contract suite runs against every backend.
"""

from __future__ import annotations

from .audit_log import JSONLinesAuditLog
from pathlib import Path

from .base import IO_ERRORS, LOCK_TIMEOUT, DatabaseError, Event, Record, Store, Transaction, user_key
from .baselines import SingleFileTinyDBStore, SQLiteStore
from .files import LEFTOVER_AGE, sweep_leftovers, write_atomic
from .sharded import AtomicJSONStorage, ShardedTinyDBStore, StripedLocks

_user_key = user_key  # the name older tests and tools use

BACKENDS: dict[str, type[Store]] = {
    "tinydb": ShardedTinyDBStore,
    "tinydb-single-file": SingleFileTinyDBStore,
    "sqlite": SQLiteStore,
}

# The shared database backend (``postgres.PostgresStore``): built from a URL, not a data dir,
# so not in BACKENDS; ``open_store`` builds either.
DATABASE_BACKEND = "postgres"


def open_store(backend: str, data_dir: str | Path, database_url: str | None = None) -> Store:
    """The store for ``open_service``: PostgreSQL when ``database_url`` is given, else ``BACKENDS[backend]``."""
    if database_url:
        from .postgres import PostgresStore  # psycopg only when a database is configured
        return PostgresStore(database_url)
    if backend == DATABASE_BACKEND:
        raise ValueError("The postgres backend needs a database URL (MFA_PORTAL_DATABASE_URL).")
    return BACKENDS[backend](data_dir)


__all__ = [
    "AtomicJSONStorage", "BACKENDS", "DATABASE_BACKEND", "DatabaseError", "open_store", "Event", "IO_ERRORS", "JSONLinesAuditLog", "LEFTOVER_AGE",
    "LOCK_TIMEOUT", "Record", "SQLiteStore", "ShardedTinyDBStore", "SingleFileTinyDBStore",
    "Store", "StripedLocks", "Transaction", "sweep_leftovers", "user_key", "write_atomic",
]
