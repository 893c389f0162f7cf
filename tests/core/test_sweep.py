"""Sweeping the keyed records nothing needs any more, on every backend.

Each sign-in leaves a session-owner record, each page load after it a cookie
ticket, each passkey ceremony a challenge; without the sweep they would stay
for good. The sweep must remove exactly those that can no longer be used and
never one that still can, nor one written again while it runs.
"""

from __future__ import annotations

import threading

import pytest

import mfa_core
from mfa_core import passwords
from mfa_core.passkeys import AUTHENTICATE, REGISTER, ChallengeBook
from mfa_core.sessions import TICKET_TTL

from ..support import enable_totp, write_users


def keyed(svc, key):
    return svc.store.read_keyed(key)


def test_tickets_go_once_redeemed_or_stale_and_a_fresh_one_stays(svc, clock):
    token = svc.sessions.start("alice", second_factor_passed=True)
    redeemed, fresh, stale = (svc.sessions.ticket(token) for _ in range(3))
    assert svc.sessions.redeem(redeemed) == token
    clock.advance(TICKET_TTL - 10)
    fresh = svc.sessions.ticket(token)  # issued later: still inside its minute below
    clock.advance(15)  # `stale` (and the first ones) are now past their minute
    assert svc.sweep_expired() >= 2
    assert svc.sessions.redeem(fresh) == token  # the fresh one still works after the sweep
    assert svc.sessions.redeem(stale) is None and svc.sessions.redeem(redeemed) is None
    assert svc.sweep_expired() == 1  # the fresh one, now redeemed
    assert svc.sessions.find(token).username == "alice"  # the session itself is untouched


def test_passkey_challenges_go_once_taken_or_stale_and_a_live_one_stays(svc, clock):
    book = ChallengeBook(svc.store, clock)
    book.issue("tab-1", REGISTER, "alice")
    book.issue("tab-2", AUTHENTICATE, "alice")
    book.take("tab-2", AUTHENTICATE, "alice")
    book.issue("tab-3", AUTHENTICATE, "bob")
    assert svc.sweep_expired() == 1  # tab-2's, taken
    assert book.has("tab-1", REGISTER) and book.has("tab-3", AUTHENTICATE)
    clock.advance(book.ttl[AUTHENTICATE] + 1)  # tab-3's is stale, tab-1's (longer) still live
    assert svc.sweep_expired() == 1
    assert book.has("tab-1", REGISTER)
    assert book.take("tab-1", REGISTER, "alice")


def test_a_sessions_owner_goes_after_its_lifetime_and_a_live_sessions_stays(svc, clock):
    enable_totp(svc, clock, "alice")
    ended = svc.sessions.start("alice", second_factor_passed=True)
    live = svc.sessions.start("alice", second_factor_passed=True)
    svc.sessions.end(ended)
    assert svc.sweep_expired() == 0  # ended, but its owner record is young: kept until its lifetime
    clock.advance(svc.sessions.policy.lifetime - 60)
    svc.sessions.find(live)  # in use all along
    later = svc.sessions.start("alice", second_factor_passed=True)
    clock.advance(120)
    assert svc.sweep_expired() == 2  # both first sessions are past their lifetime
    assert keyed(svc, f"session:{svc.sessions.id_of(ended)}") is None
    assert keyed(svc, f"session:{svc.sessions.id_of(live)}") is None
    assert svc.sessions.find(later).username == "alice"


def test_an_owner_record_from_before_owners_had_a_time_goes_once_its_session_is_not_live(svc, clock):
    live = svc.sessions.start("alice", second_factor_passed=True)
    gone = svc.sessions.start("alice", second_factor_passed=True)
    svc.sessions.end(gone)
    for token in (live, gone):  # as the previous release wrote them: the owner alone
        with svc.store.keyed_transaction(f"session:{svc.sessions.id_of(token)}") as txn:
            txn.record = {"username": txn.username, "owner": "alice"}
    with svc.store.keyed_transaction("session:unknown-sid") as txn:
        txn.record["owner"] = "nobody"
    assert svc.sweep_expired() == 2
    assert svc.sessions.find(live).username == "alice"
    assert keyed(svc, f"session:{svc.sessions.id_of(gone)}") is None


def test_other_keyed_records_are_never_swept(svc, clock):
    with svc.store.keyed_transaction("api-clients") as txn:
        txn.record["clients"] = {}
    with svc.store.keyed_transaction("source:abc") as txn:
        txn.record.update(failures=3, last=clock() - 10 ** 6)
    clock.advance(10 ** 7)
    assert svc.sweep_expired() == 0
    assert keyed(svc, "api-clients") is not None and keyed(svc, "source:abc") is not None


