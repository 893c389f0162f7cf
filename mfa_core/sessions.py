"""Server-side sign-in sessions: created by a sign-in, checked on every page run, ended for good.

The browser holds only the session's token (256 random bits, nothing else).
The store keeps, under a keyed hash of it, which user it belongs to, and in
that user's record what the session knows: whether the second factor was
passed, when the user last verified, where and in what browser it started
and when it was last active. Everything about a user's sessions therefore
changes in that user's transaction: a helpdesk reset or a removed second
factor ends them in the same write.

A session ends on sign-out, after ``idle`` seconds without a page run, after
``lifetime`` seconds in all, when the user's password changes (each session
remembers a keyed fingerprint of the password hash it was started with), and
when the user's second factor is removed or reset (all but the session that
removed it). When a factor is added (an app, a passkey: two-step turns on or
changes) every other session of the user loses its "second factor passed" and
its last verification, in the same write, so a cookie, a reload or another
replica continues it only through the second factor. Sessions past the
password only never evict ones past the second factor (``evict``). A
one-time ticket lets the page hand the token to a server route
that sets it as an ``HttpOnly`` cookie: the token never reaches the page's
scripts, and the ticket stores it only encrypted, for a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Protocol

from . import temp_pass
from . import validate as check
from .errors import RecordDamaged, StorageError
from .keys import KeyRing
from .records import two_step_on
from .storage.base import IO_ERRORS, Store, Transaction

SESSIONS_MAX = 20       # per user, sessions past the second factor: the least recently active go first
UNVERIFIED_MAX = 5      # per user, sessions past the password only: they only ever evict each other
TICKET_TTL = 60         # seconds a cookie ticket may wait for the browser
TOUCH_EVERY = 60        # at most this many seconds between writes of "last active" ...
TOUCH_SHARE = 4         # ... and at most a quarter of the idle time (see ``touch_every``)
USER_AGENT_MAX = 300


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives: ``idle`` seconds without use, ``lifetime`` in all.

    OWASP ASVS 4 §3.3 (level 2): re-authenticate after at most 30 minutes
    idle and 12 hours in all.
    """

    idle: int = 30 * 60
    lifetime: int = 12 * 3600

    def __post_init__(self) -> None:
        if not 60 <= self.idle <= self.lifetime:
            raise ValueError("idle must be at least 60 s and at most the lifetime")

    @property
    def touch_every(self) -> float:
        """Seconds between writes of "last active": min(60, idle / 4), so a session in use
        is written at least four times per idle period and never expires while used."""
        return min(TOUCH_EVERY, self.idle / TOUCH_SHARE)


@dataclass(frozen=True)
class Session:
    id: str                       # the keyed hash of the token: safe to show and to store
    username: str
    second_factor_passed: bool
    verified_at: float | None
    created_at: float
    last_seen: float
    user_agent: str
    source: str | None
    via: str | None = None          # "temporary_pass": passed with the helpdesk's pass (restricted)
    ends_at: float | None = None    # such a session ends when the pass expires

    @property
    def restricted(self) -> bool:
        """Passed with a temporary pass: it may only add a factor (see docs/security.md S40)."""
        return self.via == temp_pass.STRATEGY


def _key(pepper: bytes, kind: str, token: str) -> str:
    return hmac.new(pepper, f"{kind}:{token}".encode("utf-8"), hashlib.sha256).hexdigest()[:40]


def _token(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"token must be a str, not {type(value).__name__}")
    if not 20 <= len(value) <= 100 or not value.isascii() or not value.isprintable():
        raise ValueError("That is not a session token.")
    return value


class Engine(Protocol):
    """What a SessionBook uses of the engine that holds it (``MFAService``), which it is given
    rather than importing the service that imports this module."""

    store: Store
    keyring: KeyRing
    clock: Callable[[], float]
    directory: Any  # its password_hash(username), or None: no directory

    def _read(self, username: str) -> dict[str, Any]: ...

    def _transaction(self, username: str, *, repair: bool = False) -> ContextManager[Transaction]: ...

    def _keyed_transaction(self, key: str, *, repair: bool = False) -> ContextManager[Transaction]: ...

    def _log(self, txn: Transaction, now: float, actor: str, event: str, outcome: str,
             detail: str = "") -> None: ...


