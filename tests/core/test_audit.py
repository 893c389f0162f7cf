"""The audit trail: every MFA event with time, user, actor and outcome; queryable; never a code."""

from __future__ import annotations

import pytest

import mfa_core

from .conftest import code_for, enable_totp


def events(svc, username=None, **kw) -> list[tuple[str, str, str | None]]:
    return [(e.event, e.outcome, e.actor) for e in svc.audit(username, **kw)]


def test_every_event_has_time_user_actor_and_outcome(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", "zzzz-zzzz-zzzz-zzzz", "backup_code")
    trail = svc.audit("alice")
    assert [e.event for e in trail] == ["totp_enrollment_started", "totp_enabled",
                                        "backup_codes_generated", "second_factor_failed"]
    for event in trail:
        assert isinstance(event.time, float) and event.time > 0
        assert event.user == "alice" and event.actor
        assert event.outcome in {"success", "failure", "refused"}
        assert event.label


def test_enrollment_and_verification_are_recorded(svc, clock):
    secret = svc.create_totp("alice").secret
    svc.verify_totp("alice", code_for(secret, clock()))
    assert events(svc, "alice") == [("totp_enrollment_started", "success", "alice"),
                                    ("totp_enabled", "success", "alice")]


def test_failures_and_replays_are_recorded_with_their_reason(svc, clock):
    secret = svc.create_totp("alice").secret
    with pytest.raises(mfa_core.ClockDrift):
        svc.verify_totp("alice", code_for(secret, clock() + 300))
    code = code_for(secret, clock())
    svc.verify_totp("alice", code)
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", code)
    trail = svc.audit("alice")
    drift = [e for e in trail if e.event == "totp_enrollment_failed"]
    assert drift and drift[0].outcome == "failure" and "300 s" in drift[0].detail
    replay = [e for e in trail if e.event == "second_factor_failed"]
    assert replay and "already used" in replay[0].detail


def test_sign_in_success_and_failure_are_recorded(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", "000000" if code_for(secret, clock()) != "000000" else "111111")
    assert ("second_factor_passed", "success", "alice") in events(svc, "alice")
    assert ("second_factor_failed", "failure", "alice") in events(svc, "alice")


def test_backup_codes_generated_and_used_are_recorded(svc, clock):
    enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    svc.attempt_second_factor("alice", codes[0], "backup_code")
    trail = events(svc, "alice")
    assert ("backup_codes_generated", "success", "alice") in trail
    assert ("backup_code_used", "success", "alice") in trail


def test_disable_is_recorded(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.disable_totp("alice")
    assert events(svc, "alice")[-1] == ("totp_removed", "success", "alice")


def test_helpdesk_reset_records_the_admin_and_the_reason(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.reset_mfa("alice", actor="admin", reason="lost phone, ticket 42")
    last = svc.audit("alice")[-1]
    assert (last.event, last.user, last.actor, last.detail) == (
        "helpdesk_reset", "alice", "admin", "lost phone, ticket 42")


def test_lockout_and_throttled_attempts_are_recorded(svc, clock):
    policy = mfa_core.ThrottlePolicy()
    secret = enable_totp(svc, clock, "alice")
    for _ in range(policy.lockout_after):
        clock.advance(policy.max_delay)
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("alice", "000000")
    with pytest.raises(mfa_core.AccountLocked):
        svc.attempt_second_factor("alice", code_for(secret, clock()))
    trail = events(svc, "alice")
    assert ("lockout", "failure", "alice") in trail
    assert ("throttled", "refused", "alice") in trail
    assert trail.count(("second_factor_failed", "failure", "alice")) == policy.lockout_after


def test_audit_is_queryable_per_user(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_totp("bob")
    assert {e.user for e in svc.audit("alice")} == {"alice"}
    assert {e.user for e in svc.audit("bob")} == {"bob"}
    assert {e.user for e in svc.audit()} == {"alice", "bob"}


def test_audit_is_queryable_by_time(svc, clock):
    start = clock()
    svc.create_totp("alice")
    clock.advance(2 * 86400)  # across a day boundary
    middle = clock()
    svc.create_totp("alice")
    clock.advance(3600)
    svc.create_totp("alice")
    assert [e.time for e in svc.audit("alice")] == [start, middle, middle + 3600]
    assert [e.time for e in svc.audit("alice", since=middle)] == [middle, middle + 3600]
    assert [e.time for e in svc.audit("alice", until=middle)] == [start]
    assert [e.time for e in svc.audit(since=start + 1, until=middle + 1)] == [middle]


def test_recent_activity_is_newest_first(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    recent = svc.recent_activity("alice", limit=2)
    assert [e.event for e in recent] == ["backup_codes_generated", "totp_enabled"]


def test_the_trail_never_contains_a_code(svc, clock):
    secret = svc.create_totp("alice").secret
    typed = [code_for(secret, clock() + 200)]
    with pytest.raises(mfa_core.ClockDrift):
        svc.verify_totp("alice", typed[0])
    typed.append(code_for(secret, clock()))
    svc.verify_totp("alice", typed[-1])
    codes = svc.create_backup_codes("alice").codes
    svc.attempt_second_factor("alice", codes[0], "backup_code")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", codes[0], "backup_code")
    # Times are left out: a 6-digit code could match digits of an epoch by chance.
    text = repr([(e.user, e.actor, e.event, e.outcome, e.detail) for e in svc.audit()])
    for needle in [secret, secret.lower(), *typed, *codes, *(c.replace("-", "") for c in codes)]:
        assert needle not in text
