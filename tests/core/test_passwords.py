"""The password check in the engine: one transaction per attempt, smart lockout, no user enumeration."""

from __future__ import annotations

import threading
import time

import pytest

import mfa_core
from mfa_core.users import UserDirectory

from ..support import code_for, enable_totp, write_users

PASSWORDS = {"alice": "alice-pass-1", "bob": "bob-pass-1"}
HOME = "10.0.0.1"  # where alice signs in from


@pytest.fixture
def users(data_dir):
    write_users(data_dir, PASSWORDS)


@pytest.fixture
def policy(svc) -> mfa_core.PasswordPolicy:
    return svc.password_policy


def checked(svc, user=None) -> int:
    """How many passwords the engine really compared (bcrypt), from the audit trail."""
    return len([e for e in svc.audit(user) if e.event in ("password_failed", "password_accepted")])


def outcome(call) -> str:
    try:
        call()
    except mfa_core.PasswordBlocked:
        return "blocked"
    except mfa_core.TooManyAttempts as exc:
        return f"wait {exc.retry_after}"
    except mfa_core.InvalidCode as exc:
        return str(exc)
    return "ok"


def test_the_right_password_passes_and_says_whether_two_step_is_ahead(svc, users, clock):
    result = svc.attempt_password("alice", "alice-pass-1", source=HOME)
    assert (result.username, result.two_factor_enabled) == ("alice", False)
    enable_totp(svc, clock, "alice")
    assert svc.attempt_password("alice", "alice-pass-1", source=HOME).two_factor_enabled


def test_surrounding_blanks_are_ignored_as_on_the_sign_in_form(svc, users):
    svc.attempt_password("alice", "  alice-pass-1 ", source=HOME)


def test_wrong_password_and_unknown_user_get_the_same_text(svc, users):
    with pytest.raises(mfa_core.InvalidCode) as known:
        svc.attempt_password("alice", "wrong", source=HOME)
    with pytest.raises(mfa_core.InvalidCode) as unknown:
        svc.attempt_password("mallory", "wrong", source=HOME)
    assert str(known.value) == str(unknown.value) == "Username or password is incorrect."
    assert type(known.value) is type(unknown.value)


def test_an_unknown_name_creates_no_record(svc, users):
    for _ in range(3):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("mallory", "guess", source="203.0.113.9")
    assert svc.store.read("mallory") is None
    assert "mallory" not in list(svc.usernames())
    # Nor is the typed name written anywhere: people type passwords into it.
    assert all("mallory" not in repr(e) for e in svc.audit())


def test_bad_arguments_are_refused_and_count_nothing(svc, users):
    with pytest.raises(TypeError):
        svc.attempt_password("alice", b"alice-pass-1")
    with pytest.raises(TypeError):
        svc.attempt_password("alice", "alice-pass-1", source=42)
    with pytest.raises(ValueError):
        svc.attempt_password("alice", "alice-pass-1", source="x" * 500)
    with pytest.raises(mfa_core.InvalidCodeFormat):
        svc.attempt_password("alice", "   ")
    assert checked(svc) == 0


def test_the_audit_says_where_from_and_never_the_password(svc, users):
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_password("alice", "my-secret-guess", source="198.51.100.7")
    svc.attempt_password("alice", "alice-pass-1", source=HOME)
    events = svc.audit("alice")
    assert [e.event for e in events] == ["password_failed", "password_accepted"]
    assert "198.51.100.7" in events[0].detail and HOME in events[1].detail
    assert all("guess" not in repr(e) and "alice-pass-1" not in repr(e) for e in svc.audit())


def test_password_failures_never_count_toward_the_second_factor_lockout(svc, users, clock, policy):
    secret = enable_totp(svc, clock, "alice")
    for n in range(60):
        clock.advance(policy.max_delay)
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=f"198.51.100.{n}")
    status = svc.status("alice")
    assert (status.failed_attempts, status.locked) == (0, False)
    svc.attempt_second_factor("alice", code_for(secret, clock()))


# -- parallel attempts ----------------------------------------------------------------

