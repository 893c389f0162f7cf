"""Fixtures for the company-directory (LDAP) tests: one real slapd for the whole run.

``slapd`` is session-scoped (tests/ldap_server.py): it skips when OpenLDAP is
not installed, and fails instead when ``MFA_PORTAL_REQUIRE_LDAP=1`` (CI).
Tests that change entries make their own users (``new_user``) so they never
depend on each other's order.
"""

from __future__ import annotations

import itertools
import os
import subprocess

import pytest

from .. import ldap_server
from ..ldap_server import SlapdServer

_names = itertools.count(1)


@pytest.fixture(scope="session")
def slapd():
    try:
        server = SlapdServer()
    except FileNotFoundError:
        if os.environ.get("MFA_PORTAL_REQUIRE_LDAP") == "1":
            pytest.fail(ldap_server.INSTALL_HINT)
        pytest.skip(ldap_server.INSTALL_HINT)
    try:
        server.start()
    except subprocess.SubprocessError as exc:
        server.close()
        output = getattr(exc, "output", b"") or b""
        pytest.fail(f"slapd did not start: {exc}\n{output.decode(errors='replace')}")
    yield server
    server.close()


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
