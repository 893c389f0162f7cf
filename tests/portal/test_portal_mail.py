"""The portal wires mail notifications in: what a user does on a page reaches a real SMTP server."""

from __future__ import annotations


import pytest

import portal.config

from ..support import HeldInbox, Inbox, smtp_server
from .conftest import app, click, enroll, sign_in, texts, type_into


@pytest.fixture
def inbox(monkeypatch):
    with smtp_server(Inbox()) as handler:
        monkeypatch.setenv("MFA_PORTAL_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("MFA_PORTAL_SMTP_PORT", str(handler.port))
        monkeypatch.setenv("MFA_PORTAL_SMTP_SENDER", "MFA Portal <mfa@example.org>")
        monkeypatch.setattr(portal.config, "_portals", {})  # open the engine anew, with mail
        yield handler


def test_a_backup_code_used_at_sign_in_is_mailed_with_the_count_left(inbox, data_dir, svc, clock):
    secret, codes = enroll(svc, clock, "alice")  # through a mail-less engine: nothing sent yet
    assert inbox.messages == []
    at = sign_in(app(), "alice")
    at = click(at, "Use a backup code")
    type_into(at, "Backup code", codes[0])
    at = click(at, "Continue")
    assert "9 backup codes left" in texts(at)
    [msg] = inbox.wait_for(1)
    assert msg["To"] == "alice@example.com"
    content = msg.get_body(("plain",)).get_content()
    assert "9" in content and codes[0] not in content and codes[0].replace("-", "") not in content
    assert secret not in msg.as_string()


def test_a_slow_relay_does_not_hold_up_the_page(monkeypatch, data_dir, svc, clock):
    # The relay holds every message until released: the page run must finish first.
    with smtp_server(HeldInbox()) as handler:
        monkeypatch.setenv("MFA_PORTAL_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("MFA_PORTAL_SMTP_PORT", str(handler.port))
        monkeypatch.setattr(portal.config, "_portals", {})
        secret, codes = enroll(svc, clock, "alice")
        at = sign_in(app(), "alice")
        at = click(at, "Use a backup code")
        type_into(at, "Backup code", codes[0])
        at = click(at, "Continue")
        assert "9 backup codes left" in texts(at)
        assert handler.arrived.wait(10) and handler.messages == []  # still at the relay
        handler.release.set()
        assert portal.config.service().flush_notifications(timeout=10)
        [msg] = handler.messages
        assert msg["To"] == "alice@example.com"


def test_bad_mail_settings_leave_the_portal_working_without_mail(monkeypatch, data_dir):
    monkeypatch.setenv("MFA_PORTAL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MFA_PORTAL_SMTP_PORT", "not-a-port")
    monkeypatch.setattr(portal.config, "_portals", {})
    at = sign_in(app(), "bob")
    assert not at.exception
    assert "Sign out" in [b.label for b in at.button]
