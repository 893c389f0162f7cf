"""One way for the services (RADIUS; the HTTP API and PAM once they move here) to call the engine.

Each service only answers "yes" or "no" (and sometimes "wait"), never why:
the reason goes to the audit trail, which the engine writes. So the engine's
many refusals fold into a few :class:`Verdict` s:

- ``ACCEPTED``: the password or code is right (the code is now used up);
- ``REFUSED``: wrong, already used, expired, unknown user, no such factor,
  locked account;
- ``THROTTLED``: the user's (or the source's) throttle holds (``retry_after``);
  the API answers 429, RADIUS a plain Reject;
- ``NO_FACTOR``: the name has no such factor (unknown, or no two-step):
  counted under a keyed hash of the name (``count_no_factor``), the same
  throttle and the same store write as a wrong code of a real user, so
  neither the time nor a later "wait" tells that the name has none; past its
  throttle the verdict is ``THROTTLED`` (the API answers 429, RADIUS a Reject);
- ``UNAVAILABLE``: the store cannot be used (the caller fails closed: 503,
  or no RADIUS answer).

Only the TOTP and backup-code strategies exist here: passkeys and temporary
passes never work through a service.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import mfa_core
from mfa_core.audit import AuditEvent
from mfa_core.storage import IO_ERRORS
from mfa_core.throttle import NAME_PREFIX

_TOTP_SHAPE = re.compile(r"\d{6}")


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    THROTTLED = "throttled"
    NO_FACTOR = "no factor"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    retry_after: int = 0
    strategy: str | None = None
    two_factor_enabled: bool = False  # check_password: whether a second factor is ahead

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


SERVICE_STRATEGIES = ("totp", "backup_code")  # never "temporary_pass": it opens the portal only


def guess_strategy(code: str) -> str:
    """Six digits (spaces and dashes aside) are a TOTP code; anything else a backup code."""
    return "totp" if _TOTP_SHAPE.fullmatch(re.sub(r"[\s-]", "", code)) else "backup_code"


def check_second_factor(svc: Any, username: str, code: str, *, actor: str, source: str | None,
                        strategy: str | None = None) -> Result:
    """``svc.attempt_second_factor`` for a service: same window, replay rule, throttle, audit."""
    strategy = strategy or guess_strategy(code)
    if strategy not in SERVICE_STRATEGIES:  # a temporary pass (or a passkey) opens the portal only
        return Result(Verdict.REFUSED, strategy=strategy)
    try:
        svc.attempt_second_factor(username, code, strategy, source=source, actor=actor,
                                  diagnose=False)  # the caller never hears why: no drift search
    except mfa_core.StorageError:
        return Result(Verdict.UNAVAILABLE, strategy=strategy)
    except mfa_core.AccountLocked:
        return Result(Verdict.REFUSED, strategy=strategy)
    except mfa_core.TooManyAttempts as exc:
        return Result(Verdict.THROTTLED, int(getattr(exc, "retry_after", 0) or 0), strategy)
    except (mfa_core.NotEnabled, mfa_core.NoBackupCodes):
        try:
            wait = count_no_factor(svc, username, actor)
        except mfa_core.StorageError:
            return Result(Verdict.UNAVAILABLE, strategy=strategy)
        return Result(Verdict.THROTTLED if wait else Verdict.NO_FACTOR, wait, strategy)
    except (mfa_core.MFAError, TypeError, ValueError):
        return Result(Verdict.REFUSED, strategy=strategy)
    return Result(Verdict.ACCEPTED, strategy=strategy)


def check_password(svc: Any, username: str, password: str, *, source: str | None) -> Result:
    """``svc.attempt_password`` for a service (smart lockout, the portal's answers)."""
    try:
        found = svc.attempt_password(username, password, source=source)
    except mfa_core.StorageError:
        return Result(Verdict.UNAVAILABLE)
    except mfa_core.TooManyAttempts as exc:  # PasswordBlocked too
        return Result(Verdict.THROTTLED, int(getattr(exc, "retry_after", 0) or 0))
    except (mfa_core.MFAError, TypeError, ValueError):
        return Result(Verdict.REFUSED)
    return Result(Verdict.ACCEPTED, two_factor_enabled=bool(found.two_factor_enabled))


def name_key(pepper: bytes, username: str) -> str:
    """Where the throttle of a name without a second factor is kept (never the name itself)."""
    digest = hmac.new(pepper, NAME_PREFIX.encode() + username.encode("utf-8"), hashlib.sha256)
    return NAME_PREFIX + digest.hexdigest()[:32]


def count_no_factor(svc: Any, username: str, actor: str) -> int:
    """A name that has no such factor (unknown, or no two-step): the same throttle as a user's.

    Counted in the store under a keyed hash of the name, like a wrong code
    for a real user, so neither the answer nor a later "wait" (429) tells the
    caller the name has no second factor. Returns the seconds to wait (0: answer
    "not ok"). Raises StorageError.
    """
    try:
        known = svc.directory is not None and svc.directory.get(username) is not None
    except mfa_core.MFAError:
        known = False
    user, detail = (username, "no second factor") if known else (None, "unknown user")
    policy = svc.policy
    try:
        with svc.store.keyed_transaction(name_key(svc.keyring.pepper, username)) as txn:
            now = svc.clock()  # under the lock: see MFAService.attempt_password
            rec = txn.record
            failures, last = int(rec.get("failures", 0)), rec.get("last_failure_at")
            if policy.locks_out(failures):
                txn.log(AuditEvent(now, user, actor, "throttled", "refused", f"locked ({detail})").to_dict())
                return 0
            wait = policy.retry_after(failures, last, now)
            if wait:
                txn.log(AuditEvent(now, user, actor, "throttled", "refused",
                                   f"wait {wait} s ({detail})").to_dict())
                return wait
            rec["failures"], rec["last_failure_at"] = failures + 1, now
            txn.log(AuditEvent(now, user, actor, "second_factor_failed", "failure", detail).to_dict())
    except IO_ERRORS as exc:
        raise mfa_core.StorageError() from exc
    return 0
