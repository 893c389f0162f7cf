"""The Helpdesk page (AppTest): admins with two-step on only; list, search, audit trail; reset
asked on the page, then behind reverification; unlock behind reverification; never one's own account."""

from __future__ import annotations

import pytest

import mfa_core
from portal import helpdesk as helpdesk_module
from portal.display import plain

from ..portal.conftest import clock, data_dir, svc  # noqa: F401  (the portal's fixtures)
from ..portal.conftest import ids as authenticator_ids
from ..portal.conftest import (Clock, add_app, app, click, code, enroll, errors, inputs, labels, page_links,
                               pass_challenge, run, sign_in, signed_in, texts, type_into)

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


@pytest.fixture
def admin_secret(svc, clock) -> str:
    """The admin's authenticator: the Helpdesk is only for admins with two-step verification on."""
    return enroll(svc, clock, "admin")[0]


def helpdesk(secret: str, clock: Clock, username: str = "admin"):
    return signed_in(username, secret, clock, page=PAGE)


def reset(at, reason: str | None = "lost phone, ticket 4711"):
    """Type the reason, press Reset MFA and confirm on the page."""
    if reason is not None:
        type_into(at, "Reason", reason)
    at = click(at, "Reset MFA")
    return click(at, "Yes, reset MFA")


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
    at = signed_in("alice", page=PAGE)
    assert errors(at) == ["This page is for helpdesk admins."]
    nothing_protected(at)
    assert "Helpdesk" not in page_links(at)


def test_an_admin_sees_the_helpdesk_link_and_the_page(data_dir, admin_secret, clock):
    at = helpdesk(admin_secret, clock)
    assert "Helpdesk" in page_links(at)
    assert [t.value for t in at.title] == ["Helpdesk"]
    assert not errors(at)


