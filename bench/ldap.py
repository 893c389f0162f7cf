"""`python -m bench ldap`: the password through the company directory, beside bare ldap3.

A throwaway slapd (tests/ldap_server.py: StartTLS with a test CA, memberof
and ppolicy overlays) and the engine on a fresh data dir with
``MFA_PORTAL_LDAP_URL`` set. Measured: ``attempt_password`` with the right
password (the person cached, as within a minute of a sign-in, and cold, the
search included) and with a wrong one; the baseline is what any LDAP sign-in
costs at least: a search on a bound service connection, then a new
connection with StartTLS and a bind as the DN, then one durable write (the
record, fsync'd) — bare ldap3, no engine. Run only when named (it needs slapd).
"""

from __future__ import annotations

import argparse
import os
import shutil
import ssl
import tempfile
import time
from typing import Callable

from . import machine_note, ms, note_target, p50, percentile, ratio, table

# attempt_password from a familiar place (person cached) p50 ÷ bare search + bind + durable write p50.
# From a new place the engine makes two more durable writes (the source's spray slot, taken before
# the bind and given back after a success): reported, not targeted.
OVER_BARE_MAX = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ldap-rounds", type=int, default=40, metavar="N",
                        help="ldap: sign-ins measured per case (default 40)")


def _bare(server, rounds: int, root: str) -> list[float]:
    import ldap3
    from ldap3.utils.conv import escape_filter_chars

    from mfa_core.storage.files import write_atomic
    from tests.ldap_server import BASE, SERVICE_DN, SERVICE_PASSWORD

    tls = ldap3.Tls(ca_certs_file=str(server.ca_file), validate=ssl.CERT_REQUIRED)
    service = ldap3.Connection(ldap3.Server(server.url, tls=tls, get_info=ldap3.NONE), SERVICE_DN, SERVICE_PASSWORD)
    service.open()
    service.start_tls()
    service.bind()
    samples = []
    for i in range(rounds):
        t = time.perf_counter()
        service.search(BASE, f"(&(objectClass=inetOrgPerson)(uid={escape_filter_chars('alice')}))",
                       attributes=["entryUUID", "memberOf", "pwdAccountLockedTime"])
        dn = service.response[0]["dn"]
        conn = ldap3.Connection(ldap3.Server(server.url, tls=tls, get_info=ldap3.NONE), dn, "alice-directory-1")
        conn.open()
        conn.start_tls()
        assert conn.bind()
        conn.unbind()
        write_atomic(os.path.join(root, "record.json"), b'{"n": %d}' % i, mode=0o600)
        samples.append((time.perf_counter() - t) * 1000)
    service.unbind()
    return samples


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> str:
    import mfa_core
    from tests.ldap.conftest import ldap_environ
    from tests.ldap_server import SlapdServer

    rounds = max(3, args.ldap_rounds)
    server = SlapdServer().start()
    root = tempfile.mkdtemp(prefix="mfa-bench-ldap-")
    try:
        out("bench ldap: bare ldap3 …")
        bare = _bare(server, rounds, root)
        env = ldap_environ(server)
        svc = mfa_core.open_service(os.path.join(root, "data"), environ=env)
        users = svc.directory
        cached, unfamiliar, cold, wrong, unknown = [], [], [], [], []
        svc.attempt_password("alice", "alice-directory-1", source="10.8.0.1")  # a familiar place now
        with server._conn(None) as admin:
            for i in range(rounds):
                server.add_user(f"bench{i}", "bench-directory-1", conn=admin)
        out("bench ldap: attempt_password …")
        for i in range(rounds):
            source = f"10.9.{i // 250}.{i % 250}"
            t = time.perf_counter()
            svc.attempt_password("alice", "alice-directory-1", source="10.8.0.1")
            cached.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            svc.attempt_password("carol", "carol-directory-1", source=source)
            unfamiliar.append((time.perf_counter() - t) * 1000)
            users.forget("bob")
            t = time.perf_counter()
            svc.attempt_password("bob", "bob-directory-1", source=source)
            cold.append((time.perf_counter() - t) * 1000)
            uid = f"bench{i}"
            users.find(uid)  # cached, as the right password's: the same path to the bind
            t = time.perf_counter()
            try:
                svc.attempt_password(uid, "not-the-password", source=source)
            except mfa_core.InvalidCode:
                pass
            wrong.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            try:
                svc.attempt_password(f"nobody{i}", "not-the-password", source=f"10.7.{i // 250}.{i % 250}")
            except mfa_core.InvalidCode:
                pass
            unknown.append((time.perf_counter() - t) * 1000)
        users.backend.close()
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)

    rows = [("bare ldap3: search + StartTLS bind + durable write", ms(p50(bare)), ms(percentile(bare, 95)), "1.00×"),
            ("attempt_password, right, familiar place (person cached)", ms(p50(cached)),
             ms(percentile(cached, 95)), ratio(p50(cached), p50(bare))),
            ("attempt_password, right, new place (+ spray slot taken, given back)", ms(p50(unfamiliar)),
             ms(percentile(unfamiliar, 95)), ratio(p50(unfamiliar), p50(bare))),
            ("attempt_password, right, new place, search included", ms(p50(cold)), ms(percentile(cold, 95)),
             ratio(p50(cold), p50(bare))),
            ("attempt_password, wrong", ms(p50(wrong)), ms(percentile(wrong, 95)),
             ratio(p50(wrong), p50(bare))),
            ("attempt_password, unknown name (search + a bind refused)", ms(p50(unknown)),
             ms(percentile(unknown, 95)), ratio(p50(unknown), p50(bare)))]
    over = p50(cached) / p50(bare)
    verdict = note_target("ldap", f"password via LDAP ≤ {OVER_BARE_MAX}× bare search+bind+write",
                          f"{over:.2f}×", over <= OVER_BARE_MAX)
    return "\n".join([
        "## ldap — the password through the company directory", "",
        machine_note() + f"; {rounds} sign-ins a case, slapd on loopback with StartTLS.", "",
        table(["case", "p50 ms", "p95 ms", "÷ bare"], rows, "lrrr"), "",
        f"Target: attempt_password p50 ≤ {OVER_BARE_MAX}× the bare ldap3 sequence: {verdict}.", ""])
