"""Journeys (issue 23): past the rule's deadline, in real Chromium, from a new place and a familiar one.

The portal runs as it would behind a TLS proxy (``MFA_PORTAL_PROXY_HEADER=X-Forwarded-For``,
demo mode off), with a proxy in front (``forwarding_proxy``) for each client address, so
the portal sees one (over loopback Streamlit gives none) and uses the ``__Host-`` cookie
of HTTPS.

- pete signed in from 203.0.113.7 before the rule; its deadline has passed. From a new
  address (198.51.100.9) he gets "Contact the helpdesk" and no set-up control, by any URL.
- From 203.0.113.7 (familiar) the same password leads to "Set up two-step verification"
  (nothing else opens, the Helpdesk URL included); **Set it up now** (Manage MFA), an app, the code,
  a backup code: he lands on the home page, and the enrollment is mailed to him (a real
  SMTP server on loopback).

axe-core checks both screens; screenshots at desktop and phone width.
"""

from __future__ import annotations

import pytest

from accessibility import assert_accessible
from browser_support import (button, click, goto, heading, main_area, main_text, set_up_first_app,
                             sign_in)

BROWSER_USERS = {"pete": "pete-browser-pw"}
BROWSER_CLOCK = True
BROWSER_ENV = {"MFA_PORTAL_PROXY_HEADER": "X-Forwarded-For", "MFA_PORTAL_DEMO": "0"}
FAMILIAR = "203.0.113.7"
NEW_PLACE = "198.51.100.9"
DAY = 86400
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 860}


@pytest.fixture(scope="module", autouse=True)
def inbox():
    """The mail server the portal sends to, started before the portal (autouse, module scope)."""
    from tests.support import Inbox, smtp_server

    with smtp_server(Inbox()) as handler:
        BROWSER_ENV.update({"MFA_PORTAL_SMTP_HOST": "127.0.0.1",
                            "MFA_PORTAL_SMTP_PORT": str(handler.port),
                            "MFA_PORTAL_SMTP_SENDER": "MFA Portal <mfa@example.org>"})
        yield handler


@pytest.fixture(scope="module")
def proxies(portal, tmp_path_factory):
    """The proxy in front of the portal, one listener per client address."""
    from forwarding_proxy import ForwardingProxy

    found = {address: ForwardingProxy(portal.server.port, address,
                                              tmp_path_factory.mktemp("proxy-tls")) for address in (FAMILIAR, NEW_PLACE)}
    yield {address: proxy.url for address, proxy in found.items()}
    for proxy in found.values():
        proxy.stop()


def both_widths(page, shots, name: str) -> None:
    shots(page, name)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    shots(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


@pytest.fixture(scope="module")
def overdue(portal):
    """pete signs in once from FAMILIAR (no rule yet); then a deadline he misses."""
    import datetime as dt

    from mfa_core.users import UserDirectory

    UserDirectory(portal.data_dir).ensure_demo_users()
    portal.enroll("admin")  # the helpdesk keeps two-step (a rule locking it out is refused)
    svc = portal.service()
    svc.attempt_password("pete", BROWSER_USERS["pete"], source=FAMILIAR)  # raises when wrong
    deadline = dt.datetime.fromtimestamp(portal.clock() + 2 * DAY, dt.timezone.utc).date()
    svc.set_policy_rule(target="everyone", deadline=deadline.isoformat(), actor="admin")
    portal.move_clock(3 * DAY)
    assert portal.service().requirement("pete").state == "overdue"
    return deadline


def test_overdue_from_a_new_place_is_sent_to_the_helpdesk(portal, new_page, shots, overdue, proxies):
    page, url = new_page(ignore_https_errors=True), proxies[NEW_PLACE]
    sign_in(page, url, "pete", BROWSER_USERS["pete"])
    heading(page, "Contact the helpdesk").wait_for()
    text = main_text(page)
    assert "that date has passed" in text and "temporary pass" in text, text
    assert button(page, "Set it up now").count() == 0
    both_widths(page, shots, "overdue-new-place")
    assert_accessible(page, "policy-overdue-new-place")
    for path in ("Manage_MFA", "Add_TOTP", "Helpdesk"):
        goto(page, f"{url}/{path}")
        heading(page, "Contact the helpdesk").wait_for()
        assert main_area(page).get_by_role("button", name="Add", exact=True).count() == 0
    assert portal.service().pending_totp("pete") is None


def test_overdue_from_a_familiar_place_sets_up_and_lands_on_home(portal, new_page, shots, overdue,
                                                                 proxies, inbox):
    page, url = new_page(ignore_https_errors=True), proxies[FAMILIAR]
    sign_in(page, url, "pete", BROWSER_USERS["pete"])
    heading(page, "Set up two-step verification").wait_for()
    text = main_text(page)
    assert "nothing else opens until you do" in text, text
    assert button(page, "Remind me later").count() == 0
    both_widths(page, shots, "overdue-familiar")
    assert_accessible(page, "policy-overdue-familiar")
    goto(page, f"{url}/Helpdesk")  # by URL: held the same
    heading(page, "Set up two-step verification").wait_for()
    click(page, button(page, "Set it up now"))
    heading(page, "User MFA Settings").wait_for()  # an app or a passkey (HTTPS): Manage MFA
    assert "nothing else opens until you do" in main_text(page)
    click(page, button(page, "Add"))
    set_up_first_app(page, portal.clock)
    heading(page, "Welcome, Pete Browser").wait_for()
    assert portal.service().requirement("pete").state == "met"
    mails = [m for m in inbox.wait_for(1) if "pete@example.com" in str(m["To"])]
    assert mails, [m["Subject"] for m in inbox.messages]
    assert any("authentication app" in m.get_content().lower() or "totp" in m.get_content().lower()
               for m in mails), [m.get_content() for m in mails]
