"""Temporary access passes (issue 24): the helpdesk's answer to a lost phone.

Every test runs on every backend (the ``svc``/``open_svc`` fixtures); the
lifetime runs on the injected clock, never the machine's.
"""

from __future__ import annotations

import re

import pytest

import mfa_core
from mfa_core import temp_pass
from mfa_core.throttle import ThrottlePolicy

from ..support import write_users
from .conftest import code_for, enable_totp
from .test_concurrency import in_threads, outcome
from .test_damaged_records import write_record

PASS = "temporary_pass"
SHAPE = re.compile(r"^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$")


@pytest.fixture
def users(data_dir):
    write_users(data_dir, {"alice": "alice-pass-1", "bob": "bob-pass-1"})


def issue(svc, name="alice", **kw):
    options = {"valid_for": 3600, "actor": "admin", "reason": "lost phone, ticket 42", **kw}
    return svc.issue_temporary_pass(name, **options)


def test_the_pass_is_80_bits_readable_and_stored_only_as_an_hmac(svc, clock, backend, data_dir):
    enable_totp(svc, clock, "alice")
    shown = issue(svc)
    assert SHAPE.fullmatch(shown)
    assert not set("ilou") & set(shown)
    raw = svc.store.read("alice")
    stored = raw["temp_pass"]
    assert shown not in repr(raw) and shown.replace("-", "") not in repr(raw)
    assert set(stored) == {"salt", "hash", "issued_at", "expires_at", "uses", "actor"}
    assert not any(shown in repr(e) for e in svc.audit("alice"))
    # Typed back in any case, with spaces: accepted.
    typed = shown.upper().replace("-", " ")
    result = svc.attempt_second_factor("alice", typed, strategy=PASS)
    assert result.pass_expires_at == clock() + 3600


def test_status_says_whether_a_pass_is_active_and_until_when(svc, clock):
    assert not svc.status("alice").temporary_pass_active
    issue(svc, valid_for=1800, uses=3)
    status = svc.status("alice")
    assert status.temporary_pass_active and status.temporary_pass_until == clock() + 1800
    assert status.temporary_pass_uses == 3
    assert "hash" not in repr(status) and "salt" not in repr(status)


def test_the_lifetime_runs_on_the_engines_clock(svc, clock):
    shown = issue(svc, valid_for=600)
    clock.advance(599)
    assert svc.status("alice").temporary_pass_active
    clock.advance(1)
    assert not svc.status("alice").temporary_pass_active
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy=PASS)
    assert [e.event for e in svc.audit("alice")].count("temporary_pass_expired") == 1
    assert "temp_pass" not in svc.store.read("alice")


@pytest.mark.parametrize("valid_for", [599, 0, -1, 8 * 3600 + 1])
def test_the_lifetime_is_from_ten_minutes_to_the_operators_maximum(svc, valid_for):
    with pytest.raises(ValueError):
        issue(svc, valid_for=valid_for)


def test_the_operator_sets_the_maximum(open_svc, clock):
    svc = open_svc(environ={"MFA_PORTAL_PASS_MAX_VALID": "1h"})
    with pytest.raises(ValueError):
        issue(svc, valid_for=3601)
    issue(svc, valid_for=3600)
    with pytest.raises(ValueError):
        open_svc(environ={"MFA_PORTAL_PASS_MAX_VALID": "soon"})
    with pytest.raises(ValueError):
        open_svc(environ={"MFA_PORTAL_PASS_MAX_VALID": "60s"})


@pytest.mark.parametrize("bad", [{"uses": 0}, {"uses": 21}, {"reason": " "}, {"actor": "alice"}])
def test_bad_arguments_are_refused(svc, bad):
    with pytest.raises(ValueError):
        issue(svc, **bad)
    with pytest.raises(TypeError):
        issue(svc, valid_for="1h")
    with pytest.raises(TypeError):
        issue(svc, uses=True)
    assert not svc.status("alice").temporary_pass_active


def test_single_use_by_default(svc, clock):
    shown = issue(svc)
    svc.attempt_second_factor("alice", shown, strategy=PASS)
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy=PASS)
    assert not svc.status("alice").temporary_pass_active
    events = [e.event for e in svc.audit("alice")]
    assert events.count("temporary_pass_used") == 1 and "temporary_pass_issued" in events


