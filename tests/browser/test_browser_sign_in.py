"""Journeys 3-6: signing in with a second factor, backup codes, sessions across tabs and browsers, throttling.

Each journey has its own user, enrolled through the engine on the server's data dir.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from browser_support import (button, click, code_at_step, current_step, enter_backup_code,
                             enter_code, error_text, expect_challenge, fresh_code, goto, heading,
                             main_area, main_text, sign_in, sign_out)

WAIT = re.compile(r"Wait (\d+) (?:seconds?|minutes?)")
BROWSER_USERS = {name: f"{name}-browser-pw" for name in ("carol", "dave", "erin", "frank", "gina", "hank")}


def welcome(page, username: str) -> None:
    heading(page, f"Welcome, {username.capitalize()} Browser").wait_for()


def assert_still_challenged(page) -> None:
    expect_challenge(page)
    assert "Welcome" not in main_text(page)
    assert page.get_by_role("button", name=re.compile("Sign out")).count() <= 1  # the challenge's own


def test_sign_in_again_asks_the_second_factor_and_refuses_a_used_code(portal, page, shots):
    secret, last_step = portal.enroll("carol")
    sign_in(page, portal.url, "carol", BROWSER_USERS["carol"])
    expect_challenge(page)
    assert "Welcome" not in main_text(page)
    shots(page, "challenge", doc="sign-in-challenge")
    step, code = fresh_code(secret, last_step)
    enter_code(page, code)
    welcome(page, "carol")
    shots(page, "signed-in")

    sign_out(page)
    assert "You have signed out." in main_text(page)  # still there after the component's rerun
    shots(page, "signed-out")

    sign_in(page, portal.url, "carol", BROWSER_USERS["carol"])
    expect_challenge(page)
    enter_code(page, code)  # the code that signed in a moment ago
    assert "already used" in error_text(page), error_text(page)
    assert_still_challenged(page)
    shots(page, "code-already-used")

    _, next_code = fresh_code(secret, step)  # may wait for the app's next code
    enter_code(page, next_code)
    welcome(page, "carol")
    shots(page, "signed-in-again")


def test_backup_code_signs_in_once_and_the_count_drops(portal, page, shots):
    portal.enroll("dave")
    codes = portal.backup_codes("dave")
    sign_in(page, portal.url, "dave", BROWSER_USERS["dave"])
    expect_challenge(page)
    click(page, button(page, "Use a backup code"))
    page.get_by_label("Backup code", exact=True).wait_for()
    shots(page, "backup-code-challenge")
    enter_backup_code(page, codes[0])
    welcome(page, "dave")
    assert "You used a backup code. 9 backup codes left." in main_text(page)
    assert "Backup codes left: 9" in main_text(page)
    shots(page, "signed-in-with-backup-code")

    sign_out(page)
    sign_in(page, portal.url, "dave", BROWSER_USERS["dave"])
    expect_challenge(page)
    enter_backup_code(page, codes[0])
    assert "not valid or was already used" in error_text(page), error_text(page)
    heading(page, "Two-step verification").wait_for()
    assert "Welcome" not in main_text(page)
    shots(page, "backup-code-refused")

    enter_backup_code(page, codes[1].upper().replace("-", " "))
    welcome(page, "dave")
    assert "You used a backup code. 8 backup codes left." in main_text(page)
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()
    assert "You have 8 backup codes left." in main_text(page)
    shots(page, "manage-mfa-8-left")
    assert portal.service().status("dave").backup_codes_remaining == 8


def session_cookie(context, timeout: float = 15.0) -> dict:
    """The portal's session cookie in this browser (the page hands it over just after sign-in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in context.cookies() if c["name"].endswith("mfa_portal_session")]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no session cookie: {context.cookies()}")


