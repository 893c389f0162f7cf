"""The portal's pages on the company directory (AppTest: the real pages, engine and slapd in-process)."""

from __future__ import annotations

import pytest

import portal.config

from ..ldap_server import USERS
from ..portal.conftest import Clock, app, errors, run, sign_in, texts
from .conftest import ldap_environ


@pytest.fixture
def ldap_portal(tmp_path, monkeypatch, running_slapd):
    clock = Clock()
    monkeypatch.setattr(portal.config, "CLOCK", clock)
    monkeypatch.setenv("MFA_PORTAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MFA_PORTAL_DEMO", raising=False)
    for key, value in ldap_environ(running_slapd).items():
        monkeypatch.setenv(key, value)
    yield clock
    found = portal.config.portal()
    found.service.directory.backend.close()


def _password(uid: str) -> str:
    return next(u[1] for u in USERS if u[0] == uid)


def test_sign_in_with_the_directory_password(ldap_portal):
    at = app()
    shown = texts(at)
    assert "Demo mode" not in shown and "No users exist yet." not in shown
    at = sign_in(at, "alice", _password("alice"))
    assert "Welcome" in texts(at), texts(at)


def test_wrong_directory_password_is_refused(ldap_portal):
    at = sign_in(app(), "alice", "not-her-password")
    assert "Username or password is incorrect." in errors(at)


def test_a_leaver_is_signed_out_within_60_s(ldap_portal, running_slapd, new_user):
    uid, dn = new_user("page-leaver-1")
    at = sign_in(app(), uid, "page-leaver-1")
    assert "Welcome" in texts(at)
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    ldap_portal.advance(61)
    at = run(at)
    assert "Welcome" not in texts(at)
    assert "Username" in texts(at) or "Login" in [b.label for b in at.button]


def test_directory_down_says_so_in_plain_words(ldap_portal, running_slapd):
    running_slapd.stop()
    at = sign_in(app(), "bob", _password("bob"))
    assert "The company directory cannot be reached; try again in a minute." in errors(at)
    running_slapd.start()
    at = sign_in(app(), "bob", _password("bob"))
    assert "Welcome" in texts(at)


def test_helpdesk_searches_the_directory_and_shows_leavers(ldap_portal, running_slapd, new_user):
    from ..portal.conftest import enroll, pass_challenge, type_into
    svc = portal.config.service()
    secret = enroll(svc, ldap_portal, "carol")[0]
    uid, dn = new_user("helpdesk-shown-1")
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    at = pass_challenge(sign_in(app(), "carol", _password("carol")), secret, ldap_portal)
    assert "Welcome" in texts(at), texts(at)
    at.switch_page("pages/3_Helpdesk.py")
    at = run(at)
    type_into(at, "Search users", uid)
    at = run(at)
    frame = at.dataframe[0].value
    found = {r["User"]: r for r in frame.to_dict("records")}
    assert list(found) == [uid]
    assert "disabled in the directory" in found[uid]["Role"]


def test_the_api_answers_not_ok_for_a_leaver_and_503_while_the_directory_is_down(
        ldap_portal, running_slapd, new_user):
    """mfa_services.api.answer in-process (the check process runs the same function)."""
    import json

    from mfa_services import api

    from ..portal.conftest import code
    svc = portal.config.service()
    key = api.registry().add("vpn-ldap-test")
    headers = {"authorization": f"Bearer {key}"}

    def ask(username: str, secret: str):
        status, payload, _ = api.answer("127.0.0.1", headers,
                                        json.dumps({"username": username,
                                                    "code": code(secret, ldap_portal)}).encode())
        ldap_portal.advance(30)
        return status, payload

    uid, dn = new_user("api-pass-1")
    resource = svc.create_totp(uid)
    svc.verify_totp(uid, code(resource.secret, ldap_portal))
    ldap_portal.advance(30)
    assert ask(uid, resource.secret) == (200, {"ok": True, "strategy": "totp"})
    running_slapd.stop()
    ldap_portal.advance(61)
    assert ask(uid, resource.secret)[0] == 503
    running_slapd.start()
    assert ask(uid, resource.secret)[1]["ok"] is True
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    ldap_portal.advance(61)
    assert ask(uid, resource.secret) == (200, {"ok": False})
