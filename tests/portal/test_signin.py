"""The sign-in gate: password, the second factor, cookies, sign-out, every page guarded."""

from __future__ import annotations

import base64

import pytest

import mfa_core
import portal.config
import portal.session
from mfa_core.users import UserDirectory

from .conftest import (ROOT, app, app_direct, click, code, enroll, errors, inputs, labels,
                       make_cookie, page_links, pass_challenge, run, sign_in, signed_in,
                       texts, type_into)

PAGES = ["streamlit_app.py", "pages/1_Manage_MFA.py", "pages/2_Add_TOTP.py"]
PROTECTED = ["Welcome", "User MFA Settings", "Add TOTP MFA", "Verify TOTP", "Backup codes",
             "Recent security activity", "Signed in as"]


def assert_sign_in_form_only(at) -> None:
    assert inputs(at) == ["Username", "Password"]
    assert "Login" in labels(at)
    shown = texts(at)
    for text in PROTECTED:
        assert text not in shown
    assert not at.sidebar.children or not page_links(at)


# -- signed out --------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_opened_signed_out_shows_only_the_sign_in_form(data_dir, page):
    for at in (app(page), app_direct(page)):
        assert_sign_in_form_only(at)
        if page != "streamlit_app.py":
            assert "You must be logged in to access this page" in texts(at)


def test_demo_mode_banner_lists_the_demo_credentials(data_dir):
    shown = texts(app())
    assert "Demo mode" in shown
    for user, password in [("alice", "alice-demo"), ("bob", "bob-demo"), ("admin", "admin-demo")]:
        assert f"`{user}` / `{password}`" in shown


def test_no_demo_users_and_no_banner_when_demo_mode_is_off(tmp_path, monkeypatch, clock):
    monkeypatch.setenv("MFA_PORTAL_DATA_DIR", str(tmp_path / "prod"))
    monkeypatch.setenv("MFA_PORTAL_DEMO", "0")
    at = app()
    assert "Demo mode" not in texts(at)
    assert "No users exist yet." in texts(at)
    assert UserDirectory(tmp_path / "prod").users() == []
    sign_in(at, "alice", "alice-demo")
    assert "Username or password is incorrect." in errors(at)


# -- the password ------------------------------------------------------------------

def test_wrong_password_is_refused_and_counted_in_the_engine(data_dir, svc):
    at = sign_in(app(), "alice", "not-her-password")
    assert errors(at) == ["Username or password is incorrect."]
    assert_sign_in_form_only(at)
    assert svc.status("alice").password_failures == 1
    assert svc.status("alice").failed_attempts == 0  # never toward the second factor's lockout
    assert [e.event for e in svc.audit("alice")] == ["password_failed"]


def test_unknown_user_gets_the_same_message(data_dir):
    at = sign_in(app(), "mallory", "whatever-pass")
    assert errors(at) == ["Username or password is incorrect."]
    assert_sign_in_form_only(at)


def test_throttled_password_is_refused_even_when_right_and_new_session_does_not_reset(data_dir, svc,
                                                                                       clock):
    at = app()
    for _ in range(svc.password_policy.free_failures):
        sign_in(at, "alice", "wrong-password")
    fresh = sign_in(app(), "alice")  # another browser: the count lives in the store
    assert any("Too many failed attempts" in e for e in errors(fresh))
    assert_sign_in_form_only(fresh)
    clock.advance(svc.password_policy.delay(svc.password_policy.free_failures) + 1)
    fresh = sign_in(fresh, "alice")
    assert "Welcome, Alice Example" in texts(fresh)
    assert svc.status("alice").password_failures == 0  # a right password clears the run


def test_password_without_mfa_signs_in_with_the_sidebar(data_dir):
    at = sign_in(app(), "alice")
    assert "Welcome, Alice Example" in texts(at)
    assert "Two-step verification is off" in texts(at)
    assert page_links(at) == ["Home", "Manage MFA"]
    assert "Sign out" in labels(at)


def test_helpdesk_link_only_for_admins_and_only_when_the_page_exists(data_dir):
    has_page = (ROOT / "pages/3_Helpdesk.py").exists()
    assert "Helpdesk" not in page_links(sign_in(app(), "bob"))
    assert ("Helpdesk" in page_links(sign_in(app(), "admin"))) == has_page


