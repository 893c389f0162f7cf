"""Temporary access passes: the helpdesk's answer to a lost phone (issue 24).

A pass is 16 characters of the backup codes' alphabet (lower-case base32
without i, l, o, u: 5 bits each, 80 bits), shown grouped ``kq7m-3xzp-w9df-4hnr``
and read over the phone. Only its HMAC under the pepper (and a salt of its
own) is stored, in the user's record::

    temp_pass  {salt: hex, hash: hex, issued_at, expires_at, uses: int >= 1, actor: str}

One per user: a new one replaces it. It counts as a second factor at the
portal only (never for a calling service), for ``uses`` sign-ins before
``expires_at`` on the engine's clock.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Mapping

from . import backup_codes as bc

STRATEGY = "temporary_pass"
MIN_VALID = 600                 # ten minutes
DEFAULT_MAX_VALID = 8 * 3600    # eight hours, unless the operator sets MFA_PORTAL_PASS_MAX_VALID
ENV_MAX_VALID = "MFA_PORTAL_PASS_MAX_VALID"
MAX_USES = 20
_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def generate() -> str:
    """A new pass in its display form (the backup codes' shape: 80 bits)."""
    return bc.display("".join(secrets.choice(bc.ALPHABET) for _ in range(bc.LENGTH)))


def normalize(typed: str) -> str | None:
    """The canonical form of a typed pass (any case, with or without dashes), or None."""
    return bc.normalize(typed)


def digest(pepper: bytes, salt: bytes, normalized: str) -> str:
    return bc.digest(pepper, b"temporary-pass:" + salt, normalized)


def parse_duration(text: Any) -> int:
    """Seconds from ``1h``, ``30m``, ``600s``, ``600`` or ``1d``; ValueError otherwise."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise TypeError("a duration is a str like 1h, 30m or 600s")
    if isinstance(text, int):
        return text
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write it like 1h, 30m or 600s.")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def max_valid(environ: Mapping[str, str]) -> int:
    """The longest lifetime the operator allows (``MFA_PORTAL_PASS_MAX_VALID``, default 8 h)."""
    raw = (environ.get(ENV_MAX_VALID) or "").strip()
    if not raw:
        return DEFAULT_MAX_VALID
    seconds = parse_duration(raw)
    if seconds < MIN_VALID:
        raise ValueError(f"{ENV_MAX_VALID} must be at least {MIN_VALID} s.")
    return seconds


def live(rec: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The user's pass if it is still valid (the one place its expiry is compared)."""
    found = rec.get("temp_pass")
    return found if found and found["expires_at"] > now and found["uses"] > 0 else None


def describe(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
