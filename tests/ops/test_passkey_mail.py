"""Passkey mails, delivered to a real SMTP server on loopback: added, and a refused copy."""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core import notify

from ..support import Inbox, smtp_server
from ..webauthn_authenticator import PAGE, SoftAuthenticator


@pytest.fixture
def inbox():
    with smtp_server(Inbox()) as handler:
        yield handler


@pytest.fixture
def mailed(data_dir, clock, directory, inbox):
    env = {"MFA_PORTAL_SMTP_HOST": "127.0.0.1", "MFA_PORTAL_SMTP_PORT": str(inbox.port),
           "MFA_PORTAL_SMTP_SENDER": "MFA Portal <mfa@example.org>"}
    notifier = notify.from_settings(data_dir, env, secrets_path=None)
    return mfa_core.open_service(data_dir, clock=clock, environ={}, notifier=notifier)


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def test_adding_a_passkey_mails_the_user_by_its_name(mailed, inbox):
    token = mailed.sessions.start("alice", second_factor_passed=True)
    options = mailed.begin_passkey_registration("alice", session=token, origin=PAGE)
    mailed.finish_passkey_registration("alice", SoftAuthenticator().create(options), session=token,
                                       label="Work laptop")
    [msg] = inbox.wait_for(1)
    assert msg["Subject"] == "[MFA Portal] A passkey was added to your account"
    assert "A passkey \u201cWork laptop\u201d was added" in body(msg)


def test_a_passkey_whose_counter_went_backwards_is_mailed(mailed, inbox):
    token = mailed.sessions.start("alice", second_factor_passed=True)
    authenticator = SoftAuthenticator()
    options = mailed.begin_passkey_registration("alice", session=token, origin=PAGE)
    mailed.finish_passkey_registration("alice", authenticator.create(options), session=token,
                                       label="Laptop")
    for count in (5, 3):
        options = mailed.begin_passkey_sign_in("alice", session=token, origin=PAGE)
        try:
            mailed.attempt_passkey("alice", authenticator.get(options, sign_count=count), session=token)
        except mfa_core.SignCountRegressed:
            pass
    msgs = inbox.wait_for(2)
    assert msgs[1]["Subject"] == "[MFA Portal] A sign-in with one of your passkeys was refused"
    text = body(msgs[1])
    assert "\u201cLaptop\u201d" in text and "copied" in text
    public_key = [a for a in mailed._read("alice")["authenticators"]][0]["public_key"]
    assert public_key not in msgs[1].as_string()