def _at_once(count: int, attempt) -> list[str]:
    barrier = threading.Barrier(count)
    results: list[str] = [""] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = outcome(lambda: attempt(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_forty_wrong_passwords_at_once_are_checked_as_often_as_one_by_one(svc, users, policy):
    at_once = _at_once(40, lambda i: svc.attempt_password("alice", f"wrong-{i}", source="203.0.113.5"))
    one_by_one = [outcome(lambda: svc.attempt_password("bob", f"wrong-{i}", source="203.0.113.6"))
                  for i in range(40)]
    assert checked(svc, "alice") == checked(svc, "bob") == policy.free_failures
    assert sorted(at_once) == sorted(one_by_one)


def test_the_right_password_among_forty_at_once_gets_no_more_checks(svc, users, policy):
    guesses = [f"wrong-{i}" for i in range(40)]
    guesses[29] = "alice-pass-1"
    results = _at_once(40, lambda i: svc.attempt_password("alice", guesses[i], source="203.0.113.5"))
    # As one by one in some order: up to 5 wrong ones, maybe the right one (which clears
    # this source's count), then up to 5 more; never the 40 a racy check would let through.
    assert checked(svc, "alice") <= 2 * policy.free_failures + 1
    assert results.count("ok") <= 1
    failures_after_last_success = 0
    for event in svc.audit("alice"):
        failures_after_last_success = (0 if event.event == "password_accepted" else
                                       failures_after_last_success + (event.event == "password_failed"))
    assert failures_after_last_success <= policy.free_failures
    assert not svc.status("alice").password_blocked


def test_parallel_guesses_at_an_unknown_name_answer_like_a_known_one(svc, users, policy):
    known = _at_once(12, lambda i: svc.attempt_password("alice", f"w{i}", source="203.0.113.7"))
    unknown = _at_once(12, lambda i: svc.attempt_password("nobody", f"w{i}", source="203.0.113.8"))
    assert sorted(known) == sorted(unknown)


# -- smart lockout ----------------------------------------------------------------------

def test_waits_grow_per_user_and_source_and_say_how_long(svc, users, clock, policy):
    for _ in range(policy.free_failures):
        assert outcome(lambda: svc.attempt_password("alice", "wrong", source="198.51.100.1")) == \
            "Username or password is incorrect."
    with pytest.raises(mfa_core.TooManyAttempts, match=r"Wait 30 seconds") as err:
        svc.attempt_password("alice", "alice-pass-1", source="198.51.100.1")
    assert err.value.retry_after == policy.delay(policy.free_failures)
    # Another source is not slowed down by this one's failures, and the owner gets in.
    svc.attempt_password("alice", "alice-pass-1", source=HOME)
    clock.advance(err.value.retry_after)
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_password("alice", "wrong", source="198.51.100.1")
    with pytest.raises(mfa_core.TooManyAttempts) as longer:
        svc.attempt_password("alice", "wrong", source="198.51.100.1")
    assert longer.value.retry_after == policy.delay(policy.free_failures + 1) > err.value.retry_after


def test_a_success_from_a_source_clears_that_sources_failures(svc, users, clock, policy):
    for _ in range(policy.free_failures - 1):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=HOME)
    svc.attempt_password("alice", "alice-pass-1", source=HOME)
    for _ in range(policy.free_failures - 1):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=HOME)
    svc.attempt_password("alice", "alice-pass-1", source=HOME)  # no wait: the count started over


def test_unknown_and_known_names_get_the_same_answers_in_the_same_order(svc, users, clock):
    def story(name: str, source: str) -> list[str]:
        answers = []
        for step in range(9):
            answers.append(outcome(lambda: svc.attempt_password(name, "guess", source=source)))
            clock.advance(20 if step % 2 else 45)
        return answers

    assert story("alice", "192.0.2.10") == story("carol-does-not-exist", "192.0.2.11")


def test_six_hundred_guesses_from_thirty_sources_check_at_most_a_hundred(svc, users, clock, policy):
    secret = enable_totp(svc, clock, "alice")
    svc.attempt_password("alice", "alice-pass-1", source=HOME)
    svc.attempt_second_factor("alice", code_for(secret, clock()), source=HOME)  # a familiar place
    clock.advance(30)
    attackers = [f"203.0.113.{n}" for n in range(30)]
    answers = []
    for n in range(600):  # five hours: one guess every 30 s, the sources taking turns
        answers.append(outcome(lambda: svc.attempt_password("alice", f"guess-{n}",
                                                            source=attackers[n % 30])))
        clock.advance(30)
    assert len([e for e in svc.audit("alice") if e.event == "password_failed"]) <= \
        policy.account_limit
    assert answers[-1] == "blocked"
    assert svc.status("alice").password_blocked
    assert outcome(lambda: svc.attempt_password("alice", "alice-pass-1", source="198.51.100.99")) == \
        "blocked"
    # The owner signs in at once from where she signed in before, second factor and all.
    assert svc.attempt_password("alice", "alice-pass-1", source=HOME).two_factor_enabled
    svc.attempt_second_factor("alice", code_for(secret, clock()), source=HOME)
    assert not svc.status("alice").password_blocked  # a familiar success lifts the block
    assert svc.status("alice").failed_attempts == 0


