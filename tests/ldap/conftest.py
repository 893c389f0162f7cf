"""Fixtures for the company-directory (LDAP) tests: one real slapd for the whole run.

``slapd`` is session-scoped (in tests/conftest.py, shared with the browser
journeys): it skips when OpenLDAP is not installed, and fails instead when
``MFA_PORTAL_REQUIRE_LDAP=1`` (CI).
Tests that change entries make their own users (``new_user``) so they never
depend on each other's order.
"""

from __future__ import annotations

import itertools
import os

import pytest

from ..ldap_server import engines_on, ldap_environ  # noqa: F401 (imported from here by tests and bench)

_names = itertools.count(1)


@pytest.fixture
def running_slapd(slapd):
    """The session's slapd, started again if a test stopped it."""
    if slapd.proc is None:
        slapd.start()
    yield slapd
    if slapd.proc is None:
        slapd.start()


@pytest.fixture
def new_user(running_slapd):
    """Make a fresh directory user: new_user(password=..., ad=None) -> (uid, dn)."""
    def make(password: str = "fresh-directory-1", **kwargs) -> tuple[str, str]:
        uid = f"user{next(_names)}x{os.getpid()}"
        return uid, running_slapd.add_user(uid, password, **kwargs)
    return make


@pytest.fixture
def ldap_env(running_slapd) -> dict[str, str]:
    return ldap_environ(running_slapd)


@pytest.fixture
def open_ldap_svc(data_dir, clock, ldap_env):
    """open_ldap_svc(**env overrides) -> the engine on the test directory (no secrets file read)."""
    with engines_on(data_dir, clock, ldap_env) as make:
        yield make


@pytest.fixture
def ldap_svc(open_ldap_svc):
    return open_ldap_svc()
