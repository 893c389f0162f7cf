"""Journey 2: a new user adds an authenticator app, saves backup codes and sees TOTP enabled."""

from __future__ import annotations

import base64
import re
import urllib.parse
from pathlib import Path

from playwright.sync_api import expect

from accessibility import assert_accessible
from browser_support import (BACKUP_CODE, button, code_at_step, current_step, decode_qr, error_text,
                             heading, main_area, main_text, row_button, sign_in, submit, click)


def open_manage_mfa(page) -> None:
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()


def test_new_user_adds_totp_with_the_qr_code_and_saves_backup_codes(portal, page, shots):
    # alice is a demo user the portal created itself on this fresh data dir.
    sign_in(page, portal.url, "alice", "alice-demo")
    heading(page, "Welcome, Alice Example").wait_for()
    assert "Two-step verification is off" in main_text(page)
    shots(page, "home-signed-in")
    assert_accessible(page, "home")

    open_manage_mfa(page)
    assert "Add TOTP via authentication app" in main_text(page)
    shots(page, "manage-mfa-off")
    assert_accessible(page, "manage-mfa-off")
    click(page, button(page, "Add"))

    # Step add: the QR code, decoded from the image the page shows: inline, never a
    # /media/ URL that another client could fetch.
    heading(page, "Add TOTP MFA").wait_for()
    image = main_area(page).get_by_role("img", name="QR code to scan with your authentication app")
    image.wait_for()
    box = image.bounding_box()
    assert box and round(box["width"]) == 200 and round(box["height"]) == 200, box
    src = image.get_attribute("src")
    assert src.startswith("data:image/png;base64,") and "/media/" not in src, src[:40]
    uri_from_image = decode_qr(base64.b64decode(src.split(",", 1)[1]))
    assert decode_qr(image.screenshot()) == uri_from_image  # decodable as rendered, too
    assert page.locator('img[src*="/media/"]').count() == 0
    shots(page, "add-totp-qr", doc="add-totp-qr")
    assert_accessible(page, "add-totp-qr")

    click(page, button(page, "Use URI instead"))
    button(page, "Use QR Code instead").wait_for()
    assert main_area(page).locator("img").count() == 0
    shown_uri = main_area(page).locator('[data-testid="stCode"]').first.inner_text().strip()
    shots(page, "add-totp-uri")
    assert_accessible(page, "add-totp-uri")
    assert shown_uri == uri_from_image
    parsed = urllib.parse.urlparse(shown_uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert urllib.parse.unquote(parsed.path) == "/MFA Portal:alice"
    query = urllib.parse.parse_qs(parsed.query)
    secret = query["secret"][0]
    assert query["issuer"] == ["MFA Portal"]
    # The key for typing by hand is the same secret, grouped.
    assert secret in main_text(page).replace(" ", "")

    click(page, button(page, "Use QR Code instead"))
    image = main_area(page).get_by_role("img", name="QR code to scan with your authentication app")
    image.wait_for()
    assert decode_qr(image.screenshot()) == shown_uri  # same secret after the toggles

    # Step verify: a code computed from the decoded secret.
    click(page, button(page, "Verify"))
    heading(page, "Verify TOTP").wait_for()
    shots(page, "verify-totp")
    field = page.get_by_label("Enter the code from your authentication app", exact=True)
    assert field.get_attribute("autocomplete") == "one-time-code"
    expect(field).to_have_attribute("inputmode", "numeric")  # a numeric keypad on phones
    assert_accessible(page, "verify-totp")
    submit(page, "Enter the code from your authentication app", code_at_step(secret, current_step()),
           "Verify code")

    # Step backupcodes: ten codes, the same in the download, one typed back.
    heading(page, "Verification was a success!").wait_for()
    assert ("Save this list of backup codes somewhere safe in case you need to access your "
            "account in an emergency") in main_text(page)
    listed = main_area(page).locator('[data-testid="stCode"]').first.inner_text()
    codes = BACKUP_CODE.findall(listed)
    assert len(codes) == 10 and len(set(codes)) == 10, listed
    shots(page, "backup-codes", doc="backup-codes")
    assert_accessible(page, "backup-codes")
    # The download is made by the browser from the page (a data: link): no server URL
    # holds the codes, so nothing can fetch them again or without this session.
    link = main_area(page).get_by_role("link", name="Download backup codes")
    assert link.get_attribute("href").startswith("data:text/plain")
    assert page.locator('a[href*="/media/"]').count() == 0
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "mfa-portal-backup-codes.txt"
    saved = Path(download.path()).read_text("utf-8")
    assert BACKUP_CODE.findall(saved) == codes

    confirm = "To show you saved them, type one of the backup codes"
    submit(page, confirm, "aaaa-bbbb-cccc-dddd", "Finish")
    assert "not one of the codes above" in error_text(page)
    heading(page, "Verification was a success!").wait_for()
    # Typed back from the downloaded file, as a person would: upper case, no dashes.
    typed_back = BACKUP_CODE.findall(saved)[3].replace("-", "").upper()
    submit(page, confirm, typed_back, "Finish")

    heading(page, "Success!").wait_for()
    assert "You have successfully added TOTP MFA via an authentication application." in main_text(page)
    shots(page, "success")
    assert_accessible(page, "add-totp-success")

    open_manage_mfa(page)
    text = main_text(page)
    assert "TOTP via authentication app enabled" in text
    assert "Add TOTP via authentication app" not in text
    assert row_button(page, "Remove").is_visible()
    assert "You have 10 backup codes left." in text  # typing one back used none up
    assert "Generate new backup codes?" in text
    shots(page, "manage-mfa-enabled", doc="manage-mfa-enabled")
    assert_accessible(page, "manage-mfa-enabled")

    status = portal.service().status("alice")
    assert status.totp_enabled and status.backup_codes_remaining == 10
