"""Two portal servers (``streamlit run app.py``) on one PostgreSQL database: what one does, the other knows.

A user enrolled through the engine (a third replica) signs in on either; a
code accepted by one is refused as a replay by the other; the throttle, the
API clients, the one-time session tickets and the sessions themselves are
shared. Keys come from the environment, the same on every replica; nothing
lands in the replicas' data dirs.
"""

from __future__ import annotations

import base64
import secrets

import httpx
import psycopg
import pyotp
import pytest
from cryptography.fernet import Fernet

import mfa_core
from mfa_core import clients as api_clients

from .conftest import fresh_code, start_portal, stop

PASSWORD = "rita-pass-12"


@pytest.fixture(scope="module")
def replicas(postgres_cluster, tmp_path_factory):
    """(engine, key, url of server A, url of server B) on a database of this module's own."""
    with psycopg.connect(postgres_cluster.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS replicas")
        conn.execute("CREATE DATABASE replicas")
    url = postgres_cluster.url.rsplit("/", 1)[0] + "/replicas"
    env = {"MFA_PORTAL_DATABASE_URL": url, "MFA_PORTAL_DEMO": "0",
           "MFA_PORTAL_FERNET_KEYS": Fernet.generate_key().decode(),
           "MFA_PORTAL_PEPPER": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}
    root = tmp_path_factory.mktemp("replicas")
    svc = mfa_core.open_service(root / "engine", environ=env)
    svc.directory.add("rita", PASSWORD)
    key = api_clients.open_registry(root / "engine", svc).add("tests", rate=100_000, actor="tests")
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(start_portal(root / name, root / f"server-{name}.log", **env))
        yield svc, key, servers[0][0], servers[1][0]
    finally:
        for _, proc in servers:
            stop(proc)
        svc.store.close()
    for name in ("a", "b"):
        log = (root / f"server-{name}.log").read_text("utf-8", errors="replace")
        assert "Traceback" not in log, log[-3000:]
        # Keys from the environment, state in the database: the data dir stays empty.
        assert not (root / name).exists() or not any((root / name).iterdir())


def verify(base: str, key: str, username: str, code: str) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/verify", json={"username": username, "code": code},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_code_accepted_by_one_replica_is_a_replay_on_the_other(replicas):
    svc, key, a, b = replicas
    secret = svc.create_totp("rita").secret
    svc.verify_totp("rita", pyotp.TOTP(secret).at(svc.clock() - 30))
    code = fresh_code(secret)
    assert verify(a, key, "rita", code).json() == {"ok": True, "strategy": "totp"}
    assert verify(b, key, "rita", code).json() == {"ok": False}


def test_the_throttle_is_shared(replicas):
    svc, key, a, b = replicas
    svc.directory.add("tom", "tom-pass-123")
    secret = svc.create_totp("tom").secret
    svc.verify_totp("tom", pyotp.TOTP(secret).at(svc.clock() - 30))
    free = svc.policy.free_failures
    for n in range(free):  # alternating replicas
        assert verify((a, b)[n % 2], key, "tom", "000000").json() == {"ok": False}
    for base in (a, b):
        answer = verify(base, key, "tom", "000000")
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    # Counted once, in the API client's own bucket (issue 20, F7): the portal's stays clear.
    assert (svc.status("tom").channel_failures, svc.status("tom").failed_attempts) == (free, 0)


def test_a_client_added_or_removed_anywhere_counts_everywhere(replicas):
    svc, _, a, b = replicas
    registry = api_clients.open_registry("unused", svc)
    key = registry.add("vpn", rate=600, actor="tests")
    for base in (a, b):
        assert verify(base, key, "nobody-here", "000000").status_code == 200
    registry.remove("vpn", actor="tests")
    for base in (a, b):
        assert verify(base, key, "nobody-here", "000000").status_code == 401


def test_a_session_started_on_one_replica_is_redeemed_once_and_ends_everywhere(replicas):
    svc, _, a, b = replicas
    token = svc.sessions.start("rita", second_factor_passed=True)
    ticket = svc.sessions.ticket(token)
    answer = httpx.post(f"{b}/auth/session", json={"ticket": ticket}, headers={"Origin": b}, timeout=30)
    assert answer.status_code == 200 and token in answer.headers["set-cookie"]
    again = httpx.post(f"{a}/auth/session", json={"ticket": ticket}, headers={"Origin": a}, timeout=30)
    assert again.status_code == 403  # one-time, on every replica
    svc.sessions.end(token)
    assert svc.sessions.find(token) is None