def test_several_uses_within_its_lifetime(svc, clock):
    shown = issue(svc, uses=3, valid_for=3600)
    for left in (2, 1):
        svc.attempt_second_factor("alice", shown, strategy=PASS)
        assert svc.status("alice").temporary_pass_uses == left
        clock.advance(60)
    svc.attempt_second_factor("alice", shown, strategy=PASS)
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy=PASS)
    second = issue(svc, uses=5, valid_for=600)
    svc.attempt_second_factor("alice", second, strategy=PASS)
    clock.advance(600)
    with pytest.raises(mfa_core.InvalidCode):  # uses left, but its lifetime is over
        svc.attempt_second_factor("alice", second, strategy=PASS)


def test_a_new_pass_replaces_the_old_one(svc):
    first = issue(svc)
    second = issue(svc)
    assert first != second
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", first, strategy=PASS)
    svc.attempt_second_factor("alice", second, strategy=PASS)
    [issued] = [e for e in svc.audit("alice") if e.event == "temporary_pass_issued"][-1:]
    assert "replaces the previous pass" in issued.detail and issued.actor == "admin"


def test_revoke(svc):
    shown = issue(svc)
    status = svc.revoke_temporary_pass("alice", actor="admin", reason="found her phone")
    assert not status.temporary_pass_active
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy=PASS)
    with pytest.raises(mfa_core.NotEnabled):
        svc.revoke_temporary_pass("alice", actor="admin", reason="again")
    [revoked] = [e for e in svc.audit("alice") if e.event == "temporary_pass_revoked"]
    assert revoked.actor == "admin" and "found her phone" in revoked.detail


def test_wrong_passes_count_in_the_portals_throttle_like_wrong_codes(open_svc, clock):
    svc = open_svc(policy=ThrottlePolicy(free_failures=3, lockout_after=10))
    shown = issue(svc, valid_for=8 * 3600)
    for _ in range(3):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("alice", "aaaa-bbbb-cccc-dddd", strategy=PASS)
    assert svc.status("alice").failed_attempts == 3
    with pytest.raises(mfa_core.TooManyAttempts):
        svc.attempt_second_factor("alice", "aaaa-bbbb-cccc-dddd", strategy=PASS)
    with pytest.raises(mfa_core.TooManyAttempts):  # the right pass waits too
        svc.attempt_second_factor("alice", shown, strategy=PASS)
    clock.advance(1800)
    svc.attempt_second_factor("alice", shown, strategy=PASS)
    assert svc.status("alice").failed_attempts == 0


def test_a_user_without_a_pass_is_refused_and_counted(svc):
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("bob", "aaaa-bbbb-cccc-dddd", strategy=PASS)
    assert svc.status("bob").failed_attempts == 1
    with pytest.raises(mfa_core.InvalidCodeFormat):
        svc.attempt_second_factor("bob", "  ", strategy=PASS)


@pytest.mark.parametrize("actor", ["api/hr-system", "radius/vpn"])
def test_never_accepted_for_a_calling_service(svc, actor):
    shown = issue(svc, uses=2)
    with pytest.raises(mfa_core.InvalidCode) as refused:
        svc.attempt_second_factor("alice", shown, strategy=PASS, actor=actor, diagnose=False)
    with pytest.raises(mfa_core.InvalidCode) as wrong:
        svc.attempt_second_factor("alice", "aaaa-bbbb-cccc-dddd", strategy=PASS)
    assert str(refused.value) == str(wrong.value)
    assert svc.status("alice").temporary_pass_uses == 2  # not spent
    # Nor as a backup code or a code through the services' strategies.
    with pytest.raises(mfa_core.MFAError):
        svc.attempt_second_factor("alice", shown, strategy="backup_code", actor=actor)


def test_the_services_refuse_the_strategy_outright(svc):
    from mfa_services import api, engine
    shown = issue(svc)
    with pytest.raises(api.BadRequest):
        api.parse_body(b'{"username": "alice", "code": "x", "strategy": "temporary_pass"}')
    found = engine.check_second_factor(svc, "alice", shown, actor="radius/vpn", source=None,
                                       strategy=PASS)
    assert not found.ok
    assert svc.status("alice").temporary_pass_active


def test_twenty_sign_ins_racing_with_one_single_use_pass_one_passes(open_svc, clock):
    lenient = ThrottlePolicy(free_failures=25, lockout_after=100)
    svc = open_svc(policy=lenient)
    shown = issue(svc)
    services = [open_svc(policy=lenient) for _ in range(20)]
    results = in_threads(lambda i: outcome(
        lambda: services[i].attempt_second_factor("alice", shown, strategy=PASS)), 20)
    assert results.count("ok") == 1, results
    assert set(results) == {"ok", "InvalidCode"}


def test_a_pass_issued_by_one_instance_works_on_another(open_svc):
    shown = issue(open_svc())
    open_svc().attempt_second_factor("alice", shown, strategy=PASS)


