"""The MFA service: every rule about a user's factors, enforced in one place.

Each operation that checks a credential (password, authentication code,
backup code) is a mutating operation: it gates on the throttle, checks,
records the outcome and its audit events, all in one per-user transaction of
the store, so parallel attempts are never checked more often than sequential
ones. A record that cannot be read as a valid record fails closed
(RecordDamaged) for every operation on that user but the helpdesk's reset.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NoReturn

import bcrypt

from . import authenticators as authn
from . import backup_codes as bc
from . import passkeys, passwords, radius_clients, records, temp_pass, totp
from . import policy as two_step
from . import validate as check
from .audit import AuditEvent
from .authenticators import Authenticator
from .errors import (AccountLocked, InvalidCodeFormat, ClockDrift, CodeAlreadyUsed, CodeExpired, EnrollmentExpired,
                     FactorNotAllowed, InvalidCode, MFAError, NoBackupCodes,
                     NoPendingEnrollment, NotEnabled, PasskeyRefused, PasskeySettingsError, PolicyDamaged, RecordDamaged, StorageError,
                     StoreUnavailable, TooManyAttempts, TooManyAuthenticators,
                     UnknownAuthenticator)
from .keys import ENV_KEYS, KeyRing, load_keyring
from .outbox import Notifier, Outbox
from .passkey_service import PasskeyOperations
from .coverage_service import CoverageOperations
from .policy_service import PolicyOperations, policy_reason
from .passkeys import ChallengeBook, RelyingParty
from .sessions import SessionBook, SessionPolicy, demote_others, end_all
from .results import SecondFactorResult
from .records import ENROLLMENT_TTL  # noqa: F401  (part of the engine's vocabulary)
from .storage import BACKENDS, DATABASE_BACKEND, IO_ERRORS, DatabaseError, Store, Transaction, open_store
from .storage.files import make_dirs
from .throttle import PasswordPolicy, ThrottlePolicy, name_record_expired
from .users import UserDirectory, open_directory
from .directory import AccountInactive, DirectoryUnavailable, check_stored, open_company_directory
from .directory.identity import retire_parked

log = logging.getLogger("mfa_core")

RECENT_ACTIVITY = 25  # events kept in the user's record for the Manage MFA page
STRATEGIES = ("totp", "backup_code")
# What the portal's own challenge screen may also use: never a calling service (API, RADIUS, PAM).
PORTAL_STRATEGIES = STRATEGIES + (temp_pass.STRATEGY,)
WRONG_PASSWORD = "Username or password is incorrect."
WRONG_PASSWORD_OR_CODE = "Username, password or code is incorrect."


@dataclass(frozen=True)
class MFAStatus:
    username: str
    totp_enabled: bool = False      # at least one authentication app
    backup_codes_remaining: int = 0
    pending_enrollment: bool = False
    failed_attempts: int = 0
    retry_after: int = 0
    locked: bool = False
    mfa_epoch: int = 0
    last_activity: float | None = None
    password_failures: int = 0     # consecutive wrong passwords from unfamiliar sources
    password_blocked: bool = False  # unfamiliar sources are refused (account limit)
    damaged: bool = False           # the record cannot be read (only from ``statuses``)
    locked_channels: tuple[str, ...] = ()  # channels other than the portal that refuse codes
    channel_failures: int = 0       # consecutive second-factor failures through those channels
    authenticators: list[Authenticator] = field(default_factory=list)  # oldest first
    temporary_pass_until: float | None = None  # the helpdesk's pass is active until then
    temporary_pass_uses: int = 0               # sign-ins it still allows

    @property
    def temporary_pass_active(self) -> bool:
        return self.temporary_pass_until is not None

    @property
    def two_factor_enabled(self) -> bool:
        """Two-step is on: at least one authenticator (app or passkey)."""
        return bool(self.authenticators)

    @property
    def backup_code_enabled(self) -> bool:
        """Backup codes are in force while two-step is on, even with none left."""
        return self.two_factor_enabled

    def authenticator(self, authenticator_id: str) -> Authenticator | None:
        return next((a for a in self.authenticators if a.id == authenticator_id), None)

    def lockout_words(self) -> list[str]:
        """What holds this user back, in words for the helpdesk (empty: nothing)."""
        if self.damaged:
            return ["record damaged"]
        words = []
        if self.locked:
            words.append("locked")
        elif self.retry_after:
            words.append(f"waiting {self.retry_after} s ({self.failed_attempts} failed)")
        elif self.failed_attempts:
            words.append(f"{self.failed_attempts} failed")
        if self.locked_channels:
            words.append("locked for " + ", ".join(self.locked_channels))
        elif self.channel_failures:
            words.append(f"{self.channel_failures} failed through other channels")
        if self.password_blocked:
            words.append("password blocked from new places")
        elif self.password_failures:
            plural = "s" if self.password_failures != 1 else ""
            words.append(f"{self.password_failures} wrong password{plural}")
        return words


@dataclass(frozen=True)
class TOTPResource:
    secret: str = field(repr=False)
    uri: str = field(repr=False)
    created_at: float = 0.0
    expires_at: float = 0.0
    label: str = authn.DEFAULT_LABEL  # what the new app will be called

    @property
    def grouped_secret(self) -> str:
        """The secret in groups of four, for typing it into an app by hand."""
        return " ".join(self.secret[i:i + 4] for i in range(0, len(self.secret), 4))


@dataclass(frozen=True)
class BackupCodes:
    codes: list[str] = field(repr=False)
    created_at: float = 0.0


@dataclass(frozen=True)
class PasswordResult:
    """A right password: whether the second factor is still ahead."""

    username: str
    two_factor_enabled: bool
    mfa_epoch: int
    second_factor_passed: bool = False  # a code came with the password and was right too
    pass_expires_at: float | None = None  # ... a temporary pass: the session is restricted, ends then


class MFAService(PasskeyOperations, PolicyOperations, CoverageOperations):
    """The engine's public face; see ``mfa_core.open_service``."""

    def __init__(self, store: Store, keyring: KeyRing, clock: Callable[[], float] = time.time,
                 *, issuer: str = "MFA Portal", policy: ThrottlePolicy | None = None,
                 password_policy: PasswordPolicy | None = None,
                 session_policy: SessionPolicy | None = None,
                 directory: UserDirectory | None = None,
                 notifier: Notifier | None = None, notify_in_background: bool = False,
                 relying_party: RelyingParty | PasskeySettingsError | None = None,
                 pass_max_valid: int = temp_pass.DEFAULT_MAX_VALID) -> None:
        if not callable(clock):
            raise TypeError("clock must be callable")
        self.store = store
        self.keyring = keyring
        store.use_pepper(keyring.pepper)  # the sharded store's second witness of two-step (S25)
        self.clock = clock
        self.issuer = check.name(issuer, "issuer")
        self.policy = policy or ThrottlePolicy()
        self.password_policy = password_policy or PasswordPolicy()
        self.directory = directory
        self.sessions = SessionBook(self, session_policy)
        self.relying_party = relying_party  # passkeys (None: localhost, see passkey_service)
        if isinstance(pass_max_valid, bool) or not isinstance(pass_max_valid, int):
            raise TypeError("pass_max_valid must be an int (seconds)")
        if pass_max_valid < temp_pass.MIN_VALID:
            raise ValueError(f"pass_max_valid must be at least {temp_pass.MIN_VALID} s")
        self.pass_max_valid = pass_max_valid
        self._outbox = Outbox(notifier, background=notify_in_background, clock=clock,
                              audit=lambda event: self.store.append_audit([event.to_dict()]))
        self._damage_reported: set[tuple[str, str]] = set()
        self._dummy_token: str | None = None  # see _check_dummy
        self._damage_lock = threading.Lock()

    @property
    def notifier(self) -> Notifier | None:
        return self._outbox.notifier

    @notifier.setter
    def notifier(self, value: Notifier | None) -> None:
        self._outbox.notifier = value

    @property
    def notify_in_background(self) -> bool:
        return self._outbox.background

    # -- queries ---------------------------------------------------------

    def status(self, username: str) -> MFAStatus:
        """The user's MFA status. Raises TypeError/ValueError on a bad name, StorageError
        (RecordDamaged when the user's record cannot be read)."""
        username = check.name(username)
        return self._status(username, self._read(username), self.clock())

    def statuses(self, usernames: Iterable[str]) -> list[MFAStatus]:
        """Helpdesk lists: the status of each user, in the order given, at one "now".

        One lock-free record read per user; a user whose record is damaged is
        listed with ``damaged=True`` instead of failing the list. Raises
        TypeError/ValueError on a bad name (before reading anything), StorageError.
        """
        if isinstance(usernames, (str, bytes)):
            raise TypeError("usernames must be a collection of names, not one string")
        names = [check.name(u) for u in usernames]
        now = self.clock()
        found = []
        for name in names:
            try:
                found.append(self._status(name, self._read(name), now))
            except RecordDamaged:
                found.append(MFAStatus(username=name, damaged=True))
        return found

    def pending_totp(self, username: str) -> TOTPResource | None:
        """The enrollment in progress (same secret on every re-render), or None."""
        username = check.name(username)
        pending = records.live_pending(self._read(username), self.clock())
        return self._resource(username, pending) if pending else None

    def retry_after(self, username: str) -> int:
        """Seconds before this user may try a second factor again (0: now).

        Raises AccountLocked when locked.
        """
        username = check.name(username)
        throttle = self._read(username).get("throttle") or {}
        if throttle.get("locked"):
            raise AccountLocked()
        return self.policy.retry_after(throttle.get("failures", 0),
                                       throttle.get("last_failure_at"), self.clock())

    def is_token_revoked(self, username: str, fingerprint: str) -> bool:
        username = check.name(username)
        fingerprint = check.text(fingerprint, "token fingerprint")
        return fingerprint in (self._read(username).get("revoked_tokens") or {})

    def recent_activity(self, username: str, limit: int = 10) -> list[AuditEvent]:
        """The user's latest events, newest first (from their own record: no scan)."""
        username = check.name(username)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("limit must be an int")
        if limit < 0:
            raise ValueError("limit must not be negative")
        events = self._read(username).get("activity") or []
        return [AuditEvent.from_dict(e) for e in reversed(events[-limit:])] if limit else []

    def sweep_expired(self) -> int:
        """Remove the keyed records nothing needs any more; returns how many went.

        Redeemed or stale cookie tickets, used or stale passkey challenges, the
        owner records of sessions past their lifetime, and password-throttle
        records of client addresses that hold nothing a check still uses, the verification
        API's throttle records of names without a factor idle for a day (``throttle.NAME_RECORD_TTL``):
        without this, each sign-in would leave records behind for good. With the company directory
        also the records of leavers parked longer than their retention (``directory.identity``).
        The portal runs it in the
        background when it starts and every hour; ``python -m mfa_core sweep``
        runs it once. Safe beside running portals (see ``Store.sweep_keyed``).
        """
        now = self.clock()
        sessions, policy = self.sessions, self.password_policy

        def expired(key: str, rec: dict[str, Any]) -> bool:
            return (ChallengeBook.expired_record(key, rec, now)
                    or sessions.expired_record(key, rec, now)
                    or passwords.source_record_expired(key, rec, now, policy)
                    or radius_clients.state_record_expired(key, rec, now)
                    or name_record_expired(key, rec, now, self.policy))
        try:
            retired = 0
            if getattr(self.directory, "company", False):  # leavers' parked records, after their time
                retired = retire_parked(self.store, self.keyring.pepper, now)
            return retired + self.store.sweep_keyed(expired)
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def audit(self, username: str | None = None, since: float | None = None,
              until: float | None = None) -> list[AuditEvent]:
        """The audit trail, oldest first, by user and by ``since <= time < until``."""
        if username is not None:
            username = check.name(username)
        since = check.time(since, "since") if since is not None else None
        until = check.time(until, "until") if until is not None else None
        try:
            return [AuditEvent.from_dict(e) for e in self.store.query_audit(username, since, until)]
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def usernames(self) -> Iterator[str]:
        """Every user the store holds a record for."""
        return self.store.usernames()

    # -- enrollment ------------------------------------------------------

    def create_totp(self, username: str, *, label: str = authn.DEFAULT_LABEL,
                    actor: str | None = None, source: str | None = None,
                    session_id: str | None = None) -> TOTPResource:
        """Start (or restart: Reset) a pending enrollment of one more authentication app.

        The apps already enabled keep working, untouched. ``label`` names the
        new app (trimmed, 1-40 printable characters, unique per user in any
        case): another app's name is refused, while the default is made unique
        ("Authentication app 2"). A user past the two-step policy's deadline
        may start one only from a familiar ``source`` (the client's address) or
        in a session that passed with a temporary pass (``session_id``: the
        session's token, as pages hold it); both default to None (not familiar).
        Raises InvalidLabel, TooManyAuthenticators (MAX_TOTP_APPS apps already),
        PolicyRefused (overdue, from elsewhere), StorageError, TypeError/ValueError.
        """
        username = check.name(username)
        wanted = authn.clean_label(label)
        actor = check.optional_name(actor, "actor", username)
        source = check.source(source)
        context = self._policy_context(username, fresh=True)
        secret = totp.new_secret()
        now = self.clock()
        with self._transaction(username) as txn:
            rec = txn.record
            if len(authn.of_kind(rec, "totp")) >= authn.MAX_TOTP_APPS:
                raise TooManyAuthenticators()
            grounds = None
            if actor == username:  # (the helpdesk sets up nothing for a user; kept closed all the same)
                grounds = self._check_setup(username, rec, now, context, "totp", source, session_id)
                if grounds is not None:
                    self._log(txn, now, actor, "policy_overdue_setup", "success",
                              f"authentication app, {grounds}")
            if wanted == authn.DEFAULT_LABEL:
                wanted = authn.unique_in(rec, wanted)
            elif authn.taken(rec, wanted):
                raise authn.label_taken(wanted)
            rec["pending"] = records.new_pending(self.keyring.encrypt(secret), now, wanted)
            if grounds is not None:  # begun past the deadline, on grounds: its code may finish it
                rec["pending"]["overdue_ok"] = True
            self._log(txn, now, actor, "totp_enrollment_started", "success", wanted)
            resource = self._resource(username, rec["pending"], secret)
        return resource

    def name_pending_totp(self, username: str, label: str, *,
                          enrollment: float | None = None) -> TOTPResource:
        """Name the app being set up (the page's name field), before its first code.

        ``enrollment`` is the ``created_at`` of the enrollment the caller
        showed (see ``verify_totp``). Raises InvalidLabel (another authenticator's
        name, in any case), NoPendingEnrollment, EnrollmentExpired, StorageError.
        """
        username = check.name(username)
        label = authn.clean_label(label)
        if enrollment is not None:
            enrollment = check.time(enrollment, "enrollment")
        now = self.clock()
        with self._transaction(username) as txn:
            pending = records.live_pending(txn.record, now)
            if pending is None or (enrollment is not None and pending["created_at"] != enrollment):
                raise EnrollmentExpired() if txn.record.get("pending") else NoPendingEnrollment()
            if authn.taken(txn.record, label):
                raise authn.label_taken(label)
            pending["label"] = label
            resource = self._resource(username, pending)
        return resource

    def verify_totp(self, username: str, code: str, *, actor: str | None = None,
                    enrollment: float | None = None, keep_session: str | None = None) -> MFAStatus:
        """Confirm the pending enrollment with a code from the new authenticator.

        Every other session of the user must pass the second factor again
        (``keep_session``: the token of the session that enrolled, which stays
        as it is; without it, every session of the user must).

        ``enrollment`` is the ``created_at`` of the enrollment the caller
        showed (its ``TOTPResource``): if another one replaced it meanwhile,
        nothing is verified (NoPendingEnrollment), so a code can only confirm
        the secret its own page showed. Raises InvalidCodeFormat,
        NoPendingEnrollment, EnrollmentExpired, InvalidCode (CodeAlreadyUsed,
        CodeExpired, ClockDrift), TooManyAttempts.
        """
        username = check.name(username)
        code = check.totp_code(code)
        actor = check.optional_name(actor, "actor", username)
        if enrollment is not None:
            enrollment = check.time(enrollment, "enrollment")
        keep = self.sessions.id_of(keep_session) if keep_session is not None else None
        context = self._policy_context(username, fresh=True)
        error: MFAError | None = None
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock
            rec = txn.record
            if not rec.get("pending"):
                error = NoPendingEnrollment()
            elif enrollment is not None and rec["pending"]["created_at"] != enrollment:
                error = NoPendingEnrollment("This set-up was restarted elsewhere: the code you "
                                            "typed belongs to a QR code that no longer works.")
            elif records.live_pending(rec, now) is None:
                rec.pop("pending")
                self._log(txn, now, actor, "totp_enrollment_expired", "refused")
                error = EnrollmentExpired()
            elif (error := self._finish_refused(username, rec, now, context, "totp",
                                                rec["pending"].get("overdue_ok") is True)) is not None:
                rec.pop("pending")  # begun before the deadline or the rule: it can never finish
                self._log(txn, now, actor, "policy_setup_refused", "refused",
                          f"authentication app: {policy_reason(error)}")
            elif (error := self._gate(txn, now, actor)) is None:
                pending = rec["pending"]
                try:
                    step = totp.verify(self.keyring.decrypt(pending["secret"]), code, now, None)
                except InvalidCode as refused:
                    error = refused
                    self._fail(txn, now, actor, "totp_enrollment_failed", error)
                else:
                    if len(authn.of_kind(rec, "totp")) >= authn.MAX_TOTP_APPS:
                        raise TooManyAuthenticators()
                    # A name taken meanwhile (a rename elsewhere) gets a number.
                    label = authn.unique_in(rec, pending.get("label") or authn.DEFAULT_LABEL)
                    authn.add(rec, "totp", label, now, secret=pending["secret"], last_step=step)
                    late = two_step.LATE_SETUP if pending.get("overdue_ok") is True else ""
                    rec.pop("pending")
                    records.bump_epoch(rec)
                    demote_others(rec, keep)
                    rec.pop("throttle", None)
                    self._log(txn, now, actor, "totp_enabled", "success", label + late)
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, error)
        return status

    def disable_totp(self, username: str, *, actor: str | None = None,
                     keep_session: str | None = None) -> MFAStatus:
        """Remove every authenticator and the backup codes: two-step is off; the user's
        other sessions end.

        ``keep_session`` is the token of the session that asked (it stays).
        Raises NotEnabled, PolicyRefused (the user, while the two-step policy
        requires two-step of them; the helpdesk still can), StorageError.
        """
        username = check.name(username)
        actor = check.optional_name(actor, "actor", username)
        keep = self.sessions.id_of(keep_session) if keep_session is not None else None
        context = self._policy_context(username) if actor == username else None
        now = self.clock()
        with self._transaction(username) as txn:
            rec = txn.record
            _refuse_under_pass(rec, keep)
            if not records.two_step_on(rec):
                raise NotEnabled()
            self._refuse_last_factor(username, rec, now, context, [])
            labels = ", ".join(a["label"] for a in authn.listed(rec))
            records.remove_second_factor(rec)
            end_all(rec, keep)
            self._log(txn, now, actor, "totp_removed", "success", labels)
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, None)
        return status

    def rename_authenticator(self, username: str, authenticator_id: str, label: str, *,
                             actor: str | None = None) -> MFAStatus:
        """Give one authenticator a new name (unique per user in any case).

        Raises InvalidLabel, UnknownAuthenticator, StorageError, TypeError/ValueError.
        """
        username = check.name(username)
        authenticator_id = check.text(authenticator_id, "authenticator id")
        label = authn.clean_label(label)
        actor = check.optional_name(actor, "actor", username)
        now = self.clock()
        with self._transaction(username) as txn:
            entry = authn.find(txn.record, authenticator_id)
            if entry is None:
                raise UnknownAuthenticator()
            if authn.taken(txn.record, label, besides=authenticator_id):
                raise authn.label_taken(label)
            if entry["label"] != label:
                self._log(txn, now, actor, "authenticator_renamed", "success",
                          f"{entry['label']} \u2192 {label}")
                entry["label"] = label
            status = self._status(username, txn.record, now)
        self._raise_or_notify(txn, None)
        return status

    def remove_authenticator(self, username: str, authenticator_id: str, *,
                             actor: str | None = None, reason: str | None = None,
                             keep_session: str | None = None) -> MFAStatus:
        """Remove one authenticator; the user's other sessions end.

        Removing one of several keeps two-step on and the backup codes valid;
        removing the last one turns two-step off and voids the backup codes
        (as ``disable_totp``). An actor other than the user (the helpdesk)
        gives a ``reason``. ``keep_session`` is the token of the session that
        asked (it stays). Raises UnknownAuthenticator, PolicyRefused (the user
        removing their last authenticator, or last allowed one, while the two-step
        policy requires two-step of them; the helpdesk still can), StorageError,
        TypeError/ValueError (a helpdesk removal without a reason).
        """
        username = check.name(username)
        authenticator_id = check.text(authenticator_id, "authenticator id")
        actor = check.optional_name(actor, "actor", username)
        if reason is not None:
            reason = check.text(reason, "reason")
        elif actor != username:
            raise ValueError("A reason is required when someone else removes an authenticator.")
        keep = self.sessions.id_of(keep_session) if keep_session is not None else None
        context = self._policy_context(username) if actor == username else None
        now = self.clock()
        with self._transaction(username) as txn:
            rec = txn.record
            _refuse_under_pass(rec, keep)
            if authn.find(rec, authenticator_id) is not None:
                self._refuse_last_factor(username, rec, now, context,
                                         [a for a in authn.listed(rec) if a["id"] != authenticator_id])
            entry = authn.remove(rec, authenticator_id)
            if entry is None:
                raise UnknownAuthenticator()
            detail = entry["label"] + (f" (reason: {reason})" if reason else "")
            if records.two_step_on(rec):
                records.bump_epoch(rec)
                self._log(txn, now, actor, "authenticator_removed", "success", detail)
            else:
                records.remove_second_factor(rec)
                self._log(txn, now, actor, "totp_removed", "success", detail)
            end_all(rec, keep)
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, None)
        return status

    def create_backup_codes(self, username: str, *, actor: str | None = None) -> BackupCodes:
        """A new set of 10 codes; the old set stops working. Needs TOTP enabled.

        Raises NotEnabled, PolicyRefused (the two-step policy does not allow backup
        codes for this user), StorageError."""
        username = check.name(username)
        actor = check.optional_name(actor, "actor", username)
        codes = bc.generate()
        salt = secrets.token_bytes(16)
        pepper = self.keyring.pepper
        hashes = [bc.digest(pepper, salt, bc.normalize(c)) for c in codes]
        context = self._policy_context(username, fresh=True)
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock
            if not records.two_step_on(txn.record):
                raise NotEnabled("Add an authentication app before generating backup codes.")
            self._check_setup(username, txn.record, now, context, "backup_code", None, None)
            txn.record["backup"] = {"salt": salt.hex(), "hashes": hashes, "generated_at": now}
            self._log(txn, now, actor, "backup_codes_generated", "success", f"{len(codes)} codes")
        self._raise_or_notify(txn, None)
        return BackupCodes(codes=codes, created_at=now)

    # -- sign-in ---------------------------------------------------------

    def attempt_password(self, username: str, password: str, *,
                         source: str | None = None, code: str | None = None,
                         strategy: str = "totp") -> PasswordResult:
        """Check a password at sign-in (or reverification) in one per-user transaction.

        ``source`` is where the attempt comes from (the client's address).
        ``code`` (``strategy`` "totp" or "backup_code"): the second factor with the
        password, for a user who has one, checked together: one answer for both
        (WRONG_PASSWORD_OR_CODE), so a guesser without the code learns nothing
        about the password. This is how a user with a second factor signs in
        from a new place while the password alone is blocked there (issue 20, F8);
        the result then says ``second_factor_passed``. ``strategy``
        "temporary_pass": the helpdesk's pass beside the password, for the portal's
        sign-in page only (a calling service never passes a code here; S40): checked
        as ``attempt_second_factor`` checks it, and the result's ``pass_expires_at``
        says the session is a pass's (restricted, ending then).
        Raises InvalidCode for a wrong password and for an unknown user alike
        (same text, same cost; no record is created for an unknown name),
        TooManyAttempts (``retry_after``) while this user and source, or this
        source, must wait, PasswordBlocked when the account refuses unfamiliar
        sources, InvalidCodeFormat for an empty password, StorageError
        (RecordDamaged), TypeError/ValueError for bad arguments.
        """
        username = check.name(username)
        password = check.password(password)
        source = check.source(source)
        with_pass = strategy == temp_pass.STRATEGY
        if code is not None:
            if strategy not in PORTAL_STRATEGIES:
                raise ValueError(f"Unknown strategy {strategy!r}: use 'totp' or 'backup_code'.")
            code = self._typed_pass(code) if with_pass else \
                check.totp_code(code) if strategy == "totp" else check.backup_code(code)
        if self.directory is None:
            raise TypeError("this service has no user directory to check passwords against")
        pepper = self.keyring.pepper
        src = passwords.key(pepper, "source", source)
        who = passwords.key(pepper, "name", username)  # whose failures a source counts
        if getattr(self.directory, "company", False):
            # The throttle first, then the directory: a throttled name or place costs it nothing.
            self._throttle_first(username, src, who, source, code is not None, with_pass)
        # Company directory: the record follows the entry's id. A name seen for the first time is
        # bound to its entry only once its password was right: binding costs two writes, and a
        # first wrong guess at a real name must cost what one at an unknown name does.
        self._claim_record(username, first_sight=False)
        try:
            stored = self.directory.password_hash(username)
        except DirectoryUnavailable:  # the company directory is down: fail closed, nothing counted
            raise
        except MFAError as exc:  # the directory cannot be read
            raise StorageError() from exc
        if stored is None:
            self._unknown_password(who, password, src, source)
        where = f"from {source}" if source else "from an unknown address"
        policy = self.password_policy
        try:
            context = self._policy_context(username)
            unreadable: PolicyDamaged | None = None
        except PolicyDamaged as exc:
            # Told only to whoever knows the password (as a damaged record is): told at once,
            # it would mark this name as a real one (an unknown name gets "wrong password").
            context, unreadable = None, exc
        error: MFAError | None = None
        entered = False
        try:
            with self._transaction(username) as txn:
                entered = True
                # The clock is read under the user's lock: read before it, an attempt that waited
                # for the lock would be compared with a failure recorded "after" it (issue 20, F13).
                now = self.clock()
                rec = txn.record
                two_step = records.two_step_on(rec)
                # A user without a factor but with the helpdesk's pass: the pass is the second
                # factor ahead, the password alone never completes the sign-in.
                pass_ahead = not two_step and temp_pass.live(rec, now) is not None
                # Password and code (or the helpdesk's pass) checked together.
                ahead, joint = _second_ahead(rec, now, code is not None, with_pass)
                passed = False
                expires_at: float | None = None
                state = rec.get("password") or {}
                familiar = passwords.is_familiar(state, src, now, policy)
                error = passwords.gate(state, src, familiar, now, policy, ahead, joint)
                if error is None and joint:
                    error = self._gate(txn, now, username)  # the code's throttle: the portal's own
                with contextlib.ExitStack() as spraying:
                    spray: _Spray | None = None  # a new place's spraying count around the check
                    if error is None and not familiar:
                        spray = spraying.enter_context(self._spray(src, now, who))
                        error = spray.error
                    if error is not None:
                        self._log(txn, now, username, "password_throttled", "refused",
                                  f"{_reason(error)} {where}")
                    else:
                        # A directory down or its bind budget spent (MFAError): nothing counted,
                        # nothing committed (the spray's exit counts nothing either).
                        ok = _password_ok(password, stored, state)  # a directory's bind budget in state
                        if spray is not None:
                            spray.ran()
                        state = rec.setdefault("password", state)
                        if ok and unreadable is not None:  # a right password: fail closed, nothing counted
                            if spray is not None:
                                spray.void()
                            ok, error = None, unreadable
                        # The two-step policy, once the password is right (its grace starts then).
                        req = self._requirement_in(username, rec, now, *context, record=True) if ok else None
                        if ok and joint and with_pass:  # the pass: whatever the policy, as on the challenge
                            refused, expires_at = self._check_pass(txn, rec, code, now, username, None)
                            if refused is not None:
                                ok = None
                                error = InvalidCode(WRONG_PASSWORD_OR_CODE)
                                self._fail(txn, now, username, "second_factor_failed", refused)
                        elif ok and joint:
                            if self._factor_refused(rec, req, strategy, None):
                                refused = self._not_allowed(code, strategy, now)
                            else:
                                refused, _ = self._check_factor(txn, rec, code, strategy, now, username, False)
                            if refused is not None:
                                ok = None  # the password was right, the code not: one answer for both
                                error = InvalidCode(WRONG_PASSWORD_OR_CODE)
                                self._fail(txn, now, username, "second_factor_failed",
                                           InvalidCode() if isinstance(refused, NoBackupCodes) else refused)
                        if ok:
                            if spray is not None:
                                spray.passed()  # not a failure, nor this user's failures from here
                            elif src in state.get("sources", {}):
                                self._spray_release(src, None, who)  # this user's failures from here go
                            passwords.record_success(state, src)
                            self._log(txn, now, username, "password_accepted", "success", where)
                            if joint:  # both factors: the sign-in is complete, a familiar place
                                self._second_factor_passed(rec, source, now)
                                passed = True
                            elif not two_step and not pass_ahead and req.state != "overdue":
                                # Complete: a familiar place. Not past the policy's deadline: a
                                # password alone must not open the way to setting up a factor there.
                                passwords.remember_source(state, src, now, policy)
                        elif ok is False:
                            error = InvalidCode(WRONG_PASSWORD_OR_CODE if joint else WRONG_PASSWORD)
                            reached = passwords.record_failure(state, src, familiar, now, policy)
                            self._log(txn, now, username, "password_failed", "failure",
                                      f"wrong password {where}")
                            if reached:
                                self._log(txn, now, username, "password_blocked", "failure",
                                          f"{policy.account_limit} consecutive wrong passwords from "
                                          "unfamiliar places")
                result = PasswordResult(username, records.two_step_on(rec) or pass_ahead,
                                        rec.get("mfa_epoch", 0), second_factor_passed=passed,
                                        pass_expires_at=expires_at if passed else None)
        except RecordDamaged as damaged:
            if entered:
                raise
            # The password and its throttle first: a damaged record is shown only to someone
            # who knows the password (it names a real user; its throttle cannot be read).
            self._damaged_password(username, password, stored, src, who, where, damaged)
        self._raise_or_notify(txn, error)
        self._claim_record(username)  # the password was right: a name seen first is bound now
        return result

    def _throttle_first(self, username: str, src: str, who: str, source: str | None,
                        with_code: bool, with_pass: bool = False) -> None:
        """The company directory: attempt_password's throttle gates before the person is looked up.

        A name or place the throttle holds back costs the directory no search and no
        bind (issue 22). Read from the stored records, without the directory: the
        name's own record (its waits per place, the block from unfamiliar places, the
        directory's bind budget), the unknown name's bind budget and the place's record
        (its waits for unknown names, spraying). An unknown name has no
        record and is held back by the place's gates exactly as it would be after the
        search; a refusal on a name with a record is audited as ``password_throttled``,
        as after it. The same gates run again under the locks once the person is found.
        Raises TooManyAttempts, PasswordBlocked, StorageError.
        """
        policy = self.password_policy
        try:
            raw = self.store.read(username)
            rec = records.load(username, raw) if raw is not None else None
        except RecordDamaged:
            rec = None  # the damaged path is throttled by the place's gates (_damaged_password)
        except IO_ERRORS as exc:
            raise StorageError() from exc
        now = self.clock()
        error: MFAError | None = None
        familiar = False
        if rec is not None:
            state = copy.deepcopy(rec.get("password") or {})  # the gate may note a block's start
            familiar = passwords.is_familiar(state, src, now, policy)
            error = passwords.gate(state, src, familiar, now, policy,
                                   *_second_ahead(rec, now, with_code, with_pass))
        if error is None:  # the directory's bind budget: the person's, or the unknown name's
            error = self.directory.bind_wait((rec.get("password") or {}) if rec is not None else None, who)
        by_place = error is None and not familiar
        if by_place:
            try:
                place = copy.deepcopy(self.store.read_keyed(src) or {})
            except IO_ERRORS as exc:
                raise StorageError() from exc
            if rec is None:
                error = passwords.unknown_name_gate(place, who, now, policy)
            error = error or passwords.spray_gate(place, now, policy, who)
        if error is None:
            return
        if rec is None:
            raise error
        where = f"from {source}" if source else "from an unknown address"
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock; the user's own gate again, kept this time
            state = txn.record.get("password") or {}
            familiar = passwords.is_familiar(state, src, now, policy)
            own = passwords.gate(state, src, familiar, now, policy,
                                 *_second_ahead(txn.record, now, with_code, with_pass))
            own = own or self.directory.bind_wait(state, who)
            error = own or (error if by_place else None)  # None: the wait ended meanwhile
            if error is not None:
                self._log(txn, now, username, "password_throttled", "refused", f"{_reason(error)} {where}")
        if error is not None:
            self._raise_or_notify(txn, error)

    def _damaged_password(self, username: str, password: str, stored: Any, src: str, who: str,
                          where: str, damaged: RecordDamaged) -> NoReturn:
        """A user whose record cannot be read: the password checked and throttled first.

        The throttle is the source's, as for an unknown name (the user's own is
        in the damaged record): a wrong password is just that, with the same
        answer as any other; the right one gets the damage (fail closed).
        """
        self._checked_by_source(
            who, src, lambda: damaged if _password_ok(password, stored) else None,
            lambda now: AuditEvent(now, username, username, "password_failed", "failure",
                                   f"wrong password {where} (record damaged)"),
            self._budget_key(stored))

    def _unknown_password(self, name: str, password: str, src: str, source: str | None) -> NoReturn:
        """A name that is no user: the same checks, waits and answer as a user's, no record."""
        def wrong() -> None:
            _dummy_check(self.directory, password, name)  # what a user's check costs

        # Not the typed name in the audit trail: people type passwords into the name field.
        self._checked_by_source(
            name, src, wrong,
            lambda now: AuditEvent(now, None, None, "password_failed", "failure",
                                   f"unknown user from {source or 'an unknown address'}"),
            self._budget_key(None, name))

    def _budget_key(self, stored: Any, name_key: str = "") -> str | None:
        """The company directory's bind budget that a check without the person's record counts in
        (see ``CompanyDirectory.budget_key``); None with another directory."""
        if getattr(self.directory, "company", False):
            return self.directory.budget_key(stored, name_key)
        return None

    def _checked_by_source(self, who: str, src: str, check: Callable[[], MFAError | None],
                           failed: Callable[[float], AuditEvent], budget: str | None = None) -> NoReturn:
        """A password with no user record to count in: the source's throttle for ``who``.

        ``check()`` runs only when the gate lets the attempt through and returns the
        error a right password gets, or None for a wrong one; a wrong one is counted
        under ``who`` at this source, takes a spraying slot and is audited as ``failed(now)``.
        ``budget``: the keyed record ``check()`` opens inside the source's (the directory's
        bind budget): both locks are taken together, in the store's one order, first.
        Always raises.
        """
        policy = self.password_policy
        holding = self._holding([src, budget]) if budget else contextlib.nullcontext()
        with holding, self._keyed_transaction(src) as txn:
            now = self.clock()  # under the source's lock (see attempt_password)
            rec = txn.record
            error = passwords.unknown_name_gate(rec, who, now, policy) or \
                passwords.spray_gate(rec, now, policy, who)
            if error is None:
                error = check()
                if error is None:
                    passwords.record_unknown_name(rec, who, now, policy)
                    passwords.take_slot(rec, now, who)
                    error = InvalidCode(WRONG_PASSWORD)
                    txn.log(failed(now).to_dict())
        raise error

    @contextlib.contextmanager
    def _spray(self, src: str, now: float, who: str) -> Iterator["_Spray"]:
        """A new place's spraying count (issue 20, F12) around one password check.

        The gate and the count are atomic under the place's lock, one of two ways:

        - With the company directory the place's record stays open (its lock held)
          through the check, a bind on a kept connection (about a millisecond), and
          is written only with what the check leaves: one failure more, or none of
          this user's failures from here after a right password, or nothing at all
          (a right password whose user never failed here: no write). Unknown
          names are checked the same way (``_checked_by_source``).
        - With a bcrypt hash (~0.1-0.3 s) the lock is not held through the check:
          sign-ins from one address (an office behind NAT) would queue one after
          the other across replicas. A slot is taken in a short transaction of its
          own, committed at once, counted as a failure before the check and given
          back after a right one (own transactions although the user's is open:
          nested, a savepoint on PostgreSQL would hold the lock until the user's
          commit). A crash in between leaves it counted (fails closed).

        Either way an exception before ``ran()`` (the directory down, its bind
        budget spent) counts nothing, ``void()`` (a right password refused for
        another reason) counts nothing, ``passed()`` counts nothing and forgets this
        user's earlier failures from here, and otherwise the check counts as a
        failure (a wrong password, a wrong code with it, an exception after it).
        """
        spray = _Spray()
        policy = self.password_policy
        if not getattr(self.directory, "company", False):
            with _Guarded(self, self.store.own_keyed_transaction(src), None, False) as txn:
                spray.error = passwords.spray_gate(txn.record, now, policy, who)
                slot = None if spray.error else passwords.take_slot(txn.record, now, who)
            if slot is None:
                yield spray
                return
            try:
                yield spray
            except BaseException:
                if not spray.counted:
                    self._spray_release(src, slot)
                raise
            if spray.outcome == "void":
                self._spray_release(src, slot)
            elif spray.outcome == "passed":
                self._spray_release(src, slot, who)
            return
        raised: BaseException | None = None
        with _Guarded(self, self.store.own_keyed_transaction(src), None, False) as txn:
            rec = txn.record
            kept = copy.deepcopy(rec.get("failures"))  # as read: restored when nothing is counted
            spray.error = passwords.spray_gate(rec, now, policy, who)
            recent = list(rec.get("failures", []))
            try:
                yield spray
            except BaseException as exc:
                if not spray.counted:
                    raise  # nothing committed
                raised = exc  # the check ran: counted as a failure all the same
            if spray.error is None and spray.counted:
                passwords.take_slot(rec, now, who)
            elif spray.outcome == "passed":
                passwords.give_back_slot(rec, None, who)
            if rec.get("failures", []) == recent:  # nothing to count: nothing to write
                if kept is None:
                    rec.pop("failures", None)
                else:
                    rec["failures"] = kept
        if raised is not None:
            raise raised

    def _spray_release(self, src: str, slot: str | None, who: str | None = None) -> None:
        try:
            # Its own short transaction too (see _spray).
            with _Guarded(self, self.store.own_keyed_transaction(src), None, False) as txn:
                passwords.give_back_slot(txn.record, slot, who)
        except StorageError:
            log.warning("a password success could not be taken off its source's count")

    def attempt_second_factor(self, username: str, code: str, strategy: str = "totp", *,
                              source: str | None = None,
                              actor: str | None = None,
                              diagnose: bool = True) -> SecondFactorResult:
        """Check a second factor at sign-in (or reverification); success clears failures.

        A success also makes ``source`` (the client's address) a familiar
        place for the user's password. ``diagnose=False`` (a caller that only
        answers ok or not) skips the search for a drifted clock and costs a
        name without an app what a wrong code for a user costs. ``actor`` is who asks, for the audit
        trail (default: the user; a calling service gives its own name).
        A kind the two-step policy does not allow this user is refused as a
        wrong code (FactorNotAllowed, an InvalidCode with a wrong code's text,
        counted); at the portal (no other actor) a user with no allowed
        authenticator at all still passes with theirs (the pages then hold
        them on Manage MFA; see mfa_core.policy_service).
        Raises InvalidCodeFormat, InvalidCode
        (CodeAlreadyUsed, CodeExpired, ClockDrift, FactorNotAllowed), TooManyAttempts
        (AccountLocked), NotEnabled, NoBackupCodes, PolicyDamaged, StorageError.
        """
        username = check.name(username)
        if not isinstance(strategy, str):
            raise TypeError("strategy must be a str")
        if strategy not in PORTAL_STRATEGIES:
            raise ValueError(f"Unknown strategy {strategy!r}: use 'totp' or 'backup_code'.")
        if strategy == temp_pass.STRATEGY:
            code = self._typed_pass(code)
        else:
            code = check.totp_code(code) if strategy == "totp" else check.backup_code(code)
        if not isinstance(diagnose, bool):
            raise TypeError("diagnose must be a bool")
        source = check.source(source)
        actor = check.optional_name(actor, "actor", username)
        # A calling service (an actor other than the user: an API client) has its own bucket.
        channel = None if actor == username else f"service:{actor}"
        if getattr(self.directory, "company", False) and self.directory.would_ask(username):
            # The throttle first, then the directory: a throttled check costs it nothing. (With
            # the person cached the directory is not asked: the check's own gate is enough.)
            self._code_throttle_first(username, strategy, actor, channel)
        self._require_active(username)  # a leaver of the company directory: refused, nothing counted
        policy, roles, groups = self._policy_context(username)
        error: MFAError | None = None
        remaining = 0
        expires_at: float | None = None
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock (see attempt_password)
            rec = txn.record
            apps = authn.of_kind(rec, "totp")
            if strategy == temp_pass.STRATEGY:
                if (error := self._gate(txn, now, actor, channel)) is None:
                    error, expires_at = self._check_pass(txn, rec, code, now, actor, channel)
                    if error is None:
                        self._second_factor_passed(rec, source, now, channel)
                    else:
                        self._fail(txn, now, actor, "second_factor_failed", error, channel)
            elif not records.two_step_on(rec) or (strategy == "totp" and not apps):
                if not diagnose and strategy == "totp":
                    self._check_dummy(code, now)
                error = NotEnabled()
            elif (error := self._gate(txn, now, actor, channel)) is None:
                req = self._requirement_in(username, rec, now, policy, roles, groups)
                if self._factor_refused(rec, req, strategy, channel):
                    # Refused as a wrong code is, at a wrong code's cost (the policy shows nowhere).
                    error = self._not_allowed(code, strategy, now)
                    self._fail(txn, now, actor, "second_factor_failed", error, channel)
                    remaining = len((rec.get("backup") or {}).get("hashes") or [])
                else:
                    error, remaining = self._check_factor(txn, rec, code, strategy, now, actor, diagnose)
                if error is None:
                    self._second_factor_passed(rec, source, now, channel)
                elif not isinstance(error, (NoBackupCodes, FactorNotAllowed)):
                    self._fail(txn, now, actor, "second_factor_failed", error, channel)
        self._raise_or_notify(txn, error)
        return SecondFactorResult(strategy=strategy, backup_codes_remaining=remaining,
                                  pass_expires_at=expires_at)

    @staticmethod
    def _typed_pass(code: Any) -> str:
        """A typed temporary pass, bounded; InvalidCodeFormat when empty."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        if not code.strip():
            raise InvalidCodeFormat("Enter the temporary pass the helpdesk gave you.")
        return code[:200]

    def _code_throttle_first(self, username: str, strategy: str, actor: str, channel: str | None) -> None:
        """The company directory: attempt_second_factor's throttle before the directory is asked
        whether the account is active (a search when not cached). Read from the stored record;
        only where the check itself would gate (a factor to check, or a temporary pass), and
        then under the user's lock again, refused and audited exactly as there. Raises
        AccountLocked, TooManyAttempts, StorageError."""
        try:
            raw = self.store.read(username)
            rec = records.load(username, raw) if raw is not None else None
        except RecordDamaged:
            return  # the check reports it
        except IO_ERRORS as exc:
            raise StorageError() from exc
        if rec is None:
            return
        gated = strategy == temp_pass.STRATEGY or (
            records.two_step_on(rec) and not (strategy == "totp" and not authn.of_kind(rec, "totp")))
        throttle = self._bucket(rec, channel)
        held = throttle.get("locked") or (channel is not None and self.policy.channels_spent(
            self._channel_failures(rec))) or self.policy.retry_after(
            throttle.get("failures", 0), throttle.get("last_failure_at"), self.clock())
        if not gated or not held:
            return
        with self._transaction(username) as txn:
            error = self._gate(txn, self.clock(), actor, channel)
        if error is not None:
            self._raise_or_notify(txn, error)

    def _check_pass(self, txn: Transaction, rec: dict[str, Any], typed: str, now: float,
                    actor: str, channel: str | None) -> tuple[MFAError | None, float | None]:
        """Check a temporary pass: (the refusal or None, the pass's expiry). Counts nothing.

        Refused with the wrong code's words when it is not the portal asking (a calling
        service: the pass opens the portal only), when there is no pass, when it expired
        (audited once, the pass goes) and when it is not the pass.
        """
        wrong = InvalidCode("That temporary pass is not valid, expired or was already used.")
        stored = rec.get("temp_pass")
        if channel is not None or actor != txn.username:
            return wrong, None
        if stored is None:
            return wrong, None
        if temp_pass.live(rec, now) is None:
            rec.pop("temp_pass")
            self._log(txn, now, "system", "temporary_pass_expired", "refused",
                      f"issued by {stored['actor']}")
            return wrong, None
        normalized = temp_pass.normalize(typed)
        wanted = temp_pass.digest(self.keyring.pepper, bytes.fromhex(stored["salt"]),
                                  normalized or "-")
        if normalized is None or not secrets.compare_digest(stored["hash"], wanted):
            return wrong, None
        stored["uses"] -= 1
        expires_at = float(stored["expires_at"])
        left = stored["uses"]
        if left <= 0:
            rec.pop("temp_pass")
        self._log(txn, now, actor, "temporary_pass_used", "success",
                  f"{left} use{'s' if left != 1 else ''} left")
        return None, expires_at

    # -- temporary passes (the helpdesk's answer to a lost phone) -------------

    def issue_temporary_pass(self, username: str, *, valid_for: int | float, actor: str,
                             reason: str, uses: int = 1) -> str:
        """Helpdesk: a temporary pass for ``username``; returns it (shown once, never stored).

        Valid ``valid_for`` seconds on the engine's clock (from 600 up to
        ``pass_max_valid``, ``MFA_PORTAL_PASS_MAX_VALID``, default 8 h) for
        ``uses`` sign-ins at the portal (1 to 20). It replaces the user's
        previous pass. Audited with the actor and reason; the user is mailed.
        Raises TypeError/ValueError (bad lifetime, uses, reason; the actor
        being the user), StorageError (RecordDamaged).
        """
        username = check.name(username)
        actor = check.name(actor, "actor")
        reason = check.text(reason, "reason")
        if actor == username:
            raise ValueError("Nobody issues a temporary pass for their own account.")
        if isinstance(valid_for, bool) or not isinstance(valid_for, (int, float)):
            raise TypeError("valid_for must be a number of seconds")
        if not temp_pass.MIN_VALID <= valid_for <= self.pass_max_valid:
            raise ValueError(f"A temporary pass is valid from {temp_pass.describe(temp_pass.MIN_VALID)} "
                             f"up to {temp_pass.describe(self.pass_max_valid)}.")
        if isinstance(uses, bool) or not isinstance(uses, int):
            raise TypeError("uses must be an int")
        if not 1 <= uses <= temp_pass.MAX_USES:
            raise ValueError(f"A temporary pass allows from 1 to {temp_pass.MAX_USES} sign-ins.")
        shown = temp_pass.generate()
        salt = secrets.token_bytes(16)
        hashed = temp_pass.digest(self.keyring.pepper, salt, temp_pass.normalize(shown))
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock
            rec = txn.record
            replaced = temp_pass.live(rec, now) is not None
            rec["temp_pass"] = {"salt": salt.hex(), "hash": hashed, "issued_at": now,
                                "expires_at": now + float(valid_for), "uses": uses, "actor": actor}
            self._log(txn, now, actor, "temporary_pass_issued", "success",
                      f"valid {temp_pass.describe(valid_for)}, {uses} sign-in{'s' if uses != 1 else ''}"
                      f"{', replaces the previous pass' if replaced else ''} (reason: {reason})")
        self._raise_or_notify(txn, None)
        return shown

    def revoke_temporary_pass(self, username: str, *, actor: str, reason: str) -> MFAStatus:
        """Helpdesk: the user's temporary pass stops working; the sessions it opened end.

        Raises NotEnabled when there is none, StorageError, TypeError/ValueError.
        """
        username = check.name(username)
        actor = check.name(actor, "actor")
        reason = check.text(reason, "reason")
        with self._transaction(username) as txn:
            now = self.clock()
            rec = txn.record
            if temp_pass.live(rec, now) is None:
                raise NotEnabled("This user has no active temporary pass.")
            rec.pop("temp_pass")
            sessions = rec.get("sessions") or {}
            for sid in [s for s, e in sessions.items() if e.get("via") == temp_pass.STRATEGY]:
                del sessions[sid]
            self._log(txn, now, actor, "temporary_pass_revoked", "success", f"(reason: {reason})")
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, None)
        return status

    def _check_factor(self, txn: Transaction, rec: dict[str, Any], code: str, strategy: str,
                      now: float, actor: str, diagnose: bool) -> tuple[MFAError | None, int]:
        """Check one code (an app's or a backup code); the refusal (None: passed) and the
        backup codes left. Counts nothing: the caller does."""
        backup = rec.get("backup") or {}
        error: MFAError | None = None
        if strategy == "totp":
            error = self._check_apps(txn, authn.of_kind(rec, "totp"), code, now, actor, diagnose) \
                if authn.of_kind(rec, "totp") else InvalidCode()
        elif not backup.get("hashes"):
            error = NoBackupCodes()
        else:
            wanted = bc.digest(self.keyring.pepper, bytes.fromhex(backup["salt"]), code)
            # Compare with every stored hash, in constant time each.
            hit = [i for i, h in enumerate(backup["hashes"]) if secrets.compare_digest(h, wanted)]
            if hit:
                del backup["hashes"][hit[0]]
                self._log(txn, now, actor, "backup_code_used", "success",
                          f"{len(backup['hashes'])} left")
            else:
                error = InvalidCode("That backup code is not valid or was already used.")
        return error, len(backup.get("hashes") or [])

    def _check_apps(self, txn: Transaction, apps: list[dict[str, Any]], code: str, now: float,
                    actor: str, diagnose: bool = True) -> InvalidCode | None:
        """Check ``code`` against every authentication app of the user (one attempt).

        Replay is refused per app (each has its own last step). When no app
        takes the code, the refusal that says most wins: already used, then
        expired, then a clock off, then plainly wrong. Without ``diagnose`` (a
        caller that never says why: the verification API) no step outside the
        window is looked for (no "clock off"): the audit trail still tells a
        replay from a wrong code.
        """
        secrets_ = [self.keyring.decrypt(app["secret"]) for app in apps]
        for app, secret in zip(apps, secrets_):
            step = totp.fresh_step(secret, code, now, app.get("last_step"), app.get("disclosed") or ())
            if step is not None:
                app["last_step"] = step
                app["last_used_at"] = now
                for each in apps:
                    _remember_disclosed(each, None, now)  # only forgets what is past
                self._log(txn, now, actor, "second_factor_passed", "success",
                          f"authentication code from {app['label']}")
                return None
        refusals: list[InvalidCode] = []
        for app, secret in zip(apps, secrets_):
            try:
                totp.verify(secret, code, now, app.get("last_step"), app.get("disclosed") or (),
                            search=diagnose)
            except InvalidCode as refused:
                refusals.append(refused)
                _remember_disclosed(app, totp.disclosed_step(now, refused), now)
            else:  # cannot happen: fresh_step found nothing (kept closed all the same)
                refusals.append(InvalidCode())
        order = (CodeAlreadyUsed, CodeExpired, ClockDrift, InvalidCode)
        return min(refusals, key=lambda e: next(i for i, k in enumerate(order) if isinstance(e, k)))

    def _not_allowed(self, code: str, strategy: str, now: float) -> "FactorNotAllowed":
        """A factor the policy does not allow this user: the refusal of a wrong code, after a
        wrong code's work (an app's check on a dummy secret, a backup code's digest)."""
        if strategy == "totp":
            self._check_dummy(code, now)
            return FactorNotAllowed()
        bc.digest(self.keyring.pepper, b"\0" * 16, code)
        return FactorNotAllowed("That backup code is not valid or was already used.", kind="backup_code")

    def _check_dummy(self, code: str, now: float) -> None:
        """The quick check of one app, on a secret nobody has: a name without an app costs a
        caller that never hears why (the API) what a wrong code for a real user costs."""
        token = self._dummy_token
        try:
            secret = self.keyring.decrypt(token) if token else None
        except MFAError:  # made under a key rotated out since
            secret = None
        if secret is None:
            secret = totp.new_secret()
            self._dummy_token = self.keyring.encrypt(secret)
        if totp.fresh_step(secret, code, now, None) is None:
            try:
                totp.verify(secret, code, now, None, search=False)
            except InvalidCode:
                pass

    def revoke_token(self, username: str, fingerprint: str, expires_at: float) -> None:
        """Remember a signed-out cookie so that a copy of it no longer signs in."""
        username = check.name(username)
        fingerprint = check.text(fingerprint, "token fingerprint")
        expires_at = check.time(expires_at, "expires_at")
        now = self.clock()
        with self._transaction(username) as txn:
            tokens = {fp: exp for fp, exp in (txn.record.get("revoked_tokens") or {}).items()
                      if exp > now}
            tokens[fingerprint] = float(expires_at)
            txn.record["revoked_tokens"] = tokens

    # -- helpdesk --------------------------------------------------------

    def reset_mfa(self, username: str, *, actor: str, reason: str) -> MFAStatus:
        """Helpdesk: remove the user's authenticator, backup codes and lockouts.

        Every session of the user ends; the actor and reason go to the audit
        trail. Also the repair of a damaged record: it is
        replaced by a fresh one (the store keeps the damaged copy aside).
        """
        username = check.name(username)
        actor = check.name(actor, "actor")
        reason = check.text(reason, "reason")
        now = self.clock()
        with self._transaction(username, repair=True) as txn:
            rec = txn.record
            records.remove_second_factor(rec)
            end_all(rec)  # every session of the user ends
            for key in ("throttle", "throttles", "password"):
                rec.pop(key, None)
            detail = f"{reason} (damaged record replaced)" if txn.damaged else reason
            self._log(txn, now, actor, "helpdesk_reset", "success", detail)
            status = self._status(username, rec, now)
        self._raise_or_notify(txn, None)
        return status

    def unlock(self, username: str, *, actor: str, reason: str = "lockout cleared") -> MFAStatus:
        """Helpdesk: clear failed attempts and lockouts (second factor and password)."""
        username = check.name(username)
        actor = check.name(actor, "actor")
        reason = check.text(reason, "reason")
        now = self.clock()
        with self._transaction(username) as txn:
            txn.record.pop("throttle", None)
            txn.record.pop("throttles", None)
            state = txn.record.get("password")
            if state:
                state.pop("sources", None)
                state.pop("blocked_at", None)
                state["unfamiliar"] = 0
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
        actor = check.name(actor, "actor")
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
                    parts = [*authn.listed(txn.record), txn.record.get("pending")]
                    for part in parts:
                        if part and part.get("secret") and not self.keyring.is_current(part["secret"]):
                            part["secret"] = self.keyring.reencrypt(part["secret"])
                            count += 1
            # RADIUS shared secrets are encrypted under the same keys.
            count += radius_clients.RadiusClientRegistry(self.store, self.keyring).reencrypt()
            if self.keyring.from_file:
                self.keyring.finish_rotation()
        self.store.append_audit([AuditEvent(self.clock(), None, actor, "keys_rotated", "success",
                                            f"{count} secrets re-encrypted").to_dict()])
        return count

    # -- internals -------------------------------------------------------

    def _read(self, username: str) -> dict[str, Any]:
        try:
            raw = self.store.read(username)
            return records.load(username, raw) if raw is not None else {}
        except RecordDamaged as exc:
            self._report_damage(username, exc)
            raise
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def _transaction(self, username: str, *, repair: bool = False) -> "_Guarded":
        return _Guarded(self, self.store.transaction(username, repair=repair), username, repair)

    @contextlib.contextmanager
    def _holding(self, keys: list[str]) -> Iterator[None]:
        """``store.holding_keyed(keys)``, a store's failure reported as StorageError."""
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.store.holding_keyed(keys))
            except IO_ERRORS as exc:
                raise StorageError() from exc
            yield

    def _keyed_transaction(self, key: str, *, repair: bool = False) -> "_Guarded":
        cm = self.store.keyed_transaction(key, repair=True) if repair else self.store.keyed_transaction(key)
        return _Guarded(self, cm, None, False)

    def _report_damage(self, username: str, exc: RecordDamaged) -> None:
        """Audit a damaged record once (per process and kind of damage), never its content."""
        with self._damage_lock:
            if (username, exc.detail) in self._damage_reported:
                return
            self._damage_reported.add((username, exc.detail))
        log.error("the record of %s is damaged: %s", username, exc.detail)
        try:
            self.store.append_audit([AuditEvent(self.clock(), username, "system", "record_damaged",
                                                "failure", exc.detail).to_dict()])
        except IO_ERRORS:
            log.warning("the damaged record of %s could not be audited", username)

    def _status(self, username: str, rec: dict[str, Any], now: float) -> MFAStatus:
        throttle = rec.get("throttle") or {}
        enabled = records.two_step_on(rec)
        activity = rec.get("activity") or []
        password = rec.get("password") or {}
        return MFAStatus(
            username=username,
            totp_enabled=bool(authn.of_kind(rec, "totp")),
            authenticators=[authn.public(a) for a in authn.listed(rec)],
            backup_codes_remaining=len((rec.get("backup") or {}).get("hashes") or []) if enabled else 0,
            pending_enrollment=records.live_pending(rec, now) is not None,
            failed_attempts=throttle.get("failures", 0),
            retry_after=self.policy.retry_after(throttle.get("failures", 0),
                                                throttle.get("last_failure_at"), now),
            locked=bool(throttle.get("locked")),
            mfa_epoch=rec.get("mfa_epoch", 0),
            last_activity=activity[-1]["time"] if activity else None,
            password_failures=password.get("unfamiliar", 0),
            password_blocked=passwords.blocked(password, self.password_policy, now),
            locked_channels=self._locked_channels(rec),
            channel_failures=self._channel_failures(rec),
            temporary_pass_until=(temp_pass.live(rec, now) or {}).get("expires_at"),
            temporary_pass_uses=(temp_pass.live(rec, now) or {}).get("uses", 0),
        )

    def _locked_channels(self, rec: dict[str, Any]) -> tuple[str, ...]:
        buckets = rec.get("throttles") or {}
        if self.policy.channels_spent(self._channel_failures(rec)):
            return ("every channel but the portal",)
        return tuple(sorted(c.removeprefix("service:") for c, b in buckets.items() if b.get("locked")))

    def _resource(self, username: str, pending: dict[str, Any], secret: str | None = None) -> TOTPResource:
        secret = secret or self.keyring.decrypt(pending["secret"])
        return TOTPResource(secret=secret, uri=totp.provisioning_uri(secret, username, self.issuer),
                            created_at=pending["created_at"], expires_at=pending["expires_at"],
                            label=pending.get("label") or authn.DEFAULT_LABEL)

    # The second-factor throttle has one bucket per channel (see ThrottlePolicy): ``channel``
    # None is the portal's own (``rec["throttle"]``); another is a calling service's or the
    # portal's "second factor first" step (``rec["throttles"][channel]``).

    @staticmethod
    def _bucket(rec: dict[str, Any], channel: str | None) -> dict[str, Any]:
        if channel is None:
            return rec.get("throttle") or {}
        return (rec.get("throttles") or {}).get(channel) or {}

    @staticmethod
    def _channel_failures(rec: dict[str, Any]) -> int:
        return sum(b.get("failures", 0) for b in (rec.get("throttles") or {}).values())

    def _gate(self, txn: Transaction, now: float, actor: str,
              channel: str | None = None) -> MFAError | None:
        rec = txn.record
        throttle = self._bucket(rec, channel)
        where = f" ({channel})" if channel else ""
        if throttle.get("locked") or (
                channel is not None and self.policy.channels_spent(self._channel_failures(rec))):
            self._log(txn, now, actor, "throttled", "refused", f"locked{where}")
            return AccountLocked()
        wait = self.policy.retry_after(throttle.get("failures", 0), throttle.get("last_failure_at"), now)
        if wait:
            self._log(txn, now, actor, "throttled", "refused", f"wait {wait} s{where}")
            return TooManyAttempts(wait)
        return None

    def _second_factor_passed(self, rec: dict[str, Any], source: str | None, now: float,
                              channel: str | None = None) -> None:
        """A second factor passed: its channel's failures are cleared (only that channel's: a
        pass elsewhere never gives a guesser a fresh count) and ``source`` becomes a familiar
        place."""
        if channel is None:
            rec.pop("throttle", None)
        else:
            buckets = rec.get("throttles") or {}
            buckets.pop(channel, None)
            if not buckets:
                rec.pop("throttles", None)
        passwords.remember_source(rec.setdefault("password", {}),
                                  passwords.key(self.keyring.pepper, "source", source),
                                  now, self.password_policy)

    def _fail(self, txn: Transaction, now: float, actor: str, event: str, error: MFAError,
              channel: str | None = None) -> None:
        rec = txn.record
        if channel is None:
            throttle = rec.setdefault("throttle", {"failures": 0})
        else:
            throttle = rec.setdefault("throttles", {}).setdefault(channel, {"failures": 0})
        throttle["failures"] = throttle.get("failures", 0) + 1
        throttle["last_failure_at"] = now
        where = f" ({channel})" if channel else ""
        self._log(txn, now, actor, event, "failure", _reason(error))  # the actor names the channel
        if self.policy.locks_out(throttle["failures"]) and not throttle.get("locked"):
            throttle["locked"] = True
            self._log(txn, now, actor, "lockout", "failure",
                      f"{throttle['failures']} consecutive failures{where}")
        if channel is not None and self._channel_failures(rec) == self.policy.channels_limit:
            self._log(txn, now, actor, "lockout", "failure",
                      f"{self.policy.channels_limit} consecutive failures over every channel "
                      "but the portal's own")

    def _log(self, txn: Transaction, now: float, actor: str, event: str, outcome: str,
             detail: str = "") -> None:
        entry = AuditEvent(now, txn.username, actor, event, outcome, detail).to_dict()
        txn.log(entry)
        activity = txn.record.setdefault("activity", [])
        activity.append(entry)
        del activity[:-RECENT_ACTIVITY]

    def _raise_or_notify(self, txn: Transaction, error: MFAError | None) -> None:
        """After commit: tell the user what happened (mail), then raise the attempt's error."""
        self._outbox.send(AuditEvent.from_dict(e) for e in txn.events)
        if error is not None:
            raise error

    def flush_notifications(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification was handled; False if ``timeout`` ran out.

        Queued mails are also sent before the process exits. Raises
        TypeError/ValueError on a bad timeout.
        """
        return self._outbox.flush(timeout)

    def _claim_record(self, username: str, *, first_sight: bool = True) -> None:
        """With the company directory, the record under ``username`` is its current entry's
        (entryUUID / objectGUID): see mfa_core.directory.identity. ``first_sight=False``: a
        name nobody claimed yet is left unbound (nothing written)."""
        if getattr(self.directory, "company", False):
            self.directory.claim(username, first_sight=first_sight)

    def _require_active(self, username: str) -> None:
        """Refuse (AccountInactive) a user the company directory has disabled, locked or expired.

        At most 60 s stale (the directory's cache); DirectoryUnavailable when
        it cannot be asked. Nothing to do with users.yaml or the database's table.
        """
        if getattr(self.directory, "company", False):
            account = self.directory.claim(username)
            if account is not None and not account.active:
                raise AccountInactive()


@functools.cache
def _dummy_hash() -> str:
    """A bcrypt hash of nothing anyone types, at the cost new hashes get (made once, when first
    needed): an unknown name costs the same check as a known one."""
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode("ascii"), bcrypt.gensalt()).decode("ascii")


def _dummy_check(directory: Any, password: str, name_key: str) -> None:
    """An unknown name's check, at a user's cost: with the company directory a bind that cannot
    succeed under the same bind budget a user has (a user's check is a bind there), else
    bcrypt against the dummy hash."""
    if getattr(directory, "company", False):
        directory.dummy_bind(password, name_key)
    else:
        _bcrypt_check(password, _dummy_hash())


def _password_ok(password: str, stored: Any, state: dict[str, Any] | None = None) -> bool:
    """A bcrypt hash compared here; a company-directory user's password is a bind as their DN
    (its budget counted in ``state``, the user's password state, when given)."""
    checked = check_stored(password, stored, state)
    return _bcrypt_check(password, stored) if checked is None else checked


def _bcrypt_check(password: str, stored: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), stored.encode("ascii"))
    except (ValueError, UnicodeEncodeError):  # a hash that is not bcrypt's, or a password > 72 bytes
        return False


def _remember_disclosed(app: dict[str, Any], step: int | None, now: float) -> None:
    """A refusal named a future step of this app ("your clock looks N s ahead"): its code must
    not sign in when its time comes (the typist learnt it is a right code). Steps that are past
    are dropped: they could never be accepted again anyway."""
    current = totp.step_at(now)
    kept = [s for s in app.get("disclosed") or () if s >= current - totp.WINDOW]
    if step is not None and step not in kept:
        kept.append(step)
    if kept:
        app["disclosed"] = sorted(kept)
    else:
        app.pop("disclosed", None)


PASS_ONLY_ADDS = ("You signed in with a temporary pass: it only lets you add an authenticator. "
                  "Sign in with your new authenticator to do this.")


def _refuse_under_pass(rec: dict[str, Any], session_id: str | None) -> None:
    """The asking session passed with a temporary pass: it may only add a factor (S40)."""
    entry = (rec.get("sessions") or {}).get(session_id) if session_id else None
    if isinstance(entry, dict) and entry.get("via") == temp_pass.STRATEGY:
        raise NotEnabled(PASS_ONLY_ADDS)


def _second_ahead(rec: dict[str, Any], now: float, with_code: bool,
                  with_pass: bool) -> tuple[bool, bool]:
    """(a second factor is ahead of this password, a code that came with it is checked with
    it): the password throttle's block lets a joint check through (S14). The helpdesk's
    temporary pass counts for a user who has it (S40)."""
    two_step = records.two_step_on(rec)
    ahead = two_step or temp_pass.live(rec, now) is not None
    return ahead, with_code and (two_step or (with_pass and ahead))


def _reason(error: MFAError) -> str:
    if isinstance(error, PasskeyRefused):
        return f"passkey refused: {error.reason}"
    if isinstance(error, CodeAlreadyUsed):
        return "code already used"
    if isinstance(error, CodeExpired):
        return "code expired"
    if isinstance(error, ClockDrift):
        return f"device clock about {error.offset_seconds} s off"
    if isinstance(error, TooManyAttempts):
        return "too many attempts"
    if isinstance(error, FactorNotAllowed):
        return f"{error.kind} not allowed by the two-step policy"
    return "wrong code" if isinstance(error, InvalidCode) else type(error).__name__


class _Spray:
    """What ``MFAService._spray`` hands the password check: the gate's refusal, and then what
    the check came to (``ran``, then ``passed`` or ``void``; see there)."""

    __slots__ = ("error", "outcome")

    def __init__(self) -> None:
        self.error: MFAError | None = None
        self.outcome: str | None = None  # None: not checked yet; "ran", "passed", "void"

    def ran(self) -> None:
        self.outcome = "ran"

    def passed(self) -> None:
        self.outcome = "passed"

    def void(self) -> None:
        self.outcome = "void"

    @property
    def counted(self) -> bool:
        """The check counts as a failure from this place (it ran, and was neither right nor void)."""
        return self.outcome == "ran"


class _Guarded:
    """A store transaction as the engine uses it.

    I/O failures surface as StorageError; a damaged record is validated away
    (RecordDamaged, audited once); a changed record is sealed at the current
    format version before the store writes it.
    """

    def __init__(self, svc: MFAService, cm, username: str | None, repair: bool) -> None:
        self._svc = svc
        self._cm = cm
        self._username = username
        self._repair = repair
        self._txn: Transaction | None = None

    def __enter__(self) -> Transaction:
        try:
            txn = self._cm.__enter__()
        except RecordDamaged as exc:
            if self._username is not None:
                self._svc._report_damage(self._username, exc)
            raise
        except IO_ERRORS as exc:
            raise StorageError() from exc
        if self._username is not None and txn.existed:
            try:
                records.load(self._username, txn.record)
            except RecordDamaged as exc:
                self._svc._report_damage(self._username, exc)
                if not self._repair:
                    self._cm.__exit__(None, None, None)  # nothing changed: releases the lock
                    raise
                txn.record = {"username": self._username}
                txn.damaged = True
        self._txn = txn
        return txn

    def __exit__(self, *exc_info) -> bool:
        txn = self._txn
        # Sealed before the store compares it with what it read (one encoding of the record):
        # sealing changes nothing in a record already at the current format that nothing else
        # changed, and a blank new record (an absent user's) stays unwritten.
        if exc_info[0] is None and txn is not None and self._username is not None and not txn.blank:
            records.seal(txn.record)
        try:
            return bool(self._cm.__exit__(*exc_info))
        except RecordDamaged:
            raise
        except IO_ERRORS as exc:
            raise StorageError() from exc


def open_service(data_dir: str | os.PathLike | None = None, clock: Callable[[], float] = time.time,
                 *, issuer: str | None = None, backend: str = "tinydb",
                 policy: ThrottlePolicy | None = None,
                 password_policy: PasswordPolicy | None = None,
                 session_policy: SessionPolicy | None = None,
                 notifier: Notifier | None = None,
                 notify_in_background: bool = False,
                 environ: Mapping[str, str] | None = None,
                 database_url: str | None = None,
                 relying_party: RelyingParty | PasskeySettingsError | None = None) -> MFAService:
    """Open the engine on ``data_dir`` (default: ``$MFA_PORTAL_DATA_DIR`` or ``data/``).

    Keys come from the environment or a generated 0600 key file in the data
    dir; passwords are checked against the data dir's user directory.
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
    # PostgreSQL when a database URL is given or set (MFA_PORTAL_DATABASE_URL), else ``backend``.
    database_url = database_url or env.get("MFA_PORTAL_DATABASE_URL") or None
    if backend not in BACKENDS and not (backend == DATABASE_BACKEND and database_url):
        raise ValueError(f"Unknown backend {backend!r}: one of {', '.join(BACKENDS)}"
                         f" (or {DATABASE_BACKEND} with MFA_PORTAL_DATABASE_URL).")
    # Refuse bad arguments before anything is created on disk.
    issuer = check.name(issuer if issuer is not None else env.get("MFA_PORTAL_ISSUER") or "MFA Portal",
                        "issuer")
    if not callable(clock):
        raise TypeError("clock must be callable")
    if policy is not None and not isinstance(policy, ThrottlePolicy):
        raise TypeError("policy must be a ThrottlePolicy")
    if password_policy is not None and not isinstance(password_policy, PasswordPolicy):
        raise TypeError("password_policy must be a PasswordPolicy")
    path = Path(data_dir)
    try:
        if not (database_url and env.get(ENV_KEYS)):  # with a database and keys, nothing goes there
            make_dirs(path)  # its entry durable in its parent, as every folder the store makes
        try:
            store = open_store(backend, path, database_url)
        except DatabaseError as exc:  # its text is redacted; still the operator's only
            raise StoreUnavailable(f"The database cannot be used: {exc}.") from exc
        keyring = load_keyring(path, env)
        # The company directory (LDAP / AD) when MFA_PORTAL_LDAP_URL or [ldap] url is set.
        directory = (open_company_directory(env, clock, store=store, pepper=keyring.pepper)
                     or open_directory(path, store))
    except IO_ERRORS as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StoreUnavailable(f"The data directory {path} cannot be used: {reason}.") from exc
    if store.database and isinstance(getattr(notifier, "directory", None), UserDirectory):
        notifier.directory = directory  # mail addresses from the shared directory, not a file
    try:
        pass_max_valid = temp_pass.max_valid(env)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{temp_pass.ENV_MAX_VALID}: {exc}") from exc
    policy_cache = two_step.cache_seconds(env)  # ValueError on a bad setting
    svc = MFAService(store, keyring, clock, issuer=issuer, policy=policy, pass_max_valid=pass_max_valid,
                      password_policy=password_policy, session_policy=session_policy,
                      directory=directory, notifier=notifier,
                      notify_in_background=notify_in_background,
                      relying_party=relying_party or passkeys.load_relying_party(env, None))
    svc.policy_max_age = policy_cache
    return svc
