"""Journeys (issue 23): the organization's two-step rule at sign-in, in real Chromium.

Rules (set through the engine before the first sign-in, as ``policy set`` would):
everyone within 14 days; admins with passkeys only (helen, another admin, has one).

- gina (no authenticator) signs in: "Your organization requires two-step verification
  by <date> (14 days left)"; **Remind me later** takes her home. A day later the screen
  is back (13 days left); **Set it up now** leads to Manage MFA, she adds an app and
  lands on the home page.
- admin has only an authentication app: the code signs him in, but every page other
  than Manage MFA holds him (the Helpdesk too, by URL); he adds a passkey (CDP virtual
  authenticator) and lands on the home page; the Helpdesk opens, with its Policy and
  Coverage tabs.

axe-core checks each new screen; screenshots at desktop and phone width.
"""

from __future__ import annotations

import re

import pytest

from accessibility import assert_accessible
from browser_support import (button, click, enter_code, expect_challenge,
                             fresh_code, goto, heading, main_area, main_text, set_up_first_app, sign_in,
                             sign_out, wait_idle)
from passkey_support import add_virtual_authenticator, localhost

BROWSER_USERS = {"gina": "gina-browser-pw", "helen": "helen-browser-pw"}
BROWSER_CLOCK = True
DAY = 86400
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 860}


def both_widths(page, shots, name: str) -> None:
    """A screenshot at desktop width and one at phone width."""
    shots(page, name)
    page.set_viewport_size(PHONE)
    wait_idle(page)
    shots(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)
    wait_idle(page)


@pytest.fixture(scope="module")
def rules(portal):
    """helen (an admin) gets a passkey, admin an app; then the two rules."""
    from mfa_core.users import UserDirectory

    from tests.webauthn_authenticator import SoftAuthenticator

    UserDirectory(portal.data_dir).ensure_demo_users()
    directory = UserDirectory(portal.data_dir)
    directory.remove("helen")
    directory.add("helen", BROWSER_USERS["helen"], name="Helen Browser",
                  email="helen@example.com", roles=["user", "admin"])
    svc = portal.service()
    origin = localhost(portal.url)
    token = svc.sessions.start("helen", second_factor_passed=True)
    options = svc.begin_passkey_registration("helen", session=token, origin=origin)
    svc.finish_passkey_registration("helen", SoftAuthenticator(origin=origin).create(options),
                                    session=token, label="Security key")
    secret, step = portal.enroll("admin")
    svc.set_policy_rule(target="everyone", grace_days=14, actor="helen")
    svc.set_policy_rule(target="role:admin", grace_days=0, allow=["passkey", "backup_code"],
                        actor="helen")
    return secret, step


def test_grace_remind_me_later_then_set_it_up_now_and_home(portal, page, shots, rules):
    sign_in(page, portal.url, "gina", BROWSER_USERS["gina"])
    heading(page, "Set up two-step verification").wait_for()
    text = main_text(page)
    assert re.search(r"Your organization requires two-step verification by \d+ \w+ \d{4} "
                     r"\(14 days left\)\.", text), text
    both_widths(page, shots, "grace")
    assert_accessible(page, "policy-grace")
    click(page, button(page, "Remind me later"))
    heading(page, "Welcome, Gina Browser").wait_for()
    assert "(14 days left)" in main_text(page)  # the date stays in view
    sign_out(page)

    portal.move_clock(DAY + 60)
    sign_in(page, portal.url, "gina", BROWSER_USERS["gina"])
    heading(page, "Set up two-step verification").wait_for()
    assert "(13 days left)" in main_text(page)
    click(page, button(page, "Set it up now"))
    heading(page, "User MFA Settings").wait_for()
    assert "(13 days left)" in main_text(page)
    both_widths(page, shots, "grace-manage-mfa")
    assert_accessible(page, "policy-grace-manage-mfa")
    click(page, button(page, "Add"))
    set_up_first_app(page, portal.clock)
    heading(page, "Welcome, Gina Browser").wait_for()
    assert "You have successfully added TOTP MFA" in main_text(page)
    assert "days left" not in main_text(page)
    assert portal.service().requirement("gina").state == "met"


def test_admin_with_only_an_app_is_held_until_a_passkey_is_added(portal, new_page, shots, rules):
    secret, step = rules
    url = localhost(portal.url)
    page = new_page()
    add_virtual_authenticator(page)
    sign_in(page, url, "admin", "admin-demo")
    expect_challenge(page)
    step, code = fresh_code(secret, step, portal.clock)
    enter_code(page, code)
    heading(page, "Add a passkey").wait_for()
    assert "requires a passkey for your account" in main_text(page)
    assert heading(page, "Welcome, Helpdesk Admin").count() == 0
    both_widths(page, shots, "admin-held")
    assert_accessible(page, "policy-disallowed-held")

    goto(page, f"{url}/Helpdesk")  # by its URL: held the same
    heading(page, "Add a passkey").wait_for()
    assert heading(page, "Helpdesk").count() == 0
    assert "Search users" not in main_text(page)

    click(page, button(page, "Set it up now"))
    heading(page, "User MFA Settings").wait_for()
    assert "requires a passkey for your account" in main_text(page)
    assert button(page, "Add another authentication app").count() == 0
    both_widths(page, shots, "admin-held-manage-mfa")
    assert_accessible(page, "policy-disallowed-manage-mfa")

    click(page, button(page, "Add a passkey"))
    page.get_by_label("Passkey name", exact=True).wait_for()
    click(page, button(page, "Save passkey"))
    heading(page, "Welcome, Helpdesk Admin").wait_for()
    assert portal.service().requirement("admin").state == "met"

    # Released: the Helpdesk opens, with the Policy and Coverage tabs.
    click(page, page.locator('[data-testid="stSidebar"]').get_by_role("link",
                                                                      name=re.compile("Helpdesk")))
    heading(page, "Helpdesk").wait_for()
    click(page, page.get_by_role("tab", name="Policy"))
    heading(page, "Two-step rules").wait_for()
    main_area(page).locator('[data-testid="stDataFrame"]').wait_for()  # the rules (a canvas)
    both_widths(page, shots, "helpdesk-policy")
    assert_accessible(page, "helpdesk-policy")
    click(page, page.get_by_role("tab", name="Coverage"))
    heading(page, "Coverage").wait_for()
    page.locator('[data-testid="stMetric"]').first.wait_for()
    both_widths(page, shots, "helpdesk-coverage")
    assert_accessible(page, "helpdesk-coverage")

    # The CSV: made when asked for, saved by the browser from the page itself (a data: link).
    click(page, button(page, "Prepare the CSV"))
    link = main_area(page).get_by_role("link", name="Download the CSV")
    link.wait_for()
    assert link.get_attribute("href").startswith("data:text/csv;")
    with page.expect_download() as saved:
        link.click()
    text = open(saved.value.path(), encoding="utf-8").read()
    assert text.splitlines()[0] == "username,state,days_left", text
    assert any(line.startswith("bob,grace,") for line in text.splitlines()), text
    link.scroll_into_view_if_needed()
    shots(page, "helpdesk-coverage-csv")
    assert_accessible(page, "helpdesk-coverage-csv")
    sign_out(page)
