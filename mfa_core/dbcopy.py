"""``python -m mfa_core db copy --from DATA_DIR``: an embedded data dir into the shared database.

Records, keyed records (sessions, password throttles, cookie tickets), the
audit trail, the API clients and the user directory are copied as they are
stored: nothing is decrypted (TOTP secrets stay Fernet tokens, codes and keys
stay keyed hashes), so the replicas need the data dir's keys. Every row is
written by its name (records, keyed records, users, clients) or by an origin
id (audit events: a hash of the event and its place among equal ones).

A second run never rolls the database back: a row the database already holds
exactly as the data dir does is left alone (counted as already there), but a
row the database holds differently -- the portal changed it since the first
copy: an authenticator removed, a password or API key changed, a session
ended, a lockout taken -- is a conflict, and so is an API client or directory
user the database removed after a copy brought it (the names copied are kept
in the ``db-copy`` keyed record). Any conflict refuses the whole copy before
anything is written, unless ``overwrite`` (``--overwrite``): then the data dir
wins and every such change made in the database is undone. The data dir is read in full first: a
record that cannot be read refuses the whole copy, because a user whose
record was left behind would have no second factor in the database. Then
everything written is read back and compared. All of it is one database
transaction: a refusal, a difference read back or a failure half-way leaves
the database as it was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clients import CLIENTS_FILE, STORE_KEY, FORMAT_VERSION, FileClientRegistry
from .errors import MFAError, RecordDamaged, StorageError
from .storage.audit_log import JSONLinesAuditLog
from .storage.base import Event, Record, user_key
from .storage.sharded import load_document, witness_key, witness_name
from .users import USERS_FILE, DatabaseUserDirectory, check_entries, load_yaml_file


class CopyRefused(MFAError):
    """The data dir cannot be copied as it is; nothing was written."""


class CopyConflict(CopyRefused):
    """The database changed rows the copy would overwrite; nothing was written."""

    def __init__(self, message: str, conflicts: dict[str, int]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class CopyMismatch(StorageError):
    """What was read back from the database differs from the data dir."""


@dataclass(frozen=True)
class Source:
    records: dict[str, Record]
    keyed: dict[str, Record]
    audit: dict[str, Event]
    clients: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Copied:
    """How many rows of each kind the data dir holds, and of those how many the database
    already held exactly so (left alone: ``present``, by kind); the rest were written."""
    records: int
    keyed: int
    audit: int
    clients: int
    users: int
    present: dict[str, int] = field(default_factory=dict)  # kind -> rows already there

    @property
    def already(self) -> int:
        """Rows already in the database as in the data dir, all kinds together."""
        return sum(self.present.values())

    def written(self, kind: str) -> int:
        """Rows of ``kind`` this copy wrote (new, or overwritten with --overwrite)."""
        return getattr(self, kind) - self.present.get(kind, 0)


# The keyed record naming the API clients and directory users a copy brought (those two
# can be removed in the database: a later copy must not bring them back unasked).
MARKER_KEY = "db-copy"

# What a conflict is called in the refusal, by kind (singular, plural).
_KINDS = {"records": ("user record", "user records"),
          "keyed": ("keyed record (session, throttle, ticket)", "keyed records (sessions, throttles, tickets)"),
          "clients": ("API client", "API clients"),
          "users": ("directory user", "directory users")}


def read_data_dir(data_dir: Path, pepper: bytes | None = None) -> Source:
    """Everything to copy, read and checked before anything is written. Raises CopyRefused.

    ``pepper``: the data dir's, to read the second witnesses of two-step (``witness/``)."""
    if not data_dir.is_dir():
        raise CopyRefused(f"{data_dir} is not a directory.")
    if not any((data_dir / part).exists() for part in ("users", USERS_FILE, "audit", CLIENTS_FILE)):
        raise CopyRefused(f"{data_dir} is not a portal data dir (no users/, {USERS_FILE}, audit/).")
    records = _documents(data_dir, "users")
    present = {user_key(name) for name in records}
    for marker in sorted((data_dir / "enrolled").glob("*/*")):
        # Two-step was on for this user but the record file is gone (see sharded.GUARD):
        # copied without it, the user would have no second factor at all.
        if marker.name not in present:
            raise CopyRefused(f"{marker.relative_to(data_dir)}: an enrolled user's record is missing "
                              "(the user cannot sign in); reset their MFA before copying.")
    witnesses = sorted((data_dir / "witness").glob("*/*"))
    if witnesses and pepper is not None:
        key = witness_key(pepper)
        named = {witness_name(key, name) for name in records}
        for witness in witnesses:
            if witness.name not in named:  # the record and its marker are both gone
                raise CopyRefused(f"{witness.relative_to(data_dir)}: an enrolled user's record is "
                                  "missing (the user cannot sign in); reset their MFA before copying.")
    keyed = _documents(data_dir, "sources")
    audit: dict[str, Event] = {}
    if (data_dir / "audit").is_dir():
        seen: dict[str, int] = {}
        for event in JSONLinesAuditLog(data_dir / "audit").query():
            canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
            n = seen[canonical] = seen.get(canonical, 0) + 1
            audit[hashlib.sha256(f"{canonical}#{n}".encode("utf-8")).hexdigest()] = event
    clients: dict[str, dict[str, Any]] = {}
    if (data_dir / CLIENTS_FILE).exists():
        # The pepper only hashes keys, and nothing is hashed here.
        clients = dict(FileClientRegistry(data_dir, bytes(16))._entries())
    users = check_entries(load_yaml_file(data_dir / USERS_FILE)) \
        if (data_dir / USERS_FILE).exists() else {}
    return Source(records, keyed, audit, clients, users)


