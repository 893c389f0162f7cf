"""Journey: a passkey in real Chromium with a CDP virtual authenticator.

Add a passkey on Manage MFA (named by the user; two-step turns on and backup
codes appear), sign out, sign in with the password and **Use a passkey** (no
code typed), verify it's you with the passkey; rename it and remove it in the
authenticators table. Another browser, whose authenticator does not hold
that passkey, cannot use it. The
portal is opened at http://localhost:<port> (the relying party ``localhost``;
browsers refuse passkeys on an IP address). axe-core checks each new state.
"""

from __future__ import annotations

import re

from accessibility import assert_accessible
from browser_support import (BACKUP_CODE, button, click, error_text, heading, main_area, main_text,
                             row_button, sign_in, sign_out)
from passkey_support import add_virtual_authenticator, localhost

BROWSER_USERS = {"pat": "pat-browser-pw", "quinn": "quinn-browser-pw"}
BROWSER_CLOCK = True
STALE = 11 * 60  # seconds: past the 10-minute verification window


def open_manage(page) -> None:
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()


def test_add_a_passkey_sign_in_and_verify_with_it(portal, new_page, shots):
    url = localhost(portal.url)
    page = new_page()
    authenticator = add_virtual_authenticator(page)
    sign_in(page, url, "pat", BROWSER_USERS["pat"])
    heading(page, "Welcome, Pat Browser").wait_for()
    open_manage(page)
    assert "Add TOTP via authentication app" in main_text(page)

    # Add a passkey: just signed in with the password, so no dialog; the name is prefilled.
    click(page, button(page, "Add a passkey"))
    name = page.get_by_label("Passkey name", exact=True)
    name.wait_for()
    assert name.input_value() == "Passkey on this device"
    assert len(authenticator.credentials()) == 1
    shots(page, "passkey-name")
    assert_accessible(page, "manage-mfa-name-new-passkey")
    name.fill("Laptop passkey")
    click(page, button(page, "Save passkey"))
    page.get_by_text("Passkey \u201cLaptop passkey\u201d added.").wait_for()
    button(page, "Done").wait_for()  # two-step is on: ten backup codes, shown once
    codes = BACKUP_CODE.findall(main_area(page).locator('[data-testid="stCode"]').first.inner_text())
    assert len(set(codes)) == 10
    text = main_text(page)
    assert "Laptop passkey" in text and "Passkey" in text and "not used yet" in text
    assert "Two-step verification is on." in text
    status = portal.service().status("pat")
    assert status.two_factor_enabled and not status.totp_enabled
    assert [a.kind for a in status.authenticators] == ["passkey"]
    shots(page, "passkey-added")
    assert_accessible(page, "manage-mfa-passkey-added")
    click(page, button(page, "Done"))

    # Sign out; the password alone is not enough, the passkey finishes the sign-in.
    sign_out(page)
    sign_in(page, url, "pat", BROWSER_USERS["pat"])
    heading(page, "Two-step verification").wait_for()
    assert page.get_by_label("Authentication code", exact=True).count() == 0  # no app: no code field
    shots(page, "challenge-with-passkey")
    assert_accessible(page, "sign-in-challenge-passkey")
    click(page, button(page, "Use a passkey"))
    heading(page, "Welcome, Pat Browser").wait_for()
    assert not error_text(page)
    assert portal.service().status("pat").authenticators[0].last_used_at is not None

    # Another browser whose authenticator lacks the passkey: password yes, passkey no.
    other = new_page()
    add_virtual_authenticator(other)
    sign_in(other, url, "pat", BROWSER_USERS["pat"])
    heading(other, "Two-step verification").wait_for()
    click(other, button(other, "Use a passkey"))
    other.locator('[data-testid="stAlertContentError"]').wait_for()
    assert "cancelled or not allowed" in error_text(other)
    assert heading(other, "Two-step verification").is_visible()
    assert_accessible(other, "sign-in-challenge-passkey-refused")

    # Eleven minutes on: new backup codes ask to verify it's you, and the passkey answers.
    portal.move_clock(STALE)
    open_manage(page)
    click(page, button(page, "Generate"))
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Verify it's you", exact=True).wait_for()
    assert "use your passkey" in dialog.inner_text()
    shots(page, "verify-with-passkey")
    assert_accessible(page, "verify-its-you-passkey")
    click(page, dialog.get_by_role("button", name="Use a passkey", exact=True))
    page.get_by_role("dialog").wait_for(state="detached")
    button(page, "Done").wait_for()
    assert not set(codes) & set(BACKUP_CODE.findall(main_text(page)))  # a new set
    click(page, button(page, "Done"))


def test_rename_and_remove_a_passkey(portal, new_page):
    url = localhost(portal.url)
    page = new_page()
    add_virtual_authenticator(page)
    sign_in(page, url, "quinn", BROWSER_USERS["quinn"])
    heading(page, "Welcome, Quinn Browser").wait_for()
    open_manage(page)
    click(page, button(page, "Add a passkey"))
    page.get_by_label("Passkey name", exact=True).wait_for()
    click(page, button(page, "Save passkey"))
    page.get_by_text("Passkey \u201cPasskey on this device\u201d added.").wait_for()
    click(page, button(page, "Done"))

    # Just verified (the password): the changes need no dialog.
    click(page, row_button(page, "Rename"))
    page.get_by_label(re.compile("New name for")).fill("Work laptop")
    click(page, button(page, "Save"))
    page.get_by_text("The authenticator was renamed.").wait_for()
    assert [a.label for a in portal.service().status("quinn").authenticators] == ["Work laptop"]
    assert_accessible(page, "manage-mfa-passkey-renamed")

    # Removing the only authenticator asks on the page, then two-step is off.
    click(page, row_button(page, "Remove"))
    click(page, button(page, "Yes, remove it"))
    page.get_by_text("Add TOTP via authentication app").wait_for()
    assert "Work laptop" not in main_text(page)
    assert not portal.service().status("quinn").two_factor_enabled
    assert_accessible(page, "manage-mfa-passkey-removed")
