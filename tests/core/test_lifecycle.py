"""The whole life of a user's second factor, as the pages drive it."""

from __future__ import annotations

import math
import re

import pytest

import mfa_core
from mfa_core import backup_codes as bc

from .conftest import code_for, enable_totp


def test_full_lifecycle_from_enrollment_to_removal(open_svc, clock):
    svc = open_svc()
    assert not svc.status("alice").two_factor_enabled

    resource = svc.create_totp("alice")
    assert svc.status("alice").pending_enrollment
    enrollment_code = code_for(resource.secret, clock())
    status = svc.verify_totp("alice", enrollment_code)
    assert status.totp_enabled and status.two_factor_enabled and not status.pending_enrollment

    # The code typed at enrollment is spent: it cannot sign in.
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", enrollment_code)
    clock.advance(30)
    assert svc.attempt_second_factor("alice", code_for(resource.secret, clock())).strategy == "totp"

    codes = svc.create_backup_codes("alice").codes
    assert svc.status("alice").backup_codes_remaining == 10
    typed = codes[3].replace("-", "").upper()
    typed = f"  {typed[:8]} {typed[8:]} "
    result = svc.attempt_second_factor("alice", typed, strategy="backup_code")
    assert result.backup_codes_remaining == 9
    assert svc.status("alice").backup_codes_remaining == 9
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", codes[3], strategy="backup_code")

    new_codes = svc.create_backup_codes("alice").codes
    assert not set(new_codes) & set(codes)
    assert svc.status("alice").backup_codes_remaining == 10
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", codes[0], strategy="backup_code")

    # Reopening the data dir sees the same state.
    again = open_svc()
    assert again.status("alice").backup_codes_remaining == 10
    assert again.status("alice").totp_enabled

    status = again.disable_totp("alice")
    assert not status.totp_enabled and status.backup_codes_remaining == 0
    with pytest.raises(mfa_core.NotEnabled):
        again.attempt_second_factor("alice", new_codes[0], strategy="backup_code")
    assert not open_svc().status("alice").totp_enabled


def test_reopened_service_sees_the_pending_enrollment_and_its_secret(open_svc, clock):
    first = open_svc()
    secret = first.create_totp("alice").secret
    second = open_svc()
    assert second.pending_totp("alice").secret == secret
    assert second.verify_totp("alice", code_for(secret, clock())).totp_enabled


# -- enrollment -----------------------------------------------------------------

def test_pending_totp_returns_the_same_secret_on_every_read(svc):
    created = svc.create_totp("alice")
    assert svc.pending_totp("alice").secret == created.secret
    assert svc.pending_totp("alice").uri == created.uri


def test_pending_totp_is_none_without_an_enrollment(svc):
    assert svc.pending_totp("alice") is None


def test_reset_replaces_the_pending_secret(svc, clock):
    first = svc.create_totp("alice").secret
    second = svc.create_totp("alice").secret
    assert first != second
    assert svc.pending_totp("alice").secret == second
    with pytest.raises(mfa_core.InvalidCode):
        svc.verify_totp("alice", code_for(first, clock()))
    assert svc.verify_totp("alice", code_for(second, clock())).totp_enabled


def test_pending_enrollment_expires_after_ten_minutes(svc, clock):
    secret = svc.create_totp("alice").secret
    clock.advance(600)
    assert svc.pending_totp("alice") is None
    assert not svc.status("alice").pending_enrollment
    with pytest.raises(mfa_core.EnrollmentExpired):
        svc.verify_totp("alice", code_for(secret, clock()))
    # The expired enrollment is gone: the next try says there is none.
    with pytest.raises(mfa_core.NoPendingEnrollment):
        svc.verify_totp("alice", code_for(secret, clock()))


def test_pending_enrollment_still_verifies_just_before_expiry(svc, clock):
    secret = svc.create_totp("alice").secret
    clock.advance(599)
    assert svc.verify_totp("alice", code_for(secret, clock())).totp_enabled


def test_verify_without_pending_enrollment_is_refused(svc):
    with pytest.raises(mfa_core.NoPendingEnrollment):
        svc.verify_totp("alice", "123456")


def test_pending_enrollment_never_disturbs_an_enabled_authenticator(svc, clock):
    old = enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    new = svc.create_totp("alice").secret
    status = svc.status("alice")
    assert status.totp_enabled and status.pending_enrollment
    # The old app still signs in; the new one does not yet.
    svc.attempt_second_factor("alice", code_for(old, clock()))
    clock.advance(30)
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", code_for(new, clock()))
    # Letting the new enrollment expire leaves the old app in place.
    clock.advance(600)
    assert svc.status("alice").totp_enabled
    svc.attempt_second_factor("alice", code_for(old, clock()))
    assert svc.status("alice").backup_codes_remaining == 10
    assert svc.attempt_second_factor("alice", codes[0], "backup_code").backup_codes_remaining == 9


def test_verifying_a_new_enrollment_adds_an_app_beside_the_old_one(svc, clock):
    old = enable_totp(svc, clock, "alice")
    new = svc.create_totp("alice").secret
    svc.verify_totp("alice", code_for(new, clock()))
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(old, clock()))
    svc.attempt_second_factor("alice", code_for(new, clock()))
    assert [a.label for a in svc.status("alice").authenticators] == ["Authentication app",
                                                                     "Authentication app 2"]


# -- replay and diagnostics -------------------------------------------------------