def test_a_session_survives_reloads_and_new_tabs_and_sign_out_ends_every_tab(portal, new_page, shots):
    secret, last_step = portal.enroll("erin")
    first = new_page()
    sign_in(first, portal.url, "erin", BROWSER_USERS["erin"])
    expect_challenge(first)
    _, code = fresh_code(secret, last_step)
    enter_code(first, code)
    welcome(first, "erin")
    cookie = session_cookie(first.context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert "mfa_portal_session" not in first.evaluate("document.cookie")  # scripts cannot read it
    assert len(cookie["value"]) >= 43 and "erin" not in cookie["value"]

    # A reload and a new tab continue the session: no code asked, Manage MFA shown.
    goto(first, portal.at("Manage_MFA"))
    heading(first, "User MFA Settings").wait_for()
    tab = first.context.new_page()
    goto(tab, portal.at("Manage_MFA"))
    heading(tab, "User MFA Settings").wait_for()
    assert "Two-step verification" not in [h.inner_text() for h in tab.locator("h1").all()]
    assert "Where you are signed in" in main_text(tab)
    shots(tab, "new-tab-signed-in")

    # Another browser with a copy of the cookie from before the second factor is asked for it.
    second = new_page()
    sign_in(second, portal.url, "erin", BROWSER_USERS["erin"])
    expect_challenge(second)
    half_signed = second.context.storage_state()
    third = new_page(storage_state=half_signed)
    goto(third, portal.at("Manage_MFA"))
    expect_challenge(third)
    assert "User MFA Settings" not in main_text(third)

    # Sign out in one tab: every tab of that browser is signed out at its next action.
    sign_out(first)
    goto(tab, portal.at("Manage_MFA"))
    tab.get_by_label("Username", exact=True).wait_for()
    assert "User MFA Settings" not in main_text(tab)
    shots(tab, "other-tab-signed-out")


def cli(portal, *args: str, password: str | None = None) -> None:
    env = {**os.environ, "MFA_PORTAL_DATA_DIR": str(portal.data_dir)}
    done = subprocess.run([sys.executable, "-m", "mfa_core", *args], env=env, text=True,
                          input=password and password + "\n", capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["mfa reset", "users passwd"])
def test_a_session_in_another_browser_ends_after_a_reset_or_a_password_change(portal, new_page,
                                                                              shots, command):
    user = {"mfa reset": "gina", "users passwd": "hank"}[command]
    page = new_page()
    sign_in(page, portal.url, user, BROWSER_USERS[user])
    welcome(page, user)
    if command == "mfa reset":
        cli(portal, "mfa", "reset", user, "--reason", "reported stolen", "--actor", "helpdesk")
    else:
        cli(portal, "users", "passwd", user, "--password-stdin", password="renewed-password-2")
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    page.get_by_label("Username", exact=True).wait_for()
    assert "Your session has ended" in main_text(page)
    assert "User MFA Settings" not in main_text(page)


def wrong_code(secret: str) -> str:
    """A code that matches no step near now (so not even a clock-drift diagnosis)."""
    near = {code_at_step(secret, current_step() + d) for d in range(-40, 41)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in near)


def test_wrong_codes_throttle_the_user_in_every_browser(portal, new_page, shots):
    secret, _ = portal.enroll("frank")
    page = new_page()
    sign_in(page, portal.url, "frank", BROWSER_USERS["frank"])
    expect_challenge(page)
    bad = wrong_code(secret)
    message = ""
    for attempt in range(1, 11):
        enter_code(page, bad)
        message = error_text(page)
        if "Too many failed attempts" in message:
            break
        assert "not valid" in message, (attempt, message)
    else:
        raise AssertionError(f"still not throttled after 10 wrong codes: {message}")
    assert attempt > 3, "a person who mistypes a few times must not be throttled at once"
    wait = WAIT.search(message)
    assert wait and 0 < int(wait.group(1)) <= 3600, message
    assert_still_challenged(page)
    shots(page, "throttled")

    # A new browser context starts from nothing but the store: throttled too
    # (the count is per user, not per session), at the password or at the code.
    other = new_page()
    sign_in(other, portal.url, "frank", BROWSER_USERS["frank"])
    if heading(other, "Two-step verification").is_visible():
        enter_code(other, code_at_step(secret, current_step()))
    message = error_text(other)
    assert WAIT.search(message) and "Too many failed attempts" in message, message
    assert "Welcome" not in main_text(other)
    shots(other, "throttled-new-browser")

    # Back in the first browser, even the right code is refused while the wait lasts.
    assert portal.service().retry_after("frank") > 0, "the journey took longer than the wait"
    enter_code(page, code_at_step(secret, current_step()))
    assert "Too many failed attempts" in error_text(page)
    assert_still_challenged(page)
