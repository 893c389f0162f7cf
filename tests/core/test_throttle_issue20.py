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


# -- F7: a calling service's wrong codes never keep the owner out of the portal -------------

HOME = "10.0.0.1"


def checked_codes(svc, actor=None) -> int:
    """How many codes the engine really checked and refused (from the audit trail)."""
    return len([e for e in svc.audit("alice") if e.event == "second_factor_failed"
                and (actor is None or e.actor == actor)])


def api_guess(svc, secret, clock, client="api/vpn") -> str:
    return outcome(lambda: svc.attempt_second_factor(
        "alice", wrong_code(secret, clock()), source=client, actor=client, diagnose=False))


def test_f7_an_api_client_guessing_for_months_never_keeps_the_owner_out_of_the_portal(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    policy = svc.policy
    owner_in = owner_tries = 0
    start = clock()
    for i in range(150):  # one wrong code each time the client's wait ends, then hourly
        answer = api_guess(svc, secret, clock)
        if i < 9 or i % 30 == 0:  # the owner signs in right after one of the attacker's guesses
            owner_tries += 1
            owner_in += outcome(lambda: svc.attempt_second_factor(
                "alice", code_for(secret, clock()), source=HOME)) == "ok"
        wait = int(answer.split()[1]) if answer.startswith("wait") else 0
        clock.advance(max(wait, 30) if answer != "wait 0" else 86400)  # locked: a day
    assert clock() - start > 90 * 86400
    assert owner_in == owner_tries
    # Guessing stays bounded: the client's bucket locked after lockout_after checked codes.
    assert checked_codes(svc, "api/vpn") == policy.lockout_after
    assert "locked for api/vpn" in svc.status("alice").lockout_words()
    assert not svc.status("alice").locked  # the portal's own bucket is not


def test_f7_many_clients_together_stay_within_the_account_cap(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    policy = svc.policy
    clients = [f"api/client{i}" for i in range(8)]
    for _ in range(policy.lockout_after + 2):
        for client in clients:
            api_guess(svc, secret, clock, client)
        clock.advance(3600)
    per_client = [checked_codes(svc, c) for c in clients]
    assert max(per_client) <= policy.lockout_after
    assert sum(per_client) == policy.channels_limit
    assert policy.lockout_after + policy.channels_limit <= 100  # NIST SP 800-63B 5.2.2
    assert svc.status("alice").lockout_words() == ["locked for every channel but the portal"]
    # The owner still signs in at the portal, and the portal's bucket keeps its own count.
    assert outcome(lambda: svc.attempt_second_factor("alice", code_for(secret, clock()),
                                                     source=HOME)) == "ok"
    for _ in range(policy.lockout_after):
        clock.advance(svc.retry_after("alice") + 30)
        outcome(lambda: svc.attempt_second_factor("alice", wrong_code(secret, clock()), source=HOME))
    assert svc.status("alice").locked
    assert sum(per_client) + checked_codes(svc, "alice") <= 100


def test_f7_the_portal_bucket_does_not_hold_the_api_back_and_a_pass_clears_only_its_own(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(svc.policy.free_failures):
        api_guess(svc, secret, clock)
    assert api_guess(svc, secret, clock).startswith("wait")
    for _ in range(svc.policy.free_failures):
        outcome(lambda: svc.attempt_second_factor("alice", wrong_code(secret, clock()), source=HOME))
    assert svc.status("alice").retry_after > 0
    # The API client's own right code passes at once (its bucket's wait aside)...
    clock.advance(svc.policy.base_delay)
    assert outcome(lambda: svc.attempt_second_factor(
        "alice", code_for(secret, clock()), source="api/vpn", actor="api/vpn",
        diagnose=False)) == "ok"
    # ... and clears the API client's count only: the portal's wait stays.
    assert svc.status("alice").failed_attempts == svc.policy.free_failures


def test_f7_the_helpdesk_unlock_clears_every_channel(svc, clock):
    secret = enable_totp(svc, clock, "alice")
    for _ in range(svc.policy.lockout_after):
        clock.advance(3600)
        api_guess(svc, secret, clock)
    assert svc.status("alice").locked_channels == ("api/vpn",)
    svc.unlock("alice", actor="admin", reason="ticket 1")
    assert svc.status("alice").locked_channels == ()
    clock.advance(30)
    assert outcome(lambda: svc.attempt_second_factor(
        "alice", code_for(secret, clock()), source="api/vpn", actor="api/vpn")) == "ok"


# -- F12: colleagues' typos behind one NAT never refuse a new starter there ------------------

OFFICE = "192.0.2.200"  # everyone's NAT


def test_f12_forty_typos_behind_the_office_nat_do_not_refuse_a_new_starter(data_dir, open_svc, clock):
    names = {f"user{n}": f"pass-{n}-long" for n in range(41)}
    write_users(data_dir, names)
    svc = open_svc()
    policy = svc.password_policy
    for n in range(40):  # each mistypes, then gets in: 40 failures from one address in minutes
        assert outcome(lambda: svc.attempt_password(f"user{n}", "typo", source=OFFICE)) == "wrong"
        assert outcome(lambda: svc.attempt_password(f"user{n}", f"pass-{n}-long", source=OFFICE)) == "ok"
        clock.advance(5)
    # One person's repeated typos count once, not once a failure.
    for _ in range(policy.free_failures):
        assert outcome(lambda: svc.attempt_password("user0", "typo", source=OFFICE)) == "wrong"
    # The new starter, never seen at the office, types the right password and gets in.
    assert outcome(lambda: svc.attempt_password("user40", "pass-40-long", source=OFFICE)) == "ok"


def test_f12_spraying_stays_bounded_per_source(data_dir, open_svc, clock):
    names = {f"user{n}": f"pass-{n}-long" for n in range(40)}
    write_users(data_dir, names)
    svc = open_svc()
    policy = svc.password_policy
    sprayer = "203.0.113.66"
    answers = []
    for round_ in range(3):  # three passwords tried on every account
        for n in range(40):
            answers.append(outcome(lambda: svc.attempt_password(f"user{n}", f"Winter202{round_}!",
                                                                source=sprayer)))
        clock.advance(60)
    checked = len([e for e in svc.audit() if e.event == "password_failed"])
    # 30 accounts at most, 60 guesses at most in the window; 10 accounts never tried.
    assert checked == policy.spray_failures == 2 * policy.spray_limit
    assert answers[policy.spray_limit].startswith("wait")
    assert answers[40:40 + policy.spray_limit] == ["wrong"] * policy.spray_limit
    # A new account is refused there; the counted ones stay under their own waits.
    assert outcome(lambda: svc.attempt_password("user39", "pass-39-long", source=sprayer)).startswith("wait")
    clock.advance(policy.spray_window)
    assert outcome(lambda: svc.attempt_password("user39", "pass-39-long", source=sprayer)) == "ok"


# -- F8: a spray at someone with no familiar place never keeps them out ----------------------

def spray(svc, user, guesses=100, sources=20):
    """``guesses`` wrong passwords from ``sources`` addresses, five free each, no wait needed."""
    answers = [outcome(lambda: svc.attempt_password(user, f"guess-{n}",
                                                    source=f"198.51.100.{n % sources}"))
               for n in range(guesses)]
    return answers


def password_checks(svc, user) -> int:
    return len([e for e in svc.audit(user) if e.event in ("password_failed", "password_accepted")])


def test_f8_after_a_spray_a_new_starter_with_a_second_factor_signs_in_with_the_code(svc, users, clock):
    secret = enable_totp(svc, clock, "alice")  # enrolled, never signed in anywhere
    policy = svc.password_policy
    assert spray(svc, "alice") == ["wrong"] * policy.account_limit
    assert outcome(lambda: svc.attempt_password("alice", "guess-x", source="198.51.100.1")) == "blocked"
    new_place = "192.0.2.77"
    with pytest.raises(mfa_core.PasswordBlocked) as err:  # the password alone: not checked
        svc.attempt_password("alice", "alice-pass-1", source=new_place)
    assert err.value.second_factor and "authentication code" in str(err.value)
    assert password_checks(svc, "alice") == policy.account_limit  # guessing stayed bounded
    result = svc.attempt_password("alice", "alice-pass-1", source=new_place,
                                  code=code_for(secret, clock()))
    assert result.second_factor_passed and result.two_factor_enabled
    assert not svc.status("alice").password_blocked  # both factors: the block is over
    # ... and the new place is familiar from now on.
    assert outcome(lambda: svc.attempt_password("alice", "alice-pass-1", source=new_place)) == "ok"


def test_f8_password_with_code_gives_a_guesser_without_the_code_no_answer(svc, users, clock):
    secret = enable_totp(svc, clock, "alice")
    spray(svc, "alice")
    wrong = wrong_code(secret, clock())
    answers = {}
    for name, password in (("wrong password", "guess-y"), ("right password", "alice-pass-1")):
        with pytest.raises(mfa_core.InvalidCode) as err:
            svc.attempt_password("alice", password, source="203.0.113.5", code=wrong)
        answers[name] = (type(err.value), str(err.value))
    assert answers["wrong password"] == answers["right password"]
    assert answers["right password"][1] == "Username, password or code is incorrect."
    # The wrong code counts on the portal's second-factor throttle, as after a right password.
    assert svc.status("alice").failed_attempts == 1
    assert svc.status("alice").password_blocked


def test_f8_without_a_second_factor_the_block_ends_by_itself_and_guessing_stays_bounded(svc, users,
                                                                                        clock):
    policy = svc.password_policy
    spray(svc, "bob")
    with pytest.raises(mfa_core.PasswordBlocked) as err:
        svc.attempt_password("bob", "bob-pass-1", source="192.0.2.78")
    assert not err.value.second_factor
    assert 0 < err.value.retry_after <= policy.block_for
    clock.advance(policy.block_for - 60)
    assert outcome(lambda: svc.attempt_password("bob", "bob-pass-1", source="192.0.2.78")) == "blocked"
    # The attacker keeps going: each time the block ends, only a few guesses before it is back.
    days = 7
    for _ in range(days):
        clock.advance(policy.block_for)
        spray(svc, "bob", guesses=20, sources=20)
    assert password_checks(svc, "bob") == policy.account_limit + days * policy.free_failures
    # The attack stops; a day later the owner, from a new place, gets in with the password.
    clock.advance(policy.block_for)
    assert outcome(lambda: svc.attempt_password("bob", "bob-pass-1", source="192.0.2.78")) == "ok"
