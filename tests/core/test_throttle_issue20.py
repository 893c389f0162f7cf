"""Issue 20: nobody without the user's factors may keep the user out, while guessing stays bounded.

Every attack here runs on the injected clock (no test depends on the machine's speed).
"""

from __future__ import annotations

import threading

import pytest

import mfa_core

from ..support import code_for, enable_totp, write_users
from .test_throttle import wrong_code

PASSWORDS = {"alice": "alice-pass-1", "bob": "bob-pass-1"}


@pytest.fixture
def users(data_dir):
    write_users(data_dir, PASSWORDS)


def outcome(call) -> str:
    try:
        call()
    except mfa_core.PasswordBlocked:
        return "blocked"
    except mfa_core.TooManyAttempts as exc:
        return f"wait {exc.retry_after}"
    except mfa_core.InvalidCode:
        return "wrong"
    return "ok"


# -- F13: the clock is read inside the user's lock -----------------------------------------

class InterleavingClock:
    """A clock that ticks one second per reading and, the first time it is read OUTSIDE a
    store transaction, runs ``other`` to its end before it answers: exactly what happens
    when a thread reads the clock, is descheduled, and another attempt runs in between.
    Read inside the transaction (under the user's lock) there is no "in between"."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.inside = threading.local()
        self.other = None
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 1
            now = self.now
        other = self.other
        if other is not None and not getattr(self.inside, "depth", 0):
            self.other = None
            worker = threading.Thread(target=other)
            worker.start()
            worker.join()
        return now

    def rest(self) -> None:
        """The other attempt, after the first when it could not run in between."""
        if self.other is not None:
            self.other, other = None, self.other
            other()

    def watch(self, store) -> None:
        """Mark the threads inside ``store``'s transactions (user's and source's)."""
        clock = self

        def wrap(name):
            real = getattr(store, name)

            class Marked:
                def __init__(self, *a, **kw):
                    self.cm = real(*a, **kw)

                def __enter__(self):
                    value = self.cm.__enter__()
                    clock.inside.depth = getattr(clock.inside, "depth", 0) + 1
                    return value

                def __exit__(self, *exc):
                    clock.inside.depth -= 1
                    return self.cm.__exit__(*exc)

            setattr(store, name, Marked)

        for name in ("transaction", "keyed_transaction", "own_keyed_transaction"):
            wrap(name)


def test_f13_a_wrong_password_read_before_anothers_is_still_checked(data_dir, users, backend,
                                                                    database_url):
    clock = InterleavingClock(1_900_000_000)
    opts = {"clock": clock, "environ": {}, "backend": backend}
    if database_url:
        opts["database_url"] = database_url
    svc = mfa_core.open_service(data_dir, **opts)
    clock.watch(svc.store)
    other: list[str] = []
    clock.other = lambda: other.append(outcome(
        lambda: svc.attempt_password("alice", "wrong-2", source="10.0.0.2")))
    first = outcome(lambda: svc.attempt_password("alice", "wrong-1", source="10.0.0.2"))
    clock.rest()
    # Both within the free failures: both checked, neither told to wait.
    assert (first, other) == ("wrong", ["wrong"])


def test_f13_a_wrong_code_read_before_anothers_is_still_checked(data_dir, backend, database_url):
    clock = InterleavingClock(1_900_000_000)
    opts = {"clock": clock, "environ": {}, "backend": backend}
    if database_url:
        opts["database_url"] = database_url
    svc = mfa_core.open_service(data_dir, **opts)
    secret = svc.create_totp("alice").secret
    svc.verify_totp("alice", code_for(secret, clock.now + 1))
    clock.watch(svc.store)
    other: list[str] = []
    clock.other = lambda: other.append(outcome(
        lambda: svc.attempt_second_factor("alice", wrong_code(secret, clock.now))))
    first = outcome(lambda: svc.attempt_second_factor("alice", wrong_code(secret, clock.now)))
    clock.rest()
    assert (first, other) == ("wrong", ["wrong"])
    assert svc.status("alice").failed_attempts == 2


def test_f13_parallel_attempts_within_the_free_failures_are_all_checked(data_dir, users, backend,
                                                                         database_url):
    """Threads at once on a clock that ticks per reading (deterministic, not wall time)."""
    clock = InterleavingClock(1_900_000_000)
    opts = {"clock": clock, "environ": {}, "backend": backend}
    if database_url:
        opts["database_url"] = database_url
    svc = mfa_core.open_service(data_dir, **opts)
    free = svc.password_policy.free_failures
    start = threading.Barrier(free - 1)
    results: list[str] = []

    def guess(i):
        start.wait()
        results.append(outcome(lambda: svc.attempt_password("alice", f"wrong-{i}", source="10.0.0.3")))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(free - 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["wrong"] * (free - 1)