def test_a_library_error_never_reaches_the_page(data_dir):
    at = sign_in(app(), "alice:x", "x" * 200)
    assert errors(at) == ["Username or password is incorrect."]


# -- the second factor ---------------------------------------------------------------

def test_mfa_user_gets_the_challenge_and_nothing_else(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = sign_in(app(), "alice")
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert inputs(at) == ["Authentication code"]
    assert {"Continue", "Use a backup code"} <= set(labels(at))
    assert not page_links(at)
    for text in PROTECTED:
        assert text not in texts(at)
    # Opening another page in the same session still shows only the challenge.
    at.switch_page("pages/1_Manage_MFA.py")
    run(at)
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert "User MFA Settings" not in texts(at)


def test_right_code_passes_the_challenge(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = pass_challenge(sign_in(app(), "alice"), secret, clock)
    assert "Welcome, Alice Example" in texts(at)
    assert "Two-step verification is on" in texts(at)
    assert svc.recent_activity("alice")[0].event == "second_factor_passed"


def test_wrong_code_shows_the_engine_message_and_stays(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = sign_in(app(), "alice")
    wrong = f"{(int(code(secret, clock)) + 1) % 1_000_000:06d}"
    type_into(at, "Authentication code", wrong)
    at = click(at, "Continue")
    assert errors(at) == ["That code is not valid. Check your authentication app and try again."]
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert svc.status("alice").failed_attempts == 1


def test_malformed_code_says_what_a_code_looks_like(data_dir, svc, clock):
    enroll(svc, clock)
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", "12ab")
    at = click(at, "Continue")
    assert errors(at) == ["A code from your authentication app is 6 digits."]


def test_reused_code_says_already_used(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    clock.advance(-30)  # back to the step the enrollment accepted
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    assert errors(at) == ["That code was already used — wait for the next code in your app."]


def test_drifted_code_says_how_far_the_clock_is_off(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", code(secret, clock, offset_steps=4))
    at = click(at, "Continue")
    assert "your device clock looks about 120 s ahead" in errors(at)[0]


def test_too_many_wrong_codes_make_the_user_wait_in_every_session(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = sign_in(app(), "alice")
    for _ in range(svc.policy.free_failures):
        type_into(at, "Authentication code", "000000")
        at = click(at, "Continue")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    assert errors(at)[0].startswith("Too many failed attempts. Wait")
    assert "Welcome" not in texts(at)
    # A new browser meets the same per-user throttle at the second factor; wrong
    # codes never block the password (nobody can lock a user out with them).
    other = sign_in(app(), "alice")
    assert "Two-step verification" in texts(other)
    type_into(other, "Authentication code", code(secret, clock))
    other = click(other, "Continue")
    assert errors(other)[0].startswith("Too many failed attempts. Wait")
    clock.advance(svc.policy.delay(svc.policy.free_failures) + 1)
    at = pass_challenge(at, secret, clock)
    assert "Welcome, Alice Example" in texts(at)


def test_backup_code_signs_in_and_says_how_many_remain(data_dir, svc, clock):
    _, codes = enroll(svc, clock)
    at = click(sign_in(app(), "alice"), "Use a backup code")
    assert inputs(at) == ["Backup code"]
    assert "Use your authentication app" in labels(at)
    type_into(at, "Backup code", codes[0].upper().replace("-", " "))
    at = click(at, "Continue")
    assert "Welcome, Alice Example" in texts(at)
    assert [i.value for i in at.info] == ["You used a backup code. 9 backup codes left."]
    assert svc.status("alice").backup_codes_remaining == 9


def test_backup_code_warns_when_three_or_fewer_remain(data_dir, svc, clock):
    _, codes = enroll(svc, clock)
    for used in codes[:7]:
        svc.attempt_second_factor("alice", used, "backup_code")
    at = click(sign_in(app(), "alice"), "Use a backup code")
    type_into(at, "Backup code", codes[7])
    at = click(at, "Continue")
    assert any("Only 2 backup codes left" in w.value for w in at.warning)


def test_used_backup_code_is_refused(data_dir, svc, clock):
    _, codes = enroll(svc, clock)
    svc.attempt_second_factor("alice", codes[0], "backup_code")
    at = click(sign_in(app(), "alice"), "Use a backup code")
    type_into(at, "Backup code", codes[0])
    at = click(at, "Continue")
    assert errors(at) == ["That backup code is not valid or was already used."]
    assert "Welcome" not in texts(at)


def test_sign_out_from_the_challenge_returns_to_the_password(data_dir, svc, clock):
    enroll(svc, clock)
    at = click(sign_in(app(), "alice"), "Sign out")
    assert_sign_in_form_only(at)


# -- the session: reloads, new tabs, sign-out, ends elsewhere ------------------------------

def test_a_new_tab_of_a_session_past_the_second_factor_asks_nothing(data_dir, svc, clock, cookie):
    secret, _ = enroll(svc, clock)
    at = pass_challenge(sign_in(app(), "alice"), secret, clock)
    token = at.session_state[portal.session.TOKEN]
    cookie(token)  # the browser now holds the session cookie: a reload, a new tab
    tab = app("pages/1_Manage_MFA.py")
    assert "User MFA Settings" in texts(tab)
    assert [t.value for t in tab.title] == ["User MFA Settings"]  # no challenge
    # The verification made in the first tab carries over (no dialog for 10 minutes).
    assert tab.session_state[portal.session.VERIFIED_AT] == at.session_state[portal.session.VERIFIED_AT]


def test_a_session_whose_second_factor_was_not_passed_still_asks_for_it(data_dir, svc, clock, cookie):
    secret, _ = enroll(svc, clock)
    cookie(make_cookie("alice", passed=False))
    at = app("pages/1_Manage_MFA.py")
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert "User MFA Settings" not in texts(at)
    at = pass_challenge(at, secret, clock)
    assert "User MFA Settings" in texts(at)


def test_a_continued_session_without_mfa_keeps_its_last_verification(data_dir, clock, cookie):
    cookie(make_cookie("bob", passed=True, verified_at=clock() - 700))
    at = app("pages/1_Manage_MFA.py")
    assert "User MFA Settings" in texts(at)
    at = click(at, "Add")  # 700 s ago: more than 10 minutes
    assert "To add an authentication app, enter your password." in texts(at)
    assert inputs(at) == ["Password"]


@pytest.mark.parametrize("forge", ["garbage", "unknown token", "empty", "ended", "expired",
                                   "password changed", "user removed"])
def test_a_cookie_of_no_live_session_shows_the_sign_in_form(data_dir, svc, clock, cookie, forge):
    token = make_cookie("alice", passed=True)
    if forge == "garbage":
        token = "eyJhbGciOiJub25lIn0.%%%.!!"
    elif forge == "unknown token":
        token = "A" * 43
    elif forge == "empty":
        token = ""
    elif forge == "ended":
        svc.sessions.end(token)
    elif forge == "expired":
        clock.advance(svc.sessions.policy.idle + 1)
    elif forge == "password changed":
        UserDirectory(data_dir).set_password("alice", "a-brand-new-pass")
    else:
        UserDirectory(data_dir).remove("alice")
    cookie(token)
    assert_sign_in_form_only(app("pages/1_Manage_MFA.py"))


def test_sign_out_ends_the_session_for_every_tab(data_dir, svc, clock, cookie):
    at = sign_in(app(), "bob")
    token = at.session_state[portal.session.TOKEN]
    cookie(token)
    other_tab = app("pages/1_Manage_MFA.py")
    assert "User MFA Settings" in texts(other_tab)
    at = click(at, "Sign out")
    assert_sign_in_form_only(at)
    assert "You have signed out." in texts(at)
    assert svc.sessions.find(token) is None
    other_tab = run(other_tab)  # its next action
    assert_sign_in_form_only(other_tab)
    assert "Your session has ended" in texts(other_tab)
    assert_sign_in_form_only(app("pages/1_Manage_MFA.py"))  # and a new tab with the old cookie


def test_after_sign_out_the_page_session_ignores_the_cookie(data_dir, clock, cookie):
    cookie(make_cookie("bob", passed=True))
    at = click(app(), "Sign out")
    at = run(at)
    assert_sign_in_form_only(at)


# -- sessions end when the account changes elsewhere ------------------------------------------

def test_a_helpdesk_reset_ends_every_session_of_the_user(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page="pages/1_Manage_MFA.py")
    svc.reset_mfa("alice", actor="admin", reason="lost phone")
    at = run(at)
    assert_sign_in_form_only(at)
    assert "Your session has ended" in texts(at)


def test_a_password_change_ends_every_session_of_the_user(data_dir, svc, clock):
    at = signed_in("bob", page="pages/1_Manage_MFA.py")
    UserDirectory(data_dir).set_password("bob", "bob-new-password")  # users passwd
    assert_sign_in_form_only(run(at))


def test_user_removed_from_the_directory_is_signed_out(data_dir):
    at = sign_in(app(), "bob")
    UserDirectory(data_dir).remove("bob")
    assert_sign_in_form_only(run(at))


# -- the guard's API for other pages (the helpdesk) ------------------------------------------

def _admin_page():
    import streamlit as st

    import portal
    user = portal.require_admin("Helpdesk")
    st.title(f"Helpdesk for {user.username}")


def test_require_admin_lets_admins_in_and_stops_everyone_else(data_dir):
    from streamlit.testing.v1 import AppTest
    at = run(AppTest.from_function(_admin_page, default_timeout=30))
    assert_sign_in_form_only(at)
    at = sign_in(at, "bob")
    assert errors(at) == ["This page is for helpdesk admins."]
    assert not any("Helpdesk for" in t.value for t in at.title)
    at = sign_in(run(AppTest.from_function(_admin_page, default_timeout=30)), "admin")
    assert [t.value for t in at.title] == ["Helpdesk for admin"]


def test_password_counts_as_verification_from_when_it_was_typed(data_dir, svc, clock):
    at = sign_in(app(), "bob")  # no second factor: the password is the verification
    at.switch_page("pages/1_Manage_MFA.py")
    at = run(at)
    clock.advance(601)
    at = click(at, "Add")  # the password is 10 minutes old: verify again
    assert inputs(at) == ["Password"]
    fresh = sign_in(app(), "bob")
    fresh.switch_page("pages/1_Manage_MFA.py")
    fresh = click(run(fresh), "Add")  # typed just now: no question
    assert "Password" not in inputs(fresh)


def test_locked_account_is_told_to_contact_the_helpdesk(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    for _ in range(svc.policy.lockout_after):
        clock.advance(svc.policy.max_delay)
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("alice", "000000")
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    assert errors(at) == ["Too many failed attempts: two-step verification is locked for this "
                          "account. Contact the helpdesk to unlock it."]
    assert "Welcome" not in texts(at)
    svc.unlock("alice", actor="admin", reason="verified by phone")
    at = pass_challenge(at, secret, clock)  # still at the challenge: the password was right
    assert "Welcome, Alice Example" in texts(at)


@pytest.mark.parametrize("password", ["x" * 200, "pässwörd-ünïcode", " alice-demo ", "\x00\x01"])
def test_odd_passwords_are_refused_with_the_usual_message(data_dir, password):
    at = sign_in(app(), "alice", password)
    if password.strip() == "alice-demo":  # the library trims what was typed
        assert "Welcome, Alice Example" in texts(at)
    else:
        assert errors(at) == ["Username or password is incorrect."]


@pytest.mark.parametrize("typed", ["", "1" * 40, "١٢٣٤٥٦", "12 34 56 78", "<script>", "DROP TABLE"])
def test_odd_codes_at_the_challenge_give_a_message_and_change_nothing(data_dir, svc, clock, typed):
    enroll(svc, clock)
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", typed)
    at = click(at, "Continue")
    assert len(errors(at)) == 1
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert svc.status("alice").failed_attempts == 0  # a malformed code is not an attempt


def test_the_signed_out_message_survives_the_cookie_components_rerun(data_dir):
    # In a browser the cookie component on the sign-in screen reruns the page once
    # right after it mounts; the message must still be there after that run.
    at = click(sign_in(app(), "bob"), "Sign out")
    assert "You have signed out." in texts(at)
    at = run(at)
    assert "You have signed out." in texts(at)
    at = sign_in(at, "bob")
    assert "You have signed out." not in texts(at)


def test_a_login_click_survives_a_run_interrupted_at_its_first_step(data_dir, monkeypatch):
    # In a browser a component reporting back can interrupt the run a click
    # started, at its first st.* call. The password is checked in the Login
    # button's callback, which runs before the script: the rerun keeps the sign-in.
    import streamlit as st

    import portal.session

    original = portal.session.begin_run
    interrupted = []

    def begin_run_interrupted_once() -> None:
        original()
        if portal.session.current_username() and not interrupted:
            interrupted.append(True)
            st.rerun()

    monkeypatch.setattr(portal.session, "begin_run", begin_run_interrupted_once)
    at = sign_in(app(), "bob")
    assert interrupted
    assert "Sign out" in labels(at)
    assert "Username" not in inputs(at)


def test_the_password_is_not_kept_in_the_session(data_dir):
    at = sign_in(app(), "bob")
    assert "Sign out" in labels(at)
    assert "portal_login_password" not in at.session_state or not at.session_state["portal_login_password"]
    at = sign_in(app(), "bob", "wrong-password")
    assert "Username" in inputs(at)
    assert not at.session_state["portal_login_password"]


@pytest.mark.parametrize("damage", [b"", b"null", b"[]", b'{"_default": []}', b'{"mfa": {"1": []}}',
                                    b'{"mfa": {"1": {"username": "alice", "v": 1, "two_step": true}}}',
                                    b'{"mfa": {"1": {"username": "alice", "v": 7, "two_step": false}}}',
                                    None])
def test_a_damaged_record_never_signs_in_with_the_password_alone(data_dir, svc, clock, damage):
    from mfa_core.storage import user_key
    enroll(svc, clock)
    key = user_key("alice")
    path = data_dir / "users" / key[:2] / f"{key}.json"
    if damage is None:
        path.unlink()  # a lost file: the store remembers that alice has two-step on
    else:
        path.write_bytes(damage)
    at = sign_in(app(), "alice")
    assert errors(at) == ["Your account's security settings cannot be read. Contact the helpdesk."]
    assert_sign_in_form_only(at)
    assert not at.exception
    other = sign_in(app(), "bob")  # nobody else is affected
    assert "Welcome, Bob Example" in texts(other)


def test_a_session_signed_in_before_the_damage_is_stopped_at_its_next_run(data_dir, svc, clock):
    from mfa_core.storage import user_key
    secret, _ = enroll(svc, clock)
    at = pass_challenge(sign_in(app(), "alice"), secret, clock)
    assert "Welcome, Alice Example" in texts(at)
    key = user_key("alice")
    (data_dir / "users" / key[:2] / f"{key}.json").write_bytes(b"[]")
    at.switch_page("pages/1_Manage_MFA.py")
    at = run(at)
    assert errors(at) == ["Your account's security settings cannot be read. Contact the helpdesk."]
    assert "User MFA Settings" not in texts(at) and not at.exception


# -- the store unavailable ------------------------------------------------------------

@pytest.mark.parametrize("template", [
    "postgresql://mfa_operator:s3cr@tpw@127.0.0.1:{port}/secret_db_name?connect_timeout=2",
    "postgresql://mfa_operator:Sup3rSecretPw@127.0.0.1:{port}/secret_db_name?connect_timeout=2",
    "host=127.0.0.1 port={port} user=mfa_operator password='s3cret pw' dbname=secret_db_name "
    "connect_timeout=2",
])
def test_an_unreachable_database_shows_visitors_no_connection_details(
        template, tmp_path, monkeypatch, clock, postgres_cluster, caplog):
    from cryptography.fernet import Fernet
    url = template.format(port=postgres_cluster.port)
    monkeypatch.setenv("MFA_PORTAL_DATA_DIR", str(tmp_path / "replica"))
    monkeypatch.setenv("MFA_PORTAL_DATABASE_URL", url)
    monkeypatch.setenv("MFA_PORTAL_FERNET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("MFA_PORTAL_PEPPER", base64.urlsafe_b64encode(bytes(32)).decode())
    with caplog.at_level("ERROR", logger="portal"):
        at = app()
    assert errors(at) == [mfa_core.StorageError.default_message]
    shown = texts(at) + " ".join(errors(at))
    for secret in ("secret_db_name", "127.0.0.1", str(postgres_cluster.port), "mfa_operator",
                   "s3cr", "tpw", "s3cret pw", "Sup3rSecretPw"):
        assert secret not in shown, secret
    logged = caplog.text  # the operator's log says what went wrong, without the password
    assert "database cannot be used" in logged
    for secret in ("tpw", "s3cret pw", "Sup3rSecretPw"):
        assert secret not in logged, (secret, logged)
