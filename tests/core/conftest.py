"""Shared fixtures for the engine tests: a fake clock, a service on a real data dir."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

import mfa_core

# A step boundary + 10 s, so that "now" sits well inside a 30-second step.
T0 = 56_666_667 * 30 + 10  # 1_700_000_020


class FakeClock:
    """A clock the test moves by hand; the service calls it for "now"."""

    def __init__(self, start: float = T0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def code_for(secret: str, timestamp: float) -> str:
    """What an authenticator app shows at ``timestamp`` (pyotp, independent of the engine)."""
    return pyotp.TOTP(secret).at(timestamp)


def enable_totp(svc: mfa_core.MFAService, clock: FakeClock, username: str) -> str:
    """Enroll and verify ``username``; returns the secret. Leaves the clock one step on."""
    secret = svc.create_totp(username).secret
    svc.verify_totp(username, code_for(secret, clock()))
    clock.advance(30)
    return secret


def data_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in Path(data_dir).rglob("*") if p.is_file())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def svc(data_dir: Path, clock: FakeClock) -> mfa_core.MFAService:
    return mfa_core.open_service(data_dir, clock=clock, environ={})
