"""Connections to the company directory are kept and reused (issue 22's speed): the service
account's for searches, others for users' binds; one that broke is replaced, never reopened in
the clear, and one idle too long is closed instead of used."""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core.directory import ldap as ldap_backend

from ..ldap_server import USERS


def _password(uid: str) -> str:
    return next(u[1] for u in USERS if u[0] == uid)


def test_sign_ins_reuse_connections(ldap_svc):
    backend = ldap_svc.directory.backend
    ldap_svc.attempt_password("alice", _password("alice"), source="10.20.0.1")
    opened = backend.connections
    binds = backend.user_binds + backend.dummy_binds
    for i in range(5):
        ldap_svc.attempt_password("alice", _password("alice"), source=f"10.20.1.{i}")
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password("bob", f"wrong-{i}", source=f"10.20.2.{i}")
        with pytest.raises(mfa_core.InvalidCode):
            ldap_svc.attempt_password(f"nobody-{i}", "wrong", source=f"10.20.3.{i}")
    assert backend.user_binds + backend.dummy_binds == binds + 15
    assert backend.connections == opened  # every bind and search on a kept connection


def test_a_kept_connection_that_broke_is_replaced(ldap_svc, running_slapd):
    backend = ldap_svc.directory.backend
    ldap_svc.attempt_password("bob", _password("bob"), source="10.20.4.1")
    assert len(backend._binders) == 1 and len(backend._pool) >= 1
    running_slapd.stop()
    running_slapd.start()  # every kept connection is dead now
    ldap_svc.directory.forget()
    opened = backend.connections
    assert ldap_svc.attempt_password("bob", _password("bob"), source="10.20.4.1").username == "bob"
    assert backend.connections == opened + 2  # one for the search, one for the bind
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password("bob", "wrong-once", source="10.20.4.2")


def test_a_closed_connection_is_never_reopened_by_ldap3(ldap_svc):
    """ldap3 opens a closed connection again by itself on bind(), without StartTLS: a password
    would go in the clear. A closed kept connection is replaced by a new one (TLS first)."""
    backend = ldap_svc.directory.backend
    ldap_svc.attempt_password("bob", _password("bob"), source="10.20.5.1")
    conn = backend._binders.take()
    conn.unbind()
    assert conn.closed
    backend._binders.give_back(conn)
    opened = backend.connections
    assert ldap_svc.attempt_password("bob", _password("bob"), source="10.20.5.1").username == "bob"
    assert backend.connections == opened + 1
    assert conn.closed  # not reopened
    kept = backend._binders.take()
    assert kept is not conn and kept.tls_started


def test_a_connection_idle_too_long_is_closed_not_used():
    now = [1000.0]

    class Conn:
        closed = False

        def unbind(self):
            self.closed = True

    pool = ldap_backend._Pool(size=2, clock=lambda: now[0])
    fresh, old, spare = Conn(), Conn(), Conn()
    pool.give_back(old)
    now[0] += ldap_backend.IDLE_MAX + 1
    pool.give_back(fresh)
    pool.give_back(spare)  # over the size: closed
    assert spare.closed
    assert pool.take() is fresh
    assert pool.take() is None and old.closed


def test_after_a_restart_every_kept_service_connection_is_dead_and_one_search_still_works(
        ldap_svc, running_slapd):
    backend = ldap_svc.directory.backend
    settings = ldap_svc.directory.settings
    while len(backend._pool) < ldap_backend.POOL_SIZE:  # as after four searches at once
        conn, _code = backend._connect(settings.bind_dn, settings.bind_password)
        backend._pool.give_back(conn)
    running_slapd.stop()
    running_slapd.start()
    assert ldap_svc.directory.find("alice", fresh=True).username == "alice"


def _waiting(pool, count: int) -> None:
    """Until ``count`` callers wait in ``pool.take`` (a condition, not a delay)."""
    import time
    deadline = time.monotonic() + 30
    while len(pool._changed._waiters) < count:
        assert time.monotonic() < deadline, "the callers never waited"
        time.sleep(0.001)


def test_a_burst_waits_for_the_connection_being_opened_instead_of_opening_its_own():
    """Forty requests at once with nothing kept: one opens a connection, the others wait for it
    (or for one given back) instead of a TLS handshake each with the company's directory."""
    import threading
    import time
    pool = ldap_backend._Pool(size=8)
    assert pool.take(wait=10) is None  # this caller opens one
    got: dict[int, object] = {}

    def take(i: int) -> None:
        got[i] = pool.take(wait=10)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    _waiting(pool, 5)  # nobody else opens meanwhile
    first = object()
    pool.give_back(first)  # the opened connection, used and given back: one waiter has it
    _waiting(pool, 4)
    pool.opened()  # that opening ended: one of the four others opens the next, three wait on
    _waiting(pool, 3)
    deadline = time.monotonic() + 30
    while len(got) < 2:  # the two that returned have said so
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert sorted(map(repr, got.values())) == sorted([repr(first), repr(None)])
    for _ in range(3):
        pool.give_back(object())
    for t in threads:
        t.join(10)
    assert len(got) == 5 and sum(v is None for v in got.values()) == 1
    pool.opened()
    assert pool._opening == 0


def test_a_caller_waits_no_longer_than_it_was_told():
    pool = ldap_backend._Pool(size=2)
    assert pool.take() is None  # someone is opening one
    assert pool.take(wait=0.01) is None  # waited, then opens its own
    pool.opened()
    pool.opened()
    assert pool._opening == 0


def test_forty_searches_at_once_all_answer_and_leave_no_opening_behind(ldap_svc):
    import threading
    backend = ldap_svc.directory.backend
    backend.close()
    start = threading.Barrier(40)
    found: list[object] = []

    def search() -> None:
        start.wait(30)
        found.append(backend.find("alice"))

    threads = [threading.Thread(target=search) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(found) == 40 and all(a is not None and a.username == "alice" for a in found)
    assert backend._pool._opening == 0 and 1 <= len(backend._pool) <= ldap_backend.POOL_SIZE
