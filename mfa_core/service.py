"""The MFA service: every rule about a user's second factor, enforced in one place.

Each operation that checks a code is a mutating operation (it records the
accepted step, the used backup code or the failure) and runs as one per-user
transaction of the store.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import backup_codes as bc
from . import totp
from .audit import AuditEvent
from .errors import (AccountLocked, ClockDrift, CodeAlreadyUsed, EnrollmentExpired,
                     InvalidCode, InvalidCodeFormat, KeyringError, MFAError, NoBackupCodes,
                     NoPendingEnrollment, NotEnabled, StorageError, TooManyAttempts)
from .keys import KeyRing, load_keyring
from .storage import BACKENDS, IO_ERRORS, Store, Transaction
from .throttle import ThrottlePolicy

log = logging.getLogger("mfa_core")

ENROLLMENT_TTL = 600  # a pending enrollment expires after 10 minutes
RECENT_ACTIVITY = 25  # events kept in the user's record for the Manage MFA page
STRATEGIES = ("totp", "backup_code")
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: beyond it a date cannot be computed
_TOTP_CODE = re.compile(r"[0-9]{%d}" % totp.DIGITS)

# Called with each audit event after commit; returns True when it told the user
# (audited as notification_sent); whatever it raises is logged and audited.
Notifier = Callable[[AuditEvent], object]
NOTIFY_QUEUE_LIMIT = 1000  # mails waiting in the background; beyond it, sent in the caller


@dataclass(frozen=True)
class MFAStatus:
    username: str
    totp_enabled: bool = False
    backup_codes_remaining: int = 0
    pending_enrollment: bool = False
    failed_attempts: int = 0
    retry_after: int = 0
    locked: bool = False
    mfa_epoch: int = 0
    last_activity: float | None = None

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled

    @property
    def backup_code_enabled(self) -> bool:
        """Backup codes are in force while two-step is on, even with none left."""
        return self.totp_enabled


@dataclass(frozen=True)
class TOTPResource:
    secret: str = field(repr=False)
    uri: str = field(repr=False)
    created_at: float = 0.0
    expires_at: float = 0.0

    @property
    def grouped_secret(self) -> str:
        """The secret in groups of four, for typing it into an app by hand."""
        return " ".join(self.secret[i:i + 4] for i in range(0, len(self.secret), 4))


@dataclass(frozen=True)
class BackupCodes:
    codes: list[str] = field(repr=False)
    created_at: float = 0.0


@dataclass(frozen=True)
class SecondFactorResult:
    strategy: str
    backup_codes_remaining: int


def _check_name(value: Any, what: str = "username") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"The {what} must not be empty.")
    if len(value) > 128 or value != value.strip() or not value.isprintable() or ":" in value:
        raise ValueError(f"The {what} is not valid.")
    return value


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"A {what} is required.")
    if len(value) > 500 or not value.isprintable():
        raise ValueError(f"The {what} is not valid.")
    return value.strip()


def _check_time(value: Any, what: str) -> float:
    """Epoch seconds as a finite float: TypeError for a non-number, ValueError for NaN, ±inf, huge."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be epoch seconds (a number)")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{what} is out of range.") from None
    if not math.isfinite(seconds) or abs(seconds) > MAX_TIME:
        raise ValueError(f"{what} is out of range.")
    return seconds


def _totp_code(code: Any) -> str:
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    compact = re.sub(r"[\s-]", "", code)
    if not compact:
        raise InvalidCodeFormat("Enter the 6-digit code from your authentication app.")
    if not _TOTP_CODE.fullmatch(compact):
        raise InvalidCodeFormat("A code from your authentication app is 6 digits.")
    return compact


def _backup_code(code: Any) -> str:
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    if not code.strip():
        raise InvalidCodeFormat("Enter one of your backup codes.")
    normalized = bc.normalize(code)
    if normalized is None:
        raise InvalidCodeFormat("A backup code has 16 letters and digits, like abcd-efgh-jkmn-pqrs.")
    return normalized


