"""The password check's throttle state ("smart lockout"): per user and source, per account, per source.

Pure functions over the dicts the records hold (see ``records``) and the
``PasswordPolicy``; the service runs them inside the right transactions:

- a user's ``password`` part: failures per source, consecutive failures from
  unfamiliar sources, and the sources the user signed in from (familiar);
- a source's own record: its recent failures across users (spraying, with a
  slot taken before each check so parallel requests cannot overrun it), and
  failures per name that is not a user (so unknown names are throttled
  exactly like known ones and answer the same).

Sources and names are stored only as keyed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from typing import Any

from .errors import MFAError, PasswordBlocked, TooManyAttempts
from .throttle import PasswordPolicy

NAMES_MAX = 100  # unknown names remembered per source
UNKNOWN_SOURCE = "unknown"


def key(pepper: bytes, kind: str, value: str | None) -> str:
    """The opaque key a source address or a name is stored under."""
    text = f"{kind}:{value if value is not None else UNKNOWN_SOURCE}"
    return hmac.new(pepper, text.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# -- a user's state (rec["password"]) ---------------------------------------------

def is_familiar(state: dict[str, Any], source: str, now: float, policy: PasswordPolicy) -> bool:
    at = (state.get("familiar") or {}).get(source)
    return at is not None and now - at < policy.familiar_for


def blocked(state: dict[str, Any], policy: PasswordPolicy, now: float | None = None) -> bool:
    """Unfamiliar sources are refused (the account limit was reached, the block not over)."""
    return block_left(state, policy, now) > 0


def block_left(state: dict[str, Any], policy: PasswordPolicy, now: float | None = None) -> int:
    """Seconds the password block from unfamiliar sources still lasts (0: none)."""
    if state.get("unfamiliar", 0) < policy.account_limit:
        return 0
    at = state.get("blocked_at")
    if at is None or now is None:  # reached before blocks ended by themselves: from now on
        return policy.block_for
    return max(0, math.ceil(at + policy.block_for - now))


def gate(state: dict[str, Any], source: str, familiar: bool, now: float,
         policy: PasswordPolicy, second_factor: bool = False,
         with_code: bool = False) -> MFAError | None:
    """Why this source may not try this user's password now, or None.

    ``second_factor``: the user has one; ``with_code``: a code came with the password (checked
    together, one answer for both), which the block lets through."""
    if not familiar and state.get("unfamiliar", 0) >= policy.account_limit:
        if state.get("blocked_at") is None:
            state["blocked_at"] = now
        left = block_left(state, policy, now)
        if left and not with_code:
            return PasswordBlocked(left, second_factor)
        if left:
            return _wait(state.get("sources", {}).get(source), now, policy)
        # The block is over: a few more failures block again (not a fresh hundred).
        state["unfamiliar"] = policy.account_limit - policy.free_failures
        state.pop("blocked_at", None)
    return _wait(state.get("sources", {}).get(source), now, policy)


def _wait(counter: dict[str, Any] | None, now: float, policy: PasswordPolicy) -> MFAError | None:
    if not counter:
        return None
    wait = policy.retry_after(counter.get("failures", 0), counter.get("last"), now)
    return TooManyAttempts(wait) if wait else None


def _count(counters: dict[str, Any], key_: str, now: float, keep: int) -> None:
    counter = counters.setdefault(key_, {"failures": 0, "last": None})
    counter["failures"] += 1
    counter["last"] = now
    if len(counters) > keep:  # the oldest go first
        for old in sorted(counters, key=lambda k: counters[k].get("last") or 0)[:len(counters) - keep]:
            del counters[old]


def record_failure(state: dict[str, Any], source: str, familiar: bool, now: float,
                   policy: PasswordPolicy) -> bool:
    """Count a wrong password; True when this failure reached the account limit."""
    _count(state.setdefault("sources", {}), source, now, policy.sources_max)
    if familiar:
        return False
    state["unfamiliar"] = state.get("unfamiliar", 0) + 1
    if state["unfamiliar"] == policy.account_limit:
        state["blocked_at"] = now
        return True
    return False


def record_success(state: dict[str, Any], source: str) -> None:
    """A right password: this source's failures go, the run of unfamiliar failures ends."""
    state.get("sources", {}).pop(source, None)
    state["unfamiliar"] = 0
    state.pop("blocked_at", None)