class SessionBook:
    """``svc.sessions``: the sign-in sessions of every user of one engine."""

    def __init__(self, svc: Engine, policy: SessionPolicy | None = None) -> None:
        self._svc = svc
        self.policy = policy or SessionPolicy()

    # -- keys ---------------------------------------------------------------------

    def _sid(self, token: str) -> str:
        return _key(self._svc.keyring.pepper, "session", token)

    def _password_mark(self, username: str) -> str:
        """A keyed fingerprint of the user's password hash: changes when the password does."""
        stored = self._svc.directory.password_hash(username) if self._svc.directory else None
        return _key(self._svc.keyring.pepper, "password", stored or "")

    # -- the life of a session ------------------------------------------------------

    def start(self, username: str, *, second_factor_passed: bool, verified_at: float | None = None,
              source: str | None = None, user_agent: str | None = None) -> str:
        """A new session for ``username``; returns its token (give it to the browser only)."""
        svc = self._svc
        username = check.name(username)
        source = check.source(source)
        agent = user_agent if isinstance(user_agent, str) else ""
        agent = "".join(ch for ch in agent if ch.isprintable())[:USER_AGENT_MAX]
        if verified_at is not None:
            verified_at = check.time(verified_at, "verified_at")
        token = secrets.token_urlsafe(32)
        sid = self._sid(token)
        now = svc.clock()
        with svc._keyed_transaction(f"session:{sid}") as txn:
            txn.record.update(owner=username, created_at=now)  # created_at: for sweep_expired
        with svc._transaction(username) as txn:
            sessions = self._live(txn.record, username, now)
            sessions[sid] = {"created_at": now, "last_seen": now, "passed": bool(second_factor_passed),
                             "verified_at": verified_at, "pw": self._password_mark(username),
                             "ua": agent, "ip": source}
            evict(sessions)
            txn.record["sessions"] = sessions
            svc._log(txn, now, username, "session_started", "success",
                     f"from {source}" if source else "")
        return token

    def find(self, token: str) -> Session | None:
        """The live session of ``token``, or None (unknown, ended, expired, password changed).

        Keeps "last active" up to date (a write at most once a minute).
        Raises StorageError (RecordDamaged) when the owner's record is damaged.
        """
        svc = self._svc
        try:
            token = _token(token)
        except (TypeError, ValueError):
            return None
        sid = self._sid(token)
        try:
            owner = (svc.store.read_keyed(f"session:{sid}") or {}).get("owner")
        except RecordDamaged:
            return None
        except OSError as exc:
            raise StorageError() from exc
        if not isinstance(owner, str):
            return None
        now = svc.clock()
        entry = self._live(svc._read(owner), owner, now).get(sid)
        if entry is None:
            return None
        if now - entry["last_seen"] >= self.policy.touch_every:
            with svc._transaction(owner) as txn:
                entry = self._live(txn.record, owner, now).get(sid)
                if entry is None:
                    return None
                entry["last_seen"] = now
        return _session(sid, owner, entry)

    def update(self, token: str, *, second_factor_passed: bool | None = None,
               verified_at: float | None = None, via: str | None = None,
               ends_at: float | None = None) -> Session | None:
        """Record a passed second factor or a verification; None if the session is gone.

        ``via`` "temporary_pass" (with ``ends_at``, the pass's expiry) marks a session that
        passed with the helpdesk's pass: restricted to adding a factor, ending at ``ends_at``.
        Any other second factor passed later lifts the restriction.
        """
        if via is not None and via != temp_pass.STRATEGY:
            raise ValueError("via is 'temporary_pass' or None")
        if via is not None:
            ends_at = check.time(ends_at, "ends_at")
        svc = self._svc
        sid = self._sid(_token(token))
        owner = (svc.store.read_keyed(f"session:{sid}") or {}).get("owner")
        if not isinstance(owner, str):
            return None
        now = svc.clock()
        with svc._transaction(owner) as txn:
            entry = self._live(txn.record, owner, now).get(sid)
            if entry is None:
                return None
            if second_factor_passed is not None:
                entry["passed"] = bool(second_factor_passed)
                if via is not None:
                    entry["via"], entry["ends_at"] = via, float(ends_at)
                # Otherwise the restriction stays (a reverification does not lift it): only
                # adding a factor does (``demote_others`` with this session kept).
            if verified_at is not None:
                entry["verified_at"] = check.time(verified_at, "verified_at")
            entry["last_seen"] = now
            sessions = self._live(txn.record, owner, now)
            evict(sessions)  # one more past the second factor: the cap of those holds
            txn.record["sessions"] = sessions
            return _session(sid, owner, entry)

    def pass_without_second_factor(self, token: str) -> bool:
        """The user has no second factor: the password was the strongest, the session may see
        the portal. Checked in the same write (a factor added meanwhile wins); True if passed."""
        svc = self._svc
        sid = self._sid(_token(token))
        owner = (svc.store.read_keyed(f"session:{sid}") or {}).get("owner")
        if not isinstance(owner, str):
            return False
        now = svc.clock()
        with svc._transaction(owner) as txn:
            entry = self._live(txn.record, owner, now).get(sid)
            if entry is None or two_step_on(txn.record) or temp_pass.live(txn.record, now):
                return False  # a factor, or the helpdesk's pass: the second factor is ahead
            entry["passed"] = True
            return True

    def end(self, token: str) -> None:
        """Sign-out: the session ends for every tab that holds it."""
        svc = self._svc
        try:
            sid = self._sid(_token(token))
        except (TypeError, ValueError):
            return
        owner = (svc.store.read_keyed(f"session:{sid}") or {}).get("owner")
        if isinstance(owner, str):
            self.end_by_id(owner, sid, actor=owner)

    def end_by_id(self, username: str, session_id: str, *, actor: str | None = None) -> bool:
        """End one of the user's sessions by its id (Manage MFA's **Sign out**); True if it was live."""
        svc = self._svc
        username = check.name(username)
        actor = check.optional_name(actor, "actor", username)
        with svc._transaction(username) as txn:
            sessions = txn.record.get("sessions") or {}
            if not isinstance(session_id, str) or session_id not in sessions:
                return False
            del sessions[session_id]
            svc._log(txn, svc.clock(), actor, "session_ended", "success", "signed out")
        return True

    def end_others(self, username: str, keep_token: str | None = None, *,
                   actor: str | None = None) -> int:
        """End every session of the user but ``keep_token``'s; returns how many ended."""
        svc = self._svc
        username = check.name(username)
        actor = check.optional_name(actor, "actor", username)
        keep = self._sid(_token(keep_token)) if keep_token else None
        with svc._transaction(username) as txn:
            ended = end_all(txn.record, keep)
            if ended:
                svc._log(txn, svc.clock(), actor, "sessions_ended", "success",
                         f"{ended} other session{'s' if ended != 1 else ''} signed out")
        return ended

    def of(self, username: str) -> list[Session]:
        """The user's live sessions, most recently active first."""
        svc = self._svc
        username = check.name(username)
        live = self._live(svc._read(username), username, svc.clock())
        return sorted((_session(sid, username, e) for sid, e in live.items()),
                      key=lambda s: s.last_seen, reverse=True)

    def id_of(self, token: str) -> str:
        return self._sid(_token(token))

    def _live(self, rec: dict[str, Any], username: str, now: float) -> dict[str, Any]:
        """The record's sessions that still hold (a copy of the mapping, entries shared)."""
        sessions = rec.get("sessions") or {}
        if not sessions:
            return {}
        mark = self._password_mark(username)
        policy = self.policy
        return {sid: e for sid, e in sessions.items()
                if isinstance(e, dict) and e.get("pw") == mark
                and now - e.get("created_at", 0) < policy.lifetime
                and now - e.get("last_seen", 0) < policy.idle
                and not (isinstance(e.get("ends_at"), (int, float)) and e["ends_at"] <= now)}

    # -- handing the token to the browser --------------------------------------------

    def ticket(self, token: str) -> str:
        """A one-time ticket the browser trades for the session cookie (within a minute)."""
        svc = self._svc
        token = _token(token)
        ticket = secrets.token_urlsafe(32)
        with svc._keyed_transaction(f"ticket:{_key(svc.keyring.pepper, 'ticket', ticket)}") as txn:
            txn.record.update(token=svc.keyring.encrypt(token), expires_at=svc.clock() + TICKET_TTL)
        return ticket

    def redeem(self, ticket: Any) -> str | None:
        """The token a ticket was issued for, once; None for anything else."""
        svc = self._svc
        try:
            ticket = _token(ticket)
        except (TypeError, ValueError):
            return None
        key = f"ticket:{_key(svc.keyring.pepper, 'ticket', ticket)}"
        with svc._keyed_transaction(key) as txn:
            rec = txn.record
            sealed = rec.pop("token", None)
            if not isinstance(sealed, str) or rec.get("expires_at", 0) <= svc.clock():
                return None
            rec["used"] = True
        token = svc.keyring.decrypt(sealed)
        return token if self.find(token) is not None else None

    def expired_record(self, key: str, rec: dict[str, Any], now: float) -> bool:
        """Whether a keyed record of this book is no longer needed: a cookie ticket redeemed
        or past its minute; a session's owner once the session cannot be live (past its
        lifetime; one written before owners had a time: once its owner's record no longer
        holds it live)."""
        if key.startswith("ticket:"):
            expires = rec.get("expires_at")
            return "token" not in rec or not isinstance(expires, (int, float)) or expires <= now
        if not key.startswith("session:"):
            return False
        created = rec.get("created_at")
        if isinstance(created, (int, float)):
            return now - created >= self.policy.lifetime
        owner = rec.get("owner")
        if not isinstance(owner, str):
            return True
        try:
            record = self._svc.store.read(owner)
        except (RecordDamaged, *IO_ERRORS):
            return False  # cannot tell: kept
        return key[len("session:"):] not in self._live(record or {}, owner, now)


