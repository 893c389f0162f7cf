"""What a new user tripped over (issue 21): the code fields, sign-out, words, confirmations."""

from __future__ import annotations

from portal import code_field

from .conftest import (app, click, enroll, generate, inputs, labels, signed_in, texts,
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
