"""The ``active-directory`` preset against a real Active Directory: Samba's AD DC (issue 22).

tests/ldap tests the same rules on slapd entries carrying AD's attributes; here
the domain controller computes them itself: sAMAccountName, objectGUID,
userAccountControl set by ``samba-tool user disable``, accountExpires, the
lockout it applies after wrong binds (msDS-User-Account-Control-Computed),
pwdLastSet, and nested groups through LDAP_MATCHING_RULE_IN_CHAIN.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import types
import uuid
from pathlib import Path

import ldap3
import pytest

import mfa_core
from mfa_core.directory import AccountInactive, CompanyDirectory

from ..ad_server import BASE, HELPDESK_DN, PASSWORDS, SERVICE_DN, SERVICE_PASSWORD, TIER_ONE_DN, user_dn
from ..support import code_for, enable_totp

ROOT = Path(__file__).resolve().parents[2]


def _api(svc, username, code):
    from mfa_services import api
    return api.verify(svc, types.SimpleNamespace(actor="vpn"), username, code, None)


def _tls(samba_ad):
    return ldap3.Tls(ca_certs_file=str(samba_ad.ca_file), validate=ssl.CERT_REQUIRED)


def _bind(samba_ad, dn, password) -> bool:
    conn = ldap3.Connection(ldap3.Server(samba_ad.ldaps_url, tls=_tls(samba_ad), get_info=ldap3.NONE),
                            dn, password, receive_timeout=30)
    try:
        return conn.bind()
    finally:
        conn.unbind()


def test_the_domain_wants_tls_for_a_password_bind(samba_ad):
    """AD's default ("ldap server require strong auth"): a simple bind in the clear is refused,
    over StartTLS or LDAPS it works with the tests' CA."""
    plain = ldap3.Connection(ldap3.Server(samba_ad.url, get_info=ldap3.NONE), SERVICE_DN, SERVICE_PASSWORD)
    assert not plain.bind() and plain.result["result"] == 8  # strongerAuthRequired
    plain.unbind()
    conn = ldap3.Connection(ldap3.Server(samba_ad.url, tls=_tls(samba_ad), get_info=ldap3.NONE),
                            SERVICE_DN, SERVICE_PASSWORD)
    conn.open()
    assert conn.start_tls() and conn.bind()
    conn.unbind()
    assert _bind(samba_ad, SERVICE_DN, SERVICE_PASSWORD)


@pytest.mark.parametrize("url", ["ldaps", "starttls"])
def test_sign_in_with_the_directory_password(open_ad_svc, samba_ad, url):
    svc = open_ad_svc(MFA_PORTAL_LDAP_URL=samba_ad.ldaps_url if url == "ldaps" else samba_ad.url)
    assert isinstance(svc.directory, CompanyDirectory)
    result = svc.attempt_password("alice", PASSWORDS["alice"], source="10.7.0.1")
    assert result.username == "alice" and not result.two_factor_enabled
    account = svc.directory.find("alice")
    assert account.active and account.name == "Alice Example" and account.email == "alice@test.local"
    assert account.roles == ("user",)


def test_wrong_password_and_unknown_name_get_the_same_answer(ad_svc):
    with pytest.raises(mfa_core.InvalidCode) as wrong:
        ad_svc.attempt_password("alice", "Not-Her-Password-1", source="10.7.0.2")
    with pytest.raises(mfa_core.InvalidCode) as unknown:
        ad_svc.attempt_password("nobody-here", "Whatever-Pass-1", source="10.7.0.2")
    assert str(wrong.value) == str(unknown.value) and type(wrong.value) is type(unknown.value)


@pytest.mark.parametrize("name", ["*", "alice)(sAMAccountName=*", "al*", "\\00"])
def test_filter_injection_finds_nobody(ad_svc, name):
    backend = ad_svc.directory.backend
    before = backend.user_binds
    with pytest.raises(mfa_core.InvalidCode):
        ad_svc.attempt_password(name, PASSWORDS["alice"], source="10.7.0.3")
    assert backend.user_binds == before and backend.find(name) is None


def test_disabled_account_refused(ad_svc, samba_ad):
    """erin was disabled with ``samba-tool user disable`` (userAccountControl's ACCOUNTDISABLE)."""
    account = ad_svc.directory.find("erin")
    assert not account.active and account.inactive_reason == "disabled"
    with pytest.raises(mfa_core.InvalidCode):
        ad_svc.attempt_password("erin", PASSWORDS["erin"], source="10.7.0.4")
    assert not _bind(samba_ad, user_dn("erin"), PASSWORDS["erin"])  # the domain agrees


