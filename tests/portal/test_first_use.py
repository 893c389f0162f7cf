"""What a new user tripped over (issue 21): the code fields, sign-out, words, confirmations."""

from __future__ import annotations

import dataclasses

import mfa_core
from portal import code_field

from .conftest import (app, click, enroll, errors, generate, inputs, labels, signed_in, texts,
                       type_into)

MANAGE = "pages/1_Manage_MFA.py"
ADD = "pages/2_Add_TOTP.py"


def field(at, label):
    [found] = [t for t in at.text_input if t.label == label]
    return found.proto


def assert_code_field(proto) -> None:
    """An app's code: no telephone, no phone number, the browser offers the code it received."""
    assert proto.type == proto.DEFAULT
    assert proto.icon == ""
    assert proto.placeholder == code_field.CODE_PLACEHOLDER == "123456"
    assert proto.autocomplete == "one-time-code"


# -- 1. one code field on every screen ------------------------------------------------

def test_the_challenge_code_field_is_a_code_field_not_a_phone_number(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = app()
    type_into(at, "Username", "alice")
    type_into(at, "Password", "alice-demo")
    at = click(at, "Login")
    assert_code_field(field(at, "Authentication code"))
    at = click(at, "Use a backup code")
    backup = field(at, "Backup code")
    assert backup.placeholder == code_field.BACKUP_PLACEHOLDER and backup.icon == ""
    assert backup.type == backup.DEFAULT


def test_verify_its_you_and_add_totp_ask_with_the_same_code_field(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page=MANAGE)
    clock.advance(601)
    at = generate(at)
    assert inputs(at) == ["Authentication code"]
    assert_code_field(field(at, "Authentication code"))

    at = signed_in("bob", page=ADD)
    at = click(at, "Verify")
    assert_code_field(field(at, "Enter the code from your authentication app"))
    assert "it proves the app is set up" in texts(at)


# -- 4. confirmations ---------------------------------------------------------------

def test_generate_asks_first_saying_how_many_unused_codes_stop_working(data_dir, svc, clock):
    secret, codes = enroll(svc, clock)
    for used in codes[:3]:
        svc.attempt_second_factor("alice", used, "backup_code")
    at = signed_in("alice", secret, clock, page=MANAGE)
    at = click(at, "Generate")
    assert svc.status("alice").backup_codes_remaining == 7  # nothing made yet
    assert any("Your 7 unused codes stop working." in w.value for w in at.warning)
    at = click(at, "Cancel")
    assert "Generate" in labels(at) and svc.status("alice").backup_codes_remaining == 7
    at = click(click(at, "Generate"), "Yes, generate new codes")
    assert svc.status("alice").backup_codes_remaining == 10
    assert "Your new backup codes." in texts(at)


# -- 2. sign-out ------------------------------------------------------------------------

def test_sign_out_on_a_page_says_only_you_have_signed_out(data_dir):
    at = click(signed_in("bob", page=MANAGE), "Sign out")
    shown = texts(at)
    assert "You have signed out." in shown
    assert "You must be logged in to access this page" not in shown
    assert inputs(at) == ["Username", "Password"]


# -- 3. words ------------------------------------------------------------------------

def test_the_default_name_and_the_kind_use_one_word(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    at = signed_in("alice", secret, clock, page=MANAGE)
    shown = texts(at)
    assert "Authenticator app" not in shown
    assert "**Authentication app**" in shown


def test_the_enabled_line_names_the_passkey_too(data_dir, svc, clock):
    from portal import manage

    secret, _ = enroll(svc, clock)
    status = svc.status("alice")
    assert manage.enabled_line(status) == "TOTP via authentication app enabled."
    passkey = mfa_core.Authenticator(id="p1", kind="passkey", label="Office key", created_at=0)
    both = dataclasses.replace(status, authenticators=[*status.authenticators, passkey])
    assert manage.enabled_line(both) == ("TOTP via authentication app enabled, and 1 passkey: "
                                         "either one signs you in.")
    only_key = dataclasses.replace(status, authenticators=[passkey])
    assert manage.enabled_line(only_key) == "Two-step verification is on with 1 passkey."


def test_add_totp_says_what_verify_does_and_offers_a_link_to_the_app(data_dir):
    at = signed_in("bob", page=ADD)
    shown = texts(at)
    assert "**Verify** asks for the 6-digit code the app shows now" in shown
    at = click(at, "Use URI instead")
    links = [m.value for m in at.markdown if "](otpauth://" in m.value]
    assert links and links[0].startswith("[Add to my authentication app](otpauth://totp/")
    assert "Enter this key in your app by hand" in texts(at)


# -- 5. the name's limit -------------------------------------------------------------

def test_a_name_over_the_limit_is_refused_with_a_message_not_cut(data_dir, svc):
    at = signed_in("bob", page=ADD)
    assert "Up to 40 characters." in texts(at)
    assert field(at, "Name for this authenticator").max_chars == 0  # the browser cuts nothing
    type_into(at, "Name for this authenticator", "My very long phone name that goes on and on")
    at = click(at, "Verify")
    assert [e.replace("\\", "") for e in errors(at)] == [  # shown as plain text
        "A name may have at most 40 characters. This one has 43: shorten it and press the button "
        "again."]
    assert [t.value for t in at.title] == ["Add TOTP MFA"]


# -- 6. a phone ------------------------------------------------------------------------

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def test_add_totp_on_a_phone_starts_with_the_link_not_the_qr_code(data_dir, monkeypatch):
    import portal.cookies

    monkeypatch.setattr(portal.cookies, "user_agent", lambda: IPHONE)
    at = signed_in("bob", page=ADD)
    shown = texts(at)
    assert "Scan this QR code" not in shown
    assert "[Add to my authentication app](otpauth://totp/" in shown
    assert "Use QR Code instead" in labels(at)


# -- 8. an address that is no page -----------------------------------------------------

def test_an_unknown_address_gets_the_portals_not_found_and_pages_pass():
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient

    from portal import web

    client = TestClient(web.UnknownPage(PlainTextResponse("streamlit")))
    for path in ("/", "/Manage_MFA", "/Add_TOTP/", "/Helpdesk", "/_stcore/health",
                 "/static/js/main.js", "/favicon.png", "/media/abc.png"):
        assert client.get(path).text == "streamlit", path
    for path in ("/Manage_MFAX", "/nothing/here", "/settings"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "There is no page at this address in the MFA Portal" in answer.text
        assert "Running the app's main page" not in answer.text