def test_a_record_written_again_while_the_sweep_runs_is_kept(svc, clock):
    """The candidate is checked again under its lock (or removed only if unchanged): a
    challenge issued again under the same key while the sweep looks at the old one stays."""
    with svc.store.keyed_transaction("swept") as txn:
        txn.record["n"] = 1
    writer: list[threading.Thread] = []

    def write_again() -> None:
        with svc.store.keyed_transaction("swept") as txn:
            txn.record["n"] = 2

    def expired(key, record):
        if key == "swept" and not writer:  # first look: another process writes it again
            writer.append(threading.Thread(target=write_again))
            writer[0].start()
            writer[0].join(0.5)  # a backend locking the whole table makes it wait for the sweep
        return key == "swept" and record.get("n") == 1

    svc.store.sweep_keyed(expired)
    writer[0].join(10)
    assert keyed(svc, "swept")["n"] == 2


def test_many_records_are_swept_page_by_page(svc, clock, backend, monkeypatch):
    if backend == "postgres":  # pages of 3 rows: the paging itself is exercised
        from mfa_core.storage import postgres
        monkeypatch.setattr(postgres, "SWEEP_PAGE", 3)
    token = svc.sessions.start("alice", second_factor_passed=True)
    for _ in range(10):
        assert svc.sessions.redeem(svc.sessions.ticket(token)) == token
    keep = svc.sessions.ticket(token)
    assert svc.sweep_expired() == 10
    assert svc.sessions.redeem(keep) == token


def test_an_addresses_password_throttle_record_goes_once_it_holds_nothing_a_check_uses(svc, clock, data_dir):
    """A sign-in from a new address takes a slot in that address's record and gives it back:
    the record is left empty, and answers as no record does. Failures within the spray window,
    and unknown-name counts (which keep counting however old), keep it."""
    write_users(data_dir, {"alice": "alice-pass-1"})
    policy, pepper = svc.password_policy, svc.keyring.pepper
    svc.attempt_password("alice", "alice-pass-1", source="192.0.2.1")  # slot taken, given back
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_password("alice", "wrong-password", source="192.0.2.2")  # a failure stays
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_password("nobody-here", "whatever-1", source="192.0.2.3")  # an unknown name
    ok, failed, unknown = (passwords.key(pepper, "source", a) for a in ("192.0.2.1", "192.0.2.2", "192.0.2.3"))
    assert keyed(svc, ok) is not None
    assert svc.sweep_expired() == 1 and keyed(svc, ok) is None
    assert keyed(svc, failed) is not None and keyed(svc, unknown) is not None
    clock.advance(policy.spray_window)
    assert svc.sweep_expired() == 1 and keyed(svc, failed) is None  # its failure is past the window
    clock.advance(10 * policy.max_delay)
    assert svc.sweep_expired() == 0 and keyed(svc, unknown) is not None  # name counts stay
    svc.attempt_password("alice", "alice-pass-1", source="192.0.2.2")  # the address works as new


def _api_name_record(svc, key, failures, last):
    with svc.store.keyed_transaction(key) as txn:
        txn.record["failures"], txn.record["last_failure_at"] = failures, last


def test_the_apis_records_of_made_up_names_go_once_idle_for_a_day_unless_locked(svc, clock):
    """Issue 20 F17: every made-up name sent to the verification API leaves an ``api-name:``
    throttle record (mfa_services.engine.count_no_factor); the sweep never removed them. Now one goes once it
    holds nothing a check uses: no wait left and no failure for NAME_RECORD_TTL. A locked one,
    one still within the day, and anything else under the prefix stay."""
    from mfa_core.throttle import NAME_PREFIX, NAME_RECORD_TTL
    policy, now = svc.policy, clock()
    one, several, locked, other = (NAME_PREFIX + f"{n:032x}" for n in range(4))
    _api_name_record(svc, one, 1, now)
    _api_name_record(svc, several, policy.free_failures + 2, now)
    _api_name_record(svc, locked, policy.lockout_after, now)
    with svc.store.keyed_transaction(other) as txn:
        txn.record["something"] = "else"
    clock.advance(NAME_RECORD_TTL - 60)
    assert svc.sweep_expired() == 0  # within the day: the throttle still counts them
    clock.advance(120)
    assert svc.sweep_expired() == 2
    assert keyed(svc, one) is None and keyed(svc, several) is None
    assert keyed(svc, locked) is not None and keyed(svc, other) is not None
    clock.advance(10 ** 7)
    assert svc.sweep_expired() == 0 and keyed(svc, locked) is not None
