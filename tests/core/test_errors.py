"""The exception tree: one root, messages fit for a user, data carried, safe to pass between processes."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest

import mfa_core
from mfa_core import errors


def every_error() -> list[mfa_core.MFAError]:
    made = []
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, mfa_core.MFAError) and cls is not mfa_core.MFAError:
            if cls is mfa_core.ClockDrift:
                made.append(cls(-90))
            elif cls is mfa_core.TooManyAttempts:
                made.append(cls(120))
            else:
                made.append(cls())
    return made


@pytest.mark.parametrize("error", every_error(), ids=lambda e: type(e).__name__)
def test_every_error_has_a_sentence_for_the_user(error):
    text = str(error)
    assert text and text[0].isupper() and text.rstrip().endswith((".", "!"))
    assert "Traceback" not in text and "Error" not in text


@pytest.mark.parametrize("error", every_error(), ids=lambda e: type(e).__name__)
def test_every_error_survives_pickle_and_copy(error):
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error) and str(clone) == str(error)
        assert getattr(clone, "retry_after", None) == getattr(error, "retry_after", None)
        assert getattr(clone, "offset_seconds", None) == getattr(error, "offset_seconds", None)


def test_too_many_attempts_says_the_wait():
    assert "Wait 45 seconds" in str(mfa_core.TooManyAttempts(45))
    assert "Wait 1 second " in str(mfa_core.TooManyAttempts(1))
    assert "2 minutes (120 seconds)" in str(mfa_core.TooManyAttempts(120))


def test_clock_drift_says_about_how_far_and_which_way():
    assert "about 60 s ahead" in str(mfa_core.ClockDrift(60))
    assert "about 90 s behind" in str(mfa_core.ClockDrift(-90))


def test_invalid_code_format_is_also_a_value_error():
    assert issubclass(mfa_core.InvalidCodeFormat, mfa_core.MFAError)
    assert issubclass(mfa_core.InvalidCodeFormat, ValueError)


def test_replay_and_drift_are_invalid_codes():
    assert issubclass(mfa_core.CodeAlreadyUsed, mfa_core.InvalidCode)
    assert issubclass(mfa_core.ClockDrift, mfa_core.InvalidCode)