def evict(sessions: dict[str, Any]) -> None:
    """Keep the caps: at most UNVERIFIED_MAX sessions past the password only and SESSIONS_MAX
    past the second factor, each group losing its least recently active first.

    The groups never evict each other: sign-ins with the password alone (someone who
    knows it) push out only one another, never a session that passed the second factor.
    """
    for passed, cap in ((False, UNVERIFIED_MAX), (True, SESSIONS_MAX)):
        group = [sid for sid, e in sessions.items() if bool(e.get("passed")) is passed]
        for old in sorted(group, key=lambda s: sessions[s].get("last_seen", 0))[:-cap]:
            del sessions[old]


def demote_others(rec: dict[str, Any], keep: str | None = None) -> int:
    """The user's second factor changed (one added): every session but ``keep`` must pass
    it again and has no recent verification; returns how many were demoted.

    Stored in the record, so it holds however the session is continued: a cookie, a
    reload, a new tab, another replica.
    """
    demoted = 0
    for sid, entry in (rec.get("sessions") or {}).items():
        if sid == keep and isinstance(entry, dict):
            # The session that added the factor just proved it: a temporary pass's
            # restriction ends (it may now remove the lost authenticator).
            entry.pop("via", None)
            entry.pop("ends_at", None)
        if sid != keep and isinstance(entry, dict):
            demoted += bool(entry.get("passed"))
            entry["passed"] = False
            entry["verified_at"] = None
    return demoted


def end_all(rec: dict[str, Any], keep: str | None = None) -> int:
    """Drop every session in a user's record but ``keep``; returns how many went."""
    sessions = rec.get("sessions") or {}
    gone = [sid for sid in sessions if sid != keep]
    for sid in gone:
        del sessions[sid]
    return len(gone)


def _session(sid: str, username: str, entry: dict[str, Any]) -> Session:
    return Session(id=sid, username=username, second_factor_passed=bool(entry.get("passed")),
                   verified_at=entry.get("verified_at"), created_at=entry.get("created_at", 0.0),
                   last_seen=entry.get("last_seen", 0.0), user_agent=entry.get("ua") or "",
                   source=entry.get("ip"), via=entry.get("via"), ends_at=entry.get("ends_at"))
