"""RADIUS on PostgreSQL: two server replicas on one database, and a database that goes away.

A cluster of this module's own (tests/pg.py), since the last test stops it.
The challenge's State lives in the store, so the code may reach the other
replica; a code accepted by one replica is a replay on the other. With the
database stopped, no request is ever accepted (no answer, or a Reject).
"""

from __future__ import annotations

import base64
import secrets
import time

import pyotp
import pytest
from cryptography.fernet import Fernet

import mfa_core
from mfa_core import radius_clients

from .. import pg
from ..support import running
from . import test_radius as base
from .test_radius import PASSWORD, Peer, need_radclient, request, start_server, stop

cheap_passwords = base.cheap_passwords  # test_radius's fixture, one of this module's own

pyrad = pytest.importorskip("pyrad")
from pyrad import packet  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with running(pg.PostgresCluster, require="MFA_PORTAL_REQUIRE_POSTGRES", what="PostgreSQL",
                 hint=pg.INSTALL_HINT) as found:
        yield found


class Replica:
    def __init__(self, port: int, log_path) -> None:
        self.port, self.log_path = port, log_path


@pytest.fixture(scope="module")
def replicas(cluster, tmp_path_factory, cheap_passwords):
    need_radclient()
    env = {"MFA_PORTAL_DATABASE_URL": cluster.url, "MFA_PORTAL_DEMO": "0",
           "MFA_PORTAL_FERNET_KEYS": Fernet.generate_key().decode(),
           "MFA_PORTAL_PEPPER": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}
    root = tmp_path_factory.mktemp("radius-pg")
    svc = mfa_core.open_service(root / "engine", environ=env)
    registry = radius_clients.open_radius_registry(svc)
    secret = registry.add("vpn", ["127.0.0.1"], "challenge", actor="tests")
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(start_server(root / name, root / f"radius-{name}.log", **env))
        yield svc, secret, [Replica(port, root / f"radius-{name}.log")
                            for (port, _), name in zip(servers, "ab")]
    finally:
        for _, proc in servers:
            stop(proc)
        svc.store.close()
    for name in ("a", "b"):
        log = (root / f"radius-{name}.log").read_text("utf-8", errors="replace")
        assert "Traceback" not in log, log[-3000:]


def enroll(svc: mfa_core.MFAService, name: str) -> str:
    svc.directory.add(name, PASSWORD)
    secret = svc.create_totp(name).secret
    svc.verify_totp(name, pyotp.TOTP(secret).at(time.time() - 30))
    return secret


def nas(replica: Replica) -> Peer:
    return Peer(replica.port)


def test_the_challenge_is_answered_on_another_replica_and_a_code_counts_once(replicas):
    svc, secret, (a, b) = replicas
    totp = enroll(svc, "rita")
    to_a, to_b = nas(a), nas(b)
    try:
        challenge = to_a.ask(request(secret, "rita", PASSWORD))
        assert challenge.code == packet.AccessChallenge
        code = pyotp.TOTP(totp).now()
        assert to_b.ask(request(secret, "rita", code, state=challenge[24][0])).code == packet.AccessAccept
        # The same code again, through a new challenge on the other replica: a replay.
        again = to_b.ask(request(secret, "rita", PASSWORD))
        assert to_a.ask(request(secret, "rita", code, state=again[24][0])).code == packet.AccessReject
    finally:
        to_a.close()
        to_b.close()


def test_a_stopped_database_never_gives_an_accept(replicas, cluster):
    svc, secret, (a, _) = replicas
    totp = enroll(svc, "sam")
    to_a = nas(a)
    try:
        challenge = to_a.ask(request(secret, "sam", PASSWORD))
        assert challenge.code == packet.AccessChallenge
        cluster._run(cluster.pg_ctl, "-D", str(cluster.data), "-m", "immediate", "-w", "stop")
        code = pyotp.TOTP(totp).now()
        to_a.send(request(secret, "sam", code, state=challenge[24][0]).RequestPacket())
        # The check waits for a connection (the pool's timeout), then gives up: no answer.
        deadline = time.monotonic() + 90
        while "the store cannot be used" not in a.log_path.read_text("utf-8", errors="replace"):
            assert time.monotonic() < deadline, "the server never gave up on the stopped store"
            answer = to_a.receive(timeout=0.5)
            assert answer is None or answer[0] == packet.AccessReject
        answer = to_a.receive(timeout=0.5)
        assert answer is None or answer[0] == packet.AccessReject
    finally:
        to_a.close()
