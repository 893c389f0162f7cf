"""Identity moves (mfa_core.directory.identity) survive a crash halfway, and leavers' parked
records (``~<id>``) are emptied by the sweep once their retention is over."""

from __future__ import annotations

from mfa_core.directory import identity

from ..support import enable_totp


class Crash(Exception):
    """The process died here."""


class CrashingStore:
    """The real store, except that opening ``name``'s transaction kills the process (once)."""

    def __init__(self, store, name: str) -> None:
        self._store, self._name = store, name

    def transaction(self, username, **kwargs):
        if username == self._name and self._name is not None:
            self._name = None
            raise Crash()
        return self._store.transaction(username, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._store, attr)


def _factors(svc, name) -> bool:
    return identity._holds_factors(svc.store.read(name) or {})


def _leaver_replaced(svc, slapd, new_user, clock) -> tuple[str, str]:
    """A person with an authenticator leaves; a new entry takes their name: (name, old id)."""
    name, dn = new_user("leaver-pass-1")
    svc.attempt_password(name, "leaver-pass-1", source="10.6.0.1")
    enable_totp(svc, clock, name)
    old_id = svc.directory.find(name).stable_id
    slapd.delete(dn)
    slapd.add_user(name, "newcomer-pass-1")
    clock.advance(61)
    return name, old_id


def test_a_crash_halfway_through_parking_never_hands_the_factors_over(ldap_svc, running_slapd, new_user, clock):
    name, old_id = _leaver_replaced(ldap_svc, running_slapd, new_user, clock)
    directory = ldap_svc.directory
    real = directory.store
    directory.store = CrashingStore(real, name)  # dies after the copy, before the name's is emptied
    try:
        try:
            ldap_svc.attempt_password(name, "newcomer-pass-1", source="10.6.0.2")
        except Crash:
            pass
        else:
            raise AssertionError("the crash was not reached")
    finally:
        directory.store = real
    parked = identity.parked(old_id)
    assert _factors(ldap_svc, parked) and _factors(ldap_svc, name)  # both, never neither
    # The next claim sees its own half-done move and finishes it: the newcomer gets nothing.
    assert not ldap_svc.attempt_password(name, "newcomer-pass-1", source="10.6.0.2").two_factor_enabled
    assert _factors(ldap_svc, parked) and not _factors(ldap_svc, name)


def test_parked_records_are_emptied_after_their_retention(ldap_svc, running_slapd, new_user, clock):
    name, old_id = _leaver_replaced(ldap_svc, running_slapd, new_user, clock)
    ldap_svc.attempt_password(name, "newcomer-pass-1", source="10.6.0.3")  # parks the leaver's
    parked = identity.parked(old_id)
    assert _factors(ldap_svc, parked)
    clock.advance(identity.PARKED_RETENTION - 60)
    ldap_svc.sweep_expired()
    assert _factors(ldap_svc, parked)  # kept for their return until then
    clock.advance(60)
    assert ldap_svc.sweep_expired() >= 1
    assert not _factors(ldap_svc, parked)
    assert "mfa_record_retired" in [e.event for e in ldap_svc.audit(parked)]
    ldap_svc.sweep_expired()  # nothing more to do, nothing breaks


def test_a_record_parked_before_the_date_was_kept_gets_its_retention_from_the_first_sweep(
        ldap_svc, running_slapd, new_user, clock):
    name, old_id = _leaver_replaced(ldap_svc, running_slapd, new_user, clock)
    ldap_svc.attempt_password(name, "newcomer-pass-1", source="10.6.0.4")
    key = identity._key(ldap_svc.keyring.pepper, "dir-id", old_id)
    with ldap_svc.store.own_keyed_transaction(key) as txn:
        txn.record.pop("parked_at")  # as parked by the earlier version
    parked = identity.parked(old_id)
    ldap_svc.sweep_expired()
    clock.advance(identity.PARKED_RETENTION - 1)
    ldap_svc.sweep_expired()
    assert _factors(ldap_svc, parked)
    clock.advance(1)
    ldap_svc.sweep_expired()
    assert not _factors(ldap_svc, parked)
