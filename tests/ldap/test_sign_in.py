"""Sign-in with the company directory's password (issue 22): the engine's attempt_password over LDAP."""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core.directory import CompanyDirectory, DirectoryUnavailable

from ..ldap_server import USERS


def _password(uid: str) -> str:
    return next(u[1] for u in USERS if u[0] == uid)


def test_open_service_uses_the_directory(ldap_svc):
    assert isinstance(ldap_svc.directory, CompanyDirectory)


def test_sign_in_with_the_directory_password(ldap_svc):
    result = ldap_svc.attempt_password("alice", _password("alice"), source="10.0.0.1")
    assert result.username == "alice" and not result.two_factor_enabled


def test_wrong_password_and_unknown_name_get_the_same_answer(ldap_svc):
    with pytest.raises(mfa_core.InvalidCode) as wrong:
        ldap_svc.attempt_password("alice", "not-her-password", source="10.0.0.2")
    with pytest.raises(mfa_core.InvalidCode) as unknown:
        ldap_svc.attempt_password("nobody-here", "whatever-1", source="10.0.0.2")
    assert str(wrong.value) == str(unknown.value)
    assert type(wrong.value) is type(unknown.value)


@pytest.mark.parametrize("name", ["*", "alice)(uid=*", "al*", "\\00", "alice)(|(uid=*", "*)(objectClass=*"])
def test_filter_injection_finds_nobody(ldap_svc, name):
    backend = ldap_svc.directory.backend
    before = backend.user_binds
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(name, _password("alice"), source="10.0.0.3")
    assert backend.user_binds == before  # no entry found: never a bind
    assert backend.find(name) is None


def test_the_filter_escapes_per_rfc_4515(ldap_svc):
    flt = ldap_svc.directory.backend.user_filter("alice)(uid=*\\\x00")
    assert flt.endswith("(uid=alice\\29\\28uid=\\2a\\5c\\00))")


@pytest.mark.parametrize("blank", ["", "   "])
def test_empty_password_refused_before_any_bind(ldap_svc, blank):
    backend = ldap_svc.directory.backend
    before = backend.user_binds
    with pytest.raises(mfa_core.InvalidCodeFormat):
        ldap_svc.attempt_password("alice", blank, source="10.0.0.4")
    assert backend.user_binds == before
    assert backend.authenticate(ldap_svc.directory.find("alice").dn, "") is False
    assert backend.user_binds == before  # the backend refuses it too, before any bind


def test_locked_account_is_refused(ldap_svc, running_slapd, new_user):
    uid, dn = new_user("locked-directory-1")
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "locked-directory-1", source="10.0.0.5")
    account = ldap_svc.directory.find(uid)
    assert account is not None and not account.active and account.inactive_reason == "locked"


def test_directory_down_fails_closed_then_recovers(ldap_svc, running_slapd, clock, new_user):
    uid, _dn = new_user("downtime-pass-1")
    ldap_svc.attempt_password(uid, "downtime-pass-1", source="10.0.0.6")
    running_slapd.stop()
    clock.advance(61)  # past the cache: the directory must be asked
    for _ in range(3):
        with pytest.raises(DirectoryUnavailable) as caught:
            ldap_svc.attempt_password(uid, "downtime-pass-1", source="10.0.0.6")
        assert str(caught.value) == "The company directory cannot be reached; try again in a minute."
        assert isinstance(caught.value, mfa_core.StorageError)
    running_slapd.start()
    assert ldap_svc.attempt_password(uid, "downtime-pass-1", source="10.0.0.6").username == uid
    # nothing was counted against the user while the directory was down
    assert ldap_svc.retry_after(uid) == 0


def test_down_between_search_and_bind_counts_nothing(ldap_svc, running_slapd, new_user):
    uid, _dn = new_user("midway-pass-1")
    assert ldap_svc.directory.find(uid) is not None  # cached: the next sign-in goes straight to the bind
    running_slapd.stop()
    for _ in range(8):
        with pytest.raises(DirectoryUnavailable):
            ldap_svc.attempt_password(uid, "wrong-but-unchecked", source="10.0.0.7")
    running_slapd.start()
    assert ldap_svc.retry_after(uid) == 0
    assert ldap_svc.attempt_password(uid, "midway-pass-1", source="10.0.0.7").username == uid


def test_servers_tried_in_order(open_ldap_svc, running_slapd):
    from ..ldap_server import free_port
    dead = f"ldap://127.0.0.1:{free_port()}"
    svc = open_ldap_svc(MFA_PORTAL_LDAP_URL=f"{dead},{running_slapd.url}")
    assert svc.attempt_password("bob", _password("bob"), source="10.0.0.8").username == "bob"


def test_ldaps(open_ldap_svc, running_slapd):
    svc = open_ldap_svc(MFA_PORTAL_LDAP_URL=running_slapd.ldaps_url)
    assert svc.attempt_password("bob", _password("bob"), source="10.0.0.9").username == "bob"


def test_a_wrong_ca_is_unreachable_not_a_wrong_password(open_ldap_svc, tmp_path):
    from ..ldap_server import make_tls
    other = tmp_path / "other"
    other.mkdir()
    ca, _cert, _key = make_tls(other)
    svc = open_ldap_svc(MFA_PORTAL_LDAP_CA_FILE=str(ca))
    with pytest.raises(DirectoryUnavailable):
        svc.attempt_password("bob", _password("bob"), source="10.0.0.10")


def test_an_unknown_name_costs_a_bind_too(ldap_svc):
    backend = ldap_svc.directory.backend
    before = backend.dummy_binds, backend.user_binds
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password("nobody-else", "some-password-1", source="10.0.0.11")
    assert (backend.dummy_binds, backend.user_binds) == (before[0] + 1, before[1])


def test_names_are_lower_case_whatever_the_directory_spells(ldap_svc, running_slapd):
    running_slapd.add_user("MixedCase", "mixed-pass-1")
    assert ldap_svc.attempt_password("mixedcase", "mixed-pass-1", source="10.0.0.12").username == "mixedcase"
    with pytest.raises(mfa_core.InvalidCode):  # another spelling is no second record
        ldap_svc.attempt_password("MixedCase", "mixed-pass-1", source="10.0.0.12")


def test_a_server_that_never_answers_times_out_and_the_next_one_is_asked(open_ldap_svc, running_slapd):
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing is ever read or answered
    try:
        port = silent.getsockname()[1]
        svc = open_ldap_svc(MFA_PORTAL_LDAP_URL=f"ldap://127.0.0.1:{port}", MFA_PORTAL_LDAP_TIMEOUT="1")
        with pytest.raises(DirectoryUnavailable):
            svc.attempt_password("bob", _password("bob"), source="10.0.0.13")
        svc = open_ldap_svc(MFA_PORTAL_LDAP_URL=f"ldap://127.0.0.1:{port},{running_slapd.url}",
                            MFA_PORTAL_LDAP_TIMEOUT="1")
        assert svc.attempt_password("bob", _password("bob"), source="10.0.0.13").username == "bob"
    finally:
        silent.close()
