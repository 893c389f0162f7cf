"""Fixtures shared by the engine tests (tests/core) and the operations tests (tests/ops).

A fake clock, a data dir in tmp_path, and the engine on it. ``backend`` is the
store the engine runs on: here the portal's and the CLI's default;
tests/core/conftest.py overrides it with a fixture parametrized over every
backend, and ``open_svc`` and ``svc`` (defined here) then follow that override
for the tests under tests/core. tests/portal defines its own clock, data_dir
and svc (the portal's clock hook, a first-run data dir), which override these.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import pytest

import mfa_core

from . import ldap_server, pg
from .support import FakeClock, running

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


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster for the whole run (tests/pg.py), or a skip with the apt hint."""
    with running(pg.PostgresCluster, require="MFA_PORTAL_REQUIRE_POSTGRES", what="PostgreSQL",
                 hint=pg.INSTALL_HINT) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def slapd():
    """One real OpenLDAP for the whole run (tests/ldap_server.py), or a skip with the apt hint."""
    with running(ldap_server.SlapdServer, require="MFA_PORTAL_REQUIRE_LDAP", what="slapd",
                 hint=ldap_server.INSTALL_HINT, close="close") as server:
        yield server


@pytest.fixture
def postgres_url(postgres_cluster, monkeypatch) -> Iterator[str]:
    """The cluster's database, emptied for this test; every store opened on it is closed after."""
    from mfa_core.storage.postgres import PostgresStore
    postgres_cluster.truncate()
    opened: list[PostgresStore] = []
    init = PostgresStore.__init__

    def tracked(self, *args, **kwargs):
        opened.append(self)
        init(self, *args, **kwargs)
    monkeypatch.setattr(PostgresStore, "__init__", tracked)
    # For worker processes that open the engine themselves (tests/core/_workers.py).
    monkeypatch.setenv("MFA_PORTAL_TEST_DATABASE_URL", postgres_cluster.url)
    yield postgres_cluster.url
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()


@pytest.fixture
def database_url(backend: str, request) -> str | None:
    """The database the ``postgres`` backend runs on; None for the embedded backends."""
    return request.getfixturevalue("postgres_url") if backend == "postgres" else None


@pytest.fixture
def open_svc(data_dir: Path, clock: FakeClock, backend: str,
             database_url: str | None) -> Callable[..., mfa_core.MFAService]:
    """``open_svc(**kw)``: another engine instance on the test's data dir and backend.

    Keywords go to ``mfa_core.open_service`` and replace the defaults (the
    test's clock, an empty environment, the backend); ``data_dir=`` opens
    somewhere else on the same backend.
    """
    def open_(data_dir: Path | str = data_dir, **kw) -> mfa_core.MFAService:
        options = {"clock": clock, "environ": {}, "backend": backend, **kw}
        if database_url:
            options.setdefault("database_url", database_url)
        return mfa_core.open_service(data_dir, **options)
    return open_


@pytest.fixture
def svc(data_dir: Path, clock: FakeClock, backend: str, database_url: str | None) -> mfa_core.MFAService:
    return mfa_core.open_service(data_dir, clock=clock, environ={}, backend=backend,
                                 database_url=database_url)
