"""Issue 20 F1 in a real browser: a session signed in before the second factor existed keeps its
cookie; once the owner adds an app or a passkey, a reload and a new tab of that browser are
challenged, while the owner's own browser carries on. After a helpdesk reset too. And F4: the
open page of a session signed out elsewhere runs no callback."""

from __future__ import annotations

import re
import urllib.parse

from browser_support import (button, click, row_button, code_at_step, current_step, enter_code,
                             expect_challenge, fresh_code, goto, heading, main_area, main_text,
                             sign_in, sign_in_form_visible)
from passkey_support import add_virtual_authenticator, localhost

BROWSER_USERS = {name: f"{name}-browser-pw" for name in ("ivy", "jack", "kate", "liam")}


def welcome(page, username: str) -> None:
    heading(page, f"Welcome, {username.capitalize()} Browser").wait_for()


def open_manage(page) -> None:
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()


def early_session(new_page, url: str, username: str):
    """Someone with the password signs in while the account has no second factor."""
    page = new_page()
    sign_in(page, url, username, BROWSER_USERS[username])
    welcome(page, username)
    return page


def add_app_on_the_pages(portal, page, url: str, username: str) -> None:
    sign_in(page, url, username, BROWSER_USERS[username])
    welcome(page, username)
    open_manage(page)
    click(page, button(page, "Add"))
    heading(page, "Add TOTP MFA").wait_for()
    click(page, button(page, "Use URI instead"))
    button(page, "Use QR Code instead").wait_for()
    uri = main_area(page).locator('[data-testid="stCode"]').first.inner_text().strip()
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    click(page, button(page, "Verify"))
    heading(page, "Verify TOTP").wait_for()
    field = page.get_by_label("Enter the code from your authentication app", exact=True)
    field.fill(code_at_step(secret, current_step(portal.clock())))
    click(page, button(page, "Verify code"))
    heading(page, "Verify TOTP").wait_for(state="detached")
    assert portal.service().status(username).totp_enabled


def assert_challenged_on_reload_and_in_a_new_tab(early, url: str) -> None:
    early.reload(wait_until="domcontentloaded")
    heading(early, "Two-step verification").wait_for()
    assert "Welcome" not in main_text(early)
    tab = early.context.new_page()  # same browser, same cookie
    goto(tab, url)
    heading(tab, "Two-step verification").wait_for()
    assert "Welcome" not in main_text(tab)
    goto(tab, url.rstrip("/") + "/Manage_MFA")
    heading(tab, "Two-step verification").wait_for()
    assert "User MFA Settings" not in main_text(tab)


def test_an_app_added_challenges_a_browser_signed_in_before(portal, new_page):
    early = early_session(new_page, portal.url, "ivy")
    owner = new_page()
    add_app_on_the_pages(portal, owner, portal.url, "ivy")
    assert_challenged_on_reload_and_in_a_new_tab(early, portal.url)
    goto(owner, portal.url)  # the owner's browser carries on (its cookie, a fresh page)
    welcome(owner, "ivy")


def test_a_passkey_added_challenges_a_browser_signed_in_before(portal, new_page):
    url = localhost(portal.url)
    early = early_session(new_page, url, "jack")
    owner = new_page()
    add_virtual_authenticator(owner)
    sign_in(owner, url, "jack", BROWSER_USERS["jack"])
    welcome(owner, "jack")
    open_manage(owner)
    click(owner, button(owner, "Add a passkey"))
    name = owner.get_by_label("Passkey name", exact=True)
    name.wait_for()
    name.fill("Laptop passkey")
    click(owner, button(owner, "Save passkey"))
    owner.get_by_text("Passkey \u201cLaptop passkey\u201d added.").wait_for()
    assert_challenged_on_reload_and_in_a_new_tab(early, url)
    goto(owner, url)
    welcome(owner, "jack")


def test_after_a_helpdesk_reset_the_new_app_challenges_a_browser_signed_in_meanwhile(portal, new_page):
    portal.enroll("kate")
    portal.service().reset_mfa("kate", actor="admin", reason="lost phone")
    early = early_session(new_page, portal.url, "kate")  # the password-only period
    add_app_on_the_pages(portal, new_page(), portal.url, "kate")
    assert_challenged_on_reload_and_in_a_new_tab(early, portal.url)


def test_an_open_page_of_a_session_signed_out_elsewhere_removes_nothing(portal, new_page):
    secret, last_step = portal.enroll("liam")
    stale = new_page()
    sign_in(stale, portal.url, "liam", BROWSER_USERS["liam"])
    expect_challenge(stale)
    last_step, code = fresh_code(secret, last_step, portal.clock)
    enter_code(stale, code)
    welcome(stale, "liam")
    open_manage(stale)
    click(stale, row_button(stale, "Remove"))
    button(stale, "Yes, remove it").wait_for()  # verified just now: one click from two-step off

    owner = new_page()
    sign_in(owner, portal.url, "liam", BROWSER_USERS["liam"])
    expect_challenge(owner)
    _, code = fresh_code(secret, last_step, portal.clock)
    enter_code(owner, code)
    welcome(owner, "liam")
    open_manage(owner)
    click(owner, button(owner, "Sign out of all other sessions"))
    owner.get_by_text("You signed out of every other session.").wait_for()

    click(stale, button(stale, "Yes, remove it"))
    stale.get_by_label("Username", exact=True).wait_for()
    assert sign_in_form_visible(stale)
    assert portal.service().status("liam").totp_enabled  # two-step stays on