def test_the_block_names_what_is_locked(svc, users, clock, policy):
    for n in range(policy.account_limit):
        clock.advance(policy.max_delay)
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=f"198.51.{n // 250}.{n % 250}")
    with pytest.raises(mfa_core.PasswordBlocked, match="from a new place is blocked") as err:
        svc.attempt_password("alice", "alice-pass-1", source="192.0.2.1")
    assert isinstance(err.value, mfa_core.TooManyAttempts)
    assert "password_blocked" in [e.event for e in svc.audit("alice")]


def test_a_helpdesk_unlock_lifts_the_password_block(svc, users, clock, policy):
    for n in range(policy.account_limit):
        clock.advance(policy.max_delay)
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=f"198.51.100.{n}")
    assert svc.status("alice").password_blocked
    svc.unlock("alice", actor="admin", reason="called from her desk phone")
    assert not svc.status("alice").password_blocked
    svc.attempt_password("alice", "alice-pass-1", source="192.0.2.1")


def test_a_familiar_source_is_never_blocked(svc, users, clock, policy):
    svc.attempt_password("alice", "alice-pass-1", source=HOME)  # no second factor: a full sign-in
    for n in range(policy.account_limit):
        clock.advance(policy.max_delay)
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", "wrong", source=f"198.51.100.{n}")
    clock.advance(policy.max_delay)
    for _ in range(3):
        with pytest.raises(mfa_core.InvalidCode):  # checked, not refused
            svc.attempt_password("alice", "wrong", source=HOME)
    svc.attempt_password("alice", "alice-pass-1", source=HOME)


def test_one_source_spraying_many_users_must_wait(data_dir, open_svc, clock):
    names = {f"user{n}": f"pass-{n}-long" for n in range(40)}
    write_users(data_dir, names)
    svc = open_svc()
    policy = svc.password_policy
    for name in list(names)[:policy.spray_limit]:
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password(name, "Winter2026!", source="203.0.113.66")
    with pytest.raises(mfa_core.TooManyAttempts):
        svc.attempt_password("user39", "pass-39-long", source="203.0.113.66")
    with pytest.raises(mfa_core.TooManyAttempts):  # unknown names too: no difference to see
        svc.attempt_password("nobody", "Winter2026!", source="203.0.113.66")
    svc.attempt_password("user39", "pass-39-long", source="198.51.100.2")  # other sources are fine
    clock.advance(policy.spray_window)
    svc.attempt_password("user39", "pass-39-long", source="203.0.113.66")


def test_a_source_familiar_to_a_user_is_not_slowed_by_spraying_from_it(data_dir, open_svc, clock):
    names = {f"user{n}": f"pass-{n}-long" for n in range(35)}
    write_users(data_dir, names)
    svc = open_svc()
    office = "192.0.2.200"  # everyone's NAT
    svc.attempt_password("user0", "pass-0-long", source=office)
    for name in list(names)[1:svc.password_policy.spray_limit + 1]:
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password(name, "Winter2026!", source=office)
    svc.attempt_password("user0", "pass-0-long", source=office)


def test_the_throttle_is_shared_by_every_engine_instance(data_dir, open_svc, users, clock):
    first, second = open_svc(), open_svc()
    for _ in range(first.password_policy.free_failures):
        with pytest.raises(mfa_core.InvalidCode):
            first.attempt_password("alice", "wrong", source="203.0.113.1")
    with pytest.raises(mfa_core.TooManyAttempts):
        second.attempt_password("alice", "alice-pass-1", source="203.0.113.1")


# -- timing --------------------------------------------------------------------------------

def test_unknown_and_known_names_take_the_same_time(tmp_path, clock):
    """Real bcrypt cost (the portal's): the fastest of each may differ by at most 40 %.

    Interleaved, and the fastest of each compared rather than the medians: on a busy
    machine the other processes only ever add time, and a burst of load lands on both
    names instead of on one series.
    """
    UserDirectory(tmp_path / "data").add("alice", "alice-pass-1")
    svc = mfa_core.open_service(tmp_path / "data", clock=clock, environ={})
    timings: dict[str, list[float]] = {"alice": [], "mallory": []}
    for n in range(9):
        for name in timings:
            start = time.perf_counter()
            with pytest.raises(mfa_core.InvalidCode):
                svc.attempt_password(name, "wrong", source=f"198.51.100.{n}")
            if n:  # the first round warms both paths (the dummy hash is made once)
                timings[name].append(time.perf_counter() - start)
        clock.advance(60)
    known, unknown = min(timings["alice"]), min(timings["mallory"])
    assert 0.6 < unknown / known < 1.4, (known, unknown, timings)
