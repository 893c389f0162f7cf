"""Shared fixtures for the engine tests: a fake clock, a service on a real data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

import mfa_core

from ..support import T0, FakeClock, code_for, enable_totp  # noqa: F401  (re-exported)


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
