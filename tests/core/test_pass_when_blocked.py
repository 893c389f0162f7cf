"""Issue 24 x issue 20 (F8): a password blocked from new places is checked with the helpdesk's
temporary pass beside it, at the portal only, with a pass sign-in's restrictions.

The lost-phone case: the helpdesk issued a pass, and someone guessing at the password has
blocked it from new places. The pass must open the portal there too, exactly as it does on the
challenge screen: once, for its lifetime, counted like a code when wrong.
"""

from __future__ import annotations

import pytest

import mfa_core

from ..support import enable_totp, write_users
from .test_throttle_issue20 import PASSWORDS, spray

PASS = "temporary_pass"
NEW_PLACE = "192.0.2.77"
WRONG_BOTH = "Username, password or code is incorrect."


@pytest.fixture
def users(data_dir):
    write_users(data_dir, PASSWORDS)


def issue(svc, name="alice", **kw):
    options = {"valid_for": 3600, "actor": "admin", "reason": "lost phone, ticket 42", **kw}
    return svc.issue_temporary_pass(name, **options)


def with_pass(svc, shown, password="alice-pass-1", user="alice"):
    return svc.attempt_password(user, password, source=NEW_PLACE, code=shown, strategy=PASS)


def test_a_lost_phone_and_a_blocked_password_sign_in_with_the_pass(svc, users, clock):
    enable_totp(svc, clock, "alice")  # the phone that is lost
    shown = issue(svc)
    spray(svc, "alice")
    with pytest.raises(mfa_core.PasswordBlocked) as err:
        svc.attempt_password("alice", "alice-pass-1", source=NEW_PLACE)
    assert err.value.second_factor
    result = with_pass(svc, shown)
    assert result.second_factor_passed and result.pass_expires_at == clock() + 3600
    events = [e.event for e in svc.audit("alice")]
    assert "temporary_pass_used" in events and events[-1] != "second_factor_failed"
    # Single use: the same pass again is one wrong answer for both.
    with pytest.raises(mfa_core.InvalidCode) as again:
        with_pass(svc, shown)
    assert str(again.value) == WRONG_BOTH


def test_a_user_whose_lost_phone_the_helpdesk_removed_is_offered_the_pass(svc, users, clock):
    enable_totp(svc, clock, "bob")
    svc.reset_mfa("bob", actor="admin", reason="lost phone, ticket 43")
    shown = issue(svc, "bob")
    spray(svc, "bob")
    with pytest.raises(mfa_core.PasswordBlocked) as err:
        svc.attempt_password("bob", "bob-pass-1", source=NEW_PLACE)
    assert err.value.second_factor  # the pass is the second factor ahead: the form asks for it
    result = with_pass(svc, shown, "bob-pass-1", "bob")
    assert result.second_factor_passed and result.pass_expires_at == clock() + 3600
    assert result.two_factor_enabled


def test_a_wrong_pass_or_password_gives_one_answer_and_counts_like_a_wrong_code(svc, users, clock):
    enable_totp(svc, clock, "alice")
    shown = issue(svc)
    spray(svc, "alice")
    answers = []
    for password, typed in (("guess-y", shown), ("alice-pass-1", "kq7m-3xzp-w9df-4hnr")):
        with pytest.raises(mfa_core.InvalidCode) as err:
            with_pass(svc, typed, password)
        answers.append((type(err.value), str(err.value)))
    assert answers[0] == answers[1] and answers[0][1] == WRONG_BOTH
    assert svc.status("alice").failed_attempts == 1  # the wrong pass, on the portal's throttle
    assert svc.status("alice").temporary_pass_active  # a wrong password never spends the pass
    assert with_pass(svc, shown).second_factor_passed


def test_an_expired_pass_does_not_open_the_blocked_password(svc, users, clock):
    enable_totp(svc, clock, "alice")
    shown = issue(svc, valid_for=600)
    spray(svc, "alice")
    clock.advance(600)
    with pytest.raises(mfa_core.InvalidCode):
        with_pass(svc, shown)


def test_no_pass_at_all_is_a_wrong_answer_not_a_hint(svc, users, clock):
    enable_totp(svc, clock, "alice")
    spray(svc, "alice")
    with pytest.raises(mfa_core.InvalidCode) as err:
        with_pass(svc, "kq7m-3xzp-w9df-4hnr")
    assert str(err.value) == WRONG_BOTH


def test_the_pass_beside_the_password_works_from_a_familiar_place_too(svc, users, clock):
    enable_totp(svc, clock, "alice")
    shown = issue(svc)
    result = with_pass(svc, shown)  # not blocked: the pass still counts as the second factor
    assert result.second_factor_passed and result.pass_expires_at is not None


def test_the_calling_services_never_name_a_pass():
    from mfa_services import engine
    # What the API, RADIUS and PAM may name; their password check sends no code at all.
    assert PASS not in mfa_core.service.STRATEGIES and PASS not in engine.SERVICE_STRATEGIES
