"""Journeys 3-6: signing in with a second factor, backup codes, a copied cookie, throttling.

Each journey has its own user, enrolled through the engine on the server's data dir.
"""

from __future__ import annotations

import re

from browser_support import (button, click, code_at_step, current_step, enter_backup_code,
                             enter_code, error_text, expect_challenge, fresh_code, goto, heading,
                             main_area, main_text, sign_in, sign_out)

WAIT = re.compile(r"Wait (\d+) (?:seconds?|minutes?)")
BROWSER_USERS = {name: f"{name}-browser-pw" for name in ("carol", "dave", "erin", "frank")}


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


def test_remember_me_cookie_in_another_browser_still_asks_the_second_factor(portal, new_page, shots):
    secret, last_step = portal.enroll("erin")
    first = new_page()
    sign_in(first, portal.url, "erin", BROWSER_USERS["erin"])
    expect_challenge(first)
    step, code = fresh_code(secret, last_step)
    enter_code(first, code)
    welcome(first, "erin")
    state = first.context.storage_state()
    assert any(c["name"] == "mfa_portal_auth" for c in state["cookies"]), state["cookies"]

    # Another browser holding a copy of the remember-me cookie: signed in by the
    # cookie (no password form), but asked for the second factor on every page.
    second = new_page(storage_state=state)
    for path in ("Manage_MFA", "Add_TOTP", ""):
        goto(second, portal.at(path))
        expect_challenge(second)
        text = main_text(second)
        assert "erin" in text and "User MFA Settings" not in text and "Add TOTP MFA" not in text, text
        assert second.get_by_label("Username", exact=True).count() == 0
    shots(second, "cookie-still-challenged")
    _, code = fresh_code(secret, step)
    enter_code(second, code)
    welcome(second, "erin")

    # Signing out in the first browser revokes the cookie: a third copy gets the password form.
    sign_out(first)
    third = new_page(storage_state=state)
    goto(third, portal.url)
    third.get_by_label("Username", exact=True).wait_for()
    assert "Two-step verification" not in main_text(third)
    shots(third, "revoked-cookie-password-form")


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