def _documents(data_dir: Path, part: str) -> dict[str, Record]:
    """name -> record of every ``<part>/<2 hex>/<sha256 of name>.json``; CopyRefused for damage."""
    found: dict[str, Record] = {}
    for path in sorted((data_dir / part).glob("*/*.json")):
        where = path.relative_to(data_dir)
        try:
            record = load_document(str(path), "A record")[1]
        except (RecordDamaged, OSError):
            record = None
        name = record.get("username") if isinstance(record, dict) else None
        if not isinstance(name, str) or user_key(name) != path.stem:
            raise CopyRefused(f"{where} cannot be read as a record; nothing was copied "
                              "(reset that user's MFA, or move the file away, then copy again).")
        found[name] = record
    return found


def _plan(source: Source, store: Any) -> tuple[dict[str, dict[str, Any]], dict[str, int], dict[str, int]]:
    """(what to write by kind, conflicts by kind, rows already there by kind), read before any write."""
    marker = store.read_keyed(MARKER_KEY) or {}
    stored_clients = (store.read_keyed(STORE_KEY) or {}).get("clients") or {}
    current = {"records": store.documents("users", list(source.records)),
               "keyed": store.documents("keyed", list(source.keyed)),
               "clients": stored_clients,
               "users": DatabaseUserDirectory(store).entries()}
    wanted = {"records": source.records, "keyed": source.keyed, "clients": source.clients,
              "users": source.users}
    writes: dict[str, dict[str, Any]] = {}
    conflicts: dict[str, int] = {}
    # Audit events are only ever added (by origin id): those already there are the ones a
    # previous copy brought.
    already = {"audit": store.copied_audit(list(source.audit)) if source.audit else 0}
    for kind, rows in wanted.items():
        once = set(marker.get(kind) or ()) if kind in ("clients", "users") else set()
        there = current[kind]
        writes[kind] = {}
        already[kind] = 0
        for name, row in rows.items():
            if name in there and there[name] == row:
                already[kind] += 1
            elif name in there or name in once:  # changed, or removed since a copy brought it
                conflicts[kind] = conflicts.get(kind, 0) + 1
                writes[kind][name] = row
            else:
                writes[kind][name] = row
    return writes, conflicts, already


def _refusal(conflicts: dict[str, int]) -> str:
    total = sum(conflicts.values())
    parts = ", ".join(f"{n} {_KINDS[k][0 if n == 1 else 1]}" for k, n in conflicts.items())
    return (f"Nothing was copied: {total} row{'s' if total != 1 else ''} changed or removed in the "
            f"database since the data dir was copied ({parts}); copying again would undo that "
            "(--overwrite makes the data dir win: it brings back removed authenticators, keys and "
            "users, old passwords, ended sessions and cleared lockouts).")


def copy_into(source: Source, store: Any, *, overwrite: bool = False) -> Copied:
    """Write ``source`` into ``store`` (a PostgresStore), then read it back: all or nothing.

    One database transaction (``store.atomic``): the plan, the writes and the
    read-back; anything raised on the way (CopyConflict when the database holds
    a row differently from the data dir, unless ``overwrite``; CopyMismatch; a
    database error) leaves the database as it was.
    """
    with store.atomic(MARKER_KEY):
        return _copy(source, store, overwrite)


def _copy(source: Source, store: Any, overwrite: bool) -> Copied:
    writes, conflicts, already = _plan(source, store)
    if conflicts and not overwrite:
        raise CopyConflict(_refusal(conflicts), conflicts)
    store.copy_documents("users", writes["records"], overwrite=overwrite)
    store.copy_documents("keyed", writes["keyed"], overwrite=overwrite)
    store.copy_audit(source.audit)  # by origin id: an event already there is skipped
    if writes["clients"]:
        with store.keyed_transaction(STORE_KEY) as txn:
            merged = dict(txn.record.get("clients") or {}) if txn.existed else {}
            for name, entry in writes["clients"].items():
                if overwrite:
                    merged[name] = entry
                else:
                    merged.setdefault(name, entry)
            txn.record = {"username": STORE_KEY, "version": FORMAT_VERSION,
                          "clients": dict(sorted(merged.items()))}
    directory = DatabaseUserDirectory(store)
    if writes["users"]:
        directory.import_entries(writes["users"], replace=overwrite)
    with store.keyed_transaction(MARKER_KEY) as txn:
        before = txn.record if txn.existed else {}
        marker = {"username": MARKER_KEY}
        for kind, rows in (("clients", source.clients), ("users", source.users)):
            marker[kind] = sorted(set(before.get(kind) or ()) | set(rows))
        if marker != before:
            txn.record = marker

    # Read back and compare.
    problems = []
    if store.documents("users", list(source.records)) != source.records:
        problems.append("records")
    if store.documents("keyed", list(source.keyed)) != source.keyed:
        problems.append("keyed records")
    if store.copied_audit(list(source.audit)) != len(source.audit):
        problems.append("audit events")
    stored_clients = (store.read_keyed(STORE_KEY) or {}).get("clients") or {}
    if any(stored_clients.get(name) != entry for name, entry in source.clients.items()):
        problems.append("API clients")
    entries = directory.entries()
    if any(entries.get(name) != entry for name, entry in source.users.items()):
        problems.append("directory users")
    if problems:
        raise CopyMismatch(f"Nothing was copied: the database did not hold what was written "
                           f"({', '.join(problems)}). Was the portal running on either side? "
                           "Stop it and copy again.")
    return Copied(len(source.records), len(source.keyed), len(source.audit), len(source.clients),
                  len(source.users), already)


__all__ = ["Copied", "CopyConflict", "CopyMismatch", "CopyRefused", "Source", "copy_into", "read_data_dir"]