def test_a_code_is_accepted_once(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    code = code_for(secret, clock())
    svc.attempt_second_factor("alice", code)
    with pytest.raises(mfa_core.CodeAlreadyUsed, match="already used"):
        svc.attempt_second_factor("alice", code)


def test_an_earlier_step_than_the_last_accepted_is_refused_as_expired(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    svc.attempt_second_factor("alice", code_for(secret, clock() + 30))  # device slightly ahead
    with pytest.raises(mfa_core.CodeExpired, match="expired — use the current one"):
        svc.attempt_second_factor("alice", code_for(secret, clock()))  # never accepted: not a replay


def test_a_never_used_code_from_several_steps_ago_has_expired_not_been_used(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    with pytest.raises(mfa_core.ClockDrift) as err:
        svc.attempt_second_factor("alice", code_for(secret, clock() - 5 * 30))
    assert not isinstance(err.value, mfa_core.CodeAlreadyUsed)
    assert "expired — use the current one" in str(err.value)
    assert "about 150 s behind" in str(err.value)  # the drift hint stays


def test_only_the_very_step_accepted_is_already_used(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    used = code_for(secret, clock())
    svc.attempt_second_factor("alice", used)
    clock.advance(3 * 30)  # out of the window now, but that very step was accepted
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", used)


def test_already_used_message_is_helpful(svc, clock):
    secret = svc.create_totp("alice").secret
    code = code_for(secret, clock())
    svc.verify_totp("alice", code)
    with pytest.raises(mfa_core.CodeAlreadyUsed) as err:
        svc.attempt_second_factor("alice", code)
    assert "already used" in str(err.value)


def test_wrong_code_is_invalid_and_not_a_diagnosis(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    wrong = next(c for c in ("000000", "111111", "222222") if c != code_for(secret, clock()))
    with pytest.raises(mfa_core.InvalidCode) as err:
        svc.attempt_second_factor("alice", wrong)
    assert type(err.value) is mfa_core.InvalidCode


def test_second_factor_without_totp_is_not_enabled(svc):
    with pytest.raises(mfa_core.NotEnabled):
        svc.attempt_second_factor("nobody", "123456")


def test_codes_with_spaces_are_accepted(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    code = code_for(secret, clock())
    assert svc.attempt_second_factor("alice", f"{code[:3]} {code[3:]}").strategy == "totp"
    with pytest.raises(mfa_core.CodeAlreadyUsed):  # the same code, spaced or not
        svc.attempt_second_factor("alice", code)


# -- backup codes -------------------------------------------------------------------

def test_backup_codes_are_ten_grouped_distinct_and_strong(svc, clock):
    enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}", code)
        assert set(code.replace("-", "")) <= set(bc.ALPHABET)
    assert bc.LENGTH * math.log2(len(bc.ALPHABET)) >= 64


def test_backup_codes_need_an_enabled_authenticator(svc):
    with pytest.raises(mfa_core.NotEnabled):
        svc.create_backup_codes("alice")


@pytest.mark.parametrize("spell", [str.upper, lambda c: c.replace("-", ""),
                                   lambda c: c.replace("-", " "), lambda c: f"  {c.upper()}\t"])
def test_backup_code_is_accepted_in_any_spelling(svc, clock, spell):
    enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    assert svc.attempt_second_factor("alice", spell(codes[0]), "backup_code").backup_codes_remaining == 9


def test_every_backup_code_works_once_then_none_are_left(svc, clock):
    enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    for n, code in enumerate(codes, 1):
        assert svc.attempt_second_factor("alice", code, "backup_code").backup_codes_remaining == 10 - n
    status = svc.status("alice")
    assert status.backup_codes_remaining == 0 and status.backup_code_enabled
    with pytest.raises(mfa_core.NoBackupCodes):
        svc.attempt_second_factor("alice", codes[0], "backup_code")


def test_disable_removes_the_backup_codes(svc, clock):
    enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    svc.disable_totp("alice")
    enable_totp(svc, clock, "alice")
    assert svc.status("alice").backup_codes_remaining == 0
    with pytest.raises(mfa_core.NoBackupCodes):
        svc.attempt_second_factor("alice", codes[0], "backup_code")


def test_disable_without_totp_is_not_enabled(svc):
    with pytest.raises(mfa_core.NotEnabled):
        svc.disable_totp("alice")


def test_mfa_changes_bump_the_session_epoch(svc, clock):
    start = svc.status("alice").mfa_epoch
    enable_totp(svc, clock, "alice")
    enabled = svc.status("alice").mfa_epoch
    svc.disable_totp("alice")
    disabled = svc.status("alice").mfa_epoch
    assert start < enabled < disabled


def test_users_do_not_see_each_other(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    assert not svc.status("bob").totp_enabled
    assert svc.status("bob").backup_codes_remaining == 0


def test_revoked_token_is_remembered_for_that_user(svc, clock):
    svc.revoke_token("alice", "fp-1", clock() + 60)
    assert svc.is_token_revoked("alice", "fp-1")
    assert not svc.is_token_revoked("alice", "fp-2")
    assert not svc.is_token_revoked("bob", "fp-1")


def test_a_code_confirms_only_the_enrollment_its_caller_showed(svc, clock):
    shown = svc.create_totp("alice")
    clock.advance(1)
    replacement = svc.create_totp("alice")  # another window's Reset
    with pytest.raises(mfa_core.NoPendingEnrollment, match="restarted elsewhere"):
        svc.verify_totp("alice", code_for(shown.secret, clock()), enrollment=shown.created_at)
    assert not svc.status("alice").totp_enabled
    svc.verify_totp("alice", code_for(replacement.secret, clock()), enrollment=replacement.created_at)
    assert svc.status("alice").totp_enabled
