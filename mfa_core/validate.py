"""Argument checks shared by every engine operation: TypeError for a wrong type, ValueError for a bad value.

A code that cannot be a code at all raises InvalidCodeFormat (a ValueError
too): it changes nothing and does not count as a failed attempt.
"""

from __future__ import annotations

import math
import re
from typing import Any

from . import backup_codes as bc
from . import totp
from .errors import InvalidCodeFormat

MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: beyond it a date cannot be computed
MAX_SOURCE = 200           # characters of a client address (IPv6 with zone, a proxy's name)
_TOTP_CODE = re.compile(r"[0-9]{%d}" % totp.DIGITS)


def name(value: Any, what: str = "username") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"The {what} must not be empty.")
    if len(value) > 128 or value != value.strip() or not value.isprintable() or ":" in value:
        raise ValueError(f"The {what} is not valid.")
    return value


def optional_name(value: Any, what: str, default: str) -> str:
    return name(value, what) if value is not None else default


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"A {what} is required.")
    if len(value) > 500 or not value.isprintable():
        raise ValueError(f"The {what} is not valid.")
    return value.strip()


def source(value: Any) -> str | None:
    """Where an attempt comes from (the client's address), or None when unknown."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"source must be a str or None, not {type(value).__name__}")
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_SOURCE or not value.isprintable():
        raise ValueError("The source address is not valid.")
    return value


def password(value: Any) -> str:
    """The typed password, without surrounding blanks (as the sign-in form takes it)."""
    if not isinstance(value, str):
        raise TypeError(f"password must be a str, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidCodeFormat("Enter your password.")
    return value


def time(value: Any, what: str) -> float:
    """Epoch seconds as a finite float: TypeError for a non-number, ValueError for NaN, ±inf, huge."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be epoch seconds (a number)")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{what} is out of range.") from None
    if not math.isfinite(seconds) or abs(seconds) > MAX_TIME:
        raise ValueError(f"{what} is out of range.")
    return seconds


def totp_code(code: Any) -> str:
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    compact = re.sub(r"[\s-]", "", code)
    if not compact:
        raise InvalidCodeFormat("Enter the 6-digit code from your authentication app.")
    if not _TOTP_CODE.fullmatch(compact):
        raise InvalidCodeFormat("A code from your authentication app is 6 digits.")
    return compact


def backup_code(code: Any) -> str:
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    if not code.strip():
        raise InvalidCodeFormat("Enter one of your backup codes.")
    normalized = bc.normalize(code)
    if normalized is None:
        raise InvalidCodeFormat("A backup code has 16 letters and digits, like abcd-efgh-jkmn-pqrs.")
    return normalized
