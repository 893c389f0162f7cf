"""The engine's passkey operations (mixed into ``MFAService``): add a passkey, sign in or reverify with one.

Each ceremony has two halves. ``begin_…`` issues a challenge bound to the
sign-in session (the token the portal holds) and returns the browser's
options; the second half is one per-user transaction, as every credential
attempt is: gate on the throttle, take the challenge (once), check the
answer, record the outcome and its audit event. Failures count in the same
per-user throttle as codes; a sign count going backwards is refused and
audited as a possibly cloned authenticator. A passkey is one more
authenticator (kind ``"passkey"``): alone it turns two-step on, and the
backup codes then apply as with an app.
"""

from __future__ import annotations

from typing import Any

from . import authenticators as authn
from . import passkeys, records
from . import validate as check
from .audit import AuditEvent
from .errors import (MFAError, NotEnabled, PasskeyAlreadyRegistered, PasskeyRefused,
                     PasskeySettingsError, SignCountRegressed, TooManyAttempts,
                     TooManyAuthenticators)
from .passkeys import AUTHENTICATE, REGISTER, ChallengeBook, RelyingParty
from .policy import LATE_SETUP
from .policy_service import policy_reason
from .results import SecondFactorResult
from .sessions import demote_others

MAX_PASSKEYS = 10  # per user, apart from the authentication apps
NO_PASSKEY = "You have no passkey. Use your authentication app or a backup code."


