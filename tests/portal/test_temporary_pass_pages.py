"""The temporary pass at the portal (issue 24, AppTest): the challenge's **Use a temporary pass**,
a session that may only add a factor, and its end with the pass."""

from __future__ import annotations

import mfa_core
from portal import session as portal_session

from .conftest import (app, click, code, enroll, errors, inputs, labels, page_links, run, sign_in,
                       texts, type_into)

MANAGE = "pages/1_Manage_MFA.py"
ADD_TOTP = "pages/2_Add_TOTP.py"
HELPDESK = "pages/3_Helpdesk.py"


def issue(svc, name="alice", **kw):
    return svc.issue_temporary_pass(name, **{"valid_for": 3600, "actor": "helen",
                                             "reason": "lost phone", **kw})


def with_pass(username: str, shown: str, *, toggle: bool = True):
    at = sign_in(app(), username)
    if toggle:
        at = click(at, "Use a temporary pass")
    assert "Temporary pass" in inputs(at)
    type_into(at, "Temporary pass", shown)
    return click(at, "Continue")


def test_the_challenge_offers_the_pass_only_when_one_is_active(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = sign_in(app(), "alice")
    assert "Use a temporary pass" not in labels(at)
    issue(svc)
    at = sign_in(app(), "alice")
    assert "Use a temporary pass" in labels(at)
    at = click(at, "Use a temporary pass")
    assert inputs(at) == ["Temporary pass"]
    assert "Use your authenticator" in labels(at)


def test_a_pass_signs_in_to_manage_mfa_only(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = with_pass("alice", issue(svc))
    assert not errors(at), errors(at)
    assert "temporary pass from the helpdesk" in texts(at)
    assert "Welcome" not in texts(at)  # Home is not for a pass's session
    at.switch_page(MANAGE)
    at = run(at)
    assert "User MFA Settings" in texts(at)
    assert "Backup codes" not in texts(at)
    assert "Add another authentication app" in labels(at)
    assert svc.sessions.find(at.session_state[portal_session.TOKEN]).restricted


def test_a_pass_cannot_remove_an_authenticator_or_make_backup_codes(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = with_pass("alice", issue(svc))
    at.switch_page(MANAGE)
    at = run(at)
    assert "Remove" not in labels(at) and "Rename" not in labels(at)
    assert "Generate" not in labels(at)
    assert svc.status("alice").totp_enabled
    assert len(svc.status("alice").authenticators) == 1


def test_adding_a_factor_is_allowed_and_then_the_lost_one_may_go(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = with_pass("alice", issue(svc))
    at.switch_page(MANAGE)
    at = run(at)
    at = click(at, "Add another authentication app")
    assert "Verify it's you" not in texts(at)  # the pass counts as the verification
    token = at.session_state[portal_session.TOKEN]
    at.switch_page(ADD_TOTP)
    at = click(run(at), "Verify")
    secret = svc.pending_totp("alice").secret
    type_into(at, "Enter the code from your authentication app", code(secret, clock))
    at = click(at, "Verify code")
    assert len(svc.status("alice").authenticators) == 2
    assert not svc.sessions.find(token).restricted  # it proved a new factor
    at.switch_page(MANAGE)
    at = run(at)
    assert "Your new authenticator is set up" in texts(at), texts(at)
    assert "Remove" in labels(at)


def test_a_user_without_a_factor_needs_the_pass_after_the_password(data_dir, svc, clock):
    shown = issue(svc, "bob")
    at = sign_in(app(), "bob")
    assert inputs(at) == ["Temporary pass"]  # the password alone does not sign in
    assert "Welcome" not in texts(at)
    type_into(at, "Temporary pass", "aaaa-bbbb-cccc-dddd")
    at = click(at, "Continue")
    assert errors(at) == ["That temporary pass is not valid, expired or was already used."]
    assert svc.status("bob").failed_attempts == 1
    type_into(at, "Temporary pass", shown)
    at = click(at, "Continue")
    assert "temporary pass from the helpdesk" in texts(at)


def test_an_admin_under_a_pass_never_opens_the_helpdesk(data_dir, svc, clock):
    enroll(svc, clock, "admin")
    at = with_pass("admin", issue(svc, "admin", actor="helen"))
    assert "Helpdesk" not in page_links(at)
    at.switch_page(HELPDESK)
    at = run(at)
    assert "Search users" not in [t.label for t in at.text_input]
    assert "Reset MFA" not in labels(at)


def test_the_session_ends_when_the_pass_expires(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = with_pass("alice", issue(svc, valid_for=900))
    at.switch_page(MANAGE)
    at = run(at)
    assert "User MFA Settings" in texts(at)
    clock.advance(901)
    at = run(at)
    assert "User MFA Settings" not in texts(at)
    assert "Password" in inputs(at)


def test_a_pass_session_restored_from_its_cookie_stays_restricted_from_the_first_run(
        data_dir, svc, clock, cookie):
    from .conftest import make_cookie
    enroll(svc, clock, "admin")
    result = svc.attempt_second_factor("admin", issue(svc, "admin"), strategy="temporary_pass")
    token = make_cookie("admin")
    svc.sessions.update(token, second_factor_passed=True, verified_at=clock(),
                        via="temporary_pass", ends_at=result.pass_expires_at)
    cookie(token)
    at = app(HELPDESK)
    assert "Search users" not in [t.label for t in at.text_input]
    assert "temporary pass from the helpdesk" in texts(at)
    assert "Helpdesk" not in page_links(at)


def test_the_callbacks_a_pass_must_never_run_are_refused_under_one():
    from portal import backup_view, helpdesk, manage
    import portal.session
    refusing = portal.session.unrestricted(lambda: None).__code__
    for callback in (manage.request_remove, manage.confirm_remove, manage.save_rename,
                     backup_view.request_generate, backup_view.confirm_generate,
                     helpdesk.request_reset, helpdesk.confirm_reset, helpdesk.request_remove_one,
                     helpdesk.confirm_remove_one, helpdesk.clear_lockout, helpdesk.request_pass,
                     helpdesk.confirm_pass, helpdesk.revoke_pass):
        assert callback.__code__ is refusing, callback.__qualname__
        assert callback.__closure__[[c for c in refusing.co_freevars].index("under_pass")] \
            .cell_contents is False, callback.__qualname__