def remember_source(state: dict[str, Any], source: str, now: float, policy: PasswordPolicy) -> None:
    """The user signed in from ``source``: it is familiar from now on (for a while)."""
    familiar = state.setdefault("familiar", {})
    familiar[source] = now
    for old in [k for k, at in familiar.items() if now - at >= policy.familiar_for]:
        del familiar[old]
    if len(familiar) > policy.familiar_max:
        for old in sorted(familiar, key=familiar.get)[:len(familiar) - policy.familiar_max]:
            del familiar[old]
    record_success(state, source)


# -- a source's own record ------------------------------------------------------------

def _who(entry: list[Any]) -> str:
    """Whose failure a spray entry is ([slot, time, who]; older ones, [slot, time], each their own)."""
    return entry[2] if len(entry) > 2 else entry[0]


def spray_gate(rec: dict[str, Any], now: float, policy: PasswordPolicy,
               who: str | None = None) -> MFAError | None:
    """Too many users failed from this source lately (spraying): how long to wait.

    Counted are the users (``who``: the keyed name) whose failures from here were not
    followed by a success from here (issue 20, F12): people behind one office NAT who
    mistype and then get in count nothing, one person's repeated typos count once. A user
    already counted is not refused by it (their own per-source waits hold them); a new
    one is once ``spray_limit`` users are counted, or ``spray_failures`` failures.
    """
    recent = [e for e in rec.get("failures", []) if now - e[1] < policy.spray_window]
    rec["failures"] = recent
    users = {_who(e) for e in recent}
    if len(recent) < policy.spray_failures and (who in users or len(users) < policy.spray_limit):
        return None
    wait = int(min(e[1] for e in recent) + policy.spray_window - now) + 1
    return TooManyAttempts(max(1, wait))


def source_record_expired(key_: str, rec: dict[str, Any], now: float, policy: PasswordPolicy) -> bool:
    """Whether a source's record (``key``'s kind) holds nothing a check would still use: no
    failure within the spray window and no unknown-name counts (those keep counting up however
    old, as a user's own counts do). Such a record answers exactly as no record does: each
    sign-in from a new address leaves one behind (its slot given back)."""
    if len(key_) != 32 or any(ch not in "0123456789abcdef" for ch in key_):
        return False  # not a source's key (they are 32 hex digits, see key())
    if set(rec) - {"username", "failures", "names"} or rec.get("names"):
        return False
    failures = rec.get("failures") or []
    return isinstance(failures, list) and all(
        isinstance(e, list) and len(e) in (2, 3) and isinstance(e[1], (int, float))
        and now - e[1] >= policy.spray_window for e in failures)


def take_slot(rec: dict[str, Any], now: float, who: str | None = None) -> str:
    """Count a check as a failure before it runs (parallel checks cannot overrun the limit)."""
    slot = secrets.token_hex(4)
    rec.setdefault("failures", []).append([slot, now] + ([who] if who else []))
    return slot


def give_back_slot(rec: dict[str, Any], slot: str | None, who: str | None = None) -> None:
    """The check succeeded: its slot was not a failure after all, nor were ``who``'s earlier
    failures from here (typos of someone who then got in)."""
    rec["failures"] = [e for e in rec.get("failures", [])
                       if e[0] != slot and (who is None or len(e) < 3 or e[2] != who)]


def unknown_name_gate(rec: dict[str, Any], name: str, now: float,
                      policy: PasswordPolicy) -> MFAError | None:
    return _wait(rec.get("names", {}).get(name), now, policy)


def record_unknown_name(rec: dict[str, Any], name: str, now: float, policy: PasswordPolicy) -> None:
    _count(rec.setdefault("names", {}), name, now, NAMES_MAX)
