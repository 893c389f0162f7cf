"""Journey 7: regenerate backup codes and remove TOTP through **Verify it's you**.

A sign-in with a code counts as a verification for 10 minutes; this module's
server runs with the portal's clock injected (portal_launcher.py), and the
journey moves it 11 minutes ahead to make the verification stale.
"""

from __future__ import annotations

import re

from accessibility import assert_accessible
from browser_support import (BACKUP_CODE, button, click, enter_code, error_text, expect_challenge,
                             fresh_code, heading, main_area, main_text, row_button, sign_in, submit)

BROWSER_USERS = {"grace": "grace-browser-pw"}
BROWSER_CLOCK = True
STALE = 11 * 60  # seconds: past the 10-minute verification window


def verify_dialog(page, action_words: str):
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_text("Verify it's you", exact=True).wait_for()
    assert action_words in dialog.inner_text(), dialog.inner_text()
    field = dialog.get_by_label("Authentication code", exact=True)
    field.wait_for()
    assert field.get_attribute("autocomplete") == "one-time-code"
    return dialog


def test_regenerate_codes_and_remove_totp_after_verifying_again(portal, page, shots):
    secret, last_step = portal.enroll("grace")
    old_codes = portal.backup_codes("grace")
    sign_in(page, portal.url, "grace", BROWSER_USERS["grace"])
    expect_challenge(page)
    last_step, code = fresh_code(secret, last_step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Grace Browser").wait_for()

    # Eleven minutes later the sign-in no longer covers sensitive actions.
    portal.move_clock(STALE)
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()
    assert "will ask you to verify it's you" in main_text(page)
    assert "You have 10 backup codes left." in main_text(page)

    click(page, button(page, "Generate"))
    dialog = verify_dialog(page, "generate new backup codes")
    shots(page, "verify-to-generate")
    assert_accessible(page, "verify-its-you-dialog")
    assert "Your new backup codes" not in main_text(page)  # nothing ran yet
    last_step, code = fresh_code(secret, last_step, portal.clock)
    submit(page, "Authentication code", code, "Confirm", scope=dialog)
    page.get_by_role("dialog").wait_for(state="detached")
    button(page, "Done").wait_for()
    listed = main_area(page).locator('[data-testid="stCode"]').first.inner_text()
    new_codes = BACKUP_CODE.findall(listed)
    assert len(set(new_codes)) == 10 and not set(new_codes) & set(old_codes), listed
    assert "You have 10 backup codes left." in main_text(page)
    assert "verify it's you recently" in main_text(page).lower() or "another" in main_text(page)
    shots(page, "new-backup-codes")
    assert_accessible(page, "manage-mfa-new-backup-codes")
    assert main_area(page).get_by_role("link", name="Download backup codes").get_attribute(
        "href").startswith("data:text/plain")
    click(page, button(page, "Done"))
    assert "Generate new backup codes?" in main_text(page)
    assert not BACKUP_CODE.search(main_text(page))  # shown once only

    # Just verified: Remove asks on the page first, and Keep it changes nothing.
    click(page, row_button(page, "Remove"))
    button(page, "Yes, remove it").wait_for()
    assert "Remove your authentication app?" in main_text(page)
    shots(page, "remove-asks-first")
    assert_accessible(page, "manage-mfa-remove-asks-first")
    click(page, button(page, "Keep it"))
    row_button(page, "Remove").wait_for()
    assert portal.service().status("grace").totp_enabled

    # Eleven more minutes: Remove asks again; a wrong code removes nothing.
    portal.move_clock(STALE)
    click(page, row_button(page, "Remove"))
    dialog = verify_dialog(page, "remove “Authentication app”, your only authenticator (two-step "
                                 "verification turns off")
    submit(page, "Authentication code", "000000" if code != "000000" else "111111", "Confirm",
           scope=dialog)
    dialog = page.get_by_role("dialog")
    assert "not valid" in error_text(page) or "already used" in error_text(page), error_text(page)
    shots(page, "verify-to-remove-wrong-code")
    assert portal.service().status("grace").totp_enabled
    _, code = fresh_code(secret, last_step, portal.clock)
    submit(page, "Authentication code", code, "Confirm", scope=dialog)
    page.get_by_role("dialog").wait_for(state="detached")
    page.get_by_text("Add TOTP via authentication app", exact=True).wait_for()
    text = main_text(page)
    assert "TOTP via authentication app enabled" not in text
    assert "Generate new backup codes?" not in text
    assert "Your authentication app was removed" in text
    assert button(page, "Add").is_visible()
    shots(page, "totp-removed")
    status = portal.service().status("grace")
    assert not status.totp_enabled and status.backup_codes_remaining == 0
