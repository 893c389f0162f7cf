"""Bad input: TypeError for wrong types, ValueError for malformed values, nothing else, nothing changed."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfa_core

from .conftest import FakeClock, code_for, data_files, enable_totp


def snapshot(data_dir: Path) -> dict[str, str]:
    """Every file under the data dir with its content hash.

    Lock files are left out (they are empty), and so is SQLite's ``-shm``: the
    WAL's shared-memory index, which a read rewrites; it holds no data.
    """
    return {str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in data_files(data_dir) if p.suffix != ".lock" and not p.name.endswith("-shm")}


@pytest.fixture
def ready(svc, clock, data_dir):
    """alice with an authenticator and backup codes, bob with a pending enrollment."""
    secret = enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    svc.create_totp("bob")
    return secret


# The last second the engine takes as a time: 9999-12-31T23:59:59Z.
MAX_TIME = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp()

BAD_NAMES = ["", " a", "a ", "a:b", "\x00", "a\nb", "x" * 129]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_malformed_usernames_are_value_errors_and_change_nothing(svc, data_dir, ready, name):
    before = snapshot(data_dir)
    for call in (lambda: svc.status(name), lambda: svc.create_totp(name),
                 lambda: svc.verify_totp(name, "123456"), lambda: svc.disable_totp(name),
                 lambda: svc.create_backup_codes(name),
                 lambda: svc.attempt_second_factor(name, "123456"),
                 lambda: svc.reset_mfa(name, actor="admin", reason="r"),
                 lambda: svc.unlock(name, actor="admin", reason="r"),
                 lambda: svc.attempt_password(name, "pw"), lambda: svc.audit(name),
                 lambda: svc.recent_activity(name), lambda: svc.pending_totp(name)):
        with pytest.raises(ValueError):
            call()
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("value", [None, 1, 1.5, b"alice", ["alice"], {"u": 1}])
def test_wrong_typed_usernames_are_type_errors(svc, value):
    for call in (lambda: svc.status(value), lambda: svc.create_totp(value),
                 lambda: svc.attempt_second_factor(value, "123456"),
                 lambda: svc.verify_totp(value, "123456")):
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("code", [None, 123456, b"123456", 1.0])
def test_wrong_typed_codes_are_type_errors(svc, ready, code):
    with pytest.raises(TypeError):
        svc.attempt_second_factor("alice", code)
    with pytest.raises(TypeError):
        svc.attempt_second_factor("alice", code, strategy="backup_code")
    with pytest.raises(TypeError):
        svc.verify_totp("bob", code)


@pytest.mark.parametrize("strategy", ["", "sms", "TOTP", "backup"])
def test_unknown_strategy_is_a_value_error(svc, ready, strategy):
    with pytest.raises(ValueError):
        svc.attempt_second_factor("alice", "123456", strategy=strategy)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5", "１２３４５６", "123456\x00"])
def test_malformed_totp_codes_are_invalid_code_format(svc, data_dir, ready, code):
    before = snapshot(data_dir)
    with pytest.raises(mfa_core.InvalidCodeFormat) as err:
        svc.attempt_second_factor("alice", code)
    assert isinstance(err.value, mfa_core.MFAError) and isinstance(err.value, ValueError)
    with pytest.raises(mfa_core.InvalidCodeFormat):
        svc.verify_totp("bob", code)
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("code", ["", "abcd", "abcd-efgh-jkmn-pqr", "abcd-efgh-jkmn-pqrst", "abcd-efgh-jkmn-pq!s"])
def test_malformed_backup_codes_are_invalid_code_format(svc, data_dir, ready, code):
    before = snapshot(data_dir)
    with pytest.raises(mfa_core.InvalidCodeFormat):
        svc.attempt_second_factor("alice", code, strategy="backup_code")
    assert snapshot(data_dir) == before


def test_refused_actions_change_nothing(svc, data_dir, clock, ready):
    before = snapshot(data_dir)
    with pytest.raises(mfa_core.NotEnabled):
        svc.disable_totp("bob")
    with pytest.raises(mfa_core.NotEnabled):
        svc.create_backup_codes("bob")
    with pytest.raises(mfa_core.NotEnabled):
        svc.attempt_second_factor("carol", "123456")
    with pytest.raises(mfa_core.NoPendingEnrollment):
        svc.verify_totp("alice", "123456")
    assert snapshot(data_dir) == before
    assert set(svc.usernames()) == {"alice", "bob"}


def test_queries_change_nothing(svc, data_dir, ready):
    before = snapshot(data_dir)
    svc.status("alice"), svc.status("nobody"), svc.pending_totp("bob"), svc.audit()
    svc.recent_activity("alice"), svc.is_token_revoked("alice", "fp"), svc.retry_after("alice")
    assert snapshot(data_dir) == before


def test_statuses_refuses_a_single_string(svc):
    with pytest.raises(TypeError):
        svc.statuses("alice")
    assert [status.username for status in svc.statuses(["alice", "bob"])] == ["alice", "bob"]


@pytest.mark.parametrize("limit", [-1, -5])
def test_recent_activity_refuses_a_negative_limit(svc, ready, limit):
    with pytest.raises(ValueError):
        svc.recent_activity("alice", limit=limit)


def test_recent_activity_limit_zero_is_empty(svc, ready):
    assert svc.recent_activity("alice", limit=0) == []
    assert len(svc.recent_activity("alice", limit=2)) == 2


@pytest.mark.parametrize("expires_at", [math.nan, math.inf, 10 ** 400], ids=["nan", "inf", "huge"])
def test_revoke_token_refuses_impossible_expiry(svc, data_dir, ready, expires_at):
    before = snapshot(data_dir)
    with pytest.raises(ValueError):
        svc.revoke_token("alice", "fp", expires_at)
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("bound", [math.nan, math.inf, -math.inf, 10 ** 400, 1e300, -1e300,
                                   MAX_TIME + 1, -MAX_TIME - 1],
                         ids=["nan", "inf", "-inf", "huge-int", "huge", "-huge", "max+1", "-max-1"])
def test_audit_refuses_bounds_beyond_year_9999(svc, ready, bound):
    for query in (lambda: svc.audit(since=bound), lambda: svc.audit(until=bound),
                  lambda: svc.audit("alice", since=0, until=bound)):
        with pytest.raises(ValueError, match="out of range"):
            query()


def test_audit_bounds_far_in_the_past_or_future_select_the_right_events(svc, ready, clock):
    trail = [(e.user, e.event) for e in svc.audit()]
    assert sorted(trail) == [("alice", "backup_codes_generated"), ("alice", "totp_enabled"),
                             ("alice", "totp_enrollment_started"), ("bob", "totp_enrollment_started")]
    # Before year 1, 1653, 1970, and after 2100, 5138, at the end of 9999: all within range.
    pasts, futures = [-MAX_TIME, -1e10, 0, 1.0], [4102444800, 1e11, MAX_TIME]
    for past in pasts:
        assert [(e.user, e.event) for e in svc.audit(since=past)] == trail
        assert svc.audit(until=past) == []
    for future in futures:
        assert [(e.user, e.event) for e in svc.audit(until=future)] == trail
        assert svc.audit(since=future) == []
        assert [e.event for e in svc.audit("bob", since=-MAX_TIME, until=future)] == [
            "totp_enrollment_started"]
    assert svc.audit(since=MAX_TIME, until=-MAX_TIME) == []
    assert svc.audit(since=clock(), until=clock()) == []  # until is exclusive


def test_open_service_refuses_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        mfa_core.open_service(42, environ={})
    with pytest.raises(ValueError):
        mfa_core.open_service(tmp_path, backend="mongodb", environ={})
    with pytest.raises(TypeError):
        mfa_core.open_service(tmp_path, clock="now", environ={})
    with pytest.raises(TypeError):
        mfa_core.open_service(tmp_path, environ=["MFA_PORTAL_PEPPER=x"])
    with pytest.raises(TypeError):
        mfa_core.open_service(tmp_path, backend=["sqlite"], environ={})
    with pytest.raises(TypeError):
        mfa_core.open_service(tmp_path, policy={"lockout_after": 10}, environ={})


def test_open_service_refuses_an_empty_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError):
        mfa_core.open_service("", environ={})
    assert list(tmp_path.iterdir()) == []


# -- fuzzing ------------------------------------------------------------------------

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
    st.text(alphabet="0123456789 -", max_size=10),
    st.text(alphabet="0123456789abcdefghjkmnpqrstvwxyzABCDEFGH- ", max_size=24),
    st.sampled_from(["alice", "bob", "", " alice", "a:b", "\x00", "totp", "backup_code"]),
    st.lists(st.text(), max_size=2), st.dictionaries(st.text(), st.integers(), max_size=2),
)
NUMBERS = st.one_of(ANY, st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=-10 ** 30, max_value=10 ** 30))
ALLOWED = (mfa_core.MFAError, TypeError, ValueError)

_fuzz_dir = tempfile.TemporaryDirectory(prefix="mfa-fuzz-")
_fuzz_clock = FakeClock()
_fuzz_svc = mfa_core.open_service(Path(_fuzz_dir.name), clock=_fuzz_clock, environ={})
_secret = enable_totp(_fuzz_svc, _fuzz_clock, "alice")
_fuzz_svc.create_backup_codes("alice")
_fuzz_svc.create_totp("bob")

OPERATIONS = {
    "status": lambda s, a, b, c: s.status(a),
    "pending_totp": lambda s, a, b, c: s.pending_totp(a),
    "create_totp": lambda s, a, b, c: s.create_totp(a),
    "verify_totp": lambda s, a, b, c: s.verify_totp(a, b),
    "disable_totp": lambda s, a, b, c: s.disable_totp(a),
    "create_backup_codes": lambda s, a, b, c: s.create_backup_codes(a),
    "attempt_second_factor": lambda s, a, b, c: s.attempt_second_factor(a, b, strategy=c),
    "attempt_second_factor_totp": lambda s, a, b, c: s.attempt_second_factor(a, b),
    "attempt_second_factor_backup": lambda s, a, b, c: s.attempt_second_factor(a, b, "backup_code"),
    "reset_mfa": lambda s, a, b, c: s.reset_mfa(a, actor=b, reason=c),
    "unlock": lambda s, a, b, c: s.unlock(a, actor=b, reason=c),
    "audit": lambda s, a, b, c: s.audit(a, since=b, until=c),
    "audit_by_time": lambda s, a, b, c: s.audit(since=b, until=c),
    "recent_activity": lambda s, a, b, c: s.recent_activity(a, b),
    "revoke_token": lambda s, a, b, c: s.revoke_token(a, b, c),
    "is_token_revoked": lambda s, a, b, c: s.is_token_revoked(a, b),
    "attempt_password": lambda s, a, b, c: s.attempt_password(a, b, source=c),
    "retry_after": lambda s, a, b, c: s.retry_after(a),
    "statuses": lambda s, a, b, c: s.statuses(a),
    "statuses_list": lambda s, a, b, c: s.statuses([a, b]),
    "attempt_password_source": lambda s, a, b, c: s.attempt_password("alice", "pw", source=a),
    "rotate_keys": lambda s, a, b, c: s.rotate_keys(actor=a),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=ANY, b=NUMBERS, c=NUMBERS)
def test_fuzzed_public_operations_raise_only_the_allowed_errors(operation, a, b, c):
    _fuzz_clock.advance(7)
    try:
        OPERATIONS[operation](_fuzz_svc, a, b, c)
    except ALLOWED:
        pass


_codes_dir = tempfile.TemporaryDirectory(prefix="mfa-fuzz-codes-")
_codes_clock = FakeClock()
_codes_svc = mfa_core.open_service(Path(_codes_dir.name), clock=_codes_clock, environ={})
_codes_secret = enable_totp(_codes_svc, _codes_clock, "zed")


@settings(max_examples=100, deadline=None)
@given(before=st.text(max_size=6), after=st.text(max_size=6), real=st.booleans())
def test_fuzzed_codes_never_sign_in_by_accident(before, after, real):
    """Only the real code, with nothing but spaces or dashes around it, passes; the rest is an MFAError."""
    _codes_clock.advance(31)
    _codes_svc.unlock("zed", actor="admin", reason="fuzzing")
    code = code_for(_codes_secret, _codes_clock())
    typed = before + (code if real else "") + after
    try:
        _codes_svc.attempt_second_factor("zed", typed)
    except mfa_core.MFAError:
        assert not (real and re.fullmatch(r"[\s-]*", before + after)), repr(typed)
        return
    assert real and re.fullmatch(r"[\s-]*", before + after), repr(typed)
