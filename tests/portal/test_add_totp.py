"""Add TOTP: the step machine add → verify → backupcodes → success, with the design's texts."""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image

import portal
from portal import enrollment

from .conftest import (app, click, code, enroll, errors, inputs, labels, run, signed_in, texts,
                       type_into)
from .inline import downloads, inline_qr, new_codes

MANAGE = "pages/1_Manage_MFA.py"
ADD = "pages/2_Add_TOTP.py"


def main_links(at) -> list[str]:
    return [e.proto.label for e in at.main.get("page_link")]


def start_adding(svc, clock, username: str = "bob"):
    """Signed in, on Manage MFA, Add pressed (within the verification window): step add."""
    at = signed_in(username, page=MANAGE)
    at = click(at, "Add")
    assert at.session_state[enrollment.STEP] == "add"
    at.switch_page(ADD)  # st.switch_page in a real browser; AppTest needs it spelled out
    return run(at)


def decode_qr(png: bytes) -> str:
    image = Image.open(io.BytesIO(png))
    assert image.size == (200, 200)
    [result] = zxingcpp.read_barcodes(image)
    return result.text


def test_add_step_shows_the_qr_code_that_decodes_to_exactly_the_uri(data_dir, svc, clock, media):
    at = start_adding(svc, clock)
    pending = svc.pending_totp("bob")
    assert [t.value for t in at.title] == ["Add TOTP MFA"]
    png, alt = inline_qr(at)  # a data: URL in the page (PNG: lossless, no JPEG blur)
    assert decode_qr(png) == pending.uri
    assert png == portal.qr_png(pending.uri)
    assert alt == "QR code to scan with your authentication app"
    assert not at.image and not media.files  # never in the media store, where a URL could fetch it
    assert pending.uri.startswith("otpauth://totp/MFA%20Portal:bob?secret=") or \
        pending.uri.startswith("otpauth://totp/MFA Portal:bob?secret=")
    assert "Once you have set up your authentication app, verify your code" in texts(at)
    assert {"Use URI instead", "Reset", "Verify"} <= set(labels(at))
    assert pending.grouped_secret in [c.value for c in at.code]
    assert main_links(at) == ["Manage MFA"]


def test_uri_toggle_shows_the_uri_and_back_without_a_new_secret(data_dir, svc, clock):
    at = start_adding(svc, clock)
    uri = svc.pending_totp("bob").uri
    at = click(at, "Use URI instead")
    assert uri in [c.value for c in at.code]
    assert not at.get("html")
    at = click(at, "Use QR Code instead")
    assert inline_qr(at)
    assert svc.pending_totp("bob").uri == uri


def test_reruns_page_switches_and_clicks_keep_the_pending_secret(data_dir, svc, clock):
    at = start_adding(svc, clock)
    secret = svc.pending_totp("bob").secret
    for _ in range(3):
        run(at)
    at.switch_page(MANAGE)
    run(at)
    at.switch_page(ADD)
    at = run(at)
    at = click(click(at, "Use URI instead"), "Use QR Code instead")
    at = click(at, "Verify")
    assert svc.pending_totp("bob").secret == secret
    assert secret not in texts(at)  # the verify step shows no secret
    assert [e.event for e in svc.audit("bob")].count("totp_enrollment_started") == 1


def test_reset_makes_a_new_secret(data_dir, svc, clock):
    at = start_adding(svc, clock)
    first = svc.pending_totp("bob").secret
    at = click(at, "Reset")
    second = svc.pending_totp("bob").secret
    assert second != first
    assert " ".join(second[i:i + 4] for i in range(0, len(second), 4)) in [c.value for c in at.code]
    at = click(at, "Verify")
    at = click(at, "Reset")
    assert at.session_state[enrollment.STEP] == "add"
    assert svc.pending_totp("bob").secret not in (first, second)


def test_reset_after_ten_minutes_needs_reverification(data_dir, svc, clock):
    at = start_adding(svc, clock)
    first = svc.pending_totp("bob").secret
    clock.advance(601)
    at = click(at, "Reset")
    assert "Confirm" in labels(at)
    assert inputs(at) == ["Password"]
    type_into(at, "Password", "bob-demo")
    at = click(at, "Confirm")
    assert "Confirm" not in labels(at)
    assert svc.pending_totp("bob").secret != first


def verify_step(svc, clock):
    at = click(start_adding(svc, clock), "Verify")
    assert [t.value for t in at.title] == ["Verify TOTP"]
    assert inputs(at) == ["Enter the code from your authentication app"]
    assert {"Verify code", "Reset"} <= set(labels(at))
    assert main_links(at) == ["Manage MFA"]
    return at


def test_wrong_code_shows_the_engine_message_and_stays(data_dir, svc, clock):
    at = verify_step(svc, clock)
    secret = svc.pending_totp("bob").secret
    wrong = f"{(int(code(secret, clock)) + 1) % 1_000_000:06d}"
    type_into(at, "Enter the code from your authentication app", wrong)
    at = click(at, "Verify code")
    assert errors(at) == ["That code is not valid. Check your authentication app and try again."]
    assert [t.value for t in at.title] == ["Verify TOTP"]
    assert not svc.status("bob").totp_enabled


def test_malformed_code_is_explained(data_dir, svc, clock):
    at = verify_step(svc, clock)
    type_into(at, "Enter the code from your authentication app", "abc")
    at = click(at, "Verify code")
    assert errors(at) == ["A code from your authentication app is 6 digits."]


