"""The portal's smart lockout stops an attacker long before the directory's own lockout
(AD's threshold; here ppolicy's pwdMaxFailure) would lock the real account."""

from __future__ import annotations

import pytest

import mfa_core

from ..ldap_server import STRICT_POLICY_DN


@pytest.fixture
def strict_policy(running_slapd):
    return STRICT_POLICY_DN


def _locked(server, dn) -> bool:
    with server._conn(None) as c:
        c.search(dn, "(objectClass=*)", attributes=["pwdAccountLockedTime", "pwdFailureTime"])
        return bool(c.entries[0].entry_attributes_as_dict.get("pwdAccountLockedTime"))


def test_forty_places_never_lock_the_directory_account(ldap_svc, running_slapd, new_user, strict_policy, clock):
    uid, dn = new_user("owner-pass-1")
    running_slapd.modify(dn, {"pwdPolicySubentry": strict_policy})
    ldap_svc.attempt_password(uid, "owner-pass-1", source="192.0.2.1")  # the owner's familiar place
    backend = ldap_svc.directory.backend
    before = backend.user_binds
    refused = 0
    for i in range(40):  # a botnet: every attempt from a new address
        with pytest.raises((mfa_core.InvalidCode, mfa_core.TooManyAttempts)) as caught:
            ldap_svc.attempt_password(uid, f"guess-{i}", source=f"198.51.100.{i + 1}")
        refused += isinstance(caught.value, mfa_core.TooManyAttempts)
        clock.advance(5)
    binds = backend.user_binds - before
    assert binds == 5 == ldap_svc.directory.settings.bind_failures
    assert refused == 35
    assert not _locked(running_slapd, dn)  # the directory saw 5 of its 10
    # The owner waits out the window (30 min after the last wrong bind), then signs in.
    clock.advance(1800)
    assert ldap_svc.attempt_password(uid, "owner-pass-1", source="192.0.2.1").username == uid
    assert not _locked(running_slapd, dn)


def test_the_budget_is_per_person_and_a_success_clears_it(ldap_svc, new_user):
    uid, _dn = new_user("budget-pass-1")
    for i in range(4):
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password(uid, "wrong-1", source=f"203.0.113.{i + 1}")
    ldap_svc.attempt_password(uid, "budget-pass-1", source="203.0.113.50")
    for i in range(5):
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password(uid, "wrong-2", source=f"203.0.113.{i + 10}")
    with pytest.raises(mfa_core.TooManyAttempts):
        ldap_svc.attempt_password(uid, "budget-pass-1", source="203.0.113.60")
    other, _ = new_user("budget-other-1")
    assert ldap_svc.attempt_password(other, "budget-other-1", source="203.0.113.10").username == other


def test_control_ten_bare_wrong_binds_do_lock_it(ldap_svc, running_slapd, new_user, strict_policy):
    uid, dn = new_user("control-pass-1")
    running_slapd.modify(dn, {"pwdPolicySubentry": strict_policy})
    for _ in range(10):
        assert not ldap_svc.directory.backend.authenticate(dn, "wrong-guess")
    assert _locked(running_slapd, dn)


def test_unknown_names_get_the_same_budget_so_it_tells_nothing(ldap_svc, new_user):
    known, _dn = new_user("oracle-pass-1")
    answers = {}
    for name in (known, known + "-nobody"):
        seen = []
        for i in range(7):
            try:
                ldap_svc.attempt_password(name, "guess-1", source=f"100.64.{len(answers)}.{i + 1}")
            except (mfa_core.InvalidCode, mfa_core.TooManyAttempts) as exc:
                seen.append((type(exc).__name__, str(exc)))
        answers[name] = seen
    assert answers[known] == answers[known + "-nobody"]
    assert answers[known][-1][0] == "TooManyAttempts"
