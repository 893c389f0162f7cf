"""What a passed second factor answers: shared by the service's code checks and its passkey half.

Its own module so that ``passkey_service`` (mixed into ``MFAService``)
need not import the service that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SecondFactorResult:
    strategy: str
    backup_codes_remaining: int
    pass_expires_at: float | None = None  # a temporary pass: the session ends then
