"""Journey 8: accessibility of the sign-in screens, and the Helpdesk as an admin with two-step on.

axe-core runs on the sign-in form, the challenge (code and backup code), the
Helpdesk's list, one user's panel and the "Reset MFA for <name>?" question. A
user whose display name is markdown (a link, a remote image) is shown as text:
no link to it, no image fetched by the admin's browser.
"""

from __future__ import annotations

import re

from accessibility import assert_accessible
from browser_support import (act, button, click, enter_code, expect_challenge, fresh_code, goto,
                             heading, main_area, main_text, sign_in, wait_idle)

BROWSER_USERS = {"ivan": "ivan-browser-pw"}
TRACKER = "http://127.0.0.1:9/tracker.png"  # loopback, discard port: nothing leaves the machine
EVIL = "https://evil.example/pay"
NAME = f"Mallory [Pay here]({EVIL}) ![pixel]({TRACKER}) pay@evil.example"


def shown(text: str) -> str:
    """Text as a person reads it (the word joiners that keep URLs from linking are invisible)."""
    return text.replace("\u2060", "").strip()


def test_sign_in_screens_pass_axe_and_code_fields_are_one_time_codes(portal, page, shots):
    goto(page, portal.url)
    page.get_by_label("Username", exact=True).wait_for()
    # The sign-in form's "Sign in" heading (h3 after h1) is portal/signin.py's: allowed here
    # until that module's heading level changes.
    assert_accessible(page, "sign-in")
    secret, last_step = portal.enroll("ivan")
    sign_in(page, portal.url, "ivan", BROWSER_USERS["ivan"])
    expect_challenge(page)
    field = page.get_by_label("Authentication code", exact=True)
    assert field.get_attribute("autocomplete") == "one-time-code"
    assert_accessible(page, "challenge")
    click(page, button(page, "Use a backup code"))
    page.get_by_label("Backup code", exact=True).wait_for()
    assert_accessible(page, "challenge-backup-code")
    click(page, button(page, "Use your authentication app"))
    _, code = fresh_code(secret, last_step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Ivan Browser").wait_for()


def test_helpdesk_for_an_admin_with_two_step_shows_names_as_text_and_asks_before_reset(
        portal, page, shots):
    from mfa_core.users import UserDirectory

    UserDirectory(portal.data_dir).add("mallory", "mallory-browser-pw", name=NAME,
                                       email="mallory@example.com")
    portal.enroll("mallory")
    fetched = []
    page.on("request", lambda request: fetched.append(request.url))
    secret, last_step = portal.enroll("admin")
    sign_in(page, portal.url, "admin", "admin-demo")
    expect_challenge(page)
    _, code = fresh_code(secret, last_step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Helpdesk Admin").wait_for()
    click(page, page.locator('[data-testid="stSidebar"]').get_by_role("link",
                                                                      name=re.compile("Helpdesk")))
    heading(page, "Helpdesk").wait_for()
    page.locator('[data-testid="stDataFrame"]').wait_for()
    shots(page, "helpdesk-list")
    assert_accessible(page, "helpdesk-list")

    search = page.get_by_label("Search users", exact=True)
    search.fill("mallory")
    act(page, lambda: search.press("Enter"))
    choose = main_area(page).locator('[data-testid="stSelectbox"]')
    choose.click()
    page.get_by_role("option", name=re.compile(r"^mallory — ")).click()
    heading(page, "Audit trail").wait_for()
    wait_idle(page)
    header = main_area(page).get_by_role("heading", level=2)
    assert shown(header.first.inner_text()) == f"{NAME} (mallory)"
    assert page.locator(f'a[href^="{EVIL}"], a[href^="mailto:"]').count() == 0
    assert page.locator(f'img[src="{TRACKER}"]').count() == 0
    assert not [url for url in fetched if url.startswith(TRACKER)], fetched
    shots(page, "helpdesk-user")
    assert_accessible(page, "helpdesk-user")

    page.get_by_label("Reason", exact=True).fill("lost phone, ticket 4711")
    click(page, button(page, "Reset MFA"))
    button(page, "Yes, reset MFA").wait_for()
    assert f"Reset MFA for {NAME} (mallory)?" in shown(main_text(page))
    assert "Reason: lost phone, ticket 4711" in main_text(page)
    assert portal.service().status("mallory").totp_enabled  # asked, nothing done
    shots(page, "helpdesk-reset-question")
    assert_accessible(page, "helpdesk-reset-question")
    click(page, button(page, "Cancel"))
    button(page, "Reset MFA").wait_for()
    assert page.get_by_label("Reason", exact=True).input_value() == "lost phone, ticket 4711"
    assert portal.service().status("mallory").totp_enabled
    assert not [url for url in fetched if url.startswith(TRACKER)], fetched
