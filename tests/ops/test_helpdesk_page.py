"""The Helpdesk page (AppTest): admins only; list, search, audit trail, reset behind reverification, unlock."""

from __future__ import annotations

import pytest

import mfa_core

from ..portal.conftest import clock, data_dir, svc  # noqa: F401  (the portal's fixtures)
from ..portal.conftest import (Clock, app, click, code, enroll, errors, inputs, labels, page_links,
                               run, sign_in, signed_in, texts, type_into)

PAGE = "pages/3_Helpdesk.py"
PROTECTED = ["Helpdesk", "Search users", "alice@example.com", "bob@example.com", "Audit trail",
             "Reset MFA", "Clear lockout"]


def lock_out(svc, clock, username: str) -> str:
    """Enroll ``username``, then type wrong codes (waiting out each delay) until locked.

    Returns the authenticator's secret."""
    secret, _ = enroll(svc, clock, username)
    wrong = "000000" if code(secret, clock) != "000000" else "111111"
    while not svc.status(username).locked:
        clock.advance(4000)
        with pytest.raises(mfa_core.MFAError):
            svc.attempt_second_factor(username, wrong)
    return secret


def wrong_password(svc, username: str) -> None:
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_password(username, "not-the-password", source="203.0.113.50")


def helpdesk(username: str = "admin", secret: str | None = None, clock: Clock | None = None):
    return signed_in(username, secret, clock, page=PAGE)


def rows(at) -> dict[str, dict]:
    """The users table, by username."""
    frame = at.dataframe[0].value
    return {r["User"]: r for r in frame.to_dict("records")}


def choose(at, username: str):
    at.selectbox(key="helpdesk_user").select(username)
    return run(at)


def nothing_protected(at) -> None:
    shown = texts(at) + " ".join(labels(at)) + " ".join(inputs(at))
    for text in PROTECTED:
        assert text not in shown, text
    assert not at.dataframe and not at.selectbox


# -- who gets in ---------------------------------------------------------------------

def test_signed_out_visitor_gets_the_sign_in_form_only(data_dir):
    at = app(PAGE)
    assert inputs(at) == ["Username", "Password"]
    assert "You must be logged in to access this page" in texts(at)
    nothing_protected(at)


def test_a_user_who_is_not_an_admin_is_refused(data_dir):
    at = helpdesk("alice")
    assert errors(at) == ["This page is for helpdesk admins."]
    nothing_protected(at)
    assert "Helpdesk" not in page_links(at)


def test_an_admin_sees_the_helpdesk_link_and_the_page(data_dir):
    at = helpdesk("admin")
    assert "Helpdesk" in page_links(at)
    assert [t.value for t in at.title] == ["Helpdesk"]
    assert not errors(at)


def test_a_signed_in_user_waiting_for_the_second_factor_sees_nothing(data_dir, svc, clock):
    enroll(svc, clock, "admin")
    at = app()
    sign_in(at, "admin")
    at.switch_page(PAGE)
    run(at)
    assert "Two-step verification" in texts(at)
    nothing_protected(at)


# -- the list ------------------------------------------------------------------------------

def test_the_list_shows_status_lockout_and_last_activity(data_dir, svc, clock):
    secret, _codes = enroll(svc, clock, "alice")
    svc.create_totp("bob")
    for _ in range(svc.policy.free_failures):  # bob mistyped his new app's code: he now waits
        with pytest.raises(mfa_core.InvalidCode):
            svc.verify_totp("bob", "000000")
    at = helpdesk()
    table = rows(at)
    assert list(table) == ["admin", "alice", "bob"]
    assert table["alice"]["Authenticator"] == "On" and table["alice"]["Backup codes"] == "10"
    assert table["admin"]["Backup codes"] == "—"
    assert table["alice"]["E-mail"] == "alice@example.com"
    assert table["alice"]["Last activity"] == "2027-01-15 08:00 UTC"
    assert table["bob"]["Authenticator"] == "Setting up"
    assert table["bob"]["Lockout"].startswith("Waiting 30 s (5 failed)")
    assert table["admin"]["Role"] == "Admin" and table["alice"]["Role"] == "User"
    assert table["admin"]["Lockout"] == "—"
    assert "3 of 3 users" in texts(at)


def test_a_locked_user_is_shown_locked(data_dir, svc, clock):
    lock_out(svc, clock, "alice")
    assert rows(helpdesk())["alice"]["Lockout"] == "Locked"


