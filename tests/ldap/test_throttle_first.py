"""attempt_password gates on the portal's throttle first, then searches the directory, then
binds (issue 22): a throttled name or place costs the company directory nothing at all."""

from __future__ import annotations

import pytest

import mfa_core


def _traffic(backend) -> tuple[int, int, int]:
    return backend.searches, backend.user_binds, backend.dummy_binds


def _throttled_without_traffic(svc, name: str, source: str) -> mfa_core.TooManyAttempts:
    directory = svc.directory
    directory.forget()  # nothing cached: any lookup would be a search
    before = _traffic(directory.backend)
    with pytest.raises(mfa_core.TooManyAttempts) as caught:
        svc.attempt_password(name, "yet-another-guess", source=source)
    assert _traffic(directory.backend) == before  # no search, no bind
    return caught.value


def test_a_throttled_person_and_place_cost_no_search(ldap_svc, new_user):
    uid, _dn = new_user("throttle-first-1")
    for i in range(5):  # the free failures from this place
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password(uid, f"guess-{i}", source="198.18.0.1")
    error = _throttled_without_traffic(ldap_svc, uid, "198.18.0.1")
    assert error.retry_after >= 1
    events = [e for e in ldap_svc.audit(uid) if e.event == "password_throttled"]
    assert events and "198.18.0.1" in events[-1].detail  # audited as before
    # Its wait over, the place is asked about again: a search, and the right password gets in
    # (the directory's bind budget is spent by the five wrong ones: its window waited out too).
    ldap_svc.clock.advance(ldap_svc.directory.settings.bind_window)
    assert ldap_svc.attempt_password(uid, "throttle-first-1", source="198.18.0.1").username == uid


def test_a_throttled_unknown_name_costs_no_search(ldap_svc):
    for i in range(5):
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password("nobody-throttled", f"guess-{i}", source="198.18.1.1")
    _throttled_without_traffic(ldap_svc, "nobody-throttled", "198.18.1.1")


def test_a_spraying_place_costs_no_search(ldap_svc, new_user):
    policy = ldap_svc.password_policy
    for i in range(policy.spray_limit):  # one wrong password for each of 30 names
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password(f"sprayed-{i}", "Summer2026!", source="198.18.2.1")
    uid, _dn = new_user("spray-victim-1")
    _throttled_without_traffic(ldap_svc, uid, "198.18.2.1")
    _throttled_without_traffic(ldap_svc, "sprayed-next", "198.18.2.1")


def test_a_throttled_place_gets_its_wait_even_with_the_directory_down(ldap_svc, running_slapd, clock):
    for i in range(5):
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password("nobody-down", f"guess-{i}", source="198.18.3.1")
    running_slapd.stop()
    try:
        ldap_svc.directory.forget()
        with pytest.raises(mfa_core.TooManyAttempts):  # not "cannot be reached": never asked
            ldap_svc.attempt_password("nobody-down", "guess-x", source="198.18.3.1")
    finally:
        running_slapd.start()


def test_a_spent_bind_budget_costs_no_search(ldap_svc, new_user):
    """Five wrong binds for a person (from five places: no place's wait holds them back),
    then none until the window passed: not even a search."""
    uid, _dn = new_user("budget-first-1")
    for i in range(5):
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password(uid, f"guess-{i}", source=f"198.18.4.{i + 1}")
    _throttled_without_traffic(ldap_svc, uid, "198.18.4.50")
    for i in range(5):
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password("nobody-budget", f"guess-{i}", source=f"198.18.5.{i + 1}")
    _throttled_without_traffic(ldap_svc, "nobody-budget", "198.18.5.50")


def test_the_bind_budget_is_kept_in_the_persons_record(ldap_svc, new_user):
    """Counted with the attempt's own outcome, in the transaction around the bind: no write
    of its own (a wrong password costs what an unknown name does: two writes)."""
    from mfa_core.directory import BIND_BUDGET
    uid, _dn = new_user("budget-record-1")
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "guess-1", source="198.18.6.1")
    state = ldap_svc.store.read(uid)["password"]
    assert state[BIND_BUDGET]["failures"] == 1
    account = ldap_svc.directory.find(uid)
    directory = ldap_svc.directory
    assert ldap_svc.store.read_keyed(directory._key(f"ldap-bind:{account.stable_id}")) is None
    ldap_svc.attempt_password(uid, "budget-record-1", source="198.18.6.1")
    assert BIND_BUDGET not in ldap_svc.store.read(uid)["password"]  # a success clears it


def test_a_throttled_api_check_costs_no_search(ldap_svc, new_user, clock):
    """The verification API's check: its throttle before the directory's active-account check."""
    from ..support import enable_totp
    uid, _dn = new_user("api-first-1")
    ldap_svc.attempt_password(uid, "api-first-1", source="198.18.7.1")
    enable_totp(ldap_svc, clock, uid)
    refused = None
    for _ in range(20):  # wrong codes from a calling service until its bucket holds it back
        try:
            ldap_svc.attempt_second_factor(uid, "000000", source="vpn", actor="vpn", diagnose=False)
        except mfa_core.TooManyAttempts as exc:
            refused = exc
            break
        except mfa_core.InvalidCode:
            pass
    assert refused is not None
    directory = ldap_svc.directory
    directory.forget()
    before = _traffic(directory.backend)
    with pytest.raises(mfa_core.TooManyAttempts):
        ldap_svc.attempt_second_factor(uid, "000000", source="vpn", actor="vpn", diagnose=False)
    assert _traffic(directory.backend) == before
    assert [e.event for e in ldap_svc.audit(uid)][-1] == "throttled"  # audited as before
