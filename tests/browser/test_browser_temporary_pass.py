"""Journey (issue 24): a lost phone, the helpdesk's temporary pass, a new app, the old one removed.

alice has one authentication app ("Lost phone"). The admin signs in with password and
code, opens the Helpdesk, chooses alice and issues a temporary pass (reason, question,
**Verify it's you**, the pass shown once). alice signs in with her password and
**Use a temporary pass**: she reaches only Manage MFA (and Add TOTP), adds a new app,
then removes the lost one; she signs in with the new app. The pass was for one sign-in:
it is refused afterwards, at the portal and by the verification API.

The module's server runs with the portal's clock injected (portal_launcher.py): the
admin's sign-in is made stale (11 minutes) so that issuing the pass asks Verify it's you.
"""

from __future__ import annotations

import re

import httpx

from browser_support import (TOTP_PERIOD, button, click, code_at_step, current_step,
                             enter_code, error_text, expect_challenge, fresh_code, goto, heading,
                             main_area, main_text, row_button, scanned_secret, sign_in, sign_out, submit,
                             wait_for_step, wait_idle)

PASSWORD = "alice-demo"  # alice and admin: the demo users (no BROWSER_USERS: the portal's own)
BROWSER_CLOCK = True
STALE = 11 * 60  # seconds: past the 10-minute verification window
PASS = re.compile(r"\b[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\b")
REASON = "lost her phone, ticket 2424"


def enroll(portal, username: str, label: str) -> tuple[str, int]:
    """An authentication app named ``label`` through the engine (as portal.enroll)."""
    svc = portal.service()
    resource = svc.create_totp(username, label=label)
    if TOTP_PERIOD - portal.clock() % TOTP_PERIOD < 2:
        wait_for_step(current_step(portal.clock()) + 1, portal.clock)
    step = current_step(portal.clock()) - 1
    svc.verify_totp(username, code_at_step(resource.secret, step))
    return resource.secret, step


