"""Fixtures shared by the engine tests (tests/core) and the operations tests (tests/ops).

A fake clock, a data dir in tmp_path, and the engine on it. ``backend`` is the
store the engine runs on: here the portal's and the CLI's default;
tests/core/conftest.py overrides it with a fixture parametrized over every
backend, and ``open_svc`` and ``svc`` (defined here) then follow that override
for the tests under tests/core. tests/portal defines its own clock, data_dir
and svc (the portal's clock hook, a first-run data dir), which override these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import mfa_core

from .support import FakeClock

DEFAULT_BACKEND = "tinydb"  # what open_service, the portal and the CLI use


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def backend() -> str:
    return DEFAULT_BACKEND


@pytest.fixture
def open_svc(data_dir: Path, clock: FakeClock, backend: str) -> Callable[..., mfa_core.MFAService]:
    """``open_svc(**kw)``: another engine instance on the test's data dir and backend.

    Keywords go to ``mfa_core.open_service`` and replace the defaults (the
    test's clock, an empty environment, the backend); ``data_dir=`` opens
    somewhere else on the same backend.
    """
    def open_(data_dir: Path | str = data_dir, **kw) -> mfa_core.MFAService:
        options = {"clock": clock, "environ": {}, "backend": backend, **kw}
        return mfa_core.open_service(data_dir, **options)
    return open_


@pytest.fixture
def svc(data_dir: Path, clock: FakeClock, backend: str) -> mfa_core.MFAService:
    return mfa_core.open_service(data_dir, clock=clock, environ={}, backend=backend)
