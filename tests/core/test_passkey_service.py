"""The engine's passkey operations: add a passkey, sign in and reverify with it, in the user's transaction.

Answers come from the software authenticator (tests/webauthn_authenticator.py);
sessions are real sign-in sessions of the engine; every store backend runs.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import mfa_core
from mfa_core import passkeys
from mfa_core.errors import (InvalidCodeFormat, InvalidLabel, NotEnabled, PasskeyChallengeExpired,
                             PasskeyRefused, PasskeySettingsError, SignCountRegressed, TooManyAttempts)

from ..webauthn_authenticator import PAGE, SoftAuthenticator


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    return SoftAuthenticator()


@pytest.fixture
def token(svc) -> str:
    return svc.sessions.start("alice", second_factor_passed=True)


def add_passkey(svc, token, authenticator, label=None, user="alice"):
    options = svc.begin_passkey_registration(user, session=token, origin=PAGE)
    return svc.finish_passkey_registration(user, authenticator.create(options), session=token,
                                           label=label)


def sign_in(svc, token, authenticator, user="alice", **answer):
    options = svc.begin_passkey_sign_in(user, session=token, origin=PAGE)
    return svc.attempt_passkey(user, authenticator.get(options, **answer), session=token)


def passkey_entry(svc, user="alice") -> dict:
    (entry,) = [a for a in svc._read(user)["authenticators"] if a["kind"] == "passkey"]
    return entry


# -- adding ----------------------------------------------------------------------


def test_a_passkey_alone_turns_two_step_on_and_backup_codes_apply(svc, token, authenticator):
    added = add_passkey(svc, token, authenticator)
    assert (added.kind, added.label, added.last_used_at) == ("passkey", "Google Password Manager", None)
    status = svc.status("alice")
    assert status.two_factor_enabled and status.backup_code_enabled
    assert not status.totp_enabled
    assert [a.id for a in status.authenticators] == [added.id]
    assert len(svc.create_backup_codes("alice").codes) == 10


def test_the_record_keeps_the_public_key_and_nothing_secret(svc, token, authenticator):
    add_passkey(svc, token, authenticator, label="Laptop")
    entry = passkey_entry(svc)
    assert set(entry) == {"id", "kind", "label", "created_at", "last_used_at", "credential_id",
                          "public_key", "sign_count", "transports", "aaguid", "backup_eligible",
                          "backed_up"}
    assert entry["label"] == "Laptop"


def test_adding_is_audited_by_its_label(svc, token, authenticator):
    add_passkey(svc, token, authenticator, label="Office key")
    (event,) = [e for e in svc.audit("alice") if e.event == "passkey_added"]
    assert event.detail == "Office key" and event.outcome == "success"


def test_a_name_already_taken_is_refused_and_the_passkey_can_be_saved_under_another(svc, token):
    add_passkey(svc, token, SoftAuthenticator(), label="Phone")
    options = svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    answer = SoftAuthenticator().create(options)
    with pytest.raises(InvalidLabel):
        svc.finish_passkey_registration("alice", answer, session=token, label="phone")
    added = svc.finish_passkey_registration("alice", answer, session=token, label="Tablet")
    assert added.label == "Tablet"


def test_the_default_name_is_made_unique(svc, token):
    assert add_passkey(svc, token, SoftAuthenticator()).label == "Google Password Manager"
    assert add_passkey(svc, token, SoftAuthenticator()).label == "Google Password Manager 2"


def test_the_suggested_name_comes_from_the_answer(svc, token, authenticator):
    options = svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    assert svc.suggest_passkey_label("alice", authenticator.create(options)) == "Google Password Manager"


def test_the_registration_options_exclude_the_users_passkeys(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    options = json.loads(svc.begin_passkey_registration("alice", session=token, origin=PAGE))
    assert [c["id"] for c in options["excludeCredentials"]] == [passkey_entry(svc)["credential_id"]]
    assert options["rp"]["id"] == "localhost"


def test_a_registration_from_another_origin_is_refused_and_counted(svc, token, authenticator):
    options = svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    with pytest.raises(PasskeyRefused):
        svc.finish_passkey_registration("alice", authenticator.create(options, origin="https://evil.example"),
                                        session=token)
    status = svc.status("alice")
    assert not status.two_factor_enabled and status.failed_attempts == 1
    (event,) = [e for e in svc.audit("alice") if e.event == "passkey_registration_failed"]
    assert "wrong origin" in event.detail


def test_a_registration_answer_is_good_once(svc, token, authenticator):
    options = svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    answer = authenticator.create(options)
    svc.finish_passkey_registration("alice", answer, session=token)
    with pytest.raises(PasskeyChallengeExpired):
        svc.finish_passkey_registration("alice", answer, session=token, label="Again")
    assert len(svc.status("alice").authenticators) == 1


def test_another_users_session_cannot_start_or_finish_a_ceremony(svc, authenticator):
    bobs = svc.sessions.start("bob", second_factor_passed=True)
    with pytest.raises(NotEnabled):
        svc.begin_passkey_registration("alice", session=bobs, origin=PAGE)
    with pytest.raises(NotEnabled):
        svc.begin_passkey_registration("alice", session="no-such-session-token-at-all", origin=PAGE)


# -- signing in -------------------------------------------------------------------


def test_sign_in_with_a_passkey_updates_its_count_and_last_use(svc, token, authenticator, clock):
    add_passkey(svc, token, authenticator, label="Laptop")
    clock.advance(60)
    result = sign_in(svc, token, authenticator)
    assert result.strategy == "passkey"
    entry = passkey_entry(svc)
    assert entry["sign_count"] == 1 and entry["last_used_at"] == clock()
    assert svc.status("alice").authenticators[0].last_used_at == clock()
    (event,) = [e for e in svc.audit("alice") if e.event == "second_factor_passed"]
    assert event.detail == "passkey Laptop"


def test_a_replayed_answer_is_refused(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    answer = authenticator.get(options)
    svc.attempt_passkey("alice", answer, session=token)
    with pytest.raises(PasskeyChallengeExpired):
        svc.attempt_passkey("alice", answer, session=token)
    svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)  # a new challenge does not revive it
    with pytest.raises(PasskeyRefused) as err:
        svc.attempt_passkey("alice", answer, session=token)
    assert err.value.reason == "wrong challenge"


def test_an_answer_after_the_challenge_expired_is_refused(svc, token, authenticator, clock):
    add_passkey(svc, token, authenticator)
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    clock.advance(passkeys.CHALLENGE_TTL[passkeys.AUTHENTICATE] + 1)
    with pytest.raises(PasskeyChallengeExpired):
        svc.attempt_passkey("alice", authenticator.get(options), session=token)


def test_an_answer_to_another_sessions_challenge_is_refused(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    other = svc.sessions.start("alice", second_factor_passed=False)
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    svc.begin_passkey_sign_in("alice", session=other, origin=PAGE)
    with pytest.raises(PasskeyRefused) as err:
        svc.attempt_passkey("alice", authenticator.get(options), session=other)
    assert err.value.reason == "wrong challenge"


def test_an_answer_from_another_origin_or_relying_party_is_refused(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    for answer in ({"origin": "https://evil.example"}, {"rp_id": "evil.example"}):
        with pytest.raises(PasskeyRefused):
            sign_in(svc, token, authenticator, **answer)
    assert svc.status("alice").failed_attempts == 2
    assert passkey_entry(svc)["last_used_at"] is None


def test_a_passkey_of_another_account_is_refused(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    bobs = svc.sessions.start("bob", second_factor_passed=True)
    intruder = SoftAuthenticator()
    add_passkey(svc, bobs, intruder, user="bob")
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    bob_id = passkeys.unb64url(passkey_entry(svc, "bob")["credential_id"])
    with pytest.raises(PasskeyRefused) as err:
        svc.attempt_passkey("alice", intruder.get(options, credential_id=bob_id), session=token)
    assert err.value.reason == "unknown passkey"


def test_a_sign_count_going_backwards_is_refused_and_audited(svc, token, authenticator):
    add_passkey(svc, token, authenticator, label="Laptop")
    sign_in(svc, token, authenticator)
    sign_in(svc, token, authenticator)
    with pytest.raises(SignCountRegressed):
        sign_in(svc, token, authenticator, sign_count=1)
    assert passkey_entry(svc)["sign_count"] == 2
    (event,) = [e for e in svc.audit("alice") if e.event == "passkey_clone_suspected"]
    assert event.detail == "Laptop: sign count 1 after 2"
    assert svc.status("alice").failed_attempts == 1


def test_failures_count_in_the_same_throttle_as_codes(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    for _ in range(svc.policy.free_failures):
        with pytest.raises(PasskeyRefused):
            sign_in(svc, token, authenticator, origin="https://evil.example")
    with pytest.raises(TooManyAttempts):
        sign_in(svc, token, authenticator)


def test_success_clears_the_failures(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    with pytest.raises(PasskeyRefused):
        sign_in(svc, token, authenticator, origin="https://evil.example")
    sign_in(svc, token, authenticator)
    assert svc.status("alice").failed_attempts == 0


def test_one_answer_sent_40_times_at_once_is_accepted_once(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    answer = authenticator.get(options)
    barrier = threading.Barrier(40)

    def attempt(_):
        barrier.wait()
        try:
            svc.attempt_passkey("alice", answer, session=token)
            return True
        except mfa_core.MFAError:
            return False
    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    assert outcomes.count(True) == 1
    assert passkey_entry(svc)["sign_count"] == 1


def test_something_that_is_not_an_answer_changes_nothing(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    for junk in ("", "{}", "[1]", "x" * 100_000):
        with pytest.raises(InvalidCodeFormat):
            svc.attempt_passkey("alice", junk, session=token)
    assert svc.status("alice").failed_attempts == 0
    sign_in(svc, token, authenticator)  # the challenge was not used up either


def test_no_passkey_means_no_passkey_sign_in(svc, token):
    with pytest.raises(NotEnabled):
        svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)


def test_the_audit_trail_never_holds_key_or_challenge(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    sign_in(svc, token, authenticator)
    entry = passkey_entry(svc)
    text = json.dumps([e.to_dict() for e in svc.audit("alice")])
    assert entry["public_key"] not in text and entry["credential_id"] not in text


# -- managing ----------------------------------------------------------------------


def test_rename_and_remove_a_passkey_like_any_authenticator(svc, token, authenticator):
    added = add_passkey(svc, token, authenticator)
    svc.rename_authenticator("alice", added.id, "Work laptop")
    assert svc.status("alice").authenticators[0].label == "Work laptop"
    svc.remove_authenticator("alice", added.id)
    status = svc.status("alice")
    assert not status.two_factor_enabled and status.authenticators == []
    with pytest.raises(NotEnabled):
        svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)


def test_a_removed_passkey_no_longer_signs_in(svc, token):
    kept, gone = SoftAuthenticator(), SoftAuthenticator()
    add_passkey(svc, token, kept, label="Kept")
    removed = add_passkey(svc, token, gone, label="Gone")
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    svc.remove_authenticator("alice", removed.id, keep_session=token)
    with pytest.raises(PasskeyRefused):
        svc.attempt_passkey("alice", gone.get(options), session=token)
    sign_in(svc, token, kept)


# -- settings ----------------------------------------------------------------------


def test_passkeys_are_off_when_the_relying_party_settings_cannot_work(svc, token):
    svc.relying_party = passkeys.load_relying_party({"MFA_PORTAL_RP_ID": "10.0.0.1"}, None)
    assert not svc.passkeys_available()
    with pytest.raises(PasskeySettingsError):
        svc.begin_passkey_registration("alice", session=token, origin=PAGE)


def test_a_passkey_registered_twice_is_refused(svc, token, authenticator):
    add_passkey(svc, token, authenticator)
    options = svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    (held,) = authenticator.credentials
    with pytest.raises(mfa_core.PasskeyAlreadyRegistered):
        svc.finish_passkey_registration("alice", authenticator.create(options, again=held),
                                        session=token, label="Again")
    assert len(svc.status("alice").authenticators) == 1


def test_the_number_of_passkeys_is_capped(svc, token):
    from mfa_core.passkey_service import MAX_PASSKEYS
    for _ in range(MAX_PASSKEYS):
        add_passkey(svc, token, SoftAuthenticator())
    with pytest.raises(mfa_core.TooManyAuthenticators) as err:
        svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    assert f"{MAX_PASSKEYS} passkeys" in str(err.value)


def test_a_session_still_at_the_sign_in_challenge_cannot_add_a_passkey(svc, token, authenticator):
    add_passkey(svc, token, authenticator)  # two-step is on from here
    halfway = svc.sessions.start("alice", second_factor_passed=False)
    with pytest.raises(NotEnabled) as err:
        svc.begin_passkey_registration("alice", session=halfway, origin=PAGE)
    assert "Finish signing in" in str(err.value)
    svc.begin_passkey_sign_in("alice", session=halfway, origin=PAGE)  # signing in is what it may do