def test_expired_account_refused(ad_svc):
    account = ad_svc.directory.find("frank")
    assert not account.active and account.inactive_reason == "expired"
    with pytest.raises(mfa_core.InvalidCode):
        ad_svc.attempt_password("frank", PASSWORDS["frank"], source="10.7.0.5")


def test_disabled_after_enrollment_refused_at_sign_in_and_by_the_api_within_60_s(ad_svc, samba_ad,
                                                                                   new_ad_user, clock):
    name, _dn = new_ad_user("Leaver-Account-1")
    ad_svc.attempt_password(name, "Leaver-Account-1", source="10.7.0.6")
    secret = enable_totp(ad_svc, clock, name)
    assert _api(ad_svc, name, code_for(secret, clock()))[1]["ok"] is True
    clock.advance(30)
    samba_ad.tool_run("user", "disable", name)
    clock.advance(61)
    with pytest.raises(mfa_core.InvalidCode):
        ad_svc.attempt_password(name, "Leaver-Account-1", source="10.7.0.6")
    with pytest.raises(AccountInactive):
        ad_svc.attempt_second_factor(name, code_for(secret, clock()), source="10.7.0.6")
    assert _api(ad_svc, name, code_for(secret, clock())) == (200, {"ok": False}, {})


def test_locked_by_the_domain_s_lockout_policy(ad_svc, samba_ad, new_ad_user):
    """Wrong binds past the domain's threshold: the DC sets UF_LOCKOUT in
    msDS-User-Account-Control-Computed, and the portal reads the account as locked."""
    name, dn = new_ad_user("Lock-Me-Out-1")
    samba_ad.tool_run("domain", "passwordsettings", "set", "--account-lockout-threshold=3")
    try:
        for _ in range(3):
            assert not _bind(samba_ad, dn, "Wrong-Guess-0")
        account = ad_svc.directory.find(name, fresh=True)
        assert not account.active and account.inactive_reason == "locked"
        with pytest.raises(mfa_core.InvalidCode):
            ad_svc.attempt_password(name, "Lock-Me-Out-1", source="10.7.0.7")
    finally:
        samba_ad.tool_run("domain", "passwordsettings", "set", "--account-lockout-threshold=0")


def _bad_password_count(samba_ad, dn) -> int:
    admin = samba_ad.admin()
    try:
        admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["badPwdCount"])
        return int(admin.response[0]["raw_attributes"]["badPwdCount"][0])
    finally:
        admin.unbind()


def test_forty_places_never_lock_the_domain_account(ad_svc, samba_ad, new_ad_user, clock):
    """AD's default policy (10 bad passwords): the portal binds at most BIND_FAILURES = 5 times."""
    name, dn = new_ad_user("Owner-Account-1")
    ad_svc.attempt_password(name, "Owner-Account-1", source="192.0.2.1")  # the owner's familiar place
    samba_ad.tool_run("domain", "passwordsettings", "set", "--account-lockout-threshold=10")
    try:
        backend = ad_svc.directory.backend
        before = backend.user_binds
        for i in range(40):  # a botnet: every attempt from a new address
            with pytest.raises((mfa_core.InvalidCode, mfa_core.TooManyAttempts)):
                ad_svc.attempt_password(name, f"Guess-Number-{i}", source=f"198.51.100.{i + 1}")
            clock.advance(5)
        assert backend.user_binds - before == 5 == ad_svc.directory.settings.bind_failures
        assert _bad_password_count(samba_ad, dn) == 5  # the domain saw 5 of its 10
        assert ad_svc.directory.find(name, fresh=True).active
        clock.advance(1800)  # the owner waits out the portal's window, then signs in
        assert ad_svc.attempt_password(name, "Owner-Account-1", source="192.0.2.1").username == name
    finally:
        samba_ad.tool_run("domain", "passwordsettings", "set", "--account-lockout-threshold=0")


def test_nested_group_makes_an_admin(ad_svc, samba_ad):
    """carol is in Tier One, a member of MFA Helpdesk: admin through the in-chain rule only."""
    carol = ad_svc.directory.find("carol")
    assert HELPDESK_DN.lower() not in [g.lower() for g in carol.groups]
    assert TIER_ONE_DN.lower() in [g.lower() for g in carol.groups]
    assert carol.roles == ("user", "admin") and ad_svc.directory.get("carol").is_admin
    assert ad_svc.directory.find("dave").roles == ("user", "admin")  # a direct member
    assert not ad_svc.directory.get("alice").is_admin
    assert {a.username for a in ad_svc.directory.backend.admins()} == {"carol", "dave"}


