"""Fixtures for the engine tests: every test that uses ``svc`` or ``open_svc`` runs on every backend.

clock, data_dir, svc and open_svc come from tests/conftest.py; ``backend``
here overrides its default there, so ``svc`` and ``open_svc`` (and whatever
uses them) run once per store in ``mfa_core.storage.BACKENDS`` and once on
PostgreSQL (``postgres``: a throwaway cluster, emptied for each test).
``tinydb_svc`` is for the tests that read or damage the sharded TinyDB files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mfa_core
from mfa_core.storage import BACKENDS, DATABASE_BACKEND

from ..support import T0, FakeClock, code_for, enable_totp  # noqa: F401  (re-exported)

# Where each backend keeps its user records (glob under the data dir).
# (postgres keeps none there: its records are in the database.)
RECORD_FILES = {"tinydb": "users/**/*.json", "tinydb-single-file": "mfa.json", "sqlite": "mfa.sqlite3",
                DATABASE_BACKEND: "no-such-file"}
# Every embedded backend, and PostgreSQL (a throwaway cluster; skipped without it, see tests/pg.py).
ALL_BACKENDS = sorted(BACKENDS) + [DATABASE_BACKEND]


def database_dump(*tables: str) -> bytes:
    """Every document in the test's PostgreSQL store (the ``postgres_url`` fixture's), one a line."""
    import psycopg
    url = os.environ["MFA_PORTAL_TEST_DATABASE_URL"]
    lines = []
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables or ("users", "keyed", "audit", "damaged_records"):
            lines += [text for (text,) in conn.execute(f"SELECT doc::text FROM {table}")]
    return "\n".join(lines).encode()


def data_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in Path(data_dir).rglob("*") if p.is_file())


def record_files(data_dir: Path, backend: str) -> list[Path]:
    """The files ``backend`` keeps its user records in."""
    return sorted(Path(data_dir).glob(RECORD_FILES[backend]))


@pytest.fixture(params=ALL_BACKENDS, ids=ALL_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def tinydb_svc(data_dir: Path, clock: FakeClock) -> mfa_core.MFAService:
    """The engine on the sharded TinyDB store, for tests about its files (one per user)."""
    return mfa_core.open_service(data_dir, clock=clock, environ={}, backend="tinydb")
