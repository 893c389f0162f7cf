"""A password change in the company directory ends the person's portal sessions (within 60 s)."""

from __future__ import annotations

import ldap3


def test_password_change_in_the_directory_ends_the_sessions(ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("session-pass-1")
    ldap_svc.attempt_password(uid, "session-pass-1", source="10.4.0.1")
    token = ldap_svc.sessions.start(uid, second_factor_passed=True, verified_at=clock())
    other = ldap_svc.sessions.start(uid, second_factor_passed=True, verified_at=clock())
    clock.advance(61)
    assert ldap_svc.sessions.find(token) is not None  # nothing changed: the session holds
    with running_slapd._conn(None) as c:
        c.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, ["session-pass-2"])]})
    clock.advance(61)
    assert ldap_svc.sessions.find(token) is None
    assert ldap_svc.sessions.find(other) is None
    # signing in with the new password starts a session that holds
    ldap_svc.attempt_password(uid, "session-pass-2", source="10.4.0.1")
    fresh = ldap_svc.sessions.start(uid, second_factor_passed=True, verified_at=clock())
    clock.advance(61)
    assert ldap_svc.sessions.find(fresh) is not None


def test_a_leaver_s_sessions_end(ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("session-leaver-1")
    token = ldap_svc.sessions.start(uid, second_factor_passed=True, verified_at=clock())
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    clock.advance(61)
    assert ldap_svc.sessions.find(token) is None


def test_ad_pwd_last_set_change_ends_the_sessions(open_ldap_svc, running_slapd, new_user, clock):
    svc = open_ldap_svc(MFA_PORTAL_LDAP_PRESET="active-directory",
                        MFA_PORTAL_LDAP_USER_FILTER="(objectClass=mfaTestAdAccount)")
    uid, dn = new_user("ad-session-1", ad={"userAccountControl": 512, "pwdLastSet": 133000000000000000})
    token = svc.sessions.start(uid, second_factor_passed=True, verified_at=clock())
    running_slapd.modify(dn, {"pwdLastSet": 133000000010000000})
    clock.advance(61)
    assert svc.sessions.find(token) is None