class PasskeyOperations:
    """Mixed into MFAService: uses its store, keyring, clock, sessions and transaction helpers."""

    _relying_party: RelyingParty | PasskeySettingsError | None = None

    @property
    def relying_party(self) -> RelyingParty:
        """Who the passkeys are for. Raises PasskeySettingsError when its settings cannot be used."""
        rp = self._relying_party
        if rp is None:
            rp = self._relying_party = RelyingParty()
        if isinstance(rp, PasskeySettingsError):
            raise rp
        return rp

    @relying_party.setter
    def relying_party(self, value: RelyingParty | PasskeySettingsError | None) -> None:
        self._relying_party = value

    def passkeys_available(self) -> bool:
        """Whether passkeys can be used on this portal (its relying-party settings work)."""
        try:
            self.relying_party
        except PasskeySettingsError:
            return False
        return True

    @property
    def _challenges(self) -> ChallengeBook:
        return ChallengeBook(self.store, self.clock)

    def _session_of(self, username: str, session: Any, *, signed_in: bool = False) -> str:
        """The id of ``session`` (a sign-in session's token) if it is ``username``'s and live.

        ``signed_in``: the session must also have passed the second factor
        (adding a passkey is never part of signing in).
        """
        if not isinstance(session, str):
            raise TypeError(f"session must be a str, not {type(session).__name__}")
        found = self.sessions.find(session)
        if found is None or found.username != username:
            raise NotEnabled("You are not signed in (or your session has ended). Sign in again.")
        if signed_in and not found.second_factor_passed:
            raise NotEnabled("Finish signing in before you add a passkey.")
        return found.id

    # -- adding a passkey ---------------------------------------------------------------

    def begin_passkey_registration(self, username: str, *, session: str, origin: str | None = None,
                                   source: str | None = None) -> str:
        """The options for ``navigator.credentials.create`` (JSON), with a new challenge for this session.

        ``origin`` is the page asking (``scheme://host:port``): only an answer
        from it is accepted (with the default relying party it is required).

        A user past the two-step policy's deadline may add one only from a
        familiar ``source`` (the client's address; None: not familiar) or in a
        session that passed with a temporary pass (``session`` tells).

        The user's passkeys are excluded (the browser refuses to add one
        twice). Raises TooManyAuthenticators, NotEnabled (no such live
        session of the user), PolicyRefused (overdue, from elsewhere),
        PasskeySettingsError, StorageError, TypeError/ValueError.
        """
        username = check.name(username)
        source = check.source(source)
        rp = self.relying_party
        origin = _page_origin(rp, origin)
        sid = self._session_of(username, session, signed_in=True)
        context = self._policy_context(username, fresh=True)
        rec = self._read(username)
        existing = authn.of_kind(rec, "passkey")
        if len(existing) >= MAX_PASSKEYS:
            raise _too_many()
        now = self.clock()
        grounds = self._check_setup(username, rec, now, context, "passkey", source, session)
        if grounds is not None:  # overdue: audited (the passkey_added mail tells the user)
            self.store.append_audit([AuditEvent(now, username, username, "policy_overdue_setup",
                                                "success", f"passkey, {grounds}").to_dict()])
        challenge = self._challenges.issue(sid, REGISTER, username, origin, overdue_ok=grounds is not None)
        user = self.directory.get(username) if self.directory is not None else None
        display = (getattr(user, "name", None) or username) if user is not None else username
        return passkeys.registration_options(
            rp, user_id=passkeys.user_handle(self.keyring.pepper, username), username=username,
            display_name=display, challenge=challenge, existing=existing)

    def suggest_passkey_label(self, username: str, response: Any) -> str:
        """A name for the passkey in ``response`` (not yet checked), unique among the user's.

        From what the browser told about the authenticator ("iCloud Keychain",
        "Security key"), else "Passkey". Raises InvalidCodeFormat, StorageError.
        """
        username = check.name(username)
        suggested = passkeys.describe_response(response)
        return authn.unique_in(self._read(username), suggested)

    def finish_passkey_registration(self, username: str, response: Any, *, session: str,
                                    label: str | None = None,
                                    actor: str | None = None) -> authn.Authenticator:
        """Check the browser's answer to this session's challenge and add the passkey.

        ``label`` names it (default: what the authenticator is, made unique);
        another authenticator's name is refused before the challenge is used,
        so the user can pick another. A refused answer counts as a failed
        attempt. Raises InvalidLabel, InvalidCodeFormat, PasskeyRefused
        (PasskeyChallengeExpired), PasskeyAlreadyRegistered,
        TooManyAuthenticators, TooManyAttempts, NotEnabled, PasskeySettingsError,
        StorageError, TypeError/ValueError.
        """
        username = check.name(username)
        parsed = passkeys.parse_response(response)
        wanted = authn.clean_label(label) if label is not None else None
        actor = check.optional_name(actor, "actor", username)
        rp = self.relying_party
        sid = self._session_of(username, session, signed_in=True)
        context = self._policy_context(username, fresh=True)
        error: MFAError | None = None
        added = None
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock
            rec = txn.record
            if wanted is not None and authn.taken(rec, wanted):
                raise authn.label_taken(wanted)
            if (error := self._gate(txn, now, actor)) is None:
                try:
                    challenge, origin, overdue_ok = self._challenges.take_noted(sid, REGISTER, username)
                    new = passkeys.verify_registration(rp, parsed, challenge=challenge, origin=origin)
                except PasskeyRefused as refused:
                    error = refused
                    self._fail(txn, now, actor, "passkey_registration_failed", refused)
                else:
                    mine = authn.of_kind(rec, "passkey")
                    # The policy now, not when it began (begun in grace, answered past the deadline).
                    if (error := self._finish_refused(username, rec, now, context, "passkey",
                                                      overdue_ok)) is not None:
                        self._log(txn, now, actor, "policy_setup_refused", "refused",
                                  f"passkey: {policy_reason(error)}")
                    elif any(p["credential_id"] == new.credential_id for p in mine):
                        error = PasskeyAlreadyRegistered()
                    elif len(mine) >= MAX_PASSKEYS:
                        error = _too_many()
                    else:
                        name = wanted or authn.unique_in(rec, new.suggested_label)
                        added = authn.add(rec, "passkey", name, now, **new.fields())
                        records.bump_epoch(rec)
                        demote_others(rec, sid)  # every other session passes it again
                        rec.pop("throttle", None)
                        self._log(txn, now, actor, "passkey_added", "success",
                                  name + (LATE_SETUP if overdue_ok else ""))
        self._raise_or_notify(txn, error)
        return authn.public(added)

    # -- signing in (and reverifying) with a passkey -------------------------------------

    def begin_passkey_sign_in(self, username: str, *, session: str, origin: str | None = None) -> str:
        """The options for ``navigator.credentials.get`` (JSON) for the user's passkeys, with a new challenge.

        ``origin`` as for ``begin_passkey_registration``.

        For the sign-in challenge and for **Verify it's you** alike. Raises
        NotEnabled (no passkey, or no such live session), TooManyAttempts
        (AccountLocked) while throttled, PasskeySettingsError, StorageError.
        """
        username = check.name(username)
        rp = self.relying_party
        origin = _page_origin(rp, origin)
        sid = self._session_of(username, session)
        rec = self._read(username)
        mine = authn.of_kind(rec, "passkey")
        if not mine:
            raise NotEnabled(NO_PASSKEY)
        wait = self.retry_after(username)  # raises AccountLocked
        if wait:
            raise TooManyAttempts(wait)
        challenge = self._challenges.issue(sid, AUTHENTICATE, username, origin)
        return passkeys.authentication_options(rp, challenge=challenge, passkeys=mine)

    def attempt_passkey(self, username: str, response: Any, *, session: str,
                        source: str | None = None, actor: str | None = None) -> SecondFactorResult:
        """Check the browser's answer to this session's sign-in challenge: one attempt, as a code is.

        Gate, take the challenge, check the answer against the passkey it
        names, record the outcome, in one transaction. Success updates the
        passkey's sign count and last use, clears the failures and makes
        ``source`` familiar. Raises InvalidCodeFormat (not an answer at all:
        nothing counted), PasskeyRefused (PasskeyChallengeExpired,
        SignCountRegressed), TooManyAttempts (AccountLocked), NotEnabled,
        PasskeySettingsError, StorageError, TypeError/ValueError.
        """
        username = check.name(username)
        parsed = passkeys.parse_response(response)
        source = check.source(source)
        actor = check.optional_name(actor, "actor", username)
        rp = self.relying_party
        sid = self._session_of(username, session)
        self._require_active(username)  # a leaver of the company directory: refused, nothing counted
        context = self._policy_context(username)
        error: MFAError | None = None
        remaining = 0
        with self._transaction(username) as txn:
            now = self.clock()  # under the user's lock
            rec = txn.record
            mine = authn.of_kind(rec, "passkey")
            if not records.two_step_on(rec) or not mine:
                error = NotEnabled(NO_PASSKEY)
            elif (error := self._gate(txn, now, actor)) is None:
                entry = next((p for p in mine if p["credential_id"] == parsed["id"]), None)
                req = self._requirement_in(username, rec, now, *context)
                channel = None if actor == username else f"service:{actor}"
                try:
                    challenge, origin = self._challenges.take_bound(sid, AUTHENTICATE, username)
                    if self._factor_refused(rec, req, "passkey", channel):
                        # As an unknown passkey is refused: the policy shows nowhere.
                        raise PasskeyRefused(reason="passkey not allowed by the two-step policy")
                    if entry is None:
                        raise PasskeyRefused("That passkey is not registered for your account.",
                                             reason="unknown passkey")
                    result = passkeys.verify_authentication(
                        rp, parsed, challenge=challenge, passkey=entry,
                        user_id=passkeys.user_handle(self.keyring.pepper, username), origin=origin)
                except PasskeyRefused as refused:
                    error = refused
                    self._fail(txn, now, actor, "second_factor_failed", refused)
                    if isinstance(refused, SignCountRegressed):
                        self._log(txn, now, actor, "passkey_clone_suspected", "failure",
                                  f"{entry['label']}: {refused.reason}")
                else:
                    entry.update(sign_count=result.sign_count, backed_up=result.backed_up,
                                 last_used_at=now)
                    self._second_factor_passed(rec, source, now)
                    self._log(txn, now, actor, "second_factor_passed", "success",
                              f"passkey {entry['label']}")
            remaining = len((rec.get("backup") or {}).get("hashes") or [])
        self._raise_or_notify(txn, error)
        return SecondFactorResult(strategy="passkey", backup_codes_remaining=remaining)


WRONG_ADDRESS = ("Passkeys work only at the portal's own address (for example "
                 "http://localhost:8501, not an IP address). Open the portal there and try again.")


def _page_origin(rp: RelyingParty, origin: Any) -> str | None:
    """The page's origin, checked: one the relying party may serve (required for the default one)."""
    if origin is None:
        if not rp.origins:  # the default (localhost): only the page's own origin is accepted
            raise NotEnabled(WRONG_ADDRESS)
        return None
    if not isinstance(origin, str):
        raise TypeError(f"origin must be a str, not {type(origin).__name__}")
    if not rp.allows(origin):
        raise NotEnabled(WRONG_ADDRESS)
    return origin


def _too_many() -> TooManyAuthenticators:
    return TooManyAuthenticators(f"This account already has {MAX_PASSKEYS} passkeys, the most it "
                                 "may have. Remove one you no longer use before adding another.")
