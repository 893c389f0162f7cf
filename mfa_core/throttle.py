"""How long a user must wait after failed attempts, and when they are locked out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class _Backoff:
    """The growing wait both policies share (``free_failures``, ``base_delay``, ``max_delay``)."""

    free_failures: int
    base_delay: int
    max_delay: int

    def delay(self, failures: int) -> int:
        """Seconds to wait after the latest of ``failures`` consecutive failures."""
        if failures < self.free_failures:
            return 0
        return min(self.base_delay * 2 ** min(failures - self.free_failures, 30), self.max_delay)

    def retry_after(self, failures: int, last_failure_at: float | None, now: float) -> int:
        """Whole seconds until the next attempt is allowed (0: now)."""
        if not failures or last_failure_at is None:
            return 0
        delay = self.delay(failures)
        if not delay:  # a free failure never makes anyone wait, even on a clock behind the
            return 0   # one that recorded it (another replica's)
        remaining = last_failure_at + delay - now
        return max(0, math.ceil(remaining))


@dataclass(frozen=True)
class ThrottlePolicy(_Backoff):
    """The first ``free_failures`` mistakes cost nothing; then the wait doubles.

    After n failures (n >= free_failures) the next attempt waits
    ``base_delay * 2**(n - free_failures)`` seconds, at most ``max_delay``.
    ``lockout_after`` consecutive failures stop all attempts until the
    helpdesk unlocks (NIST SP 800-63B: at most 100; we say at least 10 so a
    person who mistypes never needs the helpdesk).

    Counted per channel (issue 20, F7: whoever can send codes somewhere must
    not keep the owner out everywhere):

    - the portal's own bucket: the second factor after a right password,
      reverification, enrollment, passkeys (only someone with the password
      or a signed-in session reaches it);
    - one bucket per calling service (an API client: the operator defines
      them, an attacker cannot make more) and one for the portal's "second
      factor first" step (a blocked password, see ``PasswordPolicy``): each
      has the waits above and its own lock after ``lockout_after``; together
      they stop at ``channels_limit`` consecutive failures.

    So the consecutive failures on an account stay at most
    ``lockout_after + channels_limit`` (20 + 80 = 100 by default: NIST's cap)
    however many clients there are, and no channel's failures ever make the
    portal's bucket wait or lock. ``channels_limit`` None: ``100 -
    lockout_after``, at least 10.
    """

    free_failures: int = 5
    base_delay: int = 30
    max_delay: int = 3600
    lockout_after: int = 20
    channels_limit: int | None = None

    def __post_init__(self) -> None:
        if not 10 <= self.lockout_after <= 100:
            raise ValueError("lockout_after must be between 10 and 100")
        if not 1 <= self.free_failures < self.lockout_after:
            raise ValueError("free_failures must be at least 1 and below lockout_after")
        if self.channels_limit is None:
            object.__setattr__(self, "channels_limit", max(10, 100 - self.lockout_after))
        elif not 1 <= self.channels_limit <= 100:
            raise ValueError("channels_limit must be between 1 and 100")

    def locks_out(self, failures: int) -> bool:
        return failures >= self.lockout_after

    def channels_spent(self, failures: int) -> bool:
        """The other channels together failed ``failures`` times in a row: they stop."""
        return failures >= self.channels_limit


@dataclass(frozen=True)
class PasswordPolicy(_Backoff):
    """Password guessing is stopped without locking the owner out ("smart lockout").

    NIST SP 800-63B §5.2.2 (rev 4 §3.2.2) asks for at most 100 consecutive
    failures per account; Microsoft's smart lockout shows how to get there
    without handing anyone who knows a username a way to lock its owner out:

    - Per user and source (client address): the first ``free_failures`` cost
      nothing, then the wait doubles from ``base_delay`` to ``max_delay``.
    - Across every unfamiliar source together, ``account_limit`` consecutive
      failures block the password alone from unfamiliar sources (issue 20,
      F8: never for good, or anyone who knows the name could keep a new
      starter out): for ``block_for`` seconds, after which ``free_failures``
      more failures block it again; a success from a familiar place or a
      helpdesk unlock ends it. Meanwhile a user with a second factor signs in
      from a new place by giving the code with the password: the password is
      checked only with it, and a wrong code answers like a wrong password
      (no oracle for a guesser without the code). A source is familiar to a user
      for ``familiar_for`` seconds after they signed in from it (the most
      recent ``familiar_max`` are kept); familiar sources are never blocked.
    - One source may fail for ``spray_limit`` users within ``spray_window``
      seconds (password spraying) before it must wait, except for users it
      is familiar to and users it already failed for (their own waits hold
      them); a user's failures from a source stop counting once they
      succeed from it (colleagues behind one NAT who mistype and then get in
      block nobody). ``spray_failures`` failures in the window stop it too.

    Password failures never count toward the second-factor lockout.
    """

    free_failures: int = 5
    base_delay: int = 30
    max_delay: int = 3600
    account_limit: int = 100
    spray_limit: int = 30
    spray_window: int = 3600
    spray_failures: int = 60
    block_for: int = 86400
    familiar_for: int = 90 * 86400
    familiar_max: int = 20
    sources_max: int = 50  # per user: older sources' counts are dropped (the account limit still holds)

    def __post_init__(self) -> None:
        if not 10 <= self.account_limit <= 100:
            raise ValueError("account_limit must be between 10 and 100")
        if not 1 <= self.free_failures < self.account_limit:
            raise ValueError("free_failures must be at least 1 and below account_limit")
        if self.spray_limit < self.free_failures or self.spray_window <= 0:
            raise ValueError("spray_limit must be at least free_failures, spray_window positive")
        if self.block_for <= 0:
            raise ValueError("block_for must be positive")
        if self.spray_failures < self.spray_limit:
            raise ValueError("spray_failures must be at least spray_limit")


# The throttle of a name the verification API was asked about that has no such factor (an
# unknown or not enrolled name: ``mfa_services.api._no_factor``), kept under ``NAME_PREFIX`` + a keyed
# hash of the name: ``{"username": key, "failures": n, "last_failure_at": t}``.
NAME_PREFIX = "api-name:"
NAME_RECORD_TTL = 86400  # seconds after its last failure that such a record is forgotten


def name_record_expired(key: str, rec: dict[str, Any], now: float, policy: ThrottlePolicy) -> bool:
    """Whether a name's API throttle record holds nothing a check still uses (it may be swept).

    That is: not locked out, no wait left, and no failure for ``NAME_RECORD_TTL``
    seconds. Every made-up name sent to the API leaves one; without this they
    stayed for good. A locked one stays (as a user's lock does), and so does
    anything else under the prefix that is not such a record.
    """
    if not key.startswith(NAME_PREFIX) or set(rec) - {"username", "failures", "last_failure_at"}:
        return False
    failures, last = rec.get("failures", 0), rec.get("last_failure_at")
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        return False
    if last is None:
        return failures == 0
    if isinstance(last, bool) or not isinstance(last, (int, float)) or policy.locks_out(failures):
        return False
    return now - last >= NAME_RECORD_TTL and policy.retry_after(failures, last, now) == 0
