"""Two portal replicas on one PostgreSQL database, in a browser: sign in on one, carry on at the other,
sign out at the other and the first one is signed out too.

The session cookie belongs to the host, not the port, so one browser holds
one session for both servers (as behind a load balancer); each server knows
it only through the database. The user is enrolled through the engine (a
third replica).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from dataclasses import dataclass

import psycopg
import pytest
from browser_support import (ARTIFACTS, PortalServer, code_at_step, current_step, enter_code, expect_challenge,
                             fresh_code, goto, heading, main_text, sign_in, sign_in_form_visible,
                             sign_out)
from cryptography.fernet import Fernet

import mfa_core

PASSWORD = "rhea-browser-pw"


@dataclass
class Replica:
    """What the suite's ``new_page`` fixture needs of ``portal``: the server (its log is checked)."""

    server: PortalServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def database(postgres_cluster, tmp_path_factory):
    """(engine, environment of both servers, server B), on a database of this module's own."""
    with psycopg.connect(postgres_cluster.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS browser_replicas")
        conn.execute("CREATE DATABASE browser_replicas")
    env = {"MFA_PORTAL_DATABASE_URL": postgres_cluster.url.rsplit("/", 1)[0] + "/browser_replicas",
           "MFA_PORTAL_DEMO": "0",
           "MFA_PORTAL_FERNET_KEYS": Fernet.generate_key().decode(),
           "MFA_PORTAL_PEPPER": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}
    root = tmp_path_factory.mktemp("browser-replicas")
    svc = mfa_core.open_service(root / "engine", environ=env)
    svc.directory.add("rhea", PASSWORD, name="Rhea Browser")
    yield svc, env, root
    svc.store.close()


@contextlib.contextmanager
def serving(database, name: str):
    """One replica: ``streamlit run app.py`` on the shared database, a data dir of its own."""
    _, env, root = database
    server = PortalServer(data_dir=root / name, log_path=ARTIFACTS / f"streamlit-replica-{name}.log",
                          env_extra=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def portal(browser, database):
    """Replica A (the suite's ``portal``: its log is checked for tracebacks after each test)."""
    with serving(database, "a") as server:
        yield Replica(server)


@pytest.fixture(scope="module")
def replica_b(portal, database):
    with serving(database, "b") as server:
        yield server
    assert not server.tracebacks(), server.tracebacks()


def test_sign_in_on_one_replica_continue_on_the_other_and_sign_out_there_ends_both(
        portal, replica_b, database, page):
    svc = database[0]
    secret = svc.create_totp("rhea").secret
    step = current_step() - 1
    svc.verify_totp("rhea", code_at_step(secret, step))

    sign_in(page, portal.url, "rhea", PASSWORD)
    expect_challenge(page)
    _, code = fresh_code(secret, step)
    enter_code(page, code)
    heading(page, "Welcome, Rhea Browser").wait_for()

    goto(page, replica_b.url)  # the same browser, the other server: no password, no code
    heading(page, "Welcome, Rhea Browser").wait_for()
    assert not sign_in_form_visible(page)
    assert len(svc.sessions.of("rhea")) == 1

    sign_out(page)  # on replica B
    assert svc.sessions.of("rhea") == []
    goto(page, portal.url)  # replica A no longer knows the session either
    page.get_by_label("Username", exact=True).wait_for()
    assert "Welcome" not in main_text(page)
