"""Manage MFA and Add TOTP with several authenticators: the table, Rename, Remove, Add another."""

from __future__ import annotations

from mfa_core.authenticators import MAX_TOTP_APPS
from portal import enrollment, manage

from .conftest import (add_app, click, code, enroll, errors, ids, inputs, labels, run, signed_in,
                       texts, type_into)

MANAGE = "pages/1_Manage_MFA.py"
ADD = "pages/2_Add_TOTP.py"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def row_button(at, label, authenticator_id):
    key = {"Rename": "manage_rename_", "Remove": "manage_remove_"}[label] + authenticator_id
    [button] = [b for b in at.button if b.key == key]
    return button


def test_each_authenticator_has_a_row_with_its_name_dates_rename_and_remove(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    add_app(svc, clock, "Work tablet")
    at = signed_in("alice", secret, clock, page=MANAGE)
    shown = texts(at)
    assert "TOTP via authentication app enabled" in shown
    assert "Authentication app" in shown and "Work tablet" in shown
    assert "not used yet" in shown  # the tablet; the first app signed in just now
    assert "last used" in shown and "Added" in shown
    assert labels(at).count("Rename") == 2 and labels(at).count("Remove") == 2
    assert "Add another authentication app" in labels(at)
    assert "You have 10 backup codes left." in shown


def test_a_name_is_shown_as_text_never_as_markdown(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    add_app(svc, clock, "**[Pay](http://e.v)** ![x](http://t.x)")
    at = signed_in("alice", secret, clock, page=MANAGE)
    rows = [m.value for m in at.markdown if "Pay" in m.value]
    assert rows and all("\\*\\*\\[Pay\\]" in r and "\\!\\[x\\]" in r for r in rows)


def test_removing_one_of_two_asks_first_saying_other_sessions_are_signed_out(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    add_app(svc, clock, "Work tablet")
    at = signed_in("alice", secret, clock, page=MANAGE)
    row_button(at, "Remove", ids(svc)["Work tablet"]).click()
    at = run(at)
    assert len(ids(svc)) == 2  # one click removes nothing
    asked = [w.value for w in at.warning if "Remove “Work tablet”?" in w.value]
    assert asked and "Your other sessions will be signed out." in asked[0]
    at = click(at, "Yes, remove it")
    assert list(ids(svc)) == ["Authentication app"]
    assert "Your other authenticators and your backup codes still work" in texts(at)
    assert svc.status("alice").backup_codes_remaining == 10
    assert "Yes, remove it" not in labels(at)


def test_removing_one_after_the_window_asks_verify_its_you_naming_it(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    add_app(svc, clock, "Work tablet")
    at = signed_in("alice", secret, clock, page=MANAGE)
    clock.advance(601)
    row_button(at, "Remove", ids(svc)["Work tablet"]).click()
    at = run(at)
    assert ("To remove “Work tablet” (your other sessions will be signed out), enter the code from "
            "your authentication app.") in texts(at)
    assert len(ids(svc)) == 2
    type_into(at, "Authentication code", code(secret, clock))
    at = run(click(at, "Confirm"))
    assert list(ids(svc)) == ["Authentication app"]


def test_removing_the_last_one_asks_first_and_turns_two_step_off(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page=MANAGE)
    at = click(at, "Remove")
    assert "“Authentication app” is your only authenticator" in texts(at)
    assert svc.status("alice").two_factor_enabled
    at = run(click(at, "Yes, remove it"))
    assert not svc.status("alice").two_factor_enabled
    assert "Add TOTP via authentication app" in texts(at)


def test_rename_saves_a_new_name_and_refuses_a_taken_one(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    add_app(svc, clock, "Work tablet")
    at = signed_in("alice", secret, clock, page=MANAGE)
    row_button(at, "Rename", ids(svc)["Work tablet"]).click()
    at = run(at)
    assert "New name for Work tablet" in inputs(at)
    type_into(at, "New name for Work tablet", "authentication APP")
    at = click(at, "Save")
    assert any("already have an authenticator named" in e for e in errors(at))
    assert "Work tablet" in ids(svc)
    type_into(at, "New name for Work tablet", "  Old iPad  ")
    at = click(at, "Save")
    assert set(ids(svc)) == {"Authentication app", "Old iPad"}
    assert "The authenticator was renamed." in texts(at)
    assert not any(i.startswith("New name for") for i in inputs(at))


def test_rename_cancel_changes_nothing(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page=MANAGE)
    at = click(at, "Rename")
    type_into(at, "New name for Authentication app", "Something")
    at = click(at, "Cancel")
    assert list(ids(svc)) == ["Authentication app"]
    assert "Rename" in labels(at)


def test_add_another_app_names_it_keeps_the_codes_and_ends_on_success(data_dir, svc, clock):
    secret, codes = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page=MANAGE)
    at = click(at, "Add another authentication app")
    at.switch_page(ADD)
    at = run(at)
    assert [t.value for t in at.title] == ["Add TOTP MFA"]
    pending = svc.pending_totp("alice")
    assert at.session_state[enrollment.NAME] == "Authentication app 2"  # the default, numbered
    type_into(at, "Name for this authenticator", "Authentication app")
    at = click(at, "Verify")
    assert any("already have an authenticator named" in e for e in errors(at))
    type_into(at, "Name for this authenticator", "Spare phone")
    at = click(at, "Verify")
    type_into(at, "Enter the code from your authentication app", code(pending.secret, clock))
    at = run(click(at, "Verify code"))
    assert [t.value for t in at.title] == ["Success!"]
    assert "your backup codes are unchanged" in texts(at)
    assert list(ids(svc)) == ["Authentication app", "Spare phone"]
    clock.advance(30)
    assert svc.attempt_second_factor("alice", codes[0], "backup_code").backup_codes_remaining == 9


def test_the_name_is_prefilled_from_a_phone_user_agent(data_dir, svc, clock, monkeypatch):
    import portal.cookies
    monkeypatch.setattr(portal.cookies, "user_agent", lambda: IPHONE)
    secret, _ = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page=MANAGE)
    at = click(at, "Add another authentication app")
    assert svc.pending_totp("alice").label == "Authentication app on iPhone"


def test_suggested_names():
    assert enrollment.suggested_label(IPHONE, []) == "Authentication app on iPhone"
    assert enrollment.suggested_label(IPHONE, ["authentication app on iphone"]) == \
        "Authentication app on iPhone 2"
    desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    assert enrollment.suggested_label(desktop, []) == "Authentication app"
    assert enrollment.suggested_label(None, ["Authentication app"]) == "Authentication app 2"
    odd = ("Mozilla/5.0 (Linux; Android 14; Pixel\u00a08) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0 Mobile Safari/537.36")  # a device name no label may have
    assert enrollment.phone_name(odd) and enrollment.suggested_label(odd, []) == "Authentication app"


def test_at_the_cap_add_another_is_not_offered_and_says_why(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    for n in range(MAX_TOTP_APPS - 1):
        add_app(svc, clock, f"Spare {n}")
    at = signed_in("alice", secret, clock, page=MANAGE)
    assert "Add another authentication app" not in labels(at)
    assert "the most an account may have" in texts(at)
    at.switch_page(ADD)
    at = run(at)
    assert "5 authentication apps" in texts(at)
    assert not svc.status("alice").pending_enrollment


def test_a_row_removed_elsewhere_meanwhile_changes_nothing_and_breaks_nothing(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    add_app(svc, clock, "Work tablet")
    at = signed_in("alice", secret, clock, page=MANAGE)
    tablet = ids(svc)["Work tablet"]
    svc.remove_authenticator("alice", tablet)  # the helpdesk, another tab: this session ends too
    row_button(at, "Remove", tablet).click()
    at = run(at)  # no exception on the page
    assert list(ids(svc)) == ["Authentication app"]
    assert manage.CONFIRM_REMOVE not in at.session_state
