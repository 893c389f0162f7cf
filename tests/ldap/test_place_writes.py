"""A new place's spraying count with the company directory (issue 22's speed, issue 20's F12).

The place's record is held under its lock through the bind and written only
with what the check leaves: a right password from a new place writes no place
record at all, a wrong one counts, parallel attempts never overrun the limit.
"""

from __future__ import annotations

import threading

import pytest

import mfa_core
from mfa_core import passwords
from mfa_core.directory import config as ldap_config
from mfa_core.throttle import PasswordPolicy


def _place(svc, source: str):
    return svc.store.read_keyed(passwords.key(svc.keyring.pepper, "source", source))


def _who(svc, name: str) -> str:
    return passwords.key(svc.keyring.pepper, "name", name)


def test_a_right_password_from_a_new_place_writes_no_place_record(ldap_svc, new_user):
    uid, _dn = new_user("new-place-right-1")
    ldap_svc.attempt_password(uid, "new-place-right-1", source="198.19.0.1")
    assert _place(ldap_svc, "198.19.0.1") is None  # nothing to count: never written


def test_a_wrong_password_counts_and_a_right_one_then_forgets_it(ldap_svc, new_user):
    uid, _dn = new_user("new-place-typo-1")
    other, _ = new_user("new-place-other-1")
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "typo", source="198.19.0.2")
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(other, "typo", source="198.19.0.2")
    whose = [e[2] for e in _place(ldap_svc, "198.19.0.2")["failures"]]
    assert sorted(whose) == sorted([_who(ldap_svc, uid), _who(ldap_svc, other)])
    ldap_svc.attempt_password(uid, "new-place-typo-1", source="198.19.0.2")
    # F12: this person's failures from here go; the other's stay counted.
    assert [e[2] for e in _place(ldap_svc, "198.19.0.2")["failures"]] == [_who(ldap_svc, other)]


def test_an_unknown_name_still_counts_at_the_place(ldap_svc):
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password("nobody-place-1", "guess", source="198.19.0.3")
    place = _place(ldap_svc, "198.19.0.3")
    assert len(place["failures"]) == 1 and place["names"]


def test_the_directory_down_counts_nothing_at_the_place(ldap_svc, running_slapd, new_user):
    uid, _dn = new_user("new-place-down-1")
    ldap_svc.directory.find(uid)  # cached: the bind is what fails
    running_slapd.stop()
    with pytest.raises(mfa_core.StorageError):
        ldap_svc.attempt_password(uid, "not-it", source="198.19.0.4")
    running_slapd.start()
    assert not (_place(ldap_svc, "198.19.0.4") or {}).get("failures")
    assert not (ldap_svc.store.read(uid) or {}).get("password", {}).get("sources")


def test_parallel_wrong_passwords_from_one_place_never_overrun_the_spray_limit(
        data_dir, clock, ldap_env, new_user):
    policy = PasswordPolicy(spray_limit=5, spray_failures=5)
    original = ldap_config.SECRETS_FILE
    ldap_config.SECRETS_FILE = None
    try:
        svc = mfa_core.open_service(data_dir, clock=clock, environ=ldap_env, password_policy=policy)
    finally:
        ldap_config.SECRETS_FILE = original
    try:
        names = [new_user("spray-par-1")[0] for _ in range(20)]
        for name in names:
            svc.directory.find(name)  # cached: every attempt reaches the place's gate at once
        before = svc.directory.backend.user_binds
        outcomes: list[str] = []

        def attempt(name: str) -> None:
            try:
                svc.attempt_password(name, "Winter2026!", source="198.19.1.1")
            except mfa_core.MFAError as exc:
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=attempt, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert svc.directory.backend.user_binds - before == policy.spray_limit
        assert sorted(outcomes) == sorted(["InvalidCode"] * 5 + ["TooManyAttempts"] * 15)
        assert len(_place(svc, "198.19.1.1")["failures"]) == policy.spray_limit
    finally:
        svc.directory.backend.close()


def test_parallel_guesses_at_one_name_from_many_places_never_overrun_its_bind_budget(ldap_svc, new_user):
    """A real name's budget is in its record, held through each bind; an unknown name's in a
    keyed record held the same way: the same answers, however many places guess at once."""
    uid, _dn = new_user("budget-par-1")
    directory = ldap_svc.directory
    budget = directory.settings.bind_failures

    def guesses(name: str, first: int) -> list[str]:
        directory.find(name)  # cached: every guess reaches the budget at once
        outcomes: list[str] = []

        def attempt(n: int) -> None:
            try:
                ldap_svc.attempt_password(name, f"guess-{n}", source=f"198.19.2.{first + n}")
            except mfa_core.MFAError as exc:
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(outcomes)

    backend = directory.backend
    before = backend.user_binds, backend.dummy_binds
    real, unknown = guesses(uid, 0), guesses("nobody-budget-par", 100)
    assert backend.user_binds - before[0] == budget
    assert backend.dummy_binds - before[1] == budget
    assert real == unknown == sorted(["InvalidCode"] * budget + ["TooManyAttempts"] * (20 - budget))
