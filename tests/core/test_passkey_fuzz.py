"""Passkey operations fuzzed: whatever arrives, only MFAError, TypeError or ValueError comes out, and a
tampered answer never signs in."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfa_core

from ..support import FakeClock
from ..webauthn_authenticator import PAGE, SoftAuthenticator

ALLOWED = (mfa_core.MFAError, TypeError, ValueError)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=12)
ANY = st.one_of(JSONISH, st.binary(max_size=20), st.sampled_from(["alice", "", "a:b", "{}", "[]"]),
                JSONISH.map(json.dumps))

_dir = tempfile.TemporaryDirectory(prefix="mfa-passkey-fuzz-")
_clock = FakeClock()
_svc = mfa_core.open_service(Path(_dir.name), clock=_clock, environ={})
_token = _svc.sessions.start("alice", second_factor_passed=True)
_authenticator = SoftAuthenticator()
_svc.finish_passkey_registration(
    "alice", _authenticator.create(_svc.begin_passkey_registration("alice", session=_token, origin=PAGE)),
    session=_token)

OPERATIONS = {
    "begin_passkey_registration": lambda a, b: _svc.begin_passkey_registration(a, session=b, origin=PAGE),
    "finish_passkey_registration": lambda a, b: _svc.finish_passkey_registration("alice", a, session=_token, label=b),
    "begin_passkey_sign_in": lambda a, b: _svc.begin_passkey_sign_in(a, session=b, origin=PAGE),
    "attempt_passkey": lambda a, b: _svc.attempt_passkey("alice", a, session=_token, source=b),
    "attempt_passkey_session": lambda a, b: _svc.attempt_passkey(b, a, session=a),
    "suggest_passkey_label": lambda a, b: _svc.suggest_passkey_label("alice", a),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=ANY, b=ANY)
def test_fuzzed_passkey_operations_raise_only_the_allowed_errors(operation, a, b):
    _clock.advance(1)
    _svc.unlock("alice", actor="admin", reason="fuzzing")
    try:
        OPERATIONS[operation](a, b)
    except ALLOWED:
        pass


PARTS = ["id", "rawId", "type", "response.clientDataJSON", "response.authenticatorData",
         "response.signature", "response.userHandle"]


@settings(max_examples=80, deadline=None)
@given(part=st.sampled_from(PARTS), value=ANY)
def test_a_tampered_answer_never_signs_in(part, value):
    _clock.advance(1)
    _svc.unlock("alice", actor="admin", reason="fuzzing")
    options = _svc.begin_passkey_sign_in("alice", session=_token, origin=PAGE)
    answer = _authenticator.get(options)
    tampered = copy.deepcopy(answer)
    where, key = (tampered["response"], part.split(".")[1]) if "." in part else (tampered, part)
    where[key] = value
    if tampered == answer or (key == "userHandle" and value in (None, "")):
        return  # not tampered (an absent user handle is allowed)
    with pytest.raises(ALLOWED):
        _svc.attempt_passkey("alice", tampered, session=_token)
