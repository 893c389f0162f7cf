"""TOTP as RFC 6238 defines it, the ±1 step window, and the provisioning URI."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import mfa_core
from mfa_core import totp

from .conftest import code_for

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")


@pytest.mark.parametrize(("timestamp", "expected"), [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
])
def test_rfc6238_appendix_b_sha1_vectors(timestamp, expected):
    assert totp.code_at(RFC_SECRET, timestamp, digits=8) == expected


def test_portal_codes_are_six_digits_of_thirty_second_steps():
    code = totp.code_at(RFC_SECRET, 59)
    assert code == "287082"  # the RFC's 8-digit value, last six digits
    assert totp.code_at(RFC_SECRET, 30) == code  # same step
    assert totp.code_at(RFC_SECRET, 60) != code  # next step


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_enrollment_accepts_the_current_step_and_one_either_side(svc, clock, steps):
    secret = svc.create_totp("alice").secret
    status = svc.verify_totp("alice", code_for(secret, clock() + 30 * steps))
    assert status.totp_enabled


@pytest.mark.parametrize("steps", [-2, 2])
def test_enrollment_refuses_two_steps_off_and_names_the_drift(svc, clock, steps):
    secret = svc.create_totp("alice").secret
    with pytest.raises(mfa_core.ClockDrift) as err:
        svc.verify_totp("alice", code_for(secret, clock() + 30 * steps))
    assert err.value.offset_seconds == 30 * steps
    assert f"about {abs(30 * steps)} s" in str(err.value)
    assert not svc.status("alice").totp_enabled


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_sign_in_accepts_the_current_step_and_one_either_side(svc, clock, steps):
    secret = svc.create_totp("alice").secret
    svc.verify_totp("alice", code_for(secret, clock()))
    clock.advance(300)
    result = svc.attempt_second_factor("alice", code_for(secret, clock() + 30 * steps))
    assert result.strategy == "totp"


@pytest.mark.parametrize("steps", [-2, 2])
def test_sign_in_refuses_two_steps_off_with_clock_drift(svc, clock, steps):
    secret = svc.create_totp("alice").secret
    svc.verify_totp("alice", code_for(secret, clock()))
    clock.advance(300)
    with pytest.raises(mfa_core.ClockDrift) as err:
        svc.attempt_second_factor("alice", code_for(secret, clock() + 30 * steps))
    assert err.value.offset_seconds == 30 * steps


def test_drift_message_says_ahead_or_behind(svc, clock):
    secret = svc.create_totp("alice").secret
    with pytest.raises(mfa_core.ClockDrift, match="about 120 s ahead"):
        svc.verify_totp("alice", code_for(secret, clock() + 120))
    with pytest.raises(mfa_core.ClockDrift, match="about 90 s behind"):
        svc.verify_totp("alice", code_for(secret, clock() - 90))


# -- provisioning URI ---------------------------------------------------------

def _label(uri: str) -> tuple[str, str]:
    issuer, account = urlsplit(uri).path.lstrip("/").split(":")
    return issuer, account


@pytest.mark.parametrize("account", ["alice", "alice smith", "alice@example.com", "a/b", "jörg", "名前"])
def test_uri_percent_encodes_issuer_and_account(open_svc, account):
    svc = open_svc(issuer="ACME Corp/IT@HQ é")
    uri = svc.create_totp(account).uri
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    raw_issuer, raw_account = _label(uri)
    for raw in (raw_issuer, raw_account):
        assert not set(" @/") & set(raw), raw
        assert raw.isascii()
    assert (unquote(raw_issuer), unquote(raw_account)) == ("ACME Corp/IT@HQ é", account)
    assert parse_qs(parts.query)["issuer"] == ["ACME Corp/IT@HQ é"]


def test_uri_secret_is_unpadded_base32_of_160_bits(svc):
    resource = svc.create_totp("alice")
    secret = parse_qs(urlsplit(resource.uri).query)["secret"][0]
    assert secret == resource.secret
    assert "=" not in secret and "%3D" not in resource.uri.upper()
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) * 8 == 160


def test_uri_is_what_an_authenticator_reads(svc, clock):
    import pyotp
    resource = svc.create_totp("alice")
    parsed = pyotp.parse_uri(resource.uri)
    assert parsed.secret == resource.secret
    assert parsed.issuer == "MFA Portal"
    assert parsed.name == "alice"
    assert (parsed.digits, parsed.interval) == (6, 30)


def test_each_enrollment_gets_a_fresh_secret(svc):
    secrets_seen = {svc.create_totp(f"user{i}").secret for i in range(20)}
    assert len(secrets_seen) == 20


def test_colon_in_issuer_is_refused(open_svc, data_dir):
    with pytest.raises(ValueError):
        open_svc(issuer="a:b")
    assert not data_dir.exists()


def test_colon_in_account_is_refused_and_nothing_is_stored(svc):
    with pytest.raises(ValueError):
        svc.create_totp("a:b")
    assert list(svc.usernames()) == []


def test_provisioning_uri_refuses_colons_directly():
    with pytest.raises(ValueError):
        totp.provisioning_uri("JBSWY3DPEHPK3PXP", "alice", "a:b")
    with pytest.raises(ValueError):
        totp.provisioning_uri("JBSWY3DPEHPK3PXP", "a:b", "Issuer")
