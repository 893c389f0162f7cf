"""Whose MFA record is under a name: the company directory's stable id (entryUUID / objectGUID).

The engine keeps a user's record under their name. With the company
directory, two keyed records bind names and ids both ways:

- ``dir-name:<name>`` -> ``{"id": stable id}``: whose record the name holds;
- ``dir-id:<id>`` -> ``{"name": name}``: where that person's record is now.

:func:`claim` runs before a sign-in's password and before an API check (never
inside a user's transaction: it opens users' transactions itself) and makes
the binding true for the person the directory has under ``name`` now:

- the usual case, the name is bound to this id: one keyed read, nothing else;
- first sight of a name nobody claimed (an existing deployment switching to
  the directory): the record under the name is taken to be this person's;
- the id's record is under another name (the entry was renamed): it moves to
  the new name (the old one keeps an empty record), sessions end;
- the name's record belongs to another id (a new account reusing a leaver's
  name): that record is parked under ``~<old id>`` and the new person starts
  with none; should the old id come back under some name, it follows them.

Moves are two transactions (copy, then empty the source), and may be started
again: a crash in between leaves both names with the authenticators (never
neither), the copy marked ``moved_from`` the source; the next claim sees its
own half-done move and finishes it. A record never moves onto a name that has
authenticators of its own, and a record that cannot be parked is never handed
to the new person (StorageError: fail closed).

Parked records are kept :data:`PARKED_RETENTION` seconds (from when they were
parked; the ``dir-id`` record says when), then :func:`retire_parked` (the
engine's hourly sweep) empties them: a leaver who never comes back leaves no
authenticator secrets behind for good.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
from typing import Any

from .. import records
from ..audit import AuditEvent
from ..errors import RecordDamaged, StorageError
from .base import DirectoryAccount

log = logging.getLogger("mfa_core.directory")
ACTOR = "company-directory"
PARKED_RETENTION = 90 * 86400.0  # seconds a leaver's parked record is kept for their return
FACTORS = ("authenticators", "totp", "backup")
UNBOUND = "unbound"  # what claim() answers when it left a first-seen name unbound (first_sight=False)


def parked(stable_id: str) -> str:
    """The name a record waits under while its person has no name in the directory."""
    return "~" + stable_id


def _key(pepper: bytes, kind: str, value: str) -> str:
    return hmac.new(pepper, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def claim(store: Any, pepper: bytes, account: DirectoryAccount, now: float, *,
          first_sight: bool = True) -> str | None:
    """Make ``account.username``'s record ``account.stable_id``'s; returns what was done, or None.

    ``first_sight=False``: a name and id neither of which is bound yet are left so (nothing
    written; the record under the name is the person's either way): answers UNBOUND."""
    name, sid = account.username, account.stable_id
    if not sid or not name:
        return None
    name_key, id_key = _key(pepper, "dir-name", name), _key(pepper, "dir-id", sid)
    owner = (store.read_keyed(name_key) or {}).get("id")
    if owner == sid:
        return None
    where = (store.read_keyed(id_key) or {}).get("name")
    if owner is None and where is None and not first_sight:
        return UNBOUND
    done = None
    if owner is not None:  # the name's record is another person's: park it
        if not _move(store, name, parked(owner), now, f"{name} now belongs to another directory entry") \
                and _holds_factors(store.read(name) or {}):
            log.error("company directory: the record of %s could not be parked under %s; its new "
                      "directory entry is refused until it is (never given another's factors)", name, parked(owner))
            raise StorageError()
        with store.own_keyed_transaction(_key(pepper, "dir-id", owner)) as txn:
            if txn.record.get("name") != parked(owner):
                txn.record["name"] = parked(owner)
                txn.record["parked_at"] = now
        done = f"record of {name} parked (new directory entry)"
    if where is not None and where != name:  # renamed (or parked earlier): it follows them
        if _move(store, where, name, now, f"directory entry renamed from {where}"):
            done = f"record moved from {where} to {name}"
        if not where.startswith("~"):
            with store.own_keyed_transaction(_key(pepper, "dir-name", where)) as txn:
                if txn.record.get("id") == sid:
                    txn.record.clear()
    with store.own_keyed_transaction(name_key) as txn:
        txn.record["id"] = sid
    with store.own_keyed_transaction(id_key) as txn:
        txn.record["name"] = name
        txn.record.pop("parked_at", None)
        txn.record.pop("retired_at", None)
    if done:
        log.info("company directory: %s", done)
    return done or "bound"


def _move(store: Any, src: str, dst: str, now: float, why: str) -> bool:
    try:
        rec = store.read(src)
    except RecordDamaged:
        log.warning("company directory: the record of %s is damaged; not moved", src)
        return False
    if rec is None or not _holds_factors(rec):
        return False
    with store.transaction(dst, repair=True) as txn:
        resumed = txn.existed and _same_move(txn.record, src, rec)  # a crash after the copy: finish it
        if txn.existed and _holds_factors(txn.record) and not resumed:
            log.warning("company directory: %s has factors of its own; %s's were not moved", dst, src)
            return False
        if not resumed:
            moved = copy.deepcopy(rec)
            moved["username"] = dst
            moved["moved_from"] = src
            moved.pop("sessions", None)  # signed in under the old name: sign in again
            records.seal(moved)
            txn.record = moved
            txn.log(AuditEvent(now, dst, ACTOR, "mfa_record_moved", "success", why).to_dict())
    with store.transaction(src, repair=True) as txn:
        emptied = {"username": src, "mfa_epoch": int(rec.get("mfa_epoch", 0) or 0) + 1}
        records.seal(emptied)
        txn.record = emptied
        txn.log(AuditEvent(now, src, ACTOR, "mfa_record_moved", "success",
                           f"authenticators moved to {dst}").to_dict())
    return True


def _holds_factors(rec: dict[str, Any]) -> bool:
    return any(rec.get(k) for k in FACTORS)


def _same_move(dst_rec: dict[str, Any], src: str, src_rec: dict[str, Any]) -> bool:
    """``dst_rec`` is the copy a move of ``src_rec`` from ``src`` made (and the source was not
    emptied yet: a crash in between)."""
    return dst_rec.get("moved_from") == src and all(dst_rec.get(k) == src_rec.get(k) for k in FACTORS)


def retire_parked(store: Any, pepper: bytes, now: float, retention: float = PARKED_RETENTION) -> int:
    """Empty the parked records (``~<id>``) kept longer than ``retention``; returns how many.

    When they were parked is in their ``dir-id`` record; one parked before that was kept (or
    whose ``dir-id`` record is gone) is given the retention from now. The binding goes first,
    under its lock, so a person who comes back meanwhile is either moved to (the binding still
    there) or starts afresh (gone): never half. Safe beside running portals.
    """
    retired = 0
    for username in list(store.usernames()):
        if not username.startswith("~"):
            continue
        sid = username[1:]
        due = False
        with store.own_keyed_transaction(_key(pepper, "dir-id", sid)) as txn:
            at = txn.record.get("parked_at")
            if "retired_at" in txn.record:
                due = True  # unbound by an earlier sweep that stopped before emptying it
            elif txn.record.get("name") not in (None, username):
                continue  # its person came back: the record was moved (and emptied) already
            elif not isinstance(at, (int, float)):
                txn.record["name"], txn.record["parked_at"] = username, now  # from now on
            elif now - at >= retention:
                txn.record.clear()  # unbound: a person coming back from now on starts afresh
                txn.record["retired_at"] = now
                due = True
        if not due:
            continue
        try:
            with store.transaction(username, repair=True) as txn:
                if not _holds_factors(txn.record) and not txn.damaged:
                    continue
                emptied = {"username": username, "mfa_epoch": int(txn.record.get("mfa_epoch", 0) or 0) + 1}
                records.seal(emptied)
                txn.record = emptied
                txn.log(AuditEvent(now, username, ACTOR, "mfa_record_retired", "success",
                                   f"parked for {retention / 86400:g} days: its person never came "
                                   "back to the directory").to_dict())
        except RecordDamaged:
            continue
        retired += 1
        log.info("company directory: parked record %s retired", username)
    return retired
