"""Issue 20: what a session from before a change, or an ended one, still gets (nothing)."""

from __future__ import annotations

import pytest

import portal.session
from mfa_core.users import UserDirectory
from portal import backup_view, enrollment, helpdesk, manage, passkey_view, sessions_view

from ..webauthn_authenticator import PAGE, SoftAuthenticator
from .conftest import (app, click, code, enroll, labels, run, sign_in, signed_in, texts,
                       type_into)

MANAGE = "pages/1_Manage_MFA.py"
ADD = "pages/2_Add_TOTP.py"
HOME = "streamlit_app.py"


def titles(at) -> list[str]:
    return [t.value for t in at.title]


def challenged(at) -> bool:
    return titles(at) == ["Two-step verification"] and "User MFA Settings" not in texts(at)


def enroll_on_the_page(svc, clock, username: str):
    """The owner, signed in with the password (no second factor yet), adds an app on the pages."""
    at = click(signed_in(username, page=MANAGE), "Add")
    at.switch_page(ADD)
    at = click(run(at), "Verify")
    type_into(at, "Enter the code from your authentication app",
              code(svc.pending_totp(username).secret, clock))
    at = click(at, "Verify code")
    assert svc.status(username).totp_enabled
    clock.advance(30)
    return at


def assert_the_old_cookie_must_pass_the_second_factor(svc, cookie, stolen: str) -> None:
    cookie(stolen)  # the browser that signed in before kept its cookie: a reload, a new tab
    for page in (HOME, MANAGE):
        assert challenged(app(page)), texts(app(page))
    found = svc.sessions.find(stolen)
    assert found is not None and not found.second_factor_passed and found.verified_at is None


# -- F1: a session from before enrollment never skips the new second factor --------------

def test_a_cookie_from_before_an_app_was_added_must_pass_it_on_reload_and_in_a_new_tab(
        data_dir, svc, clock, cookie):
    early = sign_in(app(), "bob")  # someone with the password, while bob has no second factor
    assert "Welcome" in texts(early)
    stolen = early.session_state[portal.session.TOKEN]
    owner = enroll_on_the_page(svc, clock, "bob")
    assert_the_old_cookie_must_pass_the_second_factor(svc, cookie, stolen)
    assert challenged(run(early))  # the tab that stayed open too
    owner = run(owner)  # the session that added the app carries on
    assert not challenged(owner) and "Two-step verification" not in titles(owner)


def test_a_cookie_from_before_a_passkey_was_added_must_pass_it(data_dir, svc, clock, cookie):
    early = sign_in(app(), "bob")
    stolen = early.session_state[portal.session.TOKEN]
    owner = signed_in("bob", page=MANAGE)
    mine = owner.session_state[portal.session.TOKEN]
    options = svc.begin_passkey_registration("bob", session=mine, origin=PAGE)
    svc.finish_passkey_registration("bob", SoftAuthenticator().create(options), session=mine)
    assert_the_old_cookie_must_pass_the_second_factor(svc, cookie, stolen)
    assert svc.sessions.find(mine).second_factor_passed


def test_after_a_helpdesk_reset_a_password_only_cookie_must_pass_the_new_app(
        data_dir, svc, clock, cookie):
    enroll(svc, clock, "alice")
    svc.reset_mfa("alice", actor="admin", reason="lost phone")
    early = sign_in(app(), "alice")  # the password-only period after the reset
    assert "Welcome" in texts(early)
    stolen = early.session_state[portal.session.TOKEN]
    enroll_on_the_page(svc, clock, "alice")
    assert_the_old_cookie_must_pass_the_second_factor(svc, cookie, stolen)


# -- F4: an ended session runs no callback -------------------------------------------------

@pytest.mark.parametrize("ended_by", ["sign out of all other sessions", "password change"])
def test_a_stale_page_of_an_ended_session_removes_nothing(data_dir, svc, clock, ended_by):
    secret, _ = enroll(svc, clock, "alice")
    stale = signed_in("alice", secret, clock, page=MANAGE)  # verified just now
    stale = click(stale, "Remove")
    assert "Yes, remove it" in labels(stale)  # the question is on its screen
    if ended_by == "password change":
        UserDirectory(data_dir).set_password("alice", "alice-new-password")
    else:
        owner = signed_in("alice", secret, clock, page=MANAGE)
        click(owner, "Sign out of all other sessions")
    stale = click(stale, "Yes, remove it")
    assert svc.status("alice").totp_enabled  # two-step stays on
    assert titles(stale) == ["MFA Portal"] and "User MFA Settings" not in texts(stale)


