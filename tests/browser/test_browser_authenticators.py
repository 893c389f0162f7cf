"""Journey: a second authentication app beside the first, each signs in, one renamed, the other removed."""

from __future__ import annotations

import re

from accessibility import assert_accessible
from browser_support import (button, click, enter_code, error_text, expect_challenge,
                             fresh_code, heading, main_area, main_text, scanned_secret, sign_in, sign_out,
                             submit)

BROWSER_USERS = {"henry": "henry-browser-pw"}
PASSWORD = BROWSER_USERS["henry"]
PHONE_WIDTH = {"width": 390, "height": 844}


def open_manage_mfa(page) -> None:
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()


def rows(page) -> list[str]:
    """The authenticators table as shown: one text per row (the bordered containers)."""
    found = main_area(page).locator('[data-testid="stVerticalBlockBorderWrapper"], '
                                    '[data-testid="stHorizontalBlock"]').filter(
        has=page.get_by_role("button", name="Rename"))
    return [t for t in found.all_inner_texts() if "Added" in t]


def sign_in_with(page, portal, secret, last_step) -> int:
    sign_in(page, portal.url, "henry", PASSWORD)
    expect_challenge(page)
    last_step, code = fresh_code(secret, last_step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Henry Browser").wait_for()
    return last_step


def test_a_second_app_signs_in_then_one_is_renamed_and_the_other_removed(portal, page, shots):
    phone, phone_step = portal.enroll("henry")
    portal.backup_codes("henry")
    phone_step = sign_in_with(page, portal, phone, phone_step)

    open_manage_mfa(page)
    assert "TOTP via authentication app enabled" in main_text(page)
    [only] = rows(page)
    assert "Authentication app" in only and "Authentication app" in only
    shots(page, "authenticators-one")
    assert_accessible(page, "manage-mfa-one-app")

    # Add another: the name first (prefilled, editable), the QR code, its first code.
    click(page, button(page, "Add another authentication app"))
    heading(page, "Add TOTP MFA").wait_for()
    name = page.get_by_label("Name for this authenticator", exact=True)
    assert name.input_value() == "Authentication app 2"
    tablet = scanned_secret(page)
    shots(page, "add-another-app")
    assert_accessible(page, "add-totp-another-app")
    submit(page, "Name for this authenticator", "Authentication app", "Verify")
    assert "already have an authenticator named" in error_text(page)
    submit(page, "Name for this authenticator", "Work tablet", "Verify")
    heading(page, "Verify TOTP").wait_for()
    tablet_step, code = fresh_code(tablet, -1, portal.clock)
    submit(page, "Enter the code from your authentication app", code, "Verify code")
    heading(page, "Success!").wait_for()
    assert "your backup codes are unchanged" in main_text(page)  # no new set for a second app
    assert_accessible(page, "add-totp-another-success")

    open_manage_mfa(page)
    listed = rows(page)
    assert len(listed) == 2 and "Work tablet" in listed[1] and "not used yet" in listed[1]
    assert "You have 10 backup codes left." in main_text(page)
    shots(page, "authenticators-two", doc="manage-mfa-authenticators")
    assert_accessible(page, "manage-mfa-two-apps")
    page.set_viewport_size(PHONE_WIDTH)
    shots(page, "authenticators-two-phone")
    page.set_viewport_size({"width": 1100, "height": 860})

    # Each app signs in on its own.
    sign_out(page)
    tablet_step = sign_in_with(page, portal, tablet, tablet_step)
    sign_out(page)
    phone_step = sign_in_with(page, portal, phone, phone_step)
    open_manage_mfa(page)
    listed = rows(page)
    assert "last used" in listed[0] and "last used" in listed[1], listed

    # Rename the first: the row turns into a name field.
    ids = {a.label: a.id for a in portal.service().status("henry").authenticators}
    click(page, main_area(page).locator(f".st-key-manage_rename_{ids['Authentication app']} button"))
    field = page.get_by_label("New name for Authentication app", exact=True)
    field.wait_for()
    assert_accessible(page, "manage-mfa-rename")
    submit(page, "New name for Authentication app", "work tablet", "Save")
    assert "already have an authenticator named" in error_text(page)
    submit(page, "New name for Authentication app", "Phone", "Save")
    page.get_by_text("The authenticator was renamed.").wait_for()
    assert [a.label for a in portal.service().status("henry").authenticators] == ["Phone",
                                                                                 "Work tablet"]
    assert "Phone" in rows(page)[0]
    shots(page, "authenticators-renamed")

    # Remove the other: one of two is asked about first (other sessions are signed out),
    # then goes without a dialog (verified recently); two-step stays on.
    click(page, main_area(page).locator(f".st-key-manage_remove_{ids['Work tablet']} button"))
    assert "Your other sessions will be signed out." in main_text(page)
    assert len(portal.service().status("henry").authenticators) == 2
    click(page, button(page, "Yes, remove it"))
    page.get_by_text("Your other authenticators and your backup codes still work").wait_for()
    listed = rows(page)
    assert len(listed) == 1 and "Phone" in listed[0]
    assert "TOTP via authentication app enabled" in main_text(page)
    assert "You have 10 backup codes left." in main_text(page)
    shots(page, "authenticators-after-remove")
    assert_accessible(page, "manage-mfa-after-remove")
    status = portal.service().status("henry")
    assert status.two_factor_enabled and [a.label for a in status.authenticators] == ["Phone"]

    # The removed app no longer signs in; the kept one does.
    sign_out(page)
    sign_in(page, portal.url, "henry", PASSWORD)
    expect_challenge(page)
    tablet_step, code = fresh_code(tablet, tablet_step, portal.clock)
    enter_code(page, code)
    page.get_by_text("not valid", exact=False).first.wait_for()
    _, code = fresh_code(phone, phone_step, portal.clock)
    enter_code(page, code)
    heading(page, "Welcome, Henry Browser").wait_for()
