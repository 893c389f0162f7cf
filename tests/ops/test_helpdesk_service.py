"""The engine's helpdesk operations: the status list, reset and unlock as the helpdesk uses them."""

from __future__ import annotations

import pytest

import mfa_core

from .conftest import code_for, enable_totp, snapshot


def test_statuses_lists_many_users_in_the_order_given(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    svc.create_totp("bob")
    listed = svc.statuses(["bob", "carol", "alice"])
    assert [s.username for s in listed] == ["bob", "carol", "alice"]
    bob, carol, alice = listed
    assert bob.pending_enrollment and not bob.totp_enabled and bob.last_activity == clock()
    assert carol == mfa_core.MFAStatus(username="carol")  # no record: nothing enabled
    assert alice.totp_enabled and alice.backup_codes_remaining == 10
    assert listed == [svc.status(u) for u in ("bob", "carol", "alice")]


def test_statuses_shows_lockout_and_wait(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    wrong = "000000" if code_for(secret, clock()) != "000000" else "111111"
    for _ in range(svc.policy.free_failures):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("alice", wrong)
    [waiting] = svc.statuses(["alice"])
    assert waiting.failed_attempts == svc.policy.free_failures and waiting.retry_after > 0
    assert not waiting.locked


def test_statuses_accepts_a_generator_and_an_empty_list(svc):
    assert svc.statuses([]) == []
    assert [s.username for s in svc.statuses(u for u in ("x", "y"))] == ["x", "y"]


@pytest.mark.parametrize("bad, error", [(["alice", ""], ValueError), (["alice", 7], TypeError),
                                         (["a:b"], ValueError)])
def test_statuses_refuses_a_bad_name_before_reading_anything(svc, clock, data_dir, bad, error):
    enable_totp(svc, clock, "alice")
    before = snapshot(data_dir)
    with pytest.raises(error):
        svc.statuses(bad)
    assert snapshot(data_dir) == before


def test_reset_and_unlock_record_the_admin_as_actor_with_the_reason(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.unlock("alice", actor="admin", reason="called from her desk phone")
    svc.reset_mfa("alice", actor="admin", reason="lost phone")
    events = [(e.event, e.actor, e.detail) for e in svc.audit("alice")][-2:]
    assert events == [("lockout_cleared", "admin", "called from her desk phone"),
                      ("helpdesk_reset", "admin", "lost phone")]


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "line\nbreak"])
def test_reset_without_a_usable_reason_changes_nothing(svc, clock, data_dir, reason):
    enable_totp(svc, clock, "alice")
    before = snapshot(data_dir)
    with pytest.raises(ValueError):
        svc.reset_mfa("alice", actor="admin", reason=reason)
    assert snapshot(data_dir) == before
    assert svc.status("alice").totp_enabled