def test_a_stale_page_generates_no_backup_codes_after_sign_out_others(data_dir, svc, clock):
    secret, codes = enroll(svc, clock, "alice")
    stale = signed_in("alice", secret, clock, page=MANAGE)
    owner = signed_in("alice", secret, clock, page=MANAGE)
    click(owner, "Sign out of all other sessions")
    click(stale, "Generate")
    assert svc.attempt_second_factor("alice", codes[0], "backup_code")  # the old set still works


def test_every_state_changing_callback_goes_through_the_one_guard():
    callbacks = [manage.request_add, manage.request_remove, manage.confirm_remove, manage.save_rename,
                 helpdesk.request_reset, helpdesk.request_remove_one, helpdesk.confirm_remove_one,
                 helpdesk.confirm_reset, helpdesk.clear_lockout, sessions_view.sign_out_one,
                 sessions_view.sign_out_others, backup_view.request_generate, backup_view.confirm_generate,
                 enrollment.request_start, enrollment.request_reset, enrollment.go_verify,
                 enrollment.submit_code, passkey_view.request_add, passkey_view.save_new]
    guard = portal.session.guarded(lambda: None).__code__  # the one wrapper's code
    unguarded = [f.__qualname__ for f in callbacks if f.__code__ is not guard]
    assert not unguarded


# -- issue 21: the session list says what each session is -----------------------------------

def test_password_only_sessions_are_marked_and_can_be_signed_out(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    lurking = svc.sessions.start("alice", second_factor_passed=False, source="203.0.113.9")
    at = run(at)
    rows = [m.value for m in at.markdown if "signed in 20" in m.value]
    assert len(rows) == 2
    marked = [r for r in rows if sessions_view.PASSWORD_ONLY in r]
    assert len(marked) == 1 and "203\\.0\\.113\\.9" in marked[0] and "(this browser)" not in marked[0]
    [button] = [b for b in at.button if b.label == "Sign out" and b.key.startswith("manage_session_")]
    button.click()
    run(at)
    assert svc.sessions.find(lurking) is None


def test_a_loopback_connection_is_listed_as_this_computer(data_dir, svc, clock):
    from portal import config
    assert config.session_address(None, {"host": "localhost:8501"}) == config.LOCALHOST
    assert config.session_address("198.51.100.7", {"host": "portal.example"}) == "198.51.100.7"
    assert config.session_address(None, None) is None and config.session_address(None, {}) is None
    at = signed_in("bob", page=MANAGE)
    svc.sessions.start("bob", second_factor_passed=True, source=config.LOCALHOST)
    shown = texts(run(at))
    assert "this computer \\(localhost\\)" in shown, shown  # as markdown shows it literally
    assert "unknown address" in shown  # AppTest's own session has no request to tell
    assert sessions_view.PASSWORD_ONLY not in shown


@pytest.mark.parametrize("ended_by", ["sign out of all other sessions", "password change"])
def test_a_stale_helpdesk_page_of_an_ended_session_resets_nothing(data_dir, svc, clock, ended_by):
    secret, _ = enroll(svc, clock, "alice")
    admin_secret, _ = enroll(svc, clock, "admin")
    stale = signed_in("admin", admin_secret, clock, page="pages/3_Helpdesk.py")
    stale.selectbox(key="helpdesk_user").select("alice")
    stale = run(stale)
    type_into(stale, "Reason", "phone lost")
    stale = click(stale, "Reset MFA")
    assert "Yes, reset MFA" in labels(stale)  # the question is on the admin's screen
    if ended_by == "password change":
        UserDirectory(data_dir).set_password("admin", "admin-new-password")
    else:
        other = signed_in("admin", admin_secret, clock, page=MANAGE)
        click(other, "Sign out of all other sessions")
    stale = click(stale, "Yes, reset MFA")
    assert svc.status("alice").totp_enabled  # alice keeps her app
    assert "helpdesk_reset" not in [e.event for e in svc.audit("alice")]
    assert titles(stale) == ["MFA Portal"]


def test_a_session_not_past_the_second_factor_of_a_user_without_one_is_let_in_and_may_act(
        data_dir, svc, clock, cookie):
    from .conftest import make_cookie
    token = make_cookie("bob", passed=False, verified_at=clock())
    cookie(token)
    at = app(MANAGE)
    assert "User MFA Settings" in texts(at)
    assert svc.sessions.find(token).second_factor_passed  # the store agrees: callbacks may act
    at = click(at, "Add")
    assert at.session_state[enrollment.STEP] == "add"
