"""Throttling: counted per user in the store, growing waits, a hard stop, helpdesk unlock."""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core import ThrottlePolicy

from .conftest import code_for, enable_totp

POLICY = ThrottlePolicy()


def wrong_code(secret: str, now: float) -> str:
    near = {code_for(secret, now + 30 * k) for k in range(-25, 26)}
    return next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in near)


def fail(svc, clock, username, secret):
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor(username, wrong_code(secret, clock()))


def fail_until_locked(svc, clock, username, secret):
    for _ in range(POLICY.lockout_after):
        clock.advance(svc.retry_after(username))
        fail(svc, clock, username, secret)


def test_policy_stays_within_the_rules():
    assert 10 <= POLICY.lockout_after <= 100
    with pytest.raises(ValueError):
        ThrottlePolicy(lockout_after=101)
    with pytest.raises(ValueError):
        ThrottlePolicy(lockout_after=9)


def test_first_failures_are_free(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(POLICY.free_failures - 1):
        fail(svc, clock, "alice", secret)
    assert svc.status("alice").retry_after == 0
    assert svc.status("alice").failed_attempts == POLICY.free_failures - 1


def test_then_attempts_must_wait_and_the_error_says_how_long(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(POLICY.free_failures):
        fail(svc, clock, "alice", secret)
    with pytest.raises(mfa_core.TooManyAttempts) as err:
        svc.attempt_second_factor("alice", code_for(secret, clock()))
    assert err.value.retry_after > 0
    assert isinstance(err.value.retry_after, int)
    assert f"{err.value.retry_after} second" in str(err.value)
    assert svc.status("alice").retry_after == err.value.retry_after


def test_a_throttled_attempt_with_the_right_code_is_still_refused_and_not_counted(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(POLICY.free_failures):
        fail(svc, clock, "alice", secret)
    with pytest.raises(mfa_core.TooManyAttempts):
        svc.attempt_second_factor("alice", code_for(secret, clock()))
    assert svc.status("alice").failed_attempts == POLICY.free_failures


def test_waits_grow_with_each_failure(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    waits = []
    for _ in range(POLICY.free_failures + 3):
        clock.advance(svc.retry_after("alice"))
        fail(svc, clock, "alice", secret)
        waits.append(svc.retry_after("alice"))
    grown = waits[POLICY.free_failures - 1:]
    assert all(w > 0 for w in grown)
    assert grown == sorted(grown) and grown[-1] > grown[0]


def test_the_wait_elapses(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(POLICY.free_failures):
        fail(svc, clock, "alice", secret)
    clock.advance(svc.retry_after("alice"))
    assert svc.retry_after("alice") == 0
    assert svc.attempt_second_factor("alice", code_for(secret, clock())).strategy == "totp"


def test_success_clears_the_count(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(POLICY.free_failures - 1):
        fail(svc, clock, "alice", secret)
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    assert svc.status("alice").failed_attempts == 0
    clock.advance(30)
    for _ in range(POLICY.free_failures - 1):
        fail(svc, clock, "alice", secret)
    assert svc.status("alice").retry_after == 0


def test_wrong_backup_codes_count_too(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    for _ in range(POLICY.free_failures):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("alice", "zzzz-zzzz-zzzz-zzzz", "backup_code")
    assert svc.status("alice").retry_after > 0


def test_wrong_codes_at_enrollment_count_too(svc, clock):
    secret = svc.create_totp("alice").secret
    for _ in range(POLICY.free_failures):
        with pytest.raises(mfa_core.InvalidCode):
            svc.verify_totp("alice", wrong_code(secret, clock()))
    with pytest.raises(mfa_core.TooManyAttempts):
        svc.verify_totp("alice", code_for(secret, clock()))


def test_malformed_codes_do_not_count(svc, clock):
    enable_totp(svc, clock, "alice")
    for _ in range(POLICY.lockout_after + 1):
        with pytest.raises(mfa_core.InvalidCodeFormat):
            svc.attempt_second_factor("alice", "12345")
    assert svc.status("alice").failed_attempts == 0


def test_lockout_after_consecutive_failures(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    fail_until_locked(svc, clock, "alice", secret)
    assert svc.status("alice").locked
    clock.advance(10 * 86400)  # time alone never lifts a lockout
    with pytest.raises(mfa_core.AccountLocked, match="helpdesk"):
        svc.attempt_second_factor("alice", code_for(secret, clock()))
    with pytest.raises(mfa_core.AccountLocked):
        svc.retry_after("alice")


def test_no_lockout_before_the_policy_says(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(POLICY.lockout_after - 1):
        clock.advance(svc.retry_after("alice"))
        fail(svc, clock, "alice", secret)
    assert not svc.status("alice").locked
    clock.advance(svc.retry_after("alice"))
    svc.attempt_second_factor("alice", code_for(secret, clock()))


def test_account_locked_is_a_too_many_attempts():
    assert issubclass(mfa_core.AccountLocked, mfa_core.TooManyAttempts)


def test_helpdesk_unlock_clears_the_lockout(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    fail_until_locked(svc, clock, "alice", secret)
    status = svc.unlock("alice", actor="admin", reason="called from the office, ID checked")
    assert not status.locked and status.failed_attempts == 0 and status.totp_enabled
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    event = [e for e in svc.audit("alice") if e.event == "lockout_cleared"][-1]
    assert (event.actor, event.detail) == ("admin", "called from the office, ID checked")


def test_helpdesk_reset_clears_the_lockout_and_the_authenticator(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    fail_until_locked(svc, clock, "alice", secret)
    status = svc.reset_mfa("alice", actor="admin", reason="lost phone")
    assert not status.locked and not status.totp_enabled
    assert status.backup_codes_remaining == 0
    event = [e for e in svc.audit("alice") if e.event == "helpdesk_reset"][-1]
    assert (event.actor, event.detail) == ("admin", "lost phone")


@pytest.mark.parametrize("reason", ["", "   "])
def test_helpdesk_actions_need_a_reason(svc, clock, reason):
    with pytest.raises(ValueError):
        svc.reset_mfa("alice", actor="admin", reason=reason)
    with pytest.raises(ValueError):
        svc.unlock("alice", actor="admin", reason=reason)


def test_two_instances_share_the_count(open_svc, clock):
    first, second = open_svc(), open_svc()
    secret = enable_totp(first, clock, "alice")
    for n in range(POLICY.free_failures):
        fail(first if n % 2 else second, clock, "alice", secret)
    with pytest.raises(mfa_core.TooManyAttempts):
        second.attempt_second_factor("alice", code_for(secret, clock()))
    assert first.status("alice").failed_attempts == POLICY.free_failures


def test_password_failures_are_not_second_factor_failures(svc, clock):
    """The password has its own throttle (tests/core/test_passwords.py): wrong passwords
    never slow down or lock the second factor."""
    secret = enable_totp(svc, clock, "alice")
    svc.directory.add("alice", "alice-pass-1")
    for n in range(POLICY.lockout_after):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=f"198.51.100.{n}")
    assert svc.status("alice").failed_attempts == 0
    svc.attempt_second_factor("alice", code_for(secret, clock()))


def test_custom_policy_is_honoured(data_dir, clock):
    svc = mfa_core.open_service(data_dir, clock=clock, environ={},
                                policy=ThrottlePolicy(free_failures=2, base_delay=7, lockout_after=10))
    enable_totp(svc, clock, "bob")
    for _ in range(2):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("bob", "000000")
    assert svc.retry_after("bob") == 7
