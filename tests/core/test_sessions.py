"""Server-side sessions: what a token opens, and everything that ends it."""

from __future__ import annotations

import pytest

import mfa_core

from ..support import enable_totp, write_users
from .conftest import data_files


@pytest.fixture
def users(data_dir):
    write_users(data_dir, {"alice": "alice-pass-1", "bob": "bob-pass-1"})


def start(svc, user="alice", **kw):
    return svc.sessions.start(user, second_factor_passed=kw.pop("passed", True), **kw)


def test_a_session_knows_its_user_factors_and_verification(svc, users, clock):
    token = start(svc, passed=False, source="10.0.0.1", user_agent="Mozilla/5.0 (X11; Linux)")
    found = svc.sessions.find(token)
    assert (found.username, found.second_factor_passed, found.verified_at) == ("alice", False, None)
    assert (found.source, found.user_agent) == ("10.0.0.1", "Mozilla/5.0 (X11; Linux)")
    svc.sessions.update(token, second_factor_passed=True, verified_at=clock())
    found = svc.sessions.find(token)
    assert found.second_factor_passed and found.verified_at == clock()
    assert "session_started" in [e.event for e in svc.audit("alice")]


def test_the_token_is_random_and_never_stored(svc, users, data_dir):
    tokens = {start(svc) for _ in range(5)}
    assert len(tokens) == 5 and all(len(t) >= 43 for t in tokens)  # 256 bits, URL-safe
    for path in data_files(data_dir):
        raw = path.read_bytes()
        assert not any(t.encode() in raw for t in tokens), path


@pytest.mark.parametrize("token", ["", "x", "not a token at all, with spaces" * 3, None, 42, "é" * 40])
def test_anything_else_opens_nothing(svc, users, token):
    assert svc.sessions.find(token) is None


def test_sign_out_ends_the_session_for_every_holder(svc, open_svc, users):
    token = start(svc)
    other_process = open_svc()
    assert other_process.sessions.find(token) is not None
    svc.sessions.end(token)
    assert svc.sessions.find(token) is None and other_process.sessions.find(token) is None


def test_an_idle_session_expires_and_use_keeps_it_alive(svc, users, clock):
    idle = svc.sessions.policy.idle
    token = start(svc)
    for _ in range(3):
        clock.advance(idle - 5)
        assert svc.sessions.find(token) is not None
    clock.advance(idle)
    assert svc.sessions.find(token) is None


