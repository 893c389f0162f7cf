"""How long a user must wait after failed attempts, and when they are locked out."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    """The first ``free_failures`` mistakes cost nothing; then the wait doubles.

    After n failures (n >= free_failures) the next attempt waits
    ``base_delay * 2**(n - free_failures)`` seconds, at most ``max_delay``.
    ``lockout_after`` consecutive failures stop all attempts until the
    helpdesk unlocks (NIST SP 800-63B: at most 100; we say at least 10 so a
    person who mistypes never needs the helpdesk).
    """

    free_failures: int = 5
    base_delay: int = 30
    max_delay: int = 3600
    lockout_after: int = 20

    def __post_init__(self) -> None:
        if not 10 <= self.lockout_after <= 100:
            raise ValueError("lockout_after must be between 10 and 100")
        if not 1 <= self.free_failures < self.lockout_after:
            raise ValueError("free_failures must be at least 1 and below lockout_after")

    def delay(self, failures: int) -> int:
        """Seconds to wait after the latest of ``failures`` consecutive failures."""
        if failures < self.free_failures:
            return 0
        return min(self.base_delay * 2 ** min(failures - self.free_failures, 30), self.max_delay)

    def retry_after(self, failures: int, last_failure_at: float | None, now: float) -> int:
        """Whole seconds until the next attempt is allowed (0: now)."""
        if not failures or last_failure_at is None:
            return 0
        remaining = last_failure_at + self.delay(failures) - now
        return max(0, math.ceil(remaining))

    def locks_out(self, failures: int) -> bool:
        return failures >= self.lockout_after
