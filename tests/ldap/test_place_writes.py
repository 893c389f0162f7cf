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


def _stripe(svc, key: str) -> int:
    from mfa_core.storage.base import user_key
    return svc.store._source_locks.stripe(user_key(key))


def test_two_unknown_names_whose_locks_cross_never_wait_on_each_other(ldap_svc, monkeypatch):
    """An unknown name holds its place's lock and then its own bind budget's. With the embedded
    store both are stripes of one set (64): two guesses whose place and budget stripes cross
    (A's place on B's budget's stripe and the other way round) took them in opposite orders
    and waited on each other for the whole lock timeout, failing both and every attempt queued
    on those stripes — something 40 guesses at once could cause at will. They are now taken in
    one order."""
    from mfa_core.storage import sharded
    svc = ldap_svc
    if not isinstance(svc.store, sharded.ShardedTinyDBStore):
        pytest.skip("stripes are the embedded store's")
    pepper = svc.keyring.pepper
    budget = svc.directory._unknown_key

    def place_stripe(i: int) -> int:
        return _stripe(svc, passwords.key(pepper, "source", f"198.19.7.{i}"))

    def budget_stripe(name: str) -> int:
        return _stripe(svc, budget(_who(svc, name)))

    places = {i: place_stripe(i) for i in range(1, 250)}
    found = None
    for n1 in range(400):
        name1 = f"nobody-cross-a{n1}"
        for i1, p1 in places.items():
            if p1 == budget_stripe(name1):
                continue
            for n2 in range(400):
                name2 = f"nobody-cross-b{n2}"
                if budget_stripe(name2) != p1:
                    continue
                i2 = next((i for i, p in places.items() if p == budget_stripe(name1) and i != i1), None)
                if i2 is not None:
                    found = (name1, f"198.19.7.{i1}"), (name2, f"198.19.7.{i2}")
                    break
            if found:
                break
        if found:
            break
    assert found, "no crossing pair found"
    monkeypatch.setattr(sharded, "LOCK_TIMEOUT", 5.0)  # the old way fails in 5 s, not 30
    arrived = [threading.Event(), threading.Event()]
    original = type(svc.directory)._budget

    def meet(self, key):  # both holding their place's lock before either takes its budget's
        me = 0 if threading.current_thread().name == "cross-0" else 1
        arrived[me].set()
        arrived[1 - me].wait(2)
        return original(self, key)

    monkeypatch.setattr(type(svc.directory), "_budget", meet)
    outcomes: dict[int, object] = {}

    def guess(k: int) -> None:
        name, source = found[k]
        try:
            svc.attempt_password(name, "guess", source=source)
        except Exception as exc:  # noqa: BLE001 - the outcome is the assertion
            outcomes[k] = type(exc).__name__

    threads = [threading.Thread(target=guess, args=(k,), name=f"cross-{k}") for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == {0: "InvalidCode", 1: "InvalidCode"}