def test_a_session_ends_after_its_lifetime_however_busy(svc, users, clock):
    policy = svc.sessions.policy
    token = start(svc)
    for _ in range(policy.lifetime // (policy.idle - 60)):
        clock.advance(policy.idle - 60)
        svc.sessions.find(token)
    clock.advance(policy.idle - 60)
    assert svc.sessions.find(token) is None


def test_a_password_change_ends_every_session(svc, users):
    token = start(svc)
    svc.directory.set_password("alice", "a-new-password-1")
    assert svc.sessions.find(token) is None
    assert svc.sessions.find(start(svc)) is not None  # a sign-in with the new one works


def test_a_helpdesk_reset_ends_every_session(svc, users, clock):
    enable_totp(svc, clock, "alice")
    tokens = [start(svc) for _ in range(3)]
    bob = start(svc, "bob")
    svc.reset_mfa("alice", actor="admin", reason="lost phone")
    assert [svc.sessions.find(t) for t in tokens] == [None, None, None]
    assert svc.sessions.find(bob) is not None


def test_removing_the_second_factor_ends_the_other_sessions(svc, users, clock):
    enable_totp(svc, clock, "alice")
    mine, other = start(svc), start(svc)
    svc.disable_totp("alice", keep_session=mine)
    assert svc.sessions.find(mine) is not None and svc.sessions.find(other) is None


def test_the_user_sees_and_ends_their_sessions(svc, users, clock):
    mine = start(svc, source="10.0.0.1")
    clock.advance(120)
    other = start(svc, source="10.0.0.2")
    third = start(svc, source="10.0.0.3")
    listed = svc.sessions.of("alice")
    assert [s.source for s in listed][:1] in (["10.0.0.2"], ["10.0.0.3"])
    assert {s.source for s in listed} == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert svc.sessions.end_by_id("alice", svc.sessions.id_of(other))
    assert svc.sessions.find(other) is None
    assert svc.sessions.end_others("alice", mine) == 1
    assert svc.sessions.find(third) is None and svc.sessions.find(mine) is not None
    assert not svc.sessions.end_by_id("alice", "no-such-id")
    assert svc.sessions.of("bob") == []


def test_a_ticket_gives_the_token_once_within_a_minute(svc, users, clock, data_dir):
    token = start(svc)
    ticket = svc.sessions.ticket(token)
    assert all(token.encode() not in p.read_bytes() for p in data_files(data_dir))
    assert svc.sessions.redeem(ticket) == token
    assert svc.sessions.redeem(ticket) is None
    late = svc.sessions.ticket(token)
    clock.advance(61)
    assert svc.sessions.redeem(late) is None
    assert svc.sessions.redeem("forged-ticket-forged-ticket-forged") is None
    ended = svc.sessions.ticket(token)
    svc.sessions.end(token)
    assert svc.sessions.redeem(ended) is None


def test_a_session_policy_is_checked():
    with pytest.raises(ValueError):
        mfa_core.SessionPolicy(idle=10)
    with pytest.raises(ValueError):
        mfa_core.SessionPolicy(idle=7200, lifetime=3600)


# -- issue 20: what a session from before a change still gets -------------------------

def _enroll_keeping(svc, clock, keep):
    from ..support import code_for
    secret = svc.create_totp("alice").secret
    svc.verify_totp("alice", code_for(secret, clock()), keep_session=keep)
    clock.advance(30)
    return secret


def test_enrolling_an_app_makes_every_other_session_pass_the_second_factor_again(
        svc, open_svc, users, clock):
    """F1: a password-only session (no second factor existed) kept across the owner's enrollment."""
    attackers = start(svc, passed=True, verified_at=clock())   # signed in before two-step was on
    owners = start(svc, passed=True, verified_at=clock())
    _enroll_keeping(svc, clock, owners)
    for book in (svc.sessions, open_svc().sessions):           # this process and another replica
        found = book.find(attackers)
        assert found is not None and not found.second_factor_passed and found.verified_at is None
        mine = book.find(owners)
        assert mine.second_factor_passed and mine.verified_at is not None


def test_enrolling_without_naming_a_session_demotes_them_all(svc, users, clock):
    token = start(svc, passed=True, verified_at=clock())
    enable_totp(svc, clock, "alice")
    assert not svc.sessions.find(token).second_factor_passed


def test_adding_a_passkey_makes_every_other_session_pass_the_second_factor_again(svc, users, clock):
    from ..webauthn_authenticator import PAGE, SoftAuthenticator
    attackers = start(svc, passed=True, verified_at=clock())
    owners = start(svc, passed=True, verified_at=clock())
    options = svc.begin_passkey_registration("alice", session=owners, origin=PAGE)
    svc.finish_passkey_registration("alice", SoftAuthenticator().create(options), session=owners)
    found = svc.sessions.find(attackers)
    assert not found.second_factor_passed and found.verified_at is None
    assert svc.sessions.find(owners).second_factor_passed


def test_after_a_helpdesk_reset_a_password_only_session_must_pass_the_new_factor(svc, users, clock):
    enable_totp(svc, clock, "alice")
    svc.reset_mfa("alice", actor="admin", reason="lost phone")
    attackers = start(svc, passed=True, verified_at=clock())   # the password-only period
    owners = start(svc, passed=True, verified_at=clock())
    _enroll_keeping(svc, clock, owners)
    assert not svc.sessions.find(attackers).second_factor_passed
    assert svc.sessions.find(owners).second_factor_passed


def test_password_only_sign_ins_never_evict_a_session_past_the_second_factor(svc, users, clock):
    """F11: 20 sign-ins with the password alone leave the owner's verified sessions alone."""
    from mfa_core.sessions import SESSIONS_MAX, UNVERIFIED_MAX
    enable_totp(svc, clock, "alice")
    owners = []
    for _ in range(SESSIONS_MAX):
        owners.append(start(svc, passed=True))
        clock.advance(1)
    attackers = []
    for _ in range(SESSIONS_MAX + 5):
        attackers.append(start(svc, passed=False))
        clock.advance(1)
    assert all(svc.sessions.find(t) is not None for t in owners)
    live = [t for t in attackers if svc.sessions.find(t) is not None]
    assert live == attackers[-UNVERIFIED_MAX:]          # they evict only one another, oldest first
    # The owner signing in on one more device: admitted, and once it passes the second
    # factor the least recently active verified session makes room.
    newest = start(svc, passed=False)
    svc.sessions.update(newest, second_factor_passed=True, verified_at=clock())
    assert svc.sessions.find(newest).second_factor_passed
    assert svc.sessions.find(owners[0]) is None
    assert all(svc.sessions.find(t) is not None for t in owners[1:])
    assert len(svc.sessions.of("alice")) == SESSIONS_MAX + UNVERIFIED_MAX - 1


def test_without_two_step_the_oldest_session_goes_at_the_cap(svc, users, clock):
    from mfa_core.sessions import SESSIONS_MAX
    tokens = []
    for _ in range(SESSIONS_MAX + 1):
        tokens.append(start(svc, passed=True))
        clock.advance(1)
    assert svc.sessions.find(tokens[0]) is None
    assert all(svc.sessions.find(t) is not None for t in tokens[1:])


@pytest.mark.parametrize("idle", [60, 90, 119, 240])
def test_a_session_in_use_never_expires_however_short_the_idle_time(data_dir, clock, users, idle):
    """F14: "last active" is written often enough for any idle time (min(60, idle/4) s)."""
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, backend="tinydb",
                                session_policy=mfa_core.SessionPolicy(idle=idle, lifetime=12 * 3600))
    assert svc.sessions.policy.touch_every == min(60, idle / 4)
    token = start(svc)
    step = idle / 2 - 1                         # a page run twice per idle period
    for _ in range(20):
        clock.advance(step)
        assert svc.sessions.find(token) is not None
    clock.advance(idle)
    assert svc.sessions.find(token) is None


def test_a_session_passes_without_a_second_factor_only_while_none_exists(svc, users, clock):
    token = start(svc, passed=False)
    enable_totp(svc, clock, "alice")
    assert not svc.sessions.pass_without_second_factor(token)
    assert not svc.sessions.find(token).second_factor_passed
    assert svc.sessions.pass_without_second_factor(start(svc, "bob", passed=False))
    svc.sessions.end(token)
    assert not svc.sessions.pass_without_second_factor(token)
