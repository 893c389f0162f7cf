"""Leavers (disabled, locked, expired) and the Helpdesk group, as the company directory says (issue 22)."""

from __future__ import annotations

import threading
import types

import pytest

import mfa_core
from mfa_core.directory import AccountInactive, DirectoryUnavailable

from ..ldap_server import GROUPS, HELPDESK_DN
from ..support import code_for, enable_totp

CLIENT = types.SimpleNamespace(actor="vpn")


def _api(svc, username, code):
    from mfa_services import api
    return api.verify(svc, CLIENT, username, code, None)


def test_disabled_after_enrollment_refused_at_sign_in_and_by_the_api_within_60_s(
        ldap_svc, running_slapd, clock, new_user):
    uid, dn = new_user("leaver-pass-1")
    ldap_svc.attempt_password(uid, "leaver-pass-1", source="10.1.0.1")
    secret = enable_totp(ldap_svc, clock, uid)
    assert _api(ldap_svc, uid, code_for(secret, clock()))[1]["ok"] is True
    clock.advance(30)
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})  # the admin disables them
    clock.advance(61)  # at most a minute later
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "leaver-pass-1", source="10.1.0.1")
    with pytest.raises(AccountInactive):
        ldap_svc.attempt_second_factor(uid, code_for(secret, clock()), source="10.1.0.1")
    assert _api(ldap_svc, uid, code_for(secret, clock())) == (200, {"ok": False}, {})
    assert ldap_svc.retry_after(uid) == 0  # refused, not counted


def test_the_api_fails_closed_while_the_directory_is_down(ldap_svc, running_slapd, clock, new_user):
    uid, _dn = new_user("api-down-pass-1")
    secret = enable_totp(ldap_svc, clock, uid)
    running_slapd.stop()
    clock.advance(61)
    with pytest.raises(DirectoryUnavailable):
        ldap_svc.attempt_second_factor(uid, code_for(secret, clock()), source="vpn")
    running_slapd.start()
    assert _api(ldap_svc, uid, code_for(secret, clock()))[1]["ok"] is True


def test_expired_account_openldap(ldap_svc, running_slapd, new_user):
    uid, dn = new_user("expired-pass-1")
    running_slapd.modify(dn, {"pwdEndTime": "20000101000000Z"})
    account = ldap_svc.directory.find(uid)
    assert not account.active and account.inactive_reason == "expired"
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "expired-pass-1", source="10.1.0.2")


def test_group_change_grants_and_revokes_the_helpdesk(ldap_svc, running_slapd, clock, new_user):
    uid, dn = new_user("helper-pass-1")
    directory = ldap_svc.directory
    assert directory.roles(uid) == ["user"] and not directory.get(uid).is_admin
    running_slapd.add_member(HELPDESK_DN, dn)
    clock.advance(61)
    assert directory.get(uid).is_admin and "admin" in directory.roles(uid)
    running_slapd.remove_member(HELPDESK_DN, dn)
    clock.advance(61)
    assert not directory.get(uid).is_admin


def test_carol_of_the_helpdesk_group_is_admin(ldap_svc):
    assert ldap_svc.directory.get("carol").is_admin
    assert not ldap_svc.directory.get("dave").is_admin  # another group's member


def test_the_cache_is_at_most_60_s_on_the_engine_clock(ldap_svc, running_slapd, clock, new_user):
    uid, dn = new_user("cache-pass-1")
    assert ldap_svc.directory.is_active(uid)
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    clock.advance(59)
    assert ldap_svc.directory.is_active(uid)  # still the cached answer
    clock.advance(2)
    assert not ldap_svc.directory.is_active(uid)


