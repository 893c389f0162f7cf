"""Journey: what a new user tripped over (issue 21), in a real browser.

The code fields (no telephone, a number keypad, one-time-code) on every screen
that asks a code; Sign out says only that; a phone (390 px, an iPhone's
User-Agent) gets Sign out on every page, the link before the QR code and a
Helpdesk that fits; every row's buttons have their own names; Tab reaches
Username first; an unknown address gets the portal's own "Page not found".
"""

from __future__ import annotations

import re
from contextlib import contextmanager

from playwright.sync_api import expect

from accessibility import assert_accessible
from browser_support import (IDLE_TRACKER, TIMEOUT_MS, button, click, code_at_step, current_step,
                             enter_code, expect_challenge, fresh_code, goto, heading, main_area,
                             main_text, sign_in)

BROWSER_USERS = {"ivy": "ivy-browser-pw", "jack": "jack-browser-pw", "kim": "kim-browser-pw",
                 "lena": "lena-browser-pw"}
BROWSER_CLOCK = True
STALE = 11 * 60  # seconds: past the 10-minute verification window
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@contextmanager
def browser_page(browser, *, viewport, user_agent=None):
    """A page in its own context with this window size (and User-Agent)."""
    options = {"user_agent": user_agent} if user_agent else {}
    context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC", **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(IDLE_TRACKER)
    try:
        yield context.new_page()
    finally:
        shown = [t for p in context.pages
                 for t in p.locator('[data-testid="stException"]').all_inner_texts()]
        context.close()
        assert not shown, shown


def assert_code_field(scope, label: str, placeholder: str = "123456") -> None:
    """A code field, not a phone-number field: no telephone icon, no "+1 234 567 8900"."""
    field = scope.get_by_label(label, exact=True)
    field.wait_for()
    expect(field).to_have_attribute("inputmode", "numeric")
    assert field.get_attribute("type") == "text"
    assert field.get_attribute("autocomplete") == "one-time-code"
    assert field.get_attribute("placeholder") == placeholder
    box = field.locator("xpath=ancestor::*[@data-testid='stTextInput'][1]")
    assert box.locator('[data-testid="stTextInputIcon"]').count() == 0


