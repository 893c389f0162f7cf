"""Passkeys on the pages (AppTest): offered first at the challenge and in Verify it's you, added on Manage MFA.

AppTest runs no JavaScript, so the browser's half of a ceremony is the
journey's (tests/browser/test_browser_passkeys.py); here the pages' states:
what is offered to whom, that starting a ceremony mounts it without error,
and that a portal whose passkey settings cannot work says so.
"""

from __future__ import annotations

import pytest

import portal.config
import portal.passkey_component

from ..webauthn_authenticator import PAGE, SoftAuthenticator
from .conftest import app, click, enroll, inputs, labels, make_cookie, run, sign_in, texts

MANAGE = "pages/1_Manage_MFA.py"


@pytest.fixture(autouse=True)
def page_origin(monkeypatch):
    """AppTest has no websocket: the page's origin is the one a browser at PAGE would send."""
    monkeypatch.setattr(portal.passkey_component, "page_origin", lambda: PAGE)


def test_without_the_pages_origin_no_ceremony_starts(data_dir, svc, monkeypatch):
    """The default relying party accepts only the page's own origin: unknown, none at all."""
    monkeypatch.setattr(portal.passkey_component, "page_origin", lambda: None)
    add_passkey(svc)
    at = click(sign_in(app(), "alice"), "Use a passkey")
    assert any("own address" in e.value for e in at.error), [e.value for e in at.error] + [texts(at)]


def add_passkey(svc, username: str = "alice", label: str = "Laptop",
                token: str | None = None) -> SoftAuthenticator:
    """A passkey added from ``token``'s session (a new one if None): every other session of
    the user must pass the second factor again."""
    authenticator = SoftAuthenticator()
    token = token or svc.sessions.start(username, second_factor_passed=True)
    options = svc.begin_passkey_registration(username, session=token, origin=PAGE)
    svc.finish_passkey_registration(username, authenticator.create(options), session=token, label=label)
    return authenticator


def test_a_passkey_is_offered_first_and_no_code_field_without_an_app(data_dir, svc):
    add_passkey(svc)
    at = sign_in(app(), "alice")
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert labels(at)[0] == "Use a passkey"
    assert "Authentication code" not in inputs(at)
    at = click(at, "Use a backup code")
    assert inputs(at) == ["Backup code"]
    assert "Use a passkey" in labels(at)


def test_with_an_app_too_the_code_field_stays_below_the_passkey(data_dir, svc, clock):
    enroll(svc, clock)
    add_passkey(svc)
    at = sign_in(app(), "alice")
    assert labels(at)[0] == "Use a passkey"
    assert inputs(at) == ["Authentication code"]
    assert "Or open your authentication app" in texts(at)


def test_use_a_passkey_starts_a_ceremony_bound_to_the_session(data_dir, svc):
    add_passkey(svc)
    at = click(sign_in(app(), "alice"), "Use a passkey")  # mounts the component, no error
    assert not at.error
    assert "Two-step verification" in texts(at)


def test_users_without_a_passkey_see_the_page_as_before(data_dir, svc, clock):
    enroll(svc, clock)
    at = sign_in(app(), "alice")
    assert "Use a passkey" not in labels(at)
    assert inputs(at) == ["Authentication code"]


def test_manage_mfa_offers_a_passkey_and_lists_it_as_an_authenticator(data_dir, svc, cookie, clock):
    token = make_cookie("alice", passed=True, verified_at=clock())
    cookie(token)
    assert "Add a passkey" in labels(app(MANAGE))
    add_passkey(svc, label="Office key", token=token)  # added by this browser's session
    at = app(MANAGE)
    assert "Add a passkey" in labels(at)
    text = texts(at)
    assert "Office key" in text and "Passkey" in text and "Two-step verification is on with 1 passkey." in text
    assert {"Rename", "Remove"} <= set(labels(at))


def test_verify_its_you_asks_for_the_passkey_first(data_dir, svc, cookie, clock):
    add_passkey(svc)
    svc.create_backup_codes("alice")
    cookie(make_cookie("alice", passed=True, verified_at=clock() - 3600))
    at = click(app(MANAGE), "Generate")
    assert "To generate new backup codes (your 10 unused codes stop working), use your passkey." in texts(at)
    assert {"Use a passkey", "Use a backup code", "Cancel"} <= set(labels(at))
    at = click(at, "Use a backup code")
    assert "Backup code" in inputs(at)


def test_a_portal_whose_passkey_settings_cannot_work_says_so_and_keeps_codes(data_dir, monkeypatch,
                                                                            cookie, clock):
    monkeypatch.setenv("MFA_PORTAL_RP_ID", "10.0.0.1")
    portal.config._portals.clear()
    cookie(make_cookie("alice", passed=True, verified_at=clock()))
    at = app(MANAGE)
    assert "Add a passkey" not in labels(at)
    assert "Passkeys are not set up on this portal." in texts(at)
    assert "Add" in labels(at)
    run(at)
