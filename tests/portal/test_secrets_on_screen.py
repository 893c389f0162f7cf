"""Secrets on screen: an enrollment belongs to the session that started it, backup codes are shown once."""

from __future__ import annotations

import hashlib

from portal import enrollment

from .conftest import (click, code, enroll, errors, generate, labels, run, signed_in, texts,
                       type_into)
from .inline import codes_on_screen, downloads, inline_qr, new_codes
from .test_add_totp import decode_qr, start_adding

HOME = "streamlit_app.py"
MANAGE = "pages/1_Manage_MFA.py"
ADD = "pages/2_Add_TOTP.py"
CODE_FIELD = "Enter the code from your authentication app"


def go(at, page):
    at.switch_page(page)
    return run(at)


def secret_in_uri(uri: str) -> str:
    return uri.split("secret=", 1)[1].split("&", 1)[0]


def test_a_second_session_never_sees_the_secret_another_session_created(data_dir, svc, clock):
    first = start_adding(svc, clock)
    first_secret = svc.pending_totp("bob").secret
    second = signed_in("bob", page=ADD)  # another browser, verified just now
    shown = decode_qr(inline_qr(second)[0])
    assert first_secret not in shown
    assert all(first_secret not in c.value.replace(" ", "") for c in second.code)
    # The second session started its own enrollment; the first one's is gone.
    assert secret_in_uri(shown) == svc.pending_totp("bob").secret != first_secret
    first = run(first)
    assert [t.value for t in first.title] == ["Add TOTP MFA"]
    assert "restarted in another window or browser" in texts(first)
    assert not first.get("html")  # no QR code, neither old nor new
    assert "Reset" in labels(first)


def test_a_session_cannot_verify_an_enrollment_another_session_replaced(data_dir, svc, clock):
    first = click(start_adding(svc, clock), "Verify")
    first_secret = svc.pending_totp("bob").secret
    second = signed_in("bob", page=ADD)
    type_into(first, CODE_FIELD, code(first_secret, clock))
    first = click(first, "Verify code")
    assert not svc.status("bob").totp_enabled
    assert "restarted in another window or browser" in texts(first)
    assert not new_codes(first) and not codes_on_screen(first)
    # The session that owns the pending enrollment verifies it.
    second_secret = svc.pending_totp("bob").secret
    second = click(second, "Verify")
    type_into(second, CODE_FIELD, code(second_secret, clock, 1))
    second = click(second, "Verify code")
    assert [t.value for t in second.title] == ["Verification was a success!"]
    assert svc.status("bob").totp_enabled


def test_another_sessions_enrollment_without_a_fresh_verification_asks_to_verify(data_dir, svc,
                                                                                clock):
    second = signed_in("bob")  # verified now; stale in eleven minutes
    clock.advance(11 * 60)
    first = start_adding(svc, clock)  # a newer sign-in elsewhere starts a set-up
    first_secret = svc.pending_totp("bob").secret
    second = go(second, ADD)
    assert "Verify it's you before you set up an authentication app." in texts(second)
    assert not second.get("html") and all(first_secret not in c.value.replace(" ", "")
                                          for c in second.code)
    assert svc.pending_totp("bob").secret == first_secret  # nothing replaced before verifying
    assert enrollment.MINE not in second.session_state


def test_the_session_keeps_only_a_hash_of_its_enrollment(data_dir, svc, clock):
    at = start_adding(svc, clock)
    secret = svc.pending_totp("bob").secret
    assert at.session_state[enrollment.MINE] == hashlib.sha256(secret.encode()).hexdigest()


def _verified_with_codes(svc, clock):
    at = click(start_adding(svc, clock), "Verify")
    type_into(at, CODE_FIELD, code(svc.pending_totp("bob").secret, clock))
    at = click(at, "Verify code")
    assert codes_on_screen(at)
    return at


def test_add_totp_codes_are_not_shown_again_after_leaving_the_page(data_dir, svc, clock):
    at = _verified_with_codes(svc, clock)
    codes = new_codes(at)
    assert codes_on_screen(run(at))  # a rerun of the same visit (a form, a click) still shows them
    at = go(at, MANAGE)
    assert not codes_on_screen(at) and "Generate new backup codes?" in texts(at)
    at = go(at, ADD)  # back to the unfinished set-up
    assert [t.value for t in at.title] == ["Verification was a success!"]
    assert not codes_on_screen(at) and not downloads(at) and not new_codes(at)
    assert "Generate new backup codes?" in texts(at)
    assert not any(c in texts(at) for c in codes)
    # A new set is shown in the run right after it was made, and Finish works with it.
    at = generate(at)
    fresh = new_codes(at)
    assert codes_on_screen(at) and len(fresh) == 10 and not set(fresh) & set(codes)
    type_into(at, "To show you saved them, type one of the backup codes", fresh[0])
    at = click(at, "Finish")
    assert [t.value for t in at.title] == ["Success!"]


def test_add_totp_finish_without_the_codes_after_coming_back(data_dir, svc, clock):
    at = go(go(_verified_with_codes(svc, clock), HOME), ADD)
    at = click(at, "Finish")
    assert [t.value for t in at.title] == ["Success!"]
    assert svc.status("bob").backup_codes_remaining == 10


def test_manage_codes_are_shown_in_the_visit_that_made_them_only(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    at = generate(signed_in("alice", secret, clock, page=MANAGE))
    assert codes_on_screen(at) and "Done" in labels(at)
    assert codes_on_screen(run(at))
    at = go(go(at, HOME), MANAGE)
    assert not codes_on_screen(at) and not downloads(at) and not new_codes(at)
    assert "Generate new backup codes?" in texts(at) and "Done" not in labels(at)
    assert not errors(at)


def test_a_new_browser_session_never_sees_codes_made_in_another(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "alice")
    generate(signed_in("alice", secret, clock, page=MANAGE))
    clock.advance(30)
    other = signed_in("alice", secret, clock, page=MANAGE)
    assert not codes_on_screen(other) and "Generate new backup codes?" in texts(other)
