"""TOTP (RFC 6238) as the portal uses it: SHA1, 6 digits, 30-second steps.

The algorithm is pyotp's; this module only turns time into steps, builds the
provisioning URI and finds which step a typed code belongs to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Collection
from urllib.parse import quote

import pyotp

from .errors import ClockDrift, CodeAlreadyUsed, CodeExpired, InvalidCode

PERIOD = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, the HMAC-SHA1 block RFC 4226 recommends
WINDOW = 1  # accept the current step and one on either side
DRIFT_SEARCH = 20  # steps searched either side to diagnose a wrong device clock


def new_secret() -> str:
    """A fresh 160-bit secret from ``secrets``, base32 without padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def step_at(timestamp: float) -> int:
    return int(timestamp // PERIOD)


def disclosed_step(now: float, error: Exception) -> int | None:
    """The future step a ClockDrift refusal named ("N s ahead"), or None for any other refusal."""
    if isinstance(error, ClockDrift) and error.offset_seconds > 0:
        return step_at(now) + error.offset_seconds // PERIOD
    return None


def code_at_step(secret: str, step: int, digits: int = DIGITS, digest=hashlib.sha1) -> str:
    """The code for one time step (the RFC's T)."""
    return pyotp.TOTP(secret, digits=digits, digest=digest, interval=PERIOD).generate_otp(step)


def code_at(secret: str, timestamp: float, digits: int = DIGITS, digest=hashlib.sha1) -> str:
    """The code an authenticator shows at ``timestamp`` (epoch seconds)."""
    return code_at_step(secret, step_at(timestamp), digits, digest)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """``otpauth://totp/Issuer:account?secret=…&issuer=Issuer`` (Key URI Format).

    Both label parts are percent-encoded with nothing left safe; a colon in
    either would make the label ambiguous, so it is refused.
    """
    for what, value in (("issuer", issuer), ("account", account)):
        if ":" in value:
            raise ValueError(f"The {what} name must not contain a colon.")
        if not value:
            raise ValueError(f"The {what} name must not be empty.")
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer, safe='')}"


@dataclass(frozen=True)
class Match:
    """Where a typed code matched, relative to the current step."""

    step: int
    offset: int  # in steps: negative when the device is behind


def find_step(secret: str, code: str, now: float, search: int = DRIFT_SEARCH) -> Match | None:
    """The step near ``now`` whose code equals ``code``, nearest first, or None.

    Searches ``search`` steps either side so that a code from a drifted clock
    can be diagnosed; the caller decides which offsets it accepts.
    """
    current = step_at(now)
    for distance in range(search + 1):
        for offset in ((0,) if distance == 0 else (-distance, distance)):
            candidate = code_at_step(secret, current + offset)
            # Constant-time comparison: the code is a secret until it is used.
            if hmac.compare_digest(candidate, code):
                return Match(step=current + offset, offset=offset)
    return None


def fresh_step(secret: str, code: str, now: float, last_step: int | None,
               disclosed: Collection[int] = ()) -> int | None:
    """The step ``verify`` would accept for ``code`` at ``now``, or None: the quick check alone.

    For a user with several apps: every app is tried with this first, and
    only when none takes the code is each asked why (``verify``), which
    searches further for a drifted clock.
    """
    current = step_at(now)
    fresh = [s for s in range(current - WINDOW, current + WINDOW + 1)
             if (last_step is None or s > last_step) and s not in disclosed
             and hmac.compare_digest(code_at_step(secret, s), code)]
    return max(fresh) if fresh else None


def verify(secret: str, code: str, now: float, last_step: int | None,
           disclosed: Collection[int] = (), *, search: bool = True) -> int:
    """The step to accept for ``code`` at ``now``, never one at or before ``last_step``.

    ``disclosed`` are future steps whose codes a refusal already named ("your
    clock looks N s ahead"): whoever typed one must not get in with it once
    its time comes, so they count as used. Accepts the current step ±WINDOW
    (the newest fresh match). Otherwise
    raises, saying why when it can be known: CodeAlreadyUsed (that very step
    was accepted: a replay), CodeExpired (an earlier step inside the window
    that was never accepted), ClockDrift (a step further away: the device
    clock, or an old code typed late), InvalidCode (no step near ``now``;
    without ``search``, none inside the window: nothing further is looked for).
    """
    current = step_at(now)
    window = range(current - WINDOW, current + WINDOW + 1)
    # Constant-time comparisons: the code is a secret until it is used.
    matched = [s for s in window if hmac.compare_digest(code_at_step(secret, s), code)]
    fresh = [s for s in matched if (last_step is None or s > last_step) and s not in disclosed]
    if fresh:
        return max(fresh)
    if matched:
        if last_step in matched or any(s in disclosed for s in matched):
            raise CodeAlreadyUsed()
        raise CodeExpired()
    if not search:
        raise InvalidCode()
    match = find_step(secret, code, now)
    if match is None:
        raise InvalidCode()
    if match.step == last_step or match.step in disclosed:
        raise CodeAlreadyUsed()
    raise ClockDrift(match.offset * PERIOD)