def test_without_a_factor_the_password_alone_does_not_complete_sign_in(svc, users, clock):
    assert not svc.attempt_password("alice", "alice-pass-1").two_factor_enabled
    shown = issue(svc)
    found = svc.attempt_password("alice", "alice-pass-1")
    assert found.two_factor_enabled and not found.second_factor_passed
    token = svc.sessions.start("alice", second_factor_passed=False)
    assert not svc.sessions.pass_without_second_factor(token)
    result = svc.attempt_second_factor("alice", shown, strategy=PASS)
    session = svc.sessions.update(token, second_factor_passed=True, verified_at=clock(),
                                  via=PASS, ends_at=result.pass_expires_at)
    assert session.restricted and session.ends_at == clock() + 3600
    # Once used up, the password alone is as before (no factor, no pass).
    assert not svc.attempt_password("alice", "alice-pass-1").two_factor_enabled


def test_a_pass_session_ends_with_the_pass_and_adding_a_factor_lifts_the_restriction(svc, clock):
    shown = issue(svc, valid_for=900)
    token = svc.sessions.start("alice", second_factor_passed=False)
    result = svc.attempt_second_factor("alice", shown, strategy=PASS)
    svc.sessions.update(token, second_factor_passed=True, via=PASS, ends_at=result.pass_expires_at)
    assert svc.sessions.find(token).restricted
    resource = svc.create_totp("alice")
    svc.verify_totp("alice", code_for(resource.secret, clock()), keep_session=token)
    assert not svc.sessions.find(token).restricted
    other = svc.sessions.start("alice", second_factor_passed=False)
    svc.attempt_second_factor("alice", issue(svc, valid_for=900), strategy=PASS)
    svc.sessions.update(other, second_factor_passed=True, via=PASS, ends_at=clock() + 900)
    clock.advance(600)
    assert svc.sessions.find(other) is not None
    clock.advance(300)
    assert svc.sessions.find(other) is None


def test_revoking_ends_the_sessions_the_pass_opened(svc, clock):
    shown = issue(svc, uses=2)
    token = svc.sessions.start("alice", second_factor_passed=False)
    svc.attempt_second_factor("alice", shown, strategy=PASS)
    svc.sessions.update(token, second_factor_passed=True, via=PASS, ends_at=clock() + 3600)
    svc.revoke_temporary_pass("alice", actor="admin", reason="caller was not alice")
    assert svc.sessions.find(token) is None


def test_the_user_is_mailed_when_a_pass_is_issued(open_svc):
    sent = []
    svc = open_svc(notifier=sent.append)
    issue(svc)
    assert [e.event for e in sent] == ["temporary_pass_issued"]


def test_a_damaged_record_fails_closed(svc, backend, data_dir, clock):
    shown = issue(svc)
    raw = svc.store.read("alice")
    raw["temp_pass"]["uses"] = "many"
    write_record(svc, backend, data_dir, "alice", raw)
    with pytest.raises(mfa_core.RecordDamaged):
        svc.attempt_second_factor("alice", shown, strategy=PASS)
    with pytest.raises(mfa_core.RecordDamaged):
        issue(svc)
    with pytest.raises(mfa_core.RecordDamaged):
        svc.status("alice")


def test_the_mail_tells_the_user_to_report_a_pass_they_did_not_ask_for(open_svc):
    from mfa_core import notify
    sent = []
    svc = open_svc(notifier=sent.append)
    shown = issue(svc)
    [event] = sent
    assert event.event in notify.MailNotifier.EVENTS
    subject, body = notify._compose(event, "Alice", "MFA Portal")
    assert "temporary pass" in subject
    assert "If you did not ask the helpdesk for this, tell IT security" in body
    assert "lost phone, ticket 42" in body and shown not in body


def test_a_pass_session_cannot_remove_authenticators_in_the_engine_either(svc, clock):
    enable_totp(svc, clock, "alice")
    shown = issue(svc)
    token = svc.sessions.start("alice", second_factor_passed=False)
    result = svc.attempt_second_factor("alice", shown, strategy=PASS)
    svc.sessions.update(token, second_factor_passed=True, via=PASS, ends_at=result.pass_expires_at)
    [app] = svc.status("alice").authenticators
    with pytest.raises(mfa_core.NotEnabled):
        svc.remove_authenticator("alice", app.id, keep_session=token)
    with pytest.raises(mfa_core.NotEnabled):
        svc.disable_totp("alice", keep_session=token)
    assert svc.status("alice").totp_enabled
    # A later reverification does not lift the restriction; only adding a factor does.
    svc.sessions.update(token, second_factor_passed=True, verified_at=clock())
    assert svc.sessions.find(token).restricted