class MFAService:
    """The engine's public face; see ``mfa_core.open_service``."""

    def __init__(self, store: Store, keyring: KeyRing, clock: Callable[[], float] = time.time,
                 *, issuer: str = "MFA Portal", policy: ThrottlePolicy | None = None,
                 notifier: Notifier | None = None, notify_in_background: bool = False) -> None:
        if not callable(clock):
            raise TypeError("clock must be callable")
        self.store = store
        self.keyring = keyring
        self.clock = clock
        self.issuer = _check_name(issuer, "issuer")
        self.policy = policy or ThrottlePolicy()
        self.notifier = notifier
        # A page click must not wait for a slow mail relay (up to its timeout):
        # the portal hands mails to one background thread, in order. The
        # command line sends in the caller, so its exit status covers the mail.
        self.notify_in_background = bool(notify_in_background)
        self._outbox: ThreadPoolExecutor | None = None
        self._outbox_lock = threading.Lock()
        self._queued: set[Future] = set()

    # -- queries ---------------------------------------------------------

    def status(self, username: str) -> MFAStatus:
        """The user's MFA status. Raises TypeError/ValueError on a bad name, StorageError."""
        username = _check_name(username)
        return self._status(username, self._read(username), self.clock())

    def statuses(self, usernames: Iterable[str]) -> list[MFAStatus]:
        """Helpdesk lists: the status of each user, in the order given, at one "now".

        One lock-free record read per user; raises TypeError/ValueError on a
        bad name (before reading anything), StorageError.
        """
        if isinstance(usernames, (str, bytes)):
            raise TypeError("usernames must be a collection of names, not one string")
        names = [_check_name(u) for u in usernames]
        now = self.clock()
        return [self._status(u, self._read(u), now) for u in names]

    def pending_totp(self, username: str) -> TOTPResource | None:
        """The enrollment in progress (same secret on every re-render), or None."""
        username = _check_name(username)
        pending = self._read(username).get("pending")
        if not pending or pending["expires_at"] <= self.clock():
            return None
        return self._resource(username, pending)

    def retry_after(self, username: str) -> int:
        """Seconds before this user may try again (0: now). Raises AccountLocked when locked."""
        username = _check_name(username)
        throttle = self._read(username).get("throttle") or {}
        if throttle.get("locked"):
            raise AccountLocked()
        return self.policy.retry_after(throttle.get("failures", 0),
                                       throttle.get("last_failure_at"), self.clock())

    def is_token_revoked(self, username: str, fingerprint: str) -> bool:
        username = _check_name(username)
        fingerprint = _check_text(fingerprint, "token fingerprint")
        return fingerprint in (self._read(username).get("revoked_tokens") or {})

    def recent_activity(self, username: str, limit: int = 10) -> list[AuditEvent]:
        """The user's latest events, newest first (from their own record: no scan)."""
        username = _check_name(username)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("limit must be an int")
        if limit < 0:
            raise ValueError("limit must not be negative")
        events = self._read(username).get("activity") or []
        return [AuditEvent.from_dict(e) for e in reversed(events[-limit:])] if limit else []

    def audit(self, username: str | None = None, since: float | None = None,
              until: float | None = None) -> list[AuditEvent]:
        """The audit trail, oldest first, by user and by ``since <= time < until``."""
        if username is not None:
            username = _check_name(username)
        since = _check_time(since, "since") if since is not None else None
        until = _check_time(until, "until") if until is not None else None
        try:
            return [AuditEvent.from_dict(e) for e in self.store.query_audit(username, since, until)]
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def usernames(self) -> Iterator[str]:
        """Every user the store holds a record for."""
        return self.store.usernames()

    # -- enrollment ------------------------------------------------------

    def create_totp(self, username: str, *, actor: str | None = None) -> TOTPResource:
        """Start (or restart: Reset) a pending enrollment with a new secret.

        An enabled authenticator keeps working until the new one is verified.
        """
        username = _check_name(username)
        actor = _check_name(actor, "actor") if actor is not None else username
        secret = totp.new_secret()
        now = self.clock()
        with self._transaction(username) as txn:
            txn.record["pending"] = {"secret": self.keyring.encrypt(secret), "created_at": now,
                                     "expires_at": now + ENROLLMENT_TTL}
            self._log(txn, now, actor, "totp_enrollment_started", "success")
            resource = self._resource(username, txn.record["pending"], secret)
        return resource

    def verify_totp(self, username: str, code: str, *, actor: str | None = None) -> MFAStatus:
        """Confirm the pending enrollment with a code from the new authenticator.

        Raises InvalidCodeFormat, NoPendingEnrollment, EnrollmentExpired,
        InvalidCode (CodeAlreadyUsed, ClockDrift), TooManyAttempts.
        """
        username = _check_name(username)
        code = _totp_code(code)
        actor = _check_name(actor, "actor") if actor is not None else username
        now = self.clock()
        error: MFAError | None = None
        with self._transaction(username) as txn:
            rec = txn.record
            pending = rec.get("pending")
            if not pending:
                error = NoPendingEnrollment()
            elif pending["expires_at"] <= now:
                rec.pop("pending")
                self._log(txn, now, actor, "totp_enrollment_expired", "refused")
                error = EnrollmentExpired()
            elif (error := self._gate(txn, now, actor)) is None:
                secret = self.keyring.decrypt(pending["secret"])
                step, error = self._match_totp(secret, code, None, now)
                if error is None:
                    rec["totp"] = {"secret": pending["secret"], "last_step": step, "enabled_at": now}
                    rec.pop("pending")
                    rec["mfa_epoch"] = rec.get("mfa_epoch", 0) + 1
                    rec.pop("throttle", None)
                    self._log(txn, now, actor, "totp_enabled", "success")
                else:
                    self._fail(txn, now, actor, "totp_enrollment_failed", error)
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, error)
        return status

    def disable_totp(self, username: str, *, actor: str | None = None) -> MFAStatus:
        """Remove the authenticator and the backup codes; other sessions must verify again."""
        username = _check_name(username)
        actor = _check_name(actor, "actor") if actor is not None else username
        now = self.clock()
        with self._transaction(username) as txn:
            rec = txn.record
            if not rec.get("totp"):
                raise NotEnabled()
            for key in ("totp", "backup", "pending"):
                rec.pop(key, None)
            rec["mfa_epoch"] = rec.get("mfa_epoch", 0) + 1
            self._log(txn, now, actor, "totp_removed", "success")
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, None)
        return status

    def create_backup_codes(self, username: str, *, actor: str | None = None) -> BackupCodes:
        """A new set of 10 codes; the old set stops working. Needs TOTP enabled."""
        username = _check_name(username)
        actor = _check_name(actor, "actor") if actor is not None else username
        now = self.clock()
        codes = bc.generate()
        salt = secrets.token_bytes(16)
        pepper = self.keyring.pepper
        hashes = [bc.digest(pepper, salt, bc.normalize(c)) for c in codes]
        with self._transaction(username) as txn:
            if not txn.record.get("totp"):
                raise NotEnabled("Add an authentication app before generating backup codes.")
            txn.record["backup"] = {"salt": salt.hex(), "hashes": hashes, "generated_at": now}
            self._log(txn, now, actor, "backup_codes_generated", "success", f"{len(codes)} codes")
        self._raise_or_notify(txn, None)
        return BackupCodes(codes=codes, created_at=now)

    # -- sign-in ---------------------------------------------------------

    def attempt_second_factor(self, username: str, code: str,
                              strategy: str = "totp") -> SecondFactorResult:
        """Check a second factor at sign-in (or reverification); success clears failures.

        Raises InvalidCodeFormat, InvalidCode (CodeAlreadyUsed, ClockDrift),
        TooManyAttempts (AccountLocked), NotEnabled, NoBackupCodes.
        """
        username = _check_name(username)
        if not isinstance(strategy, str):
            raise TypeError("strategy must be a str")
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {strategy!r}: use 'totp' or 'backup_code'.")
        code = _totp_code(code) if strategy == "totp" else _backup_code(code)
        now = self.clock()
        error: MFAError | None = None
        remaining = 0
        with self._transaction(username) as txn:
            rec = txn.record
            enrolled = rec.get("totp")
            if not enrolled:
                error = NotEnabled()
            elif (error := self._gate(txn, now, username)) is None:
                backup = rec.get("backup") or {}
                if strategy == "totp":
                    secret = self.keyring.decrypt(enrolled["secret"])
                    step, error = self._match_totp(secret, code, enrolled.get("last_step"), now)
                    if error is None:
                        enrolled["last_step"] = step
                        self._log(txn, now, username, "second_factor_passed", "success",
                                  "authentication code")
                elif not backup.get("hashes"):
                    error = NoBackupCodes()
                else:
                    wanted = bc.digest(self.keyring.pepper, bytes.fromhex(backup["salt"]), code)
                    # Compare with every stored hash, in constant time each.
                    hit = [i for i, h in enumerate(backup["hashes"]) if secrets.compare_digest(h, wanted)]
                    if hit:
                        del backup["hashes"][hit[0]]
                        self._log(txn, now, username, "backup_code_used", "success",
                                  f"{len(backup['hashes'])} left")
                    else:
                        error = InvalidCode("That backup code is not valid or was already used.")
                if error is None:
                    rec.pop("throttle", None)
                elif not isinstance(error, NoBackupCodes):
                    self._fail(txn, now, username, "second_factor_failed", error)
                remaining = len(backup.get("hashes") or [])
        self._raise_or_notify(txn, error)
        return SecondFactorResult(strategy=strategy, backup_codes_remaining=remaining)

    def check_throttle(self, username: str) -> None:
        """Raise TooManyAttempts (or AccountLocked) if the user must wait now."""
        wait = self.retry_after(username)
        if wait:
            raise TooManyAttempts(wait)

    def record_password_failure(self, username: str) -> int:
        """Count a wrong password in the same throttle; returns the wait now due."""
        username = _check_name(username)
        now = self.clock()
        with self._transaction(username) as txn:
            self._fail(txn, now, username, "password_failed", InvalidCode("wrong password"))
            throttle = txn.record["throttle"]
        self._raise_or_notify(txn, None)
        return self.policy.retry_after(throttle["failures"], throttle["last_failure_at"], now)

    def record_password_success(self, username: str) -> None:
        """A right password clears failures only where it is the strongest factor."""
        username = _check_name(username)
        with self._transaction(username) as txn:
            if not txn.record.get("totp") and not (txn.record.get("throttle") or {}).get("locked"):
                txn.record.pop("throttle", None)

    def revoke_token(self, username: str, fingerprint: str, expires_at: float) -> None:
        """Remember a signed-out cookie so that a copy of it no longer signs in."""
        username = _check_name(username)
        fingerprint = _check_text(fingerprint, "token fingerprint")
        expires_at = _check_time(expires_at, "expires_at")
        now = self.clock()
        with self._transaction(username) as txn:
            tokens = {fp: exp for fp, exp in (txn.record.get("revoked_tokens") or {}).items()
                      if exp > now}
            tokens[fingerprint] = float(expires_at)
            txn.record["revoked_tokens"] = tokens

    # -- helpdesk --------------------------------------------------------

    def reset_mfa(self, username: str, *, actor: str, reason: str) -> MFAStatus:
        """Helpdesk: remove the user's authenticator, backup codes and lockout.

        The user's other sessions must verify again; the actor and reason go
        to the audit trail.
        """
        username = _check_name(username)
        actor = _check_name(actor, "actor")
        reason = _check_text(reason, "reason")
        now = self.clock()
        with self._transaction(username) as txn:
            rec = txn.record
            for key in ("totp", "backup", "pending", "throttle"):
                rec.pop(key, None)
            rec["mfa_epoch"] = rec.get("mfa_epoch", 0) + 1
            self._log(txn, now, actor, "helpdesk_reset", "success", reason)
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, None)
        return status

    def unlock(self, username: str, *, actor: str, reason: str = "lockout cleared") -> MFAStatus:
        """Helpdesk: clear failed attempts and a lockout."""
        username = _check_name(username)
        actor = _check_name(actor, "actor")
        reason = _check_text(reason, "reason")
        now = self.clock()
        with self._transaction(username) as txn:
            txn.record.pop("throttle", None)
            self._log(txn, now, actor, "lockout_cleared", "success", reason)
            status = self._status(username, txn.record, now)
        self._raise_or_notify(txn, None)
        return status

    def rotate_keys(self, *, actor: str = "operator") -> int:
        """Re-encrypt every TOTP secret under a new key; returns how many were.

        The new key is added before any secret moves and the old ones are
        dropped only after every secret reads with the new key, so an
        interrupted rotation leaves every secret readable (run it again).
        """
        actor = _check_name(actor, "actor")
        # Keys from the environment are rotated there (new key first): this
        # re-encrypts under that first key; the key file is rotated here.
        # One rotation at a time: a second one finishing early would drop a
        # key the first still needs.
        with self.keyring.rotation_lock():
            if self.keyring.from_file:
                self.keyring.begin_rotation()
            count = 0
            for username in list(self.store.usernames()):
                with self._transaction(username) as txn:
                    for key in ("totp", "pending"):
                        part = txn.record.get(key)
                        if part and not self.keyring.is_current(part["secret"]):
                            part["secret"] = self.keyring.reencrypt(part["secret"])
                            count += 1
            if self.keyring.from_file:
                self.keyring.finish_rotation()
        self.store.append_audit([AuditEvent(self.clock(), None, actor, "keys_rotated", "success",
                                            f"{count} secrets re-encrypted").to_dict()])
        return count

    # -- internals -------------------------------------------------------

    def _read(self, username: str) -> dict[str, Any]:
        try:
            return self.store.read(username) or {}
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def _transaction(self, username: str):
        return _guarded(self.store.transaction(username))

    def _status(self, username: str, rec: dict[str, Any], now: float) -> MFAStatus:
        throttle = rec.get("throttle") or {}
        pending = rec.get("pending")
        enabled = bool(rec.get("totp"))
        activity = rec.get("activity") or []
        return MFAStatus(
            username=username,
            totp_enabled=enabled,
            backup_codes_remaining=len((rec.get("backup") or {}).get("hashes") or []) if enabled else 0,
            pending_enrollment=bool(pending and pending["expires_at"] > now),
            failed_attempts=throttle.get("failures", 0),
            retry_after=self.policy.retry_after(throttle.get("failures", 0),
                                                throttle.get("last_failure_at"), now),
            locked=bool(throttle.get("locked")),
            mfa_epoch=rec.get("mfa_epoch", 0),
            last_activity=activity[-1]["time"] if activity else None,
        )

    def _resource(self, username: str, pending: dict[str, Any], secret: str | None = None) -> TOTPResource:
        secret = secret or self.keyring.decrypt(pending["secret"])
        return TOTPResource(secret=secret, uri=totp.provisioning_uri(secret, username, self.issuer),
                            created_at=pending["created_at"], expires_at=pending["expires_at"])

    def _match_totp(self, secret: str, code: str, last_step: int | None,
                    now: float) -> tuple[int, MFAError | None]:
        """The accepted step, or the reason the code is refused."""
        current = totp.step_at(now)
        in_window = [current + off for off in range(-totp.WINDOW, totp.WINDOW + 1)
                     if secrets.compare_digest(totp.code_at_step(secret, current + off), code)]
        fresh = [s for s in in_window if last_step is None or s > last_step]
        if fresh:
            return max(fresh), None
        if in_window:
            return 0, CodeAlreadyUsed()
        match = totp.find_step(secret, code, now)
        if match is None:
            return 0, InvalidCode()
        if last_step is not None and match.step <= last_step:
            return 0, CodeAlreadyUsed()
        return 0, ClockDrift(match.offset * totp.PERIOD)

    def _gate(self, txn: Transaction, now: float, actor: str) -> MFAError | None:
        throttle = txn.record.get("throttle") or {}
        if throttle.get("locked"):
            self._log(txn, now, actor, "throttled", "refused", "locked")
            return AccountLocked()
        wait = self.policy.retry_after(throttle.get("failures", 0), throttle.get("last_failure_at"), now)
        if wait:
            self._log(txn, now, actor, "throttled", "refused", f"wait {wait} s")
            return TooManyAttempts(wait)
        return None

    def _fail(self, txn: Transaction, now: float, actor: str, event: str, error: MFAError) -> None:
        throttle = txn.record.setdefault("throttle", {"failures": 0})
        throttle["failures"] = throttle.get("failures", 0) + 1
        throttle["last_failure_at"] = now
        self._log(txn, now, actor, event, "failure", _reason(error))
        if self.policy.locks_out(throttle["failures"]) and not throttle.get("locked"):
            throttle["locked"] = True
            self._log(txn, now, actor, "lockout", "failure",
                      f"{throttle['failures']} consecutive failures")

    def _log(self, txn: Transaction, now: float, actor: str, event: str, outcome: str,
             detail: str = "") -> None:
        entry = AuditEvent(now, txn.username, actor, event, outcome, detail).to_dict()
        txn.log(entry)
        activity = txn.record.setdefault("activity", [])
        activity.append(entry)
        del activity[:-RECENT_ACTIVITY]

    def _raise_or_notify(self, txn: Transaction, error: MFAError | None) -> None:
        if self.notifier is not None:
            for entry in txn.events:
                event = AuditEvent.from_dict(entry)
                if not (self.notify_in_background and self._queue(event)):
                    self._deliver(event)
        if error is not None:
            raise error

    def _deliver(self, event: AuditEvent) -> None:
        """Hand ``event`` to the notifier and audit whether the user was told."""
        try:
            sent = self.notifier(event)
        except Exception as exc:  # a mail failure never blocks the action
            log.warning("notification for %s failed: %s", event.event, type(exc).__name__)
            self._audit_notification(event, "notification_failed", "failure")
            return
        if sent:  # a notifier returns True when it told the user: the helpdesk sees it
            self._audit_notification(event, "notification_sent", "success")

    def _audit_notification(self, event: AuditEvent, what: str, outcome: str) -> None:
        try:
            self.store.append_audit([AuditEvent(self.clock(), event.user, "system", what,
                                                outcome, event.event).to_dict()])
        except OSError:
            log.warning("notification for %s: %s not audited", event.event, what)

    def _queue(self, event: AuditEvent) -> bool:
        """Queue ``event`` for the background sender; False when the queue is full."""
        with self._outbox_lock:
            if len(self._queued) >= NOTIFY_QUEUE_LIMIT:
                return False
            if self._outbox is None:
                self._outbox = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfa-notify")
            future = self._outbox.submit(self._deliver_queued, event)
            self._queued.add(future)
        future.add_done_callback(self._forget_queued)
        return True

    def _deliver_queued(self, event: AuditEvent) -> None:
        try:
            self._deliver(event)
        except Exception:  # nobody waits on this thread: log instead of losing the reason
            log.exception("notification for %s could not be handled", event.event)

    def _forget_queued(self, future: Future) -> None:
        with self._outbox_lock:
            self._queued.discard(future)

    def flush_notifications(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification was handled; False if ``timeout`` ran out.

        Queued mails are also sent before the process exits (the sender thread
        is joined at interpreter shutdown). Raises TypeError/ValueError on a bad timeout.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError("timeout must be a number of seconds or None")
            if not timeout >= 0:
                raise ValueError("timeout must not be negative.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._outbox_lock:
                waiting = list(self._queued)
            if not waiting:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                waiting[0].result(timeout=left)
            except Exception:  # TimeoutError is checked on the next turn; _deliver logs the rest
                pass


def _reason(error: MFAError) -> str:
    if isinstance(error, CodeAlreadyUsed):
        return "code already used"
    if isinstance(error, ClockDrift):
        return f"device clock about {error.offset_seconds} s off"
    if isinstance(error, TooManyAttempts):
        return "too many attempts"
    return "wrong code" if isinstance(error, InvalidCode) else type(error).__name__


class _guarded:
    """A store transaction whose I/O failures surface as StorageError."""

    def __init__(self, cm) -> None:
        self._cm = cm

    def __enter__(self) -> Transaction:
        try:
            return self._cm.__enter__()
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def __exit__(self, *exc_info) -> bool:
        try:
            return bool(self._cm.__exit__(*exc_info))
        except IO_ERRORS as exc:
            raise StorageError() from exc


def open_service(data_dir: str | os.PathLike | None = None, clock: Callable[[], float] = time.time,
                 *, issuer: str | None = None, backend: str = "tinydb",
                 policy: ThrottlePolicy | None = None, notifier: Notifier | None = None,
                 notify_in_background: bool = False,
                 environ: Mapping[str, str] | None = None) -> MFAService:
    """Open the engine on ``data_dir`` (default: ``$MFA_PORTAL_DATA_DIR`` or ``data/``).

    Keys come from the environment or a generated 0600 key file in the data dir.
    ``notify_in_background`` hands each notification to a sender thread
    instead of calling ``notifier`` before the action returns (see
    ``MFAService.flush_notifications``).
    """
    env = os.environ if environ is None else environ
    if not isinstance(env, Mapping):
        raise TypeError("environ must be a mapping")
    if data_dir is None:
        data_dir = env.get("MFA_PORTAL_DATA_DIR") or "data"
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError("data_dir must be a path")
    if not os.fspath(data_dir):
        raise ValueError("data_dir must not be empty.")
    if not isinstance(backend, str):
        raise TypeError("backend must be a str")
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}: one of {', '.join(BACKENDS)}.")
    # Refuse bad arguments before anything is created on disk.
    issuer = _check_name(issuer if issuer is not None else env.get("MFA_PORTAL_ISSUER") or "MFA Portal",
                         "issuer")
    if not callable(clock):
        raise TypeError("clock must be callable")
    if policy is not None and not isinstance(policy, ThrottlePolicy):
        raise TypeError("policy must be a ThrottlePolicy")
    path = Path(data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        store = BACKENDS[backend](path)
        keyring = load_keyring(path, env)
    except IO_ERRORS as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StorageError(f"The data directory {path} cannot be used: {reason}.") from exc
    return MFAService(store, keyring, clock, issuer=issuer, policy=policy, notifier=notifier,
                      notify_in_background=notify_in_background)
