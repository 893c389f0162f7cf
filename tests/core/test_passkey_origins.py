"""F15: an answer is accepted only from the page that began the ceremony (the portal's own origin).

With the default relying party (``localhost``), every ``http(s)://localhost:<port>``
used to be accepted: a page on another local port could relay an answer. Now the
challenge remembers the page's origin and only an answer from it counts.
"""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core import passkeys
from mfa_core.errors import NotEnabled, PasskeyRefused

from ..webauthn_authenticator import PAGE, SoftAuthenticator

OTHER_PORTS = ["http://localhost:8502", "https://localhost", "https://localhost:443", "http://localhost"]


@pytest.fixture
def svc(tinydb_svc):
    return tinydb_svc


@pytest.fixture
def token(svc) -> str:
    return svc.sessions.start("alice", second_factor_passed=True)


def _add(svc, token, authenticator, origin=PAGE):
    options = svc.begin_passkey_registration("alice", session=token, origin=origin)
    return svc.finish_passkey_registration("alice", authenticator.create(options), session=token)


@pytest.mark.parametrize("forged", OTHER_PORTS)
def test_a_registration_answered_from_another_local_port_is_refused(svc, token, forged):
    options = svc.begin_passkey_registration("alice", session=token, origin=PAGE)
    with pytest.raises(PasskeyRefused):
        svc.finish_passkey_registration("alice", SoftAuthenticator().create(options, origin=forged),
                                        session=token)
    assert not svc.status("alice").two_factor_enabled
    [event] = [e for e in svc.audit("alice") if e.event == "passkey_registration_failed"]
    assert "wrong origin" in event.detail


@pytest.mark.parametrize("forged", OTHER_PORTS)
def test_a_sign_in_answered_from_another_local_port_is_refused_and_counted(svc, token, forged):
    authenticator = SoftAuthenticator()
    _add(svc, token, authenticator)
    options = svc.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    with pytest.raises(PasskeyRefused):
        svc.attempt_passkey("alice", authenticator.get(options, origin=forged), session=token)
    assert svc.status("alice").failed_attempts == 1


def test_the_pages_own_origin_is_accepted_whatever_its_port(svc, token):
    page = "http://localhost:39123"
    authenticator = SoftAuthenticator(origin=page)
    _add(svc, token, authenticator, origin=page)
    options = svc.begin_passkey_sign_in("alice", session=token, origin=page)
    assert svc.attempt_passkey("alice", authenticator.get(options), session=token).strategy == "passkey"


def test_without_the_pages_origin_the_default_relying_party_starts_no_ceremony(svc, token):
    for begin in (svc.begin_passkey_registration, svc.begin_passkey_sign_in):
        with pytest.raises(NotEnabled):
            begin("alice", session=token)


@pytest.mark.parametrize("page", ["http://127.0.0.1:8501", "https://evil.example", "http://localhost.evil.example"])
def test_a_page_the_relying_party_cannot_serve_starts_no_ceremony(svc, token, page):
    with pytest.raises(NotEnabled):
        svc.begin_passkey_registration("alice", session=token, origin=page)


def test_configured_origins_accept_the_page_alone_when_it_is_known(tmp_path, clock):
    rp = passkeys.RelyingParty(id="example.com", origins=("https://mfa.example.com",
                                                          "https://mfa.example.com:8443"))
    svc = mfa_core.open_service(tmp_path / "d", clock=clock, environ={}, relying_party=rp)
    token = svc.sessions.start("alice", second_factor_passed=True)
    page, other = "https://mfa.example.com", "https://mfa.example.com:8443"
    options = svc.begin_passkey_registration("alice", session=token, origin=page)
    with pytest.raises(PasskeyRefused):
        svc.finish_passkey_registration(
            "alice", SoftAuthenticator(origin=other).create(options), session=token)
    # Without the page's origin (a caller that cannot tell), any configured origin, as configured.
    options = svc.begin_passkey_registration("alice", session=token)
    svc.finish_passkey_registration(
        "alice", SoftAuthenticator(origin=other).create(options), session=token)


def test_the_relying_party_rule_itself():
    rp = passkeys.RelyingParty()
    assert rp.accepts(PAGE, PAGE)
    assert not rp.accepts("http://localhost:8502", PAGE)
    assert not rp.accepts(PAGE, None)  # the default needs the page's origin
    configured = passkeys.RelyingParty(id="example.com", origins=("https://example.com",))
    assert configured.accepts("https://example.com", None)
    assert not configured.accepts("https://evil.example", "https://evil.example")