def test_every_screen_asks_a_code_with_a_code_field(portal, page, shots):
    secret, step = portal.enroll("ivy")
    portal.backup_codes("ivy")
    sign_in(page, portal.url, "ivy", BROWSER_USERS["ivy"])
    expect_challenge(page)
    assert_code_field(page, "Authentication code")
    shots(page, "challenge-code-field")
    click(page, button(page, "Use a backup code"))
    backup = page.get_by_label("Backup code", exact=True)
    assert backup.get_attribute("placeholder") == "xxxx-xxxx-xxxx-xxxx"
    assert backup.get_attribute("inputmode") is None  # letters too
    click(page, button(page, "Use your authentication app"))
    step, code = fresh_code(secret, step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Ivy Browser").wait_for()

    # Verify it's you (the sign-in is stale after 11 minutes).
    portal.move_clock(STALE)
    goto(page, portal.at("Manage_MFA"))
    click(page, button(page, "Generate"))
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert "your 10 unused codes stop working" in dialog.inner_text()
    assert_code_field(dialog, "Authentication code")
    shots(page, "verify-its-you-code-field")
    click(page, dialog.get_by_role("button", name="Cancel", exact=True))

    # Add TOTP's step verify.
    click(page, button(page, "Add another authentication app"))
    dialog = page.get_by_role("dialog")
    step, code = fresh_code(secret, step, portal.clock)
    dialog.get_by_label("Authentication code", exact=True).fill(code)
    click(page, dialog.get_by_role("button", name="Confirm", exact=True))
    heading(page, "Add TOTP MFA").wait_for()
    click(page, button(page, "Verify"))
    heading(page, "Verify TOTP").wait_for()
    assert_code_field(page, "Enter the code from your authentication app")
    shots(page, "add-totp-code-field")


def test_sign_out_says_only_that_and_leaves_no_sidebar(portal, page, shots):
    sign_in(page, portal.at("Manage_MFA"), "jack", BROWSER_USERS["jack"])
    heading(page, "User MFA Settings").wait_for()
    click(page, button(page, "Sign out"))
    page.get_by_label("Username", exact=True).wait_for()
    page.get_by_text("You have signed out.").wait_for()
    text = main_text(page)
    assert "You must be logged in to access this page" not in text
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.count() == 0 or not sidebar.is_visible()
    assert page.locator('[data-testid="stSidebarCollapsedControl"]').count() == 0 or \
        not page.locator('[data-testid="stSidebarCollapsedControl"]').is_visible()
    shots(page, "signed-out")


def admin_signed_in(page, portal, secret: str, step: int) -> int:
    sign_in(page, portal.url, "admin", "admin-demo")
    expect_challenge(page)
    step, code = fresh_code(secret, step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Helpdesk Admin").wait_for()
    return step


def test_a_phone_gets_sign_out_everywhere_the_link_first_and_a_helpdesk_that_fits(portal, browser,
                                                                                  shots):
    with browser_page(browser, viewport=PHONE, user_agent=IPHONE) as phone:
        sign_in(phone, portal.url, "kim", BROWSER_USERS["kim"])
        heading(phone, "Welcome, Kim Browser").wait_for()
        for path, title in (("", "Welcome, Kim Browser"), ("Manage_MFA", "User MFA Settings"),
                            ("Add_TOTP", "Add TOTP MFA")):
            goto(phone, portal.at(path))
            heading(phone, title).wait_for()
            top = main_area(phone).get_by_role("button", name="Sign out", exact=True)
            assert top.is_visible(), path
            box = top.bounding_box()
            assert box and box["x"] + box["width"] <= PHONE["width"], (path, box)
        shots(phone, "phone-add-totp")
        link = main_area(phone).get_by_role("link", name="Add to my authentication app")
        assert link.get_attribute("href").startswith("otpauth://totp/")
        assert "Scan this QR code" not in main_text(phone)
        assert main_area(phone).locator("img").count() == 0
        assert_accessible(phone, "phone-add-totp")

    secret, step = portal.enroll("admin")
    with browser_page(browser, viewport=PHONE, user_agent=IPHONE) as phone:
        step = admin_signed_in(phone, portal, secret, step)
        goto(phone, portal.at("Helpdesk"))
        heading(phone, "Helpdesk").wait_for()
        phone.get_by_text("Search users").wait_for()
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        shots(phone, "phone-helpdesk")
    with browser_page(browser, viewport=DESKTOP) as desk:
        admin_signed_in(desk, portal, secret, step)
        goto(desk, portal.at("Helpdesk"))
        heading(desk, "Helpdesk").wait_for()
        desk.locator('[data-testid="stDataFrame"]').first.wait_for()
        desk.locator('[data-testid="stSelectbox"]').first.click()  # opens the list: no run
        click(desk, desk.get_by_role("option", name=re.compile("^ivy ")))
        desk.get_by_text("Audit trail", exact=True).wait_for()
        shots(desk, "desktop-helpdesk")
        grid = desk.locator('[data-testid="stDataFrame"]').first.bounding_box()
        # A wide page: more room than a centered one (736 px) for eight columns.
        assert grid["width"] > 760, grid


def test_each_row_button_says_which_authenticator_or_session(portal, new_page, shots):
    secret, step = portal.enroll("lena")
    service = portal.service()
    tablet = service.create_totp("lena", label="Work tablet").secret
    service.verify_totp("lena", code_at_step(tablet, current_step(portal.clock())))
    other = new_page()
    sign_in(other, portal.url, "lena", BROWSER_USERS["lena"])
    expect_challenge(other)
    step, code = fresh_code(secret, step, portal.clock)
    enter_code(other, code)
    page = new_page()
    sign_in(page, portal.at("Manage_MFA"), "lena", BROWSER_USERS["lena"])
    expect_challenge(page)
    step, code = fresh_code(secret, step, portal.clock)
    enter_code(page, code)
    heading(page, "User MFA Settings").wait_for()
    for name in ("Rename “Authentication app”", "Remove “Authentication app”",
                 "Rename “Work tablet”", "Remove “Work tablet”"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    # The other session's Sign out is not the page's own.
    assert page.get_by_role("button", name="Sign out", exact=True).count() == 1
    page.get_by_role("button", name=re.compile(r"^Sign out .+")).first.wait_for()
    names = [b.get_attribute("aria-label") or b.inner_text()
             for b in main_area(page).get_by_role("button").all()]
    others = [n for n in names if n.startswith("Sign out ") and "all other" not in n]
    assert len(others) == 1 and re.fullmatch(r"Sign out .+ \(.+\)", others[0]), names
    shots(page, "manage-row-names")


def test_tab_reaches_username_without_passing_heading_links(portal, page):
    goto(page, portal.url)
    page.get_by_label("Username", exact=True).wait_for()
    assert page.locator('[data-testid="stHeaderActionElements"] a').count() == 0
    passed = []
    for _ in range(15):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => { const e = document.activeElement; return "
                                "[e.getAttribute('aria-label') || e.innerText || e.tagName]; }")[0]
        if focused == "Username":
            break
        passed.append(focused)
    else:
        raise AssertionError(f"Tab never reached Username: {passed}")
    assert "Link to heading" not in passed, passed


def test_an_unknown_address_gets_the_portals_page_not_found(portal, page, shots):
    answer = page.goto(portal.at("no-such-page"))
    assert answer.status == 404
    page.get_by_role("heading", name="Page not found").wait_for()
    assert "There is no page at this address in the MFA Portal" in page.inner_text("body")
    assert "Running the app's main page" not in page.inner_text("body")
    shots.dir.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots.dir / "not-found.png"))
    click_home = page.get_by_role("link", name=re.compile("home page"))
    click_home.click()
    page.get_by_label("Username", exact=True).wait_for()