@pytest.mark.parametrize("query, expected", [
    ("bob", ["bob"]), ("ALICE", ["alice"]), ("example.com", ["admin", "alice", "bob"]),
    ("helpdesk", ["admin"]), ("  bob@  ", ["bob"]),
])
def test_the_search_matches_username_name_and_email(data_dir, query, expected):
    at = helpdesk()
    type_into(at, "Search users", query)
    run(at)
    assert list(rows(at)) == expected
    assert at.selectbox(key="helpdesk_user").options == [
        f"{u} — {n}" for u, n in zip(expected, [rows(at)[u]["Name"] for u in expected])]


def test_a_search_without_match_says_so(data_dir):
    at = helpdesk()
    type_into(at, "Search users", "nobody-here")
    run(at)
    assert "No users match the search." in texts(at)
    assert not at.dataframe


# -- one user ------------------------------------------------------------------------------

def test_choosing_a_user_shows_their_audit_trail_newest_first(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    wrong_password(svc, "bob")
    at = choose(helpdesk(), "alice")
    assert "Alice Example (alice)" in texts(at)
    trail = at.dataframe[1].value.to_dict("records")
    assert [r["Event"] for r in trail] == ["New backup codes generated", "Authenticator app added",
                                          "Authenticator set-up started"]
    assert {r["By"] for r in trail} == {"alice"}
    assert "On" in texts(at) and "10 backup codes left" in texts(at)


def test_the_audit_trail_period_reaches_back_to_older_events(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    clock.advance(40 * 86400)
    wrong_password(svc, "alice")
    at = choose(helpdesk(), "alice")
    assert [r["Event"] for r in at.dataframe[1].value.to_dict("records")] == ["Wrong password"]
    at.radio(key="helpdesk_period").set_value("Everything")
    run(at)
    trail = [r["Event"] for r in at.dataframe[1].value.to_dict("records")]
    assert trail[0] == "Wrong password" and trail[-1] == "Authenticator set-up started"
    assert len(trail) == 4


def test_a_user_without_events_in_the_period_says_so(data_dir):
    at = choose(helpdesk(), "bob")
    assert "No events for this user in this period." in texts(at)


# -- reset ---------------------------------------------------------------------------------

def test_reset_needs_a_reason_and_changes_nothing_without_one(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    before = svc.status("alice")
    at = click(choose(helpdesk(), "alice"), "Reset MFA")
    assert errors(at) == ["A reason is required to reset MFA."]
    assert svc.status("alice") == before
    assert not [e for e in svc.audit("alice") if e.event == "helpdesk_reset"]


def test_reset_within_ten_minutes_of_signing_in_runs_at_once(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    epoch = svc.status("alice").mfa_epoch
    at = choose(helpdesk(), "alice")
    type_into(at, "Reason", "lost phone, ticket 4711")
    at = click(at, "Reset MFA")
    status = svc.status("alice")
    assert not status.totp_enabled and status.backup_codes_remaining == 0
    assert status.mfa_epoch == epoch + 1
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == ("helpdesk_reset", "admin",
                                                        "lost phone, ticket 4711")
    assert any("Two-step verification of alice was reset" in s.value for s in at.success)
    assert rows(at)["alice"]["Authenticator"] == "Off"
    assert at.text_input(key="helpdesk_reason").value == ""


def test_reset_after_ten_minutes_asks_the_admin_to_verify_first(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(), "alice")
    clock.advance(601)
    type_into(at, "Reason", "lost phone")
    at = click(at, "Reset MFA")
    assert "To reset the two-step verification of alice, enter your password." in texts(at)
    assert svc.status("alice").totp_enabled  # not yet
    type_into(at, "Password", "wrong-password")
    at = click(at, "Confirm")
    assert "That password is not correct." in errors(at)
    assert svc.status("alice").totp_enabled
    type_into(at, "Password", "admin-demo")
    at = click(at, "Confirm")
    assert not svc.status("alice").totp_enabled
    assert svc.audit("alice")[-1].actor == "admin"


def test_an_admin_with_an_authenticator_verifies_with_a_code(data_dir, svc, clock):
    admin_secret, _ = enroll(svc, clock, "admin")
    enroll(svc, clock, "alice")
    at = choose(helpdesk("admin", admin_secret, clock), "alice")
    clock.advance(660)
    type_into(at, "Reason", "new phone")
    at = click(at, "Reset MFA")
    assert "Authentication code" in inputs(at)
    type_into(at, "Authentication code", code(admin_secret, clock))
    at = click(at, "Confirm")
    assert not svc.status("alice").totp_enabled
    assert "You have no second factor yourself" not in texts(at)


def test_cancelling_the_verification_resets_nothing(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(), "alice")
    clock.advance(601)
    type_into(at, "Reason", "lost phone")
    at = click(click(at, "Reset MFA"), "Cancel")
    assert svc.status("alice").totp_enabled
    assert "Password" not in inputs(at)


def test_an_admin_cannot_reset_their_own_mfa_here(data_dir, svc, clock):
    admin_secret, _ = enroll(svc, clock, "admin")
    at = choose(helpdesk("admin", admin_secret, clock), "admin")
    assert "Reset MFA" not in labels(at)
    assert "You cannot reset your own MFA here" in texts(at)
    assert svc.status("admin").totp_enabled


def test_the_reset_ends_every_session_of_the_user(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    alice = signed_in("alice", secret, clock, page="pages/1_Manage_MFA.py")
    assert alice.session_state["portal_verified_at"] is not None
    at = choose(helpdesk(), "alice")
    type_into(at, "Reason", "reported stolen")
    click(at, "Reset MFA")
    run(alice)
    assert "Your session has ended" in texts(alice)
    assert "User MFA Settings" not in texts(alice) and "Username" in inputs(alice)


# -- lockout ------------------------------------------------------------------------------

def test_clear_lockout_unlocks_and_audits_the_admin(data_dir, svc, clock):
    secret = lock_out(svc, clock, "alice")
    at = choose(helpdesk(), "alice")
    assert "Lockout: **Locked**" in texts(at)
    type_into(at, "Reason", "identity checked by phone")
    at = click(at, "Clear lockout")
    status = svc.status("alice")
    assert not status.locked and status.failed_attempts == 0 and status.totp_enabled
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == ("lockout_cleared", "admin",
                                                        "identity checked by phone")
    assert "No failed attempts to clear." in texts(at)
    clock.advance(30)
    svc.attempt_second_factor("alice", code(secret, clock))


def test_clear_lockout_without_a_reason_records_a_default_one(data_dir, svc):
    wrong_password(svc, "bob")
    at = click(choose(helpdesk(), "bob"), "Clear lockout")
    assert svc.status("bob").password_failures == 0
    assert svc.audit("bob")[-1].detail == "lockout cleared by the helpdesk"
    assert not errors(at)


def test_a_large_directory_draws_a_bounded_list_and_the_search_narrows_it(data_dir):
    import yaml

    path = data_dir / "users.yaml"
    users = yaml.safe_load(path.read_text())
    template = users["credentials"]["usernames"]["bob"]
    for i in range(300):
        users["credentials"]["usernames"][f"staff{i:03d}"] = {
            **template, "first_name": "Staff", "last_name": f"Member {i}",
            "email": f"staff{i:03d}@example.com"}
    path.write_text(yaml.safe_dump(users))
    at = helpdesk()
    assert len(rows(at)) == 25
    assert "303 of 303 users; the first 25 are shown: refine the search" in texts(at)
    type_into(at, "Search users", "member 299")
    run(at)
    assert list(rows(at)) == ["staff299"]
    assert rows(at)["staff299"]["Name"] == "Staff Member 299"


@pytest.mark.parametrize("button", ["Reset MFA", "Clear lockout"])
def test_an_admin_demoted_meanwhile_can_no_longer_reset_or_unlock(data_dir, svc, clock, button):
    from mfa_core.users import UserDirectory

    secret, _ = enroll(svc, clock, "alice")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", "000000" if code(secret, clock) != "000000" else "111111")
    at = choose(helpdesk(), "alice")
    type_into(at, "Reason", "lost phone")
    UserDirectory(data_dir).set_roles("admin", ["user"])  # another admin demotes this one
    at = click(at, button)  # a button drawn before the change
    status = svc.status("alice")
    assert status.totp_enabled and status.failed_attempts == 1
    assert not [e for e in svc.audit("alice") if e.actor == "admin"]
    assert "This page is for helpdesk admins." in errors(at)


def test_a_damaged_record_is_listed_as_such_and_the_reset_replaces_it(data_dir, svc, clock):
    from mfa_core.storage import user_key
    secret, _ = enroll(svc, clock, "admin")
    enroll(svc, clock, "alice")
    key = user_key("alice")
    (data_dir / "users" / key[:2] / f"{key}.json").write_bytes(b'{"_default": []}')
    at = helpdesk("admin", secret, clock)
    assert not at.exception and not errors(at)
    table = rows(at)
    assert table["alice"]["Authenticator"] == "Record damaged"
    assert table["alice"]["Lockout"] == "Record damaged"
    assert table["bob"]["Authenticator"] == "Off"
    at = choose(at, "alice")
    assert any("cannot be read" in e for e in errors(at))
    type_into(at, "Reason", "record damaged, ticket 99")
    at = click(at, "Reset MFA")
    assert not svc.status("alice").totp_enabled
    assert "damaged record replaced" in svc.audit("alice")[-1].detail
