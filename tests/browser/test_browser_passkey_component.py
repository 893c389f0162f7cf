"""The passkey component in real Chromium with a CDP virtual authenticator, checked by mfa_core.passkeys.

A bare page (``passkey_app.py``) registers a passkey and signs in with it:
the JavaScript's options decoding and answer encoding meet py_webauthn's
checks for real. A second browser context without the authenticator cannot
use the passkey, and a page opened at an IP address is told why passkeys
cannot work there.
"""

from __future__ import annotations

import re

import pytest

from accessibility import assert_accessible
from browser_support import ARTIFACTS, PortalServer, button, click, goto
from conftest import Portal
from passkey_support import add_virtual_authenticator, localhost


@pytest.fixture(scope="module")
def portal(browser, tmp_path_factory):
    import mfa_core
    data_dir = tmp_path_factory.mktemp("passkey-component")
    mfa_core.open_service(data_dir)
    server = PortalServer(data_dir=data_dir, log_path=ARTIFACTS / "streamlit-passkey-component.log",
                          script="tests/browser/passkey_app.py")
    server.start()
    try:
        yield Portal(server=server, data_dir=data_dir, users={})
    finally:
        server.stop()


def alert(page, kind: str):
    return page.locator(f'[data-testid="stAlertContent{kind}"]')


def test_register_then_sign_in_with_a_virtual_authenticator(new_page, portal):
    page = new_page()
    authenticator = add_virtual_authenticator(page)
    goto(page, localhost(portal.url))
    click(page, button(page, "Register a passkey"))
    alert(page, "Success").filter(has_text="Registered:").wait_for()
    (credential,) = authenticator.credentials()
    assert credential["rpId"] == "localhost"
    assert_accessible(page, "passkey-component-registered")

    counts = []
    for _ in range(2):
        click(page, button(page, "Sign in with a passkey"))
        alert(page, "Success").filter(has_text="Signed in with a passkey").wait_for()
        counts.append(int(re.search(r"count (\d+)", alert(page, "Success").inner_text()).group(1)))
    assert counts[1] > counts[0] > 0  # the authenticator counts, the server follows

    # Another browser, with an authenticator of its own but not that passkey: refused.
    other = new_page()
    add_virtual_authenticator(other)
    goto(other, localhost(portal.url))
    click(other, button(other, "Sign in with a passkey"))
    alert(other, "Error").wait_for()
    text = alert(other, "Error").inner_text()
    assert "cancelled or not allowed" in text or "cannot use passkeys" in text, text
    assert_accessible(other, "passkey-component-refused")


def test_a_page_at_an_ip_address_is_told_why_passkeys_cannot_work(new_page, portal):
    page = new_page()
    add_virtual_authenticator(page)
    goto(page, portal.url)  # http://127.0.0.1:<port>: not the relying party localhost
    click(page, button(page, "Register a passkey"))
    alert(page, "Error").wait_for()
    assert "not an IP address" in alert(page, "Error").inner_text()