def test_an_admin_without_two_step_verification_gets_no_list_and_no_actions(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    at = signed_in("admin", page=PAGE)
    assert [t.value for t in at.title] == ["Helpdesk"]
    assert [w.value for w in at.warning] == [helpdesk_module.NEEDS_MFA]
    assert [e.proto.label for e in at.main.get("page_link")] == ["Manage MFA"]
    shown = texts(at) + " ".join(labels(at)) + " ".join(inputs(at))
    for text in PROTECTED[1:]:
        assert text not in shown, text
    assert not at.dataframe and not at.selectbox


def test_a_signed_in_user_waiting_for_the_second_factor_sees_nothing(data_dir, svc, clock):
    enroll(svc, clock, "admin")
    at = app()
    sign_in(at, "admin")
    at.switch_page(PAGE)
    run(at)
    assert "Two-step verification" in texts(at)
    nothing_protected(at)


# -- the list ------------------------------------------------------------------------------

def test_the_list_shows_status_lockout_and_last_activity(data_dir, svc, clock, admin_secret):
    secret, _codes = enroll(svc, clock, "alice")
    at = helpdesk(admin_secret, clock)
    svc.create_totp("bob")
    for _ in range(svc.policy.free_failures):  # bob mistyped his new app's code: he now waits
        with pytest.raises(mfa_core.InvalidCode):
            svc.verify_totp("bob", "000000")
    table = rows(run(at))
    assert list(table) == ["admin", "alice", "bob"]
    assert table["alice"]["Two-step"] == "On" and table["alice"]["Backup codes"] == "10"
    assert table["admin"]["Two-step"] == "On" and table["bob"]["Backup codes"] == "—"
    assert table["alice"]["E-mail"] == "alice@example.com"
    assert table["alice"]["Last activity"] == "2027-01-15 08:00 UTC"
    assert table["bob"]["Two-step"] == "Setting up"
    assert table["bob"]["Lockout"].startswith("Waiting 30 s (5 failed)")
    assert table["admin"]["Role"] == "Admin" and table["alice"]["Role"] == "User"
    assert table["admin"]["Lockout"] == "—"
    assert "3 of 3 users" in texts(at)


def test_a_locked_user_is_shown_locked(data_dir, svc, clock, admin_secret):
    lock_out(svc, clock, "alice")
    assert rows(helpdesk(admin_secret, clock))["alice"]["Lockout"] == "Locked"


@pytest.mark.parametrize("query, expected", [
    ("bob", ["bob"]), ("ALICE", ["alice"]), ("example.com", ["admin", "alice", "bob"]),
    ("helpdesk", ["admin"]), ("  bob@  ", ["bob"]),
])
def test_the_search_matches_username_name_and_email(data_dir, admin_secret, clock, query, expected):
    at = helpdesk(admin_secret, clock)
    type_into(at, "Search users", query)
    run(at)
    assert list(rows(at)) == expected
    assert at.selectbox(key="helpdesk_user").options == [
        f"{u} — {n}" for u, n in zip(expected, [rows(at)[u]["Name"] for u in expected])]


def test_a_search_without_match_says_so(data_dir, admin_secret, clock):
    at = helpdesk(admin_secret, clock)
    type_into(at, "Search users", "nobody-here")
    run(at)
    assert "No users match the search." in texts(at)
    assert not at.dataframe


# -- one user ------------------------------------------------------------------------------

def test_choosing_a_user_shows_their_audit_trail_newest_first(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    wrong_password(svc, "bob")
    at = choose(helpdesk(admin_secret, clock), "alice")
    assert "Alice Example (alice)" in texts(at)
    trail = at.dataframe[1].value.to_dict("records")
    assert [r["Event"] for r in trail] == ["New backup codes generated", "Authentication app added",
                                          "Authenticator set-up started"]
    assert {r["By"] for r in trail} == {"alice"}
    assert "On" in texts(at) and "10 backup codes left" in texts(at)


def test_the_audit_trail_period_reaches_back_to_older_events(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    clock.advance(40 * 86400)
    wrong_password(svc, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    assert [r["Event"] for r in at.dataframe[1].value.to_dict("records")] == ["Wrong password"]
    at.radio(key="helpdesk_period").set_value("Everything")
    run(at)
    trail = [r["Event"] for r in at.dataframe[1].value.to_dict("records")]
    assert trail[0] == "Wrong password" and trail[-1] == "Authenticator set-up started"
    assert len(trail) == 4


def test_a_user_without_events_in_the_period_says_so(data_dir, admin_secret, clock):
    at = choose(helpdesk(admin_secret, clock), "bob")
    assert "No events for this user in this period." in texts(at)


def test_names_and_reasons_are_shown_as_text_never_as_markdown(data_dir, svc, clock, admin_secret):
    from mfa_core.users import UserDirectory

    name = "Mallory [Pay here](https://evil.example/pay) ![x](https://tracker.example/p.png)"
    UserDirectory(data_dir).add("mallory", "mallory-password", name=name,
                                email="mallory@example.com")
    secret, _ = enroll(svc, clock, "mallory")
    svc.unlock("mallory", actor="admin", reason="**urgent** [see](https://evil.example)")
    at = choose(helpdesk(admin_secret, clock), "mallory")
    assert [h.value for h in at.header] == [f"{plain(name)} (mallory)"]
    trail = at.dataframe[1].value.to_dict("records")  # table cells are never markdown
    assert trail[0]["Detail"] == "**urgent** [see](https://evil.example)"
    type_into(at, "Reason", "asked by [phone](https://evil.example)")
    at = click(at, "Reset MFA")
    [question] = [w.value for w in at.warning if "Reset MFA for" in w.value]
    assert f"Reset MFA for {plain(name)} (mallory)?" in question
    # The user's own pages: the top bar and the home page's greeting.
    own = pass_challenge(sign_in(app(), "mallory", "mallory-password"), secret, clock)
    assert [t.value for t in own.title] == [f"Welcome, {plain(name)}"]
    assert f"Signed in as **{plain(name)}**" in texts(own)


# -- reset ---------------------------------------------------------------------------------

def test_reset_needs_a_reason_and_changes_nothing_without_one(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    before = svc.status("alice")
    at = click(choose(helpdesk(admin_secret, clock), "alice"), "Reset MFA")
    assert errors(at) == ["A reason is required to reset MFA."]
    assert "Yes, reset MFA" not in labels(at)
    assert svc.status("alice") == before
    assert not [e for e in svc.audit("alice") if e.event == "helpdesk_reset"]


def test_reset_asks_reset_mfa_for_the_name_with_the_consequences_before_acting(data_dir, svc, clock,
                                                                             admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "lost phone, ticket 4711")
    at = click(at, "Reset MFA")
    [question] = [w.value for w in at.warning]
    assert question.startswith("**Reset MFA for Alice Example (alice)?**")
    for consequence in ("Their authentication app and their backup codes are removed", "signed out",
                        "password alone", "cannot be undone"):
        assert consequence in question
    assert {"Yes, reset MFA", "Cancel"} <= set(labels(at)) and "Reset MFA" not in labels(at)
    assert f"Reason: {plain('lost phone, ticket 4711')}" in texts(at)
    assert "Reason" not in inputs(at)  # the reason asked about is the one that will be recorded
    assert svc.status("alice").totp_enabled  # nothing happened yet
    assert "Confirm" not in labels(at)  # no dialog yet either


def test_cancel_on_the_page_resets_nothing(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "lost phone")
    at = click(click(at, "Reset MFA"), "Cancel")
    assert svc.status("alice").totp_enabled
    assert "Reset MFA" in labels(at) and "Yes, reset MFA" not in labels(at)
    assert at.text_input(key="helpdesk_reason").value == "lost phone"  # kept for another try


def test_choosing_another_user_drops_the_question(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "lost phone")
    at = choose(click(at, "Reset MFA"), "bob")
    assert "Yes, reset MFA" not in labels(at)
    assert not any("Reset MFA for" in w.value for w in at.warning)


def test_reset_within_ten_minutes_of_signing_in_runs_once_confirmed(data_dir, svc, clock,
                                                                    admin_secret):
    enroll(svc, clock, "alice")
    epoch = svc.status("alice").mfa_epoch
    at = reset(choose(helpdesk(admin_secret, clock), "alice"))
    status = svc.status("alice")
    assert not status.totp_enabled and status.backup_codes_remaining == 0
    assert status.mfa_epoch == epoch + 1
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == ("helpdesk_reset", "admin",
                                                        "lost phone, ticket 4711")
    assert any("Two-step verification of alice was reset" in s.value for s in at.success)
    assert rows(at)["alice"]["Two-step"] == "Off"
    assert at.text_input(key="helpdesk_reason").value == ""


def test_reset_after_ten_minutes_asks_the_admin_to_verify_with_a_code(data_dir, svc, clock,
                                                                      admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    clock.advance(601)
    at = reset(at, "lost phone")
    assert "To reset the two-step verification of alice, enter the code from your " \
           "authentication app." in texts(at)
    assert svc.status("alice").totp_enabled  # not yet
    type_into(at, "Authentication code", "000000" if code(admin_secret, clock) != "000000"
              else "111111")
    at = click(at, "Confirm")
    assert any("not valid" in e for e in errors(at))
    assert svc.status("alice").totp_enabled
    type_into(at, "Authentication code", code(admin_secret, clock))
    at = click(at, "Confirm")
    assert not svc.status("alice").totp_enabled
    assert svc.audit("alice")[-1].actor == "admin"
    assert svc.audit("alice")[-1].detail == "lost phone"


def test_cancelling_the_verification_resets_nothing(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    clock.advance(601)
    at = click(reset(at, "lost phone"), "Cancel")
    assert svc.status("alice").totp_enabled
    assert "Authentication code" not in inputs(at)


def test_an_admin_cannot_reset_or_unlock_their_own_account_here(data_dir, svc, clock, admin_secret):
    at = helpdesk(admin_secret, clock)
    wrong_password(svc, "admin")  # from another place, after this sign-in
    at = choose(at, "admin")
    assert "Reset MFA" not in labels(at) and "Clear lockout" not in labels(at)
    assert helpdesk_module.NOT_YOURSELF in [i.value for i in at.info]
    assert svc.status("admin").totp_enabled and svc.status("admin").password_failures == 1


def test_an_admin_whose_own_authenticator_was_removed_meanwhile_cannot_reset(data_dir, svc, clock,
                                                                             admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "lost phone")
    at = click(at, "Reset MFA")
    svc.disable_totp("admin")  # in another tab, or by another admin
    at = click(at, "Yes, reset MFA")
    assert svc.status("alice").totp_enabled
    assert not [e for e in svc.audit("alice") if e.actor == "admin"]
    assert "Reset MFA for" not in texts(at)


def test_the_reset_ends_every_session_of_the_user(data_dir, svc, clock, admin_secret):
    secret, _ = enroll(svc, clock, "alice")
    alice = signed_in("alice", secret, clock, page="pages/1_Manage_MFA.py")
    assert alice.session_state["portal_verified_at"] is not None
    reset(choose(helpdesk(admin_secret, clock), "alice"), "reported stolen")
    run(alice)
    assert "Your session has ended" in texts(alice)
    assert "User MFA Settings" not in texts(alice) and "Username" in inputs(alice)


# -- lockout ------------------------------------------------------------------------------

def test_clear_lockout_unlocks_and_audits_the_admin(data_dir, svc, clock, admin_secret):
    secret = lock_out(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
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


def test_clear_lockout_after_ten_minutes_asks_the_admin_to_verify_first(data_dir, svc, clock,
                                                                        admin_secret):
    lock_out(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    clock.advance(601)
    type_into(at, "Reason", "identity checked")
    at = click(at, "Clear lockout")
    assert "To clear the lockout of alice, enter the code from your authentication app." \
        in texts(at)
    assert svc.status("alice").locked  # not yet
    at = click(at, "Cancel")
    assert svc.status("alice").locked
    at = click(at, "Clear lockout")
    type_into(at, "Authentication code", code(admin_secret, clock))
    at = click(at, "Confirm")
    assert not svc.status("alice").locked
    assert svc.audit("alice")[-1].detail == "identity checked"


def test_clear_lockout_needs_a_reason_as_reset_does(data_dir, svc, clock, admin_secret):
    wrong_password(svc, "bob")
    at = click(choose(helpdesk(admin_secret, clock), "bob"), "Clear lockout")
    assert svc.status("bob").password_failures == 1
    assert errors(at) == ["A reason is required to clear a lockout."]
    type_into(at, "Reason", "called from his desk phone")
    at = click(at, "Clear lockout")
    assert svc.status("bob").password_failures == 0
    assert svc.audit("bob")[-1].detail == "called from his desk phone"


def test_a_large_directory_draws_a_bounded_list_and_the_search_narrows_it(data_dir, admin_secret,
                                                                           clock):
    import yaml

    path = data_dir / "users.yaml"
    users = yaml.safe_load(path.read_text())
    template = users["credentials"]["usernames"]["bob"]
    for i in range(300):
        users["credentials"]["usernames"][f"staff{i:03d}"] = {
            **template, "first_name": "Staff", "last_name": f"Member {i}",
            "email": f"staff{i:03d}@example.com"}
    path.write_text(yaml.safe_dump(users))
    at = helpdesk(admin_secret, clock)
    assert len(rows(at)) == 25
    assert "303 of 303 users; the first 25 are shown: refine the search" in texts(at)
    type_into(at, "Search users", "member 299")
    run(at)
    assert list(rows(at)) == ["staff299"]
    assert rows(at)["staff299"]["Name"] == "Staff Member 299"


@pytest.mark.parametrize("button", ["Yes, reset MFA", "Clear lockout"])
def test_an_admin_demoted_meanwhile_can_no_longer_reset_or_unlock(data_dir, svc, clock, button,
                                                                  admin_secret):
    from mfa_core.users import UserDirectory

    secret, _ = enroll(svc, clock, "alice")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", "000000" if code(secret, clock) != "000000" else "111111")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "lost phone")
    if button == "Yes, reset MFA":
        at = click(at, "Reset MFA")
    UserDirectory(data_dir).set_roles("admin", ["user"])  # another admin demotes this one
    at = click(at, button)  # a button drawn before the change
    status = svc.status("alice")
    assert status.totp_enabled and status.failed_attempts == 1
    assert not [e for e in svc.audit("alice") if e.actor == "admin"]
    assert "This page is for helpdesk admins." in errors(at)


def test_a_damaged_record_is_listed_as_such_and_the_reset_replaces_it(data_dir, svc, clock,
                                                                      admin_secret):
    from mfa_core.storage import user_key
    enroll(svc, clock, "alice")
    key = user_key("alice")
    (data_dir / "users" / key[:2] / f"{key}.json").write_bytes(b'{"_default": []}')
    at = helpdesk(admin_secret, clock)
    assert not at.exception and not errors(at)
    table = rows(at)
    assert table["alice"]["Two-step"] == "Record damaged"
    assert table["alice"]["Lockout"] == "Record damaged"
    assert table["bob"]["Two-step"] == "Off"
    at = choose(at, "alice")
    assert any("cannot be read" in e for e in errors(at))
    at = reset(at, "record damaged, ticket 99")
    assert not svc.status("alice").totp_enabled
    assert "damaged record replaced" in svc.audit("alice")[-1].detail


# -- one authenticator -------------------------------------------------------------------

def test_the_helpdesk_lists_a_users_authenticators_and_removes_one_with_a_reason(
        data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    add_app(svc, clock, "Work tablet")
    at = choose(helpdesk(admin_secret, clock), "alice")
    assert rows(at)["alice"]["Two-step"] == "On (2)"
    listed = at.dataframe[2].value.to_dict("records")  # after the list and the trail
    assert [(r["Name"], r["Kind"]) for r in listed] == [("Authentication app", "Authentication app"),
                                                         ("Work tablet", "Authentication app")]
    ids = authenticator_ids(svc)
    at = click(at, "Remove authenticator")  # nothing chosen
    assert errors(at) == ["Choose the authenticator to remove."]
    at.selectbox(key=helpdesk_module.CHOSEN).select(ids["Work tablet"])
    at = click(run(at), "Remove authenticator")
    assert errors(at) == ["A reason is required to remove an authenticator."]
    type_into(at, "Reason", "tablet stolen")
    at = click(at, "Remove authenticator")
    assert "Remove “Work tablet” of" in texts(at)
    assert "Their other authenticators and backup codes keep working" in texts(at)
    assert len(svc.status("alice").authenticators) == 2  # asked, not done
    at = click(at, "Yes, remove it")
    assert [a.label for a in svc.status("alice").authenticators] == ["Authentication app"]
    assert svc.status("alice").backup_codes_remaining == 10
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == ("authenticator_removed", "admin",
                                                        "Work tablet (reason: tablet stolen)")


def test_cancelling_the_removal_of_one_changes_nothing(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    at.selectbox(key=helpdesk_module.CHOSEN).select(svc.status("alice").authenticators[0].id)
    type_into(run(at), "Reason", "check")
    at = click(at, "Remove authenticator")
    assert "It is their only authenticator" in texts(at)
    at = click(at, "Cancel")
    assert svc.status("alice").two_factor_enabled
    assert at.text_input(key=helpdesk_module.REASON).value == "check"


def test_a_removal_confirmed_after_the_user_changed_their_authenticators_asks_again(
        data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    add_app(svc, clock, "Work tablet")
    ids = authenticator_ids(svc)
    at = choose(helpdesk(admin_secret, clock), "alice")
    at.selectbox(key=helpdesk_module.CHOSEN).select(ids["Work tablet"])
    type_into(run(at), "Reason", "tablet stolen")
    at = click(at, "Remove authenticator")
    assert "Their other authenticators and backup codes keep working" in texts(at)
    svc.remove_authenticator("alice", ids["Authentication app"])  # meanwhile, the user
    at = click(at, "Yes, remove it")
    assert "changed meanwhile\\: nothing was removed" in texts(at)  # (escaped markdown)
    assert [a.label for a in svc.status("alice").authenticators] == ["Work tablet"]


# -- what a new admin tripped over (issue 21) -------------------------------------------------

def test_the_reason_typed_for_one_user_is_gone_when_another_is_chosen(data_dir, svc, clock,
                                                                       admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "alice lost her phone")
    at = choose(run(at), "bob")
    assert at.text_input(key=helpdesk_module.REASON).value == ""


def test_a_wrong_password_in_the_trail_is_by_someone_unknown_from_an_address(data_dir, svc, clock,
                                                                             admin_secret):
    wrong_password(svc, "bob")
    at = choose(helpdesk(admin_secret, clock), "bob")
    trail = at.dataframe[1].value.to_dict("records")
    assert [(r["Event"], r["By"]) for r in trail] == [("Wrong password",
                                                       "unknown (from 203.0.113.50)")]


def test_the_reset_question_names_the_passkey_too(data_dir, svc, clock, admin_secret):
    from ..portal.test_passkey_pages import add_passkey

    enroll(svc, clock, "alice")
    add_passkey(svc, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    type_into(at, "Reason", "lost bag")
    at = click(at, "Reset MFA")
    [question] = [w.value for w in at.warning]
    assert ("Their authentication app, their passkey and their backup codes are removed"
            in question)


def test_the_tables_are_wide_enough_for_lockout_last_activity_and_detail(data_dir, svc, clock,
                                                                         admin_secret):
    import json

    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    for frame in at.dataframe[:2]:  # the users, the audit trail
        columns = json.loads(frame.proto.columns)
        columns.pop("_index", None)  # hidden
        shown = list(frame.value.columns)
        assert set(columns) == set(shown), (columns, shown)  # every column has its width
        assert sum(c["width"] for c in columns.values()) <= helpdesk_module.TABLE_WIDTH


# -- temporary passes (issue 24) ----------------------------------------------------

def issue_pass(at, reason: str | None = "lost phone, ticket 4711"):
    if reason is not None:
        type_into(at, "Reason", reason)
    at = click(at, "Issue a temporary pass")
    return click(at, "Yes, issue the pass")


def test_issue_a_temporary_pass_comes_before_reset_with_when_to_use_each(data_dir, svc, clock,
                                                                         admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    shown = labels(at)
    assert shown.index("Issue a temporary pass") < shown.index("Reset MFA")
    assert "when someone lost or replaced their phone" in texts(at)
    assert "**Reset MFA** only when a pass cannot help" in texts(at)


def test_a_pass_needs_a_reason_and_a_confirmation(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    at = click(choose(helpdesk(admin_secret, clock), "alice"), "Issue a temporary pass")
    assert errors(at) == ["A reason is required to issue a temporary pass."]
    type_into(at, "Reason", "lost phone")
    at = click(at, "Issue a temporary pass")
    [question] = [w.value for w in at.warning]
    assert question.startswith("**Issue a temporary pass for Alice Example (alice)?**")
    assert not svc.status("alice").temporary_pass_active
    at = click(at, "Cancel")
    assert not svc.status("alice").temporary_pass_active


def test_the_pass_is_shown_once_to_the_admin_and_works_once(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    at = issue_pass(choose(helpdesk(admin_secret, clock), "alice"))
    status = svc.status("alice")
    assert status.temporary_pass_active and status.temporary_pass_uses == 1
    [shown] = [c.value for c in at.code]
    assert "it is shown only this once" in texts(at)
    [event] = [e for e in svc.audit("alice") if e.event == "temporary_pass_issued"]
    assert event.actor == "admin" and "lost phone, ticket 4711" in event.detail
    at = click(at, "Done")
    assert shown not in texts(at)
    svc.attempt_second_factor("alice", shown, strategy="temporary_pass")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy="temporary_pass")


def test_issuing_a_pass_after_ten_minutes_asks_the_admin_to_verify(data_dir, svc, clock,
                                                                    admin_secret):
    enroll(svc, clock, "alice")
    at = choose(helpdesk(admin_secret, clock), "alice")
    clock.advance(601)
    at = issue_pass(at)
    assert "Confirm" in labels(at)
    assert not svc.status("alice").temporary_pass_active
    type_into(at, "Authentication code", code(admin_secret, clock))
    at = click(at, "Confirm")
    assert svc.status("alice").temporary_pass_active
    assert len(at.code) == 1


def test_revoke_a_pass(data_dir, svc, clock, admin_secret):
    enroll(svc, clock, "alice")
    svc.issue_temporary_pass("alice", valid_for=3600, actor="helen", reason="lost phone")
    at = choose(helpdesk(admin_secret, clock), "alice")
    assert "Temporary pass: **active until" in texts(at)
    type_into(at, "Reason", "she found her phone")
    at = click(at, "Revoke temporary pass")
    assert not svc.status("alice").temporary_pass_active
    [event] = [e for e in svc.audit("alice") if e.event == "temporary_pass_revoked"]
    assert event.actor == "admin"
    assert "Revoke temporary pass" not in labels(at)