def test_40_parallel_wrong_passwords_bind_no_more_often_than_40_sequential(open_ldap_svc, new_user):
    svc = open_ldap_svc()
    backend = svc.directory.backend

    def binds(uid: str, parallel: bool) -> int:
        before = backend.user_binds

        def attempt() -> None:
            try:
                svc.attempt_password(uid, "not-the-password", source="10.2.0.1")
            except mfa_core.MFAError:
                pass
        if parallel:
            threads = [threading.Thread(target=attempt) for _ in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for _ in range(40):
                attempt()
        return backend.user_binds - before

    sequential = binds(new_user("seq-pass-1")[0], False)
    parallel = binds(new_user("par-pass-1")[0], True)
    assert parallel <= sequential
    assert sequential == svc.password_policy.free_failures  # then the throttle answers, no bind


def test_search_is_server_side_and_limited(ldap_svc):
    found = ldap_svc.directory.search("a", limit=2)
    assert len(found) == 2
    assert [a.username for a in ldap_svc.directory.search("caro")] == ["carol"]
    assert ldap_svc.directory.search("*)(uid=*") == []


def test_changes_are_refused_users_live_in_the_company_directory(ldap_svc):
    from mfa_core.users import UserDirectoryError
    for change in (lambda d: d.add("zed", "zed-password-1"), lambda d: d.remove("alice"),
                   lambda d: d.set_password("alice", "new-password-1"), lambda d: d.set_roles("alice", [])):
        with pytest.raises(UserDirectoryError, match="managed in the company directory"):
            change(ldap_svc.directory)


# -- Active Directory's rules, on slapd entries carrying AD's attributes --------------------

AD = dict(MFA_PORTAL_LDAP_PRESET="active-directory",
          MFA_PORTAL_LDAP_USER_FILTER="(objectClass=mfaTestAdAccount)")
FILETIME_2000 = (946684800 + 11644473600) * 10_000_000


@pytest.fixture
def ad_svc(open_ldap_svc):
    return open_ldap_svc(**AD)


def test_ad_sign_in_and_object_guid(ad_svc, new_user):
    uid, _dn = new_user("ad-pass-1", ad={"userAccountControl": 512, "accountExpires": 0})
    assert ad_svc.attempt_password(uid, "ad-pass-1", source="10.3.0.1").username == uid
    account = ad_svc.directory.find(uid)
    assert account.active and len(account.stable_id) == 36


@pytest.mark.parametrize("attrs,reason", [
    ({"userAccountControl": 514}, "disabled"),                        # 512 | ACCOUNTDISABLE
    ({"userAccountControl": 512, "accountExpires": FILETIME_2000}, "expired"),
    ({"userAccountControl": 512, "lockoutTime": (1_700_000_000 + 11644473600) * 10_000_000}, "locked"),
    ({"userAccountControl": 512, "msDS-User-Account-Control-Computed": 0x10}, "locked"),
    ({"userAccountControl": 512, "msDS-User-Account-Control-Computed": 0x800000}, "expired"),
])
def test_ad_leavers(ad_svc, new_user, clock, attrs, reason):
    uid, _dn = new_user("ad-leaver-1", ad=attrs)
    account = ad_svc.directory.find(uid)
    assert not account.active and account.inactive_reason == reason
    with pytest.raises(mfa_core.InvalidCode):
        ad_svc.attempt_password(uid, "ad-leaver-1", source="10.3.0.2")


def test_ad_lockout_ends_after_the_lockout_duration(ad_svc, new_user, clock):
    locked_at = clock() - 1801
    uid, _dn = new_user("ad-unlocked-1", ad={"lockoutTime": int((locked_at + 11644473600) * 10_000_000)})
    assert ad_svc.directory.find(uid).active


def test_ad_computed_state_wins_over_lockout_time(ad_svc, new_user, clock):
    """AD clears UF_LOCKOUT itself when the domain's lockout duration ends, lockoutTime stays."""
    uid, _dn = new_user("ad-computed-1", ad={"lockoutTime": int((clock() - 60 + 11644473600) * 10_000_000),
                                             "msDS-User-Account-Control-Computed": 0})
    assert ad_svc.directory.find(uid).active


def test_ad_never_expires_values(ad_svc, new_user):
    uid, _dn = new_user("ad-never-1", ad={"userAccountControl": 66048, "accountExpires": 9223372036854775807})
    assert ad_svc.directory.find(uid).active


def test_ad_helpdesk_direct_member_and_nested_rule(ad_svc, running_slapd, new_user, clock):
    uid, dn = new_user("ad-helper-1", ad={"userAccountControl": 512})
    assert not ad_svc.directory.get(uid).is_admin  # slapd ignores AD's in-chain rule: no error
    running_slapd.add_member(HELPDESK_DN, dn)
    clock.advance(61)
    assert ad_svc.directory.get(uid).is_admin
    running_slapd.remove_member(HELPDESK_DN, dn)
    assert GROUPS in HELPDESK_DN


def test_ad_asks_the_server_for_nested_membership(ad_svc, new_user, monkeypatch):
    backend = ad_svc.directory.backend
    uid, dn = new_user("ad-nested-1", ad={"userAccountControl": 512})
    seen = []
    original = backend._search

    def spy(base, flt, attributes, **kwargs):
        seen.append((base, flt))
        return original(base, flt, attributes, **kwargs)
    monkeypatch.setattr(backend, "_search", spy)
    assert not ad_svc.directory.find(uid, fresh=True).is_admin
    assert (dn, f"(memberOf:1.2.840.113556.1.4.1941:={HELPDESK_DN})") in seen


def test_the_helpdesk_search_asks_for_at_most_its_limit(ldap_svc, running_slapd, monkeypatch):
    with running_slapd._conn(None) as admin:
        for i in range(40):
            running_slapd.add_user(f"many{i:02d}x", "many-pass-1", conn=admin)
    backend = ldap_svc.directory.backend
    limits = []
    original = backend._search

    def spy(base, flt, attributes, **kwargs):
        limits.append((kwargs.get("size_limit"), kwargs.get("paged_size")))
        return original(base, flt, attributes, **kwargs)
    monkeypatch.setattr(backend, "_search", spy)
    index = ldap_svc.directory.index()
    found = index.search("many")
    assert len(found) == 26 == len(index) and limits == [(26, 26)]
    assert index.user(found[0]).username == found[0]
