"""Manage MFA: status texts, Remove and Generate behind reverification, activity."""

from __future__ import annotations

import pytest

import mfa_core
import portal.session
from portal import manage

from .conftest import (app, click, code, enroll, errors, generate, inputs, labels, run, signed_in,
                       texts, type_into)
from .inline import downloads, new_codes

MANAGE = "pages/1_Manage_MFA.py"


def test_without_mfa_offers_add_and_no_backup_codes(data_dir):
    at = signed_in("bob", page=MANAGE)
    shown = texts(at)
    assert [t.value for t in at.title] == ["User MFA Settings"]
    assert "Add TOTP via authentication app" in shown
    assert "Add" in labels(at) and "Remove" not in labels(at)
    assert "Generate new backup codes?" not in shown


def test_with_mfa_shows_enabled_remove_and_backup_codes(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    shown = texts(at)
    assert "TOTP via authentication app enabled" in shown
    assert "You have 10 backup codes left." in shown
    assert "Generate new backup codes?" in shown
    assert {"Remove", "Generate"} <= set(labels(at))
    assert "Add" not in labels(at)


def test_generate_stays_offered_with_no_codes_left_and_warns(data_dir, svc, clock):
    secret, codes = enroll(svc, clock, "alice")
    for used in codes:
        svc.attempt_second_factor("alice", used, "backup_code")
    at = signed_in("alice", secret, clock, page=MANAGE)
    assert any("You have 0 backup codes left." in w.value for w in at.warning)
    assert "Generate" in labels(at)


def test_generate_right_after_sign_in_needs_no_dialog_and_shows_codes_once(data_dir, svc, clock):
    secret, old = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    at = generate(at)
    new = new_codes(at)
    assert len(new) == 10 and not set(new) & set(old)
    assert "\n".join(new) in [c.value for c in at.code]
    assert [name for name, _ in downloads(at)] == ["mfa-portal-backup-codes.txt"]
    assert svc.status("alice").backup_codes_remaining == 10
    at = click(at, "Done")
    assert not any("\n".join(new) == c.value for c in at.code)
    assert "Generate new backup codes?" in texts(at)
    # The old set no longer works, the new one does.
    assert svc.attempt_second_factor("alice", new[0], "backup_code").backup_codes_remaining == 9


def test_backup_code_download_holds_the_codes_and_is_never_a_media_url(data_dir, svc, clock, media):
    secret, _ = enroll(svc, clock, "alice")
    at = generate(signed_in("alice", secret, clock, page=MANAGE))
    new = new_codes(at)
    [(name, body)] = downloads(at)
    assert name.endswith(".txt")
    assert [line for line in body.splitlines() if line in new] == new
    assert not at.get("download_button") and not media.files  # nothing any client could fetch


def test_generate_after_ten_minutes_asks_for_the_authentication_code(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    clock.advance(601)
    at = generate(at)
    assert not new_codes(at)
    assert ("To generate new backup codes (your 10 unused codes stop working), enter the code from "
            "your authentication app.") in texts(at)
    assert inputs(at) == ["Authentication code"]
    assert {"Confirm", "Use a backup code", "Cancel"} <= set(labels(at))
    type_into(at, "Authentication code", "000000")
    at = click(at, "Confirm")
    assert errors(at) == ["That code is not valid. Check your authentication app and try again."]
    assert inputs(at) == ["Authentication code"]  # the dialog is still open
    assert not new_codes(at)
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Confirm")
    at = run(at)
    assert len(new_codes(at)) == 10
    assert "Confirm" not in labels(at)
    assert "no code for another 10 min" in texts(at)


def test_remove_with_a_backup_code_in_the_dialog(data_dir, svc, clock):
    secret, codes = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    clock.advance(601)
    at = click(at, "Remove")
    assert ("To remove “Authentication app”, your only authenticator (two-step verification turns "
            "off and your backup codes stop working), enter the code from your authentication "
            "app.") in texts(at)
    at = click(at, "Use a backup code")
    assert inputs(at) == ["Backup code"]
    type_into(at, "Backup code", codes[3])
    at = click(at, "Confirm")
    assert not svc.status("alice").totp_enabled
    assert "Add TOTP via authentication app" in texts(at)
    assert "Your authentication app was removed" in texts(at)
    # The session changed its own MFA: it is not sent back to verify.
    at = run(at)
    assert "User MFA Settings" in texts(at)


def test_remove_inside_the_window_asks_once_then_runs_and_the_session_stays(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = click(signed_in("alice", secret, clock, page=MANAGE), "Remove")
    assert svc.status("alice").totp_enabled  # a stray click removes nothing
    assert "Remove your authentication app?" in texts(at)
    assert "Confirm" not in labels(at)  # verified recently: no dialog
    at = click(at, "Yes, remove it")
    assert not svc.status("alice").totp_enabled
    at = run(at)
    assert "Add TOTP via authentication app" in texts(at)
    assert "Two-step verification was turned off" not in texts(at)


def test_keep_it_leaves_the_authenticator_and_offers_remove_again(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = click(signed_in("alice", secret, clock, page=MANAGE), "Remove")
    at = click(at, "Keep it")
    assert svc.status("alice").totp_enabled
    assert "Remove your authentication app?" not in texts(at)
    assert "Remove" in labels(at)
    assert not [e for e in svc.audit("alice") if e.event == "totp_removed"]


def test_confirming_after_the_window_closed_asks_verify_its_you(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = click(signed_in("alice", secret, clock, page=MANAGE), "Remove")
    clock.advance(601)
    at = click(at, "Yes, remove it")
    assert ("To remove “Authentication app”, your only authenticator (two-step verification turns "
            "off and your backup codes stop working), enter the code from your authentication "
            "app.") in texts(at)
    assert svc.status("alice").totp_enabled


def test_cancel_closes_the_dialog_and_changes_nothing(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    clock.advance(601)
    at = click(click(at, "Remove"), "Cancel")
    assert "Confirm" not in labels(at)
    assert svc.status("alice").totp_enabled
    assert portal.session.PENDING not in at.session_state


def test_password_reverification_without_mfa_and_its_throttle(data_dir, svc, clock):
    at = signed_in("bob", page=MANAGE)
    clock.advance(601)
    at = click(at, "Add")
    assert "To add an authentication app, enter your password." in texts(at)
    assert inputs(at) == ["Password"]
    assert "Use a backup code" not in labels(at)
    for _ in range(svc.password_policy.free_failures):
        type_into(at, "Password", "wrong-password")
        at = click(at, "Confirm")
    assert errors(at) == ["That password is not correct."]
    type_into(at, "Password", "bob-demo")
    at = click(at, "Confirm")
    assert errors(at)[0].startswith("Too many failed attempts. Wait")
    clock.advance(svc.password_policy.delay(svc.password_policy.free_failures) + 1)
    type_into(at, "Password", "bob-demo")
    at = click(at, "Confirm")
    assert at.session_state["addtotp_step"] == "add"
    assert svc.pending_totp("bob") is not None


def test_password_reverification_ignores_surrounding_blanks_as_the_sign_in_form_does(data_dir, svc,
                                                                                    clock):
    at = signed_in("bob", page=MANAGE)
    clock.advance(601)
    at = click(at, "Add")
    type_into(at, "Password", " bob-demo ")
    at = click(at, "Confirm")
    assert not errors(at)
    assert at.session_state["addtotp_step"] == "add"


def test_verification_caption_counts_down(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)
    assert "no code for another 10 min" in texts(at)
    clock.advance(300)
    assert "no code for another 5 min" in texts(run(at))
    clock.advance(301)
    assert "will ask you to verify it's you" in texts(run(at))


def test_recent_security_activity_lists_time_event_and_outcome(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", "000000")
    clock.advance(31)
    at = signed_in("alice", secret, clock, page=MANAGE)
    table = [m.value for m in at.markdown if m.value.startswith("| Time")][0]
    assert "| Two-step verification passed | Success |" in table
    assert "| Two-step verification failed | Failure |" in table
    assert "| Authentication app added | Success |" in table
    assert "2027-01-15" in table  # the injected clock's date, in UTC
    assert secret not in table


def test_manage_page_opened_by_url_signed_out_shows_no_settings(data_dir):
    at = app(MANAGE)
    assert "User MFA Settings" not in texts(at)
    assert "You must be logged in to access this page" in texts(at)


def test_a_click_after_mfa_changed_elsewhere_does_nothing_and_the_session_verifies(data_dir, svc,
                                                                                   clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=MANAGE)  # verified just now
    svc.reset_mfa("alice", actor="admin", reason="account taken over")
    secret2, _ = enroll(svc, clock, "alice")  # the real owner enrolls a new phone
    at = generate(at)  # the old session's button, still on its screen
    assert not new_codes(at)
    assert svc.status("alice").backup_codes_remaining == 10
    assert [t.value for t in at.title] == ["MFA Portal"]  # the reset ended that session


def test_where_you_are_signed_in_lists_sessions_and_signs_out_others(data_dir, svc, clock):
    from .conftest import make_cookie
    at = signed_in("bob", page=MANAGE)
    phone = svc.sessions.start("bob", second_factor_passed=True, source="198.51.100.23",
                               user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
                                          "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
                                          "Mobile/15E148 Safari/604.1")
    laptop = make_cookie("bob", passed=True)
    at = run(at)
    shown = texts(at)
    assert "Where you are signed in" in shown
    assert "Mobile Safari 17 on iOS" in shown and "198\\.51\\.100\\.23" in shown
    assert "(this browser)" in shown
    at = click(at, "Sign out of all other sessions")
    assert svc.sessions.find(phone) is None and svc.sessions.find(laptop) is None
    assert "You signed out of every other session." in texts(at)
    assert "User MFA Settings" in texts(at)  # this session stays
    assert "You are signed in here only." in texts(at)
    assert "Signed in" in texts(at)  # sign-ins join the security activity
