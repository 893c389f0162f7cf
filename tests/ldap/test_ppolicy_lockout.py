"""OpenLDAP ppolicy locks end by themselves after the policy's pwdLockoutDuration (the password
policy draft's rules): ``000001010000Z`` locks for good, a duration of 0 or none too, and a
policy the portal can't read keeps the account locked (fail closed)."""

from __future__ import annotations

import datetime as dt

from ..ldap_server import POLICY_DN, TIMED_POLICY_DN


def _generalized(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _state(svc, uid):
    svc.directory.forget()
    account = svc.directory.find(uid)
    return account.active, account.inactive_reason


def test_a_lock_ends_after_the_policys_lockout_duration(ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("timed-lock-1")
    running_slapd.modify(dn, {"pwdPolicySubentry": TIMED_POLICY_DN,
                              "pwdAccountLockedTime": _generalized(clock() - 10)})
    assert _state(ldap_svc, uid) == (False, "locked")
    clock.advance(289)  # 299 s after the lock: still locked
    assert _state(ldap_svc, uid) == (False, "locked")
    clock.advance(1)  # 300 s: the duration is over
    assert _state(ldap_svc, uid) == (True, None)


def test_an_administrators_lock_is_for_good(ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("admin-lock-1")
    running_slapd.modify(dn, {"pwdPolicySubentry": TIMED_POLICY_DN, "pwdAccountLockedTime": "000001010000Z"})
    clock.advance(10 ** 7)
    assert _state(ldap_svc, uid) == (False, "locked")


def test_a_policy_without_a_duration_locks_for_good(ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("no-duration-1")
    running_slapd.modify(dn, {"pwdPolicySubentry": POLICY_DN,
                              "pwdAccountLockedTime": _generalized(clock() - 10)})
    clock.advance(10 ** 7)
    assert _state(ldap_svc, uid) == (False, "locked")


def test_the_default_policy_comes_from_the_settings(open_ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("default-policy-1")
    running_slapd.modify(dn, {"pwdAccountLockedTime": _generalized(clock() - 10)})
    unknown_default = open_ldap_svc()
    clock.advance(3600)
    assert _state(unknown_default, uid) == (False, "locked")  # which policy? locked: fail closed
    timed_default = open_ldap_svc(MFA_PORTAL_LDAP_PASSWORD_POLICY=TIMED_POLICY_DN)
    assert _state(timed_default, uid) == (True, None)


def test_a_policy_that_cannot_be_read_keeps_it_locked(open_ldap_svc, running_slapd, new_user, clock):
    uid, dn = new_user("missing-policy-1")
    running_slapd.modify(dn, {"pwdAccountLockedTime": _generalized(clock() - 10)})
    svc = open_ldap_svc(MFA_PORTAL_LDAP_PASSWORD_POLICY="cn=nothing,ou=policies,dc=example,dc=com")
    clock.advance(10 ** 6)
    assert _state(svc, uid) == (False, "locked")