def issue_pass_on_the_helpdesk(portal, page, shots) -> str:
    """The admin, signed in with two-step, issues alice's pass; returns the pass shown."""
    secret, step = portal.enroll("admin")
    sign_in(page, portal.url, "admin", "admin-demo")
    expect_challenge(page)
    step, code = fresh_code(secret, step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Helpdesk Admin").wait_for()
    portal.move_clock(STALE)  # the sign-in no longer covers a helpdesk action

    click(page, page.locator('[data-testid="stSidebar"]').get_by_role("link",
                                                                      name=re.compile("Helpdesk")))
    heading(page, "Helpdesk").wait_for()
    choose = main_area(page).locator('[data-testid="stSelectbox"]').first
    choose.click()
    page.get_by_role("option", name=re.compile(r"^alice — ")).click()
    heading(page, "Helpdesk actions").wait_for()
    wait_idle(page)
    page.get_by_label("Reason", exact=True).fill(REASON)
    click(page, button(page, "Issue a temporary pass"))
    button(page, "Yes, issue the pass").wait_for()
    asked = main_text(page)
    assert "Issue a temporary pass for Alice Example (alice)?" in asked, asked
    assert "1 sign-in" in asked and f"Reason: {REASON}" in asked
    assert not portal.service().status("alice").temporary_pass_active  # asked, nothing done
    shots(page, "helpdesk-pass-question")

    click(page, button(page, "Yes, issue the pass"))
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Verify it's you", exact=True).wait_for()
    assert not portal.service().status("alice").temporary_pass_active
    _, code = fresh_code(secret, step, portal.clock)
    submit(page, "Authentication code", code, "Confirm", scope=dialog)
    page.get_by_role("dialog").wait_for(state="detached")
    button(page, "Done").wait_for()
    text = main_text(page)
    assert "Temporary pass for Alice Example (alice), valid until" in text, text
    assert "it is shown only this once" in text
    shown = main_area(page).locator('[data-testid="stCode"]').first.inner_text().strip()
    assert PASS.fullmatch(shown), shown
    status = portal.service().status("alice")
    assert status.temporary_pass_active and status.temporary_pass_uses == 1
    shots(page, "helpdesk-pass-shown")
    click(page, button(page, "Done"))
    assert shown not in main_text(page)  # shown once
    sign_out(page)
    return shown


def test_lost_phone_temporary_pass_new_app_old_removed_pass_spent(portal, page, new_page, shots):
    from mfa_core.users import UserDirectory

    UserDirectory(portal.data_dir).ensure_demo_users()  # unless the portal made them already
    lost, lost_step = enroll(portal, "alice", "Lost phone")
    portal.backup_codes("alice")

    temporary = issue_pass_on_the_helpdesk(portal, page, shots)

    # alice: password, then Use a temporary pass.
    page = new_page()
    sign_in(page, portal.url, "alice", PASSWORD)
    expect_challenge(page)
    click(page, button(page, "Use a temporary pass"))
    page.get_by_label("Temporary pass", exact=True).wait_for()
    shots(page, "challenge-temporary-pass")
    submit(page, "Temporary pass", temporary, "Continue")

    # Only Manage MFA: the home page shows the restriction and a link to Manage MFA.
    page.get_by_text("You signed in with a temporary pass from the helpdesk.").wait_for()
    assert heading(page, "Welcome, Alice Example").count() == 0
    main_area(page).get_by_role("link", name=re.compile("Manage MFA")).wait_for()
    shots(page, "pass-home-restricted")
    goto(page, portal.at("Helpdesk"))
    page.get_by_text("You signed in with a temporary pass from the helpdesk.").wait_for()
    assert heading(page, "Helpdesk").count() == 0
    assert "Issue a temporary pass" not in main_text(page)

    goto(page, portal.at("Manage_MFA"))
    heading(page, "User MFA Settings").wait_for()
    assert "Lost phone" in main_text(page)
    assert row_button(page, "Remove").count() == 0  # a pass only adds
    assert "You have 10 backup codes left." not in main_text(page)
    shots(page, "pass-manage-mfa")

    # A new app: the QR code decoded, its first code typed.
    click(page, button(page, "Add another authentication app"))
    heading(page, "Add TOTP MFA").wait_for()
    new = scanned_secret(page)
    submit(page, "Name for this authenticator", "New phone", "Verify")
    heading(page, "Verify TOTP").wait_for()
    new_step, code = fresh_code(new, -1, portal.clock)
    submit(page, "Enter the code from your authentication app", code, "Verify code")
    heading(page, "Success!").wait_for()
    shots(page, "pass-new-app-added")

    # Back on Manage MFA the restriction is lifted: remove the lost phone.
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()
    page.get_by_text("Your new authenticator is set up: the temporary pass is no longer needed."
                     ).wait_for()
    shots(page, "pass-manage-mfa-after-add")
    click(page, row_button(page, "Remove").first)  # the first row: Lost phone
    assert "Lost phone" in main_text(page)
    click(page, button(page, "Yes, remove it"))
    page.get_by_text("Your other authenticators and your backup codes still work").wait_for()
    status = portal.service().status("alice")
    assert [a.label for a in status.authenticators] == ["New phone"]
    assert status.two_factor_enabled
    shots(page, "pass-lost-phone-removed")

    # The new app signs in (the full portal); the lost phone's code does not.
    sign_out(page)
    sign_in(page, portal.url, "alice", PASSWORD)
    expect_challenge(page)
    lost_step, code = fresh_code(lost, lost_step, portal.clock)
    enter_code(page, code)
    page.get_by_text("not valid", exact=False).first.wait_for()
    new_step, code = fresh_code(new, new_step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Alice Example").wait_for()
    assert "temporary pass" not in main_text(page)
    sign_out(page)

    # The pass was for one sign-in: spent, it is no longer offered and, typed where a code
    # goes, refused.
    assert not portal.service().status("alice").temporary_pass_active
    sign_in(page, portal.url, "alice", PASSWORD)
    expect_challenge(page)
    assert button(page, "Use a temporary pass").count() == 0
    click(page, button(page, "Use a backup code"))
    submit(page, "Backup code", temporary, "Continue")
    assert "not valid or was already used" in error_text(page), main_text(page)
    assert heading(page, "Two-step verification").is_visible()
    shots(page, "spent-pass-refused")

    # The verification API never takes the pass as a code.
    from mfa_core import clients as api_clients

    key = api_clients.open_registry(portal.data_dir, portal.service()).add("tap-journey",
                                                                           actor="tests")
    answer = httpx.post(portal.at("api/v1/verify"), json={"username": "alice", "code": temporary},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code in (200, 400), answer.text
    assert answer.json().get("ok") is not True, answer.text