def test_group_change_grants_and_revokes_within_60_s(ad_svc, samba_ad, new_ad_user, clock):
    name, _dn = new_ad_user("Group-Change-1")
    assert not ad_svc.directory.get(name).is_admin
    samba_ad.tool_run("group", "addmembers", "Tier One", name)
    clock.advance(61)
    assert ad_svc.directory.get(name).is_admin
    samba_ad.tool_run("group", "removemembers", "Tier One", name)
    clock.advance(61)
    assert not ad_svc.directory.get(name).is_admin


def test_object_guid_is_the_stable_key(ad_svc, samba_ad):
    admin = samba_ad.admin()
    try:
        admin.search(user_dn("alice"), "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        guid = admin.response[0]["raw_attributes"]["objectGUID"][0]
    finally:
        admin.unbind()
    account = ad_svc.directory.find("alice")
    assert account.stable_id == str(uuid.UUID(bytes_le=guid))
    assert ad_svc.directory.backend.find_by_id(account.stable_id).username == "alice"


def test_a_renamed_account_keeps_its_authenticators(ad_svc, samba_ad, new_ad_user, clock):
    old, _dn = new_ad_user("Rename-Account-1")
    ad_svc.attempt_password(old, "Rename-Account-1", source="10.7.0.8")
    secret = enable_totp(ad_svc, clock, old)
    new = old + "r"
    samba_ad.tool_run("user", "rename", old, f"--samaccountname={new}")
    clock.advance(61)
    result = ad_svc.attempt_password(new, "Rename-Account-1", source="10.7.0.8")
    assert result.two_factor_enabled
    ad_svc.attempt_second_factor(new, code_for(secret, clock()), source="10.7.0.8")
    assert not ad_svc.status(old).two_factor_enabled


def test_a_password_change_in_the_domain_ends_the_sessions(ad_svc, samba_ad, new_ad_user, clock):
    name, _dn = new_ad_user("Session-Account-1")
    ad_svc.attempt_password(name, "Session-Account-1", source="10.7.0.9")
    token = ad_svc.sessions.start(name, second_factor_passed=True, verified_at=clock())
    clock.advance(61)
    assert ad_svc.sessions.find(token) is not None
    samba_ad.tool_run("user", "setpassword", name, "--newpassword=Session-Account-2")
    clock.advance(61)
    assert ad_svc.sessions.find(token) is None
    ad_svc.attempt_password(name, "Session-Account-2", source="10.7.0.9")


def test_directory_test_command(ad_env, data_dir):
    """``python -m mfa_core directory test NAME``, as an admin runs it first."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **ad_env, "MFA_PORTAL_DATA_DIR": str(data_dir)}

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "mfa_core", "directory", "test", *args], cwd=data_dir.parent,
                              env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout, done.stderr

    code, out, err = run()
    assert code == 0, err
    code, out, err = run("carol")
    assert code == 0 and "roles: user, admin" in out and "state: active" in out, (out, err)
    assert BASE.lower() in out.lower()
    code, out, err = run("erin")
    assert code == 2 and "state: disabled" in out, (out, err)
    code, out, err = run("nobody-at-all")
    assert code == 2 and "nobody-at-all" in err
    env["MFA_PORTAL_LDAP_BIND_PASSWORD"] = "Wrong-Service-1"
    code, out, err = run()
    assert code == 1 and "service account" in err and "Wrong-Service-1" not in out + err


def test_helpdesk_search_and_paged_list(ad_svc):
    """The Helpdesk's server-side search, and ``users list``'s paged listing (2 a page here) with
    the nested admins asked for once."""
    assert [a.username for a in ad_svc.directory.search("caro")] == ["carol"]
    assert ad_svc.directory.search("*)(sAMAccountName=*") == []
    people, complete = ad_svc.directory.backend.all_accounts(page_size=2)
    by_name = {a.username: a for a in people}
    assert complete and {"alice", "carol", "dave", "erin", "frank", "administrator"} <= set(by_name)
    assert by_name["carol"].roles == by_name["dave"].roles == ("user", "admin")
    assert by_name["alice"].roles == ("user",)
    assert not by_name["erin"].active and not by_name["frank"].active