def test_drifted_code_says_the_device_clock_is_off(data_dir, svc, clock):
    at = verify_step(svc, clock)
    secret = svc.pending_totp("bob").secret
    type_into(at, "Enter the code from your authentication app", code(secret, clock, -3))
    at = click(at, "Verify code")
    assert "your device clock looks about 90 s behind" in errors(at)[0]
    assert [t.value for t in at.title] == ["Verify TOTP"]


def test_set_up_expiring_on_the_verify_step_shows_expired(data_dir, svc, clock):
    at = verify_step(svc, clock)
    clock.advance(601)
    at = run(at)
    assert "This set-up took too long and has expired." in errors(at)[0]
    assert "Enter the code from your authentication app" not in inputs(at)
    assert "Reset" in labels(at)


def test_expired_set_up_offers_reset(data_dir, svc, clock):
    at = start_adding(svc, clock)
    clock.advance(601)
    at = run(at)
    assert errors(at) == ["This set-up took too long and has expired. Press Reset to get a new QR code."]
    at = click(at, "Reset")
    type_into(at, "Password", "bob-demo")
    at = click(at, "Confirm")
    assert svc.pending_totp("bob") is not None
    assert at.session_state[enrollment.STEP] == "add"


def finish_verification(svc, clock):
    at = verify_step(svc, clock)
    secret = svc.pending_totp("bob").secret
    type_into(at, "Enter the code from your authentication app", code(secret, clock))
    at = click(at, "Verify code")
    return at, secret


def test_right_code_enables_totp_and_shows_backup_codes_with_a_download(data_dir, svc, clock,
                                                                       media):
    at, secret = finish_verification(svc, clock)
    assert [t.value for t in at.title] == ["Verification was a success!"]
    assert ("Save this list of backup codes somewhere safe in case you need to access your "
            "account in an emergency") in texts(at)
    codes = new_codes(at)
    assert len(codes) == 10
    assert "\n".join(codes) in [c.value for c in at.code]
    [(name, body)] = downloads(at)
    assert name == "mfa-portal-backup-codes.txt"
    assert [line for line in body.splitlines() if line in codes] == codes
    assert not at.get("download_button") and not media.files
    assert svc.status("bob").totp_enabled and svc.status("bob").backup_codes_remaining == 10
    assert main_links(at) == ["Manage MFA"]
    # The session changed its own MFA: it is not challenged again.
    assert [t.value for t in run(at).title] == ["Verification was a success!"]


def test_finish_needs_one_of_the_codes_typed_back_without_using_it(data_dir, svc, clock):
    at, _ = finish_verification(svc, clock)
    codes = new_codes(at)
    field = "To show you saved them, type one of the backup codes"
    type_into(at, field, "abcd-efgh-jkmn-pqrs")
    at = click(at, "Finish")
    assert errors(at) == ["That is not one of the codes above. Type one of them to show you "
                          "saved them."]
    assert [t.value for t in at.title] == ["Verification was a success!"]
    type_into(at, field, codes[4].upper().replace("-", ""))
    at = click(at, "Finish")
    assert [t.value for t in at.title] == ["Success!"]
    assert "You have successfully added TOTP MFA via an authentication application." in texts(at)
    assert main_links(at) == ["Manage MFA"]
    assert svc.status("bob").backup_codes_remaining == 10  # typing it back used nothing
    assert not new_codes(at)
    # Manage MFA now shows the authenticator; the next visit starts afresh.
    at.switch_page(MANAGE)
    at = run(at)
    assert "TOTP via authentication app enabled" in texts(at)
    assert enrollment.STEP not in at.session_state


def test_opened_directly_after_a_cookie_sign_in_asks_to_verify_first(data_dir, svc, clock, cookie):
    from .conftest import make_cookie
    cookie(make_cookie("bob", passed=True))  # a session continued, its verification long past
    at = app(ADD)
    assert "Verify it's you before you set up an authentication app." in texts(at)
    assert inputs(at) == ["Password"]  # the dialog opened by itself
    assert svc.pending_totp("bob") is None
    at = click(at, "Cancel")
    assert "Confirm" not in labels(at)
    assert "Confirm" not in labels(run(at))  # dismissed: not reopened on every run
    at = click(at, "Verify it's you")
    type_into(at, "Password", "bob-demo")
    at = click(at, "Confirm")
    assert svc.pending_totp("bob") is not None
    assert [t.value for t in at.title] == ["Add TOTP MFA"]


def test_opened_directly_with_a_fresh_verification_starts_one_set_up(data_dir, svc, clock):
    at = signed_in("bob", page=ADD)
    secret = svc.pending_totp("bob").secret
    assert [t.value for t in at.title] == ["Add TOTP MFA"]
    assert svc.pending_totp("bob").secret == secret
    run(at)
    assert svc.pending_totp("bob").secret == secret


def test_with_totp_already_enabled_the_page_sets_up_one_more_app(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = signed_in("alice", secret, clock, page=ADD)
    assert [t.value for t in at.title] == ["Add TOTP MFA"]
    pending = svc.pending_totp("alice")
    assert pending is not None and pending.label == "Authentication app 2"
    assert [a.label for a in svc.status("alice").authenticators] == ["Authentication app"]
    assert main_links(at) == ["Manage MFA"]


def test_add_page_signed_in_without_second_factor_shows_only_the_challenge(data_dir, svc, clock):
    enroll(svc, clock, "alice")
    from .conftest import sign_in
    at = sign_in(app(), "alice")
    at.switch_page(ADD)
    at = run(at)
    assert [t.value for t in at.title] == ["Two-step verification"]
    assert "Add TOTP MFA" not in texts(at)
    assert svc.pending_totp("alice") is None
