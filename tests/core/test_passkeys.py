"""Passkeys (WebAuthn) in the engine: the relying party, both ceremonies against a software authenticator, challenges.

Every answer comes from ``tests.webauthn_authenticator.SoftAuthenticator``:
real ES256 keys and the bytes a browser and authenticator produce.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mfa_core import passkeys
from mfa_core.errors import (InvalidCode, InvalidCodeFormat, MFAError, PasskeyChallengeExpired,
                             PasskeyRefused, PasskeySettingsError, SignCountRegressed)
from mfa_core.passkeys import AUTHENTICATE, REGISTER, ChallengeBook, RelyingParty

from ..webauthn_authenticator import PAGE, SoftAuthenticator

RP = RelyingParty()
PEPPER = b"p" * 32


def register(authenticator: SoftAuthenticator, rp: RelyingParty = RP, existing=(), **answer):
    challenge = b"c" * 32
    options = passkeys.registration_options(rp, user_id=passkeys.user_handle(PEPPER, "alice"),
                                            username="alice", display_name="Alice",
                                            challenge=challenge, existing=existing)
    return passkeys.verify_registration(rp, authenticator.create(options, **answer), origin=PAGE, challenge=challenge)


def sign_in(authenticator: SoftAuthenticator, stored: dict, rp: RelyingParty = RP, *,
            challenge: bytes = b"s" * 32, expected: bytes | None = None, **answer):
    options = passkeys.authentication_options(rp, challenge=challenge, passkeys=[stored])
    return passkeys.verify_authentication(rp, authenticator.get(options, **answer),
                                          challenge=expected or challenge, passkey=stored,
                                          origin=PAGE)


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    return SoftAuthenticator()


@pytest.fixture
def stored(authenticator) -> dict:
    return register(authenticator).fields()


# -- the relying party ----------------------------------------------------------


def test_default_relying_party_is_localhost_with_any_localhost_port():
    rp = RelyingParty.from_settings({})
    assert (rp.id, rp.name) == ("localhost", "MFA Portal")
    assert rp.allows("http://localhost:8501") and rp.allows("http://localhost:39123")
    assert rp.allows("http://localhost")
    assert not rp.allows("http://127.0.0.1:8501")
    assert not rp.allows("http://localhost.evil.example:8501")
    assert not rp.allows("http://evil.example")


def test_a_real_domain_allows_exactly_its_origins():
    rp = RelyingParty.from_settings({"MFA_PORTAL_RP_ID": "example.com", "MFA_PORTAL_RP_NAME": "ACME",
                                     "MFA_PORTAL_ORIGINS": "https://mfa.example.com, https://example.com:8443"})
    assert rp.origins == ("https://mfa.example.com", "https://example.com:8443")
    assert rp.allows("https://mfa.example.com")
    assert not rp.allows("https://example.com")
    assert not rp.allows("http://mfa.example.com")


def test_a_real_domain_without_origins_allows_https_on_it_alone():
    rp = RelyingParty.from_settings({"MFA_PORTAL_RP_ID": "Portal.Example.com"})
    assert rp.id == "portal.example.com"
    assert rp.origins == ("https://portal.example.com",)
    assert not rp.allows("http://localhost:8501")


def test_settings_come_from_a_secrets_table_under_the_environment():
    table = {"rp_id": "example.com", "rp_name": "From secrets", "origins": ["https://a.example.com"]}
    assert RelyingParty.from_settings({}, table).origins == ("https://a.example.com",)
    rp = RelyingParty.from_settings({"MFA_PORTAL_RP_NAME": "From env"}, table)
    assert (rp.id, rp.name) == ("example.com", "From env")


@pytest.mark.parametrize("env", [
    {"MFA_PORTAL_RP_ID": "127.0.0.1"},
    {"MFA_PORTAL_RP_ID": "https://example.com"},
    {"MFA_PORTAL_RP_ID": "example.com:8443"},
    {"MFA_PORTAL_RP_ID": "example.com", "MFA_PORTAL_ORIGINS": "http://example.com"},
    {"MFA_PORTAL_RP_ID": "example.com", "MFA_PORTAL_ORIGINS": "https://example.org"},
    {"MFA_PORTAL_RP_ID": "example.com", "MFA_PORTAL_ORIGINS": "https://evilexample.com"},
    {"MFA_PORTAL_RP_ID": "example.com", "MFA_PORTAL_ORIGINS": "https://example.com/path"},
    {"MFA_PORTAL_ORIGINS": "http://127.0.0.1:8501"},
])
def test_settings_that_cannot_work_are_refused_with_the_setting_named(env):
    with pytest.raises(PasskeySettingsError) as err:
        RelyingParty.from_settings(env)
    assert "MFA_PORTAL_" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, MFAError)


# -- registration ---------------------------------------------------------------


def test_a_good_registration_keeps_the_public_parts_only(authenticator):
    new = register(authenticator)
    (cred,) = authenticator.credentials.values()
    assert passkeys.unb64url(new.credential_id) == cred.credential_id
    assert new.sign_count == 0
    assert new.aaguid == "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"
    assert new.suggested_label == "Google Password Manager"
    assert new.transports == ("hybrid", "internal")
    assert new.backup_eligible and new.backed_up
    assert set(new.fields()) == {"credential_id", "public_key", "sign_count", "transports", "aaguid",
                                 "backup_eligible", "backed_up"}
    json.dumps(new.fields())  # the record can hold it as it is


def test_packed_self_attestation_is_accepted():
    assert register(SoftAuthenticator(attestation="packed")).sign_count == 0


def test_the_registration_options_name_the_relying_party_and_exclude_known_passkeys(stored):
    options = json.loads(passkeys.registration_options(
        RP, user_id=passkeys.user_handle(PEPPER, "alice"), username="alice", display_name="Alice",
        challenge=b"x" * 32, existing=[stored]))
    assert options["rp"] == {"id": "localhost", "name": "MFA Portal"}
    assert options["user"]["name"] == "alice"
    assert "alice" not in options["user"]["id"]
    assert [c["id"] for c in options["excludeCredentials"]] == [stored["credential_id"]]
    assert options["attestation"] == "none"


def test_a_registration_from_another_origin_is_refused(authenticator):
    with pytest.raises(PasskeyRefused) as err:
        register(authenticator, origin="https://evil.example")
    assert err.value.reason == "wrong origin"
    assert isinstance(err.value, InvalidCode)  # a failed attempt, as a wrong code is


def test_a_registration_for_another_relying_party_is_refused(authenticator):
    with pytest.raises(PasskeyRefused) as err:
        register(authenticator, rp_id="evil.example")
    assert err.value.reason == "wrong relying party"


def test_a_registration_answering_another_challenge_is_refused(authenticator):
    options = passkeys.registration_options(RP, user_id=b"u" * 32, username="alice",
                                            display_name="Alice", challenge=b"a" * 32)
    with pytest.raises(PasskeyRefused) as err:
        passkeys.verify_registration(RP, authenticator.create(options), origin=PAGE, challenge=b"b" * 32)
    assert err.value.reason == "wrong challenge"


def test_an_assertion_is_not_a_registration(authenticator, stored):
    options = passkeys.authentication_options(RP, challenge=b"s" * 32, passkeys=[stored])
    answer = authenticator.get(options)
    answer["response"]["attestationObject"] = answer["response"]["authenticatorData"]
    with pytest.raises(PasskeyRefused):
        passkeys.verify_registration(RP, answer, origin=PAGE, challenge=b"s" * 32)


def test_the_suggested_name_follows_what_the_browser_tells():
    assert passkeys.describe("00000000-0000-0000-0000-000000000000", "platform") == "Passkey on this device"
    assert passkeys.describe("00000000-0000-0000-0000-000000000000", None, ["usb"]) == "Security key"
    assert passkeys.describe("00000000-0000-0000-0000-000000000000") == "Passkey"
    assert passkeys.describe("fbfc3007-154e-4ecc-8c0b-6e020557d7bd") == "iCloud Keychain"


# -- authentication -------------------------------------------------------------


def test_a_good_assertion_passes_and_reports_the_new_sign_count(authenticator, stored):
    result = sign_in(authenticator, stored)
    assert result.sign_count == 1 and result.credential_id == stored["credential_id"]
    stored["sign_count"] = result.sign_count
    assert sign_in(authenticator, stored).sign_count == 2


def test_a_synced_passkey_that_always_reports_zero_keeps_working():
    authenticator = SoftAuthenticator(counter_step=0)
    stored = register(authenticator).fields()
    assert sign_in(authenticator, stored).sign_count == 0
    assert sign_in(authenticator, stored).sign_count == 0


def test_an_assertion_from_another_origin_is_refused(authenticator, stored):
    with pytest.raises(PasskeyRefused) as err:
        sign_in(authenticator, stored, origin="https://evil.example")
    assert err.value.reason == "wrong origin"


def test_an_assertion_for_another_relying_party_is_refused(authenticator, stored):
    with pytest.raises(PasskeyRefused) as err:
        sign_in(authenticator, stored, rp_id="evil.example")
    assert err.value.reason == "wrong relying party"


def test_an_assertion_for_another_challenge_is_refused(authenticator, stored):
    with pytest.raises(PasskeyRefused) as err:
        sign_in(authenticator, stored, challenge=b"1" * 32, expected=b"2" * 32)
    assert err.value.reason == "wrong challenge"


def test_a_sign_count_going_backwards_is_refused_as_a_cloned_authenticator(authenticator, stored):
    stored["sign_count"] = 5
    with pytest.raises(SignCountRegressed) as err:
        sign_in(authenticator, stored, sign_count=3)
    assert err.value.reason == "sign count 3 after 5"
    with pytest.raises(SignCountRegressed):
        sign_in(authenticator, stored, sign_count=5)  # the same count again: a replay or a clone
    with pytest.raises(SignCountRegressed):
        sign_in(authenticator, stored, sign_count=0)  # a clone of a counting authenticator
    assert "copied" in str(err.value)


def test_a_forged_signature_is_refused_before_the_sign_count_is_looked_at(authenticator, stored):
    stored["sign_count"] = 5
    options = passkeys.authentication_options(RP, challenge=b"s" * 32, passkeys=[stored])
    answer = authenticator.get(options, sign_count=1)
    answer["response"]["signature"] = passkeys.b64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    with pytest.raises(PasskeyRefused) as err:
        passkeys.verify_authentication(RP, answer, origin=PAGE, challenge=b"s" * 32, passkey=stored)
    assert not isinstance(err.value, SignCountRegressed)
    assert err.value.reason == "bad signature"


def test_an_unknown_credential_is_refused(authenticator, stored):
    other = SoftAuthenticator()
    other_stored = register(other).fields()
    options = passkeys.authentication_options(RP, challenge=b"s" * 32, passkeys=[other_stored])
    answer = other.get(options)
    with pytest.raises(PasskeyRefused) as err:
        passkeys.verify_authentication(RP, answer, origin=PAGE, challenge=b"s" * 32, passkey=stored)
    assert err.value.reason == "another credential"


def test_a_signature_by_another_key_under_a_known_credential_id_is_refused(authenticator, stored):
    other = SoftAuthenticator()
    other.credentials[passkeys.unb64url(stored["credential_id"])] = _forged_credential(stored["credential_id"])
    options = passkeys.authentication_options(RP, challenge=b"s" * 32, passkeys=[stored])
    with pytest.raises(PasskeyRefused) as err:
        passkeys.verify_authentication(RP, other.get(options), origin=PAGE, challenge=b"s" * 32, passkey=stored)
    assert err.value.reason == "bad signature"


def _forged_credential(credential_id: str):
    from cryptography.hazmat.primitives.asymmetric import ec

    from ..webauthn_authenticator import Credential
    return Credential(passkeys.unb64url(credential_id), ec.generate_private_key(ec.SECP256R1()),
                      "localhost")


@pytest.mark.parametrize("response", [
    "", "not json", "[]", "{}", json.dumps({"id": "abc", "rawId": "abd", "response": {}}),
    json.dumps({"id": "a b", "rawId": "a b", "response": {"clientDataJSON": "x"}}),
    "x" * (passkeys.RESPONSE_MAX + 1),
])
def test_something_that_is_not_a_response_changes_nothing(stored, response):
    with pytest.raises(InvalidCodeFormat):
        passkeys.verify_authentication(RP, response, origin=PAGE, challenge=b"s" * 32, passkey=stored)
    with pytest.raises(InvalidCodeFormat):
        passkeys.verify_registration(RP, response, origin=PAGE, challenge=b"s" * 32)


@pytest.mark.parametrize("bad", [None, 5, b"{}", ["x"]])
def test_a_response_of_the_wrong_type_is_a_type_error(stored, bad):
    with pytest.raises(TypeError):
        passkeys.verify_authentication(RP, bad, origin=PAGE, challenge=b"s" * 32, passkey=stored)


def test_a_response_with_garbage_inside_is_refused_never_a_crash(authenticator, stored):
    options = passkeys.authentication_options(RP, challenge=b"s" * 32, passkeys=[stored])
    for part, value in (("authenticatorData", "AAAA"), ("clientDataJSON", "e30"),
                        ("clientDataJSON", "AAAA"), ("signature", "")):
        answer = authenticator.get(options)
        answer["response"][part] = value
        with pytest.raises(PasskeyRefused):
            passkeys.verify_authentication(RP, answer, origin=PAGE, challenge=b"s" * 32, passkey=stored)


# -- challenges -----------------------------------------------------------------


@pytest.fixture
def book(svc, clock) -> ChallengeBook:
    return ChallengeBook(svc.store, clock)


def test_a_challenge_is_taken_once(book):
    challenge = book.issue("session-a", AUTHENTICATE, "alice")
    assert len(challenge) == 32
    assert book.take("session-a", AUTHENTICATE, "alice") == challenge
    with pytest.raises(PasskeyChallengeExpired) as err:
        book.take("session-a", AUTHENTICATE, "alice")
    assert err.value.reason == "no challenge"


def test_a_challenge_expires(book, clock):
    book.issue("session-a", AUTHENTICATE, "alice")
    clock.advance(passkeys.CHALLENGE_TTL[AUTHENTICATE])
    with pytest.raises(PasskeyChallengeExpired) as err:
        book.take("session-a", AUTHENTICATE, "alice")
    assert err.value.reason == "challenge expired"
    assert "expired" in str(err.value)


def test_registration_challenges_live_longer_for_naming_the_passkey(book, clock):
    challenge = book.issue("session-a", REGISTER, "alice")
    clock.advance(passkeys.CHALLENGE_TTL[AUTHENTICATE] + 60)
    assert book.take("session-a", REGISTER, "alice") == challenge


def test_a_challenge_belongs_to_its_session_ceremony_and_user(book):
    book.issue("session-a", AUTHENTICATE, "alice")
    for session, ceremony, user in (("session-b", AUTHENTICATE, "alice"), ("session-a", REGISTER, "alice")):
        with pytest.raises(PasskeyChallengeExpired):
            book.take(session, ceremony, user)
    with pytest.raises(PasskeyChallengeExpired) as err:
        book.take("session-a", AUTHENTICATE, "bob")
    assert err.value.reason == "challenge of another user"
    with pytest.raises(PasskeyChallengeExpired):  # and that attempt used it up
        book.take("session-a", AUTHENTICATE, "alice")


def test_a_new_challenge_voids_the_one_before(book):
    first = book.issue("session-a", AUTHENTICATE, "alice")
    second = book.issue("session-a", AUTHENTICATE, "alice")
    assert first != second
    assert book.take("session-a", AUTHENTICATE, "alice") == second


def test_another_sessions_challenge_does_not_verify(book, authenticator, stored):
    mine = book.issue("session-a", AUTHENTICATE, "alice")
    book.issue("session-b", AUTHENTICATE, "alice")
    options = passkeys.authentication_options(RP, challenge=mine, passkeys=[stored])
    answer = authenticator.get(options)
    with pytest.raises(PasskeyRefused) as err:
        passkeys.verify_authentication(RP, answer, origin=PAGE, challenge=book.take("session-b", AUTHENTICATE, "alice"),
                                       passkey=stored)
    assert err.value.reason == "wrong challenge"


def test_a_challenge_is_found_once_under_40_parallel_takers(book):
    challenge = book.issue("session-a", AUTHENTICATE, "alice")
    barrier = threading.Barrier(40)

    def take(_):
        barrier.wait()
        try:
            return book.take("session-a", AUTHENTICATE, "alice")
        except PasskeyChallengeExpired:
            return None
    with ThreadPoolExecutor(40) as pool:
        found = [c for c in pool.map(take, range(40)) if c is not None]
    assert found == [challenge]


def test_challenges_need_a_session_and_a_known_ceremony(book):
    with pytest.raises(ValueError):
        book.issue("", AUTHENTICATE, "alice")
    with pytest.raises(ValueError):
        book.issue("session-a", "sign", "alice")


def test_the_name_suggested_from_an_unchecked_answer_never_fails(authenticator):
    options = passkeys.registration_options(RP, user_id=b"u" * 32, username="alice",
                                            display_name="Alice", challenge=b"c" * 32)
    answer = authenticator.create(options)
    assert passkeys.describe_response(answer) == "Google Password Manager"
    answer["response"]["attestationObject"] = "AAAA"
    assert passkeys.describe_response(answer) == "Passkey on this device"  # from "platform"
    with pytest.raises(InvalidCodeFormat):
        passkeys.describe_response("{}")


def test_settings_load_from_the_secrets_file_and_bad_ones_come_back_as_the_error(tmp_path):
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('[passkeys]\nrp_id = "example.com"\norigins = "https://mfa.example.com"\n')
    rp = passkeys.load_relying_party({}, secrets_file)
    assert rp.origins == ("https://mfa.example.com",)
    assert passkeys.load_relying_party({}, tmp_path / "none.toml") == RelyingParty()
    bad = passkeys.load_relying_party({"MFA_PORTAL_RP_ID": "10.0.0.1"}, secrets_file)
    assert isinstance(bad, PasskeySettingsError)
    secrets_file.write_text("not toml [")
    assert isinstance(passkeys.load_relying_party({}, secrets_file), PasskeySettingsError)


def test_an_answer_naming_another_user_is_refused(authenticator, stored):
    options = passkeys.authentication_options(RP, challenge=b"s" * 32, passkeys=[stored])
    answer = authenticator.get(options)
    mine, theirs = passkeys.user_handle(PEPPER, "alice"), passkeys.user_handle(PEPPER, "bob")
    answer["response"]["userHandle"] = passkeys.b64url(theirs)
    with pytest.raises(PasskeyRefused) as err:
        passkeys.verify_authentication(RP, answer, origin=PAGE, challenge=b"s" * 32, passkey=stored, user_id=mine)
    assert err.value.reason == "answer for another user"
    answer["response"]["userHandle"] = passkeys.b64url(mine)
    assert passkeys.verify_authentication(RP, answer, origin=PAGE, challenge=b"s" * 32, passkey=stored,
                                          user_id=mine).sign_count == 1


def test_transports_are_py_webauthns():
    """passkeys knows py_webauthn's transport names without importing it (a command that never
    touches a passkey does not pay for it); they must stay the same."""
    from webauthn.helpers.structs import AuthenticatorTransport

    from mfa_core import passkeys
    assert passkeys._TRANSPORTS == {t.value for t in AuthenticatorTransport}


def test_no_command_without_a_passkey_imports_webauthn():
    import subprocess
    import sys
    code = ("import sys, mfa_core, mfa_core.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('webauthn', 'OpenSSL')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
