"""A damaged record is shown only after the right password: the password and its throttle come first.

Before, a damaged record answered "cannot be read" to any password: it told
anyone that the name is a real user's, and the password was never checked
or throttled.
"""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core.errors import InvalidCode, RecordDamaged, TooManyAttempts

from .conftest import enable_totp
from .test_damaged_records import user_file, write_users


@pytest.fixture
def damaged(tinydb_svc, data_dir, clock):
    write_users(data_dir, {"alice": "alice-pass-1", "bob": "bob-pass-1"})
    enable_totp(tinydb_svc, clock, "alice")
    user_file(data_dir, "alice").write_bytes(b"\x00garbage")
    return tinydb_svc


def _answer(call):
    try:
        call()
    except mfa_core.MFAError as err:
        return type(err), str(err)
    return None, None


def test_a_wrong_password_for_a_damaged_record_is_just_a_wrong_password(damaged):
    damaged_answer = _answer(lambda: damaged.attempt_password("alice", "wrong-pass-1", source="10.0.0.9"))
    unknown_answer = _answer(lambda: damaged.attempt_password("nobody", "wrong-pass-1", source="10.0.0.8"))
    assert damaged_answer == unknown_answer
    assert damaged_answer[0] is InvalidCode


def test_the_right_password_meets_the_damage_fail_closed(damaged):
    with pytest.raises(RecordDamaged):
        damaged.attempt_password("alice", "alice-pass-1", source="10.0.0.9")


def test_wrong_passwords_for_a_damaged_record_are_throttled(damaged, clock):
    answers = [_answer(lambda: damaged.attempt_password("alice", f"wrong-{i}-pass", source="10.0.0.9"))[0]
               for i in range(30)]
    assert TooManyAttempts in answers
    first = answers.index(TooManyAttempts)
    assert set(answers[:first]) == {InvalidCode}
    # While throttled, even the right password learns nothing about the record.
    with pytest.raises(TooManyAttempts):
        damaged.attempt_password("alice", "alice-pass-1", source="10.0.0.9")
