"""Fixtures for the Active Directory tests: one real Samba AD DC for the whole run (tests/ad_server.py).

It skips when Samba is not installed, not root or its fixed ports are taken,
and fails instead when ``MFA_PORTAL_REQUIRE_AD=1``. The clock starts at the
real time (rounded to a TOTP step): Samba stamps pwdLastSet and lockouts with
it, and a test clock years before would see every password as changed later.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time

import pytest

from .. import ad_server
from ..ldap_server import engines_on
from ..support import FakeClock, running

_names = itertools.count(1)


@pytest.fixture(scope="package")
def samba_ad():
    """One domain for tests/ad, stopped when they are done (not at the end of the whole run)."""
    with running(ad_server.SambaDC, require="MFA_PORTAL_REQUIRE_AD", what="Samba AD DC",
                 close="close", missing=(ad_server.Unavailable,),
                 broken=(subprocess.SubprocessError, OSError)) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=int(time.time()) // 30 * 30 + 10)


@pytest.fixture
def ad_env(samba_ad) -> dict[str, str]:
    return ad_server.ad_environ(samba_ad)


@pytest.fixture
def new_ad_user(samba_ad):
    """Make a fresh domain user: new_ad_user(password) -> (sAMAccountName, dn)."""
    def make(password: str = "Fresh-Account-1") -> tuple[str, str]:
        name = f"u{next(_names)}x{os.getpid() % 100000}"
        return name, samba_ad.add_user(name, password)
    return make


@pytest.fixture
def open_ad_svc(data_dir, clock, ad_env):
    """open_ad_svc(**env overrides) -> the engine on the Samba domain (no secrets file read)."""
    with engines_on(data_dir, clock, ad_env) as make:
        yield make


@pytest.fixture
def ad_svc(open_ad_svc):
    return open_ad_svc()
