"""`python -m bench ldap`: the password and the API's check through the company directory.

A throwaway slapd (tests/ldap_server.py: StartTLS with a test CA, memberof
and ppolicy overlays) and the engine on a fresh data dir with
``MFA_PORTAL_LDAP_URL`` set, measured with 100 and then 10,000 people in the
directory:

- ``attempt_password`` with the right password (the person cached, as within
  a minute of a sign-in; and from a new place with the search included), a
  wrong one and an unknown name (both from new places, the search included:
  what a guesser pays), each beside the **floor**: what any LDAP sign-in costs
  at least, bare ldap3 and no engine — a search on a bound service
  connection, a bind as the DN on a connection already open (TCP and TLS up,
  as the engine keeps them) and one durable write of a record of the size of
  the person's (fsync'd). The same sequence with a new StartTLS connection
  for every bind is shown for comparison (the engine's way before it kept
  connections).
- The verification API's check (``attempt_second_factor`` with a backup code
  right and never used before, 8 threads, in one process: the HTTP layer
  adds the same to both) with the directory's active-account check, beside
  the same on the embedded directory, alternating, ``API_TURNS`` times: the
  ratio is the median of each turn's (the same minute's machine for both).
  The directory's runs start with nobody's state cached, as after a restart,
  on service connections already open (untimed, as the floors' are and as a
  stream of checks keeps them).

Run only when named (it needs slapd).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
from typing import Callable

from . import machine_note, ms, note_target, p50, percentile, ratio, table

OVER_FLOOR_MAX = 1.5   # each case's p50 ÷ the floor's p50
SPREAD_MAX = 1.4       # right (search included), wrong and unknown: slowest p50 ÷ fastest
API_RATE_MIN = 0.85    # the API's rate with the directory ÷ with the embedded directory
SIZES = (100, 10_000)
API_REQUESTS = 600
API_THREADS = 8
API_TURNS = 6          # alternating runs, each directory's beside an embedded one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ldap-rounds", type=int, default=40, metavar="N",
                        help="ldap: sign-ins measured per case (default 40)")
    parser.add_argument("--ldap-entries", default=",".join(map(str, SIZES)), metavar="N,N",
                        help="ldap: people in the directory, one run each (default 100,10000)")


def _nodelay(conn) -> None:
    conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Bare:
    """Bare ldap3, no engine: a search, a bind as the DN found (as a DN no entry has when none
    is), one durable write of ``record``. ``kept``: the bind on a connection already open (TLS
    up, as the engine keeps them), else on a new StartTLS connection each time."""

    def __init__(self, server, root: str, record: bytes, kept: bool) -> None:
        import ldap3

        from tests.ldap_server import SERVICE_DN, SERVICE_PASSWORD
        self.server, self.record, self.kept = server, record, kept
        self.path = os.path.join(root, "bare-record.json")
        os.makedirs(os.path.join(root, "bare-second"), exist_ok=True)
        self.second_path = os.path.join(root, "bare-second", "record.json")
        self.tls = ldap3.Tls(ca_certs_file=str(server.ca_file), validate=ssl.CERT_REQUIRED)
        self.service = self._connect(SERVICE_DN, SERVICE_PASSWORD, True)
        self.service.bind()
        self.binder = None
        if kept:  # opened and bound once, untimed
            self.binder = self._connect(server.user_dn("alice"), "alice-directory-1", True)
            assert self.binder.bind()

    def _connect(self, user: str, secret: str, nodelay: bool):
        import ldap3
        conn = ldap3.Connection(ldap3.Server(self.server.url, tls=self.tls, get_info=ldap3.NONE), user, secret)
        conn.open()
        if nodelay:
            _nodelay(conn)
        conn.start_tls()
        return conn

    def attempt(self, uid: str, password: str, *, second: bytes | None = None, bind_as: str | None = None) -> float:
        """``second``: a second record written durably too, in a directory of its own (a place's
        count beside the person's). ``bind_as``: when the search finds no one, bind as this
        person (a wrong password costs the server more than a bind as no entry)."""
        from ldap3.utils.conv import escape_filter_chars

        from mfa_core.storage.files import write_atomic
        from tests.ldap_server import BASE
        t = time.perf_counter()
        self.service.search(BASE, f"(&(objectClass=inetOrgPerson)(uid={escape_filter_chars(uid)}))",
                            attributes=["uid", "cn", "mail", "memberOf", "entryUUID", "pwdAccountLockedTime",
                                        "pwdChangedTime", "pwdEndTime", "pwdStartTime"])
        found = [r["dn"] for r in self.service.response if r["type"] == "searchResEntry"]
        dn = found[0] if found else self.server.user_dn(bind_as) if bind_as else f"cn=no-such-entry-{uid},{BASE}"
        if self.kept:
            self.binder.user, self.binder.password = dn, password
            self.binder.bind()
        else:
            conn = self._connect(dn, password, False)
            conn.bind()
            conn.unbind()
        write_atomic(self.path, self.record, mode=0o600)
        if second is not None:
            write_atomic(self.second_path, second, mode=0o600)
        return (time.perf_counter() - t) * 1000

    def close(self) -> None:
        for conn in (self.service, self.binder):
            if conn is not None:
                conn.unbind()


def _fill(server, have: int, want: int, out: Callable[[str], None]) -> int:
    """People bench00000… up to ``want`` entries of people in all (4 came with the server)."""
    if want <= have:
        return have
    out(f"bench ldap: {want - have:,} more people in the directory …")
    with server._conn(None) as admin:
        for i in range(have, want):
            server.add_user(f"bench{i:05d}", "bench-directory-1", conn=admin)
    return want


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - wrong and unknown are meant to fail; nothing else
        import mfa_core
        if not isinstance(exc, mfa_core.InvalidCode):
            raise
    return (time.perf_counter() - t) * 1000


def _password_cases(svc, server, rounds: int, root: str, size: int, first: int) -> dict[str, list[float]]:
    """The cases at one directory size, each round beside its floors (interleaved: the same
    moment's disk and CPU for both). Bench people from ``first`` on were never tried."""
    users = svc.directory
    from mfa_core import passwords
    cases: dict[str, list[float]] = {k: [] for k in ("cached", "right", "wrong", "unknown", "floor-right",
                                                      "floor-wrong", "floor-unknown", "new-connection",
                                                      "design-wrong", "design-unknown")}
    svc.attempt_password("alice", "alice-directory-1", source="10.8.0.1")  # a familiar place now
    svc.attempt_password("bob", "bob-directory-1", source="10.8.0.2")

    def encoded(record: dict | None) -> bytes:  # a record as the engine just wrote it: the floors' size
        return json.dumps(record or {}, separators=(",", ":")).encode()

    def size_of(name: str) -> bytes:
        return encoded(svc.store.read(name))

    bare, fresh = _Bare(server, root, size_of("bob"), kept=True), _Bare(server, root, size_of("bob"), kept=False)
    try:
        for i in range(rounds):
            source = f"10.{9 + size % 7}.{i // 250}.{i % 250}"
            cases["cached"].append(_timed(lambda: svc.attempt_password("alice", "alice-directory-1",
                                                                         source="10.8.0.1")))
            users.forget("bob")  # looked up again (the search included); alice stays cached
            cases["right"].append(_timed(lambda: svc.attempt_password("bob", "bob-directory-1", source=source)))
            bare.record = fresh.record = size_of("bob")  # grows with the places remembered
            cases["floor-right"].append(bare.attempt("bob", "bob-directory-1"))
            cases["new-connection"].append(fresh.attempt("bob", "bob-directory-1"))
            uid = f"bench{first + i:05d}"  # never tried, never cached
            cases["wrong"].append(_timed(lambda: svc.attempt_password(uid, "not-the-password", source=source)))
            bare.record = size_of(uid)  # the person's record after one wrong password
            other = f"bench{first + rounds + i:05d}"  # the floors' person: three wrong binds, far from a lockout
            cases["floor-wrong"].append(bare.attempt(other, "not-the-password"))
            cases["floor-unknown"].append(bare.attempt(f"nobody-bare{size}x{i}", "not-the-password"))
            place = encoded(svc.store.read_keyed(passwords.key(svc.keyring.pepper, "source", source)))
            cases["design-wrong"].append(bare.attempt(other, "not-the-password", second=place))
            cases["design-unknown"].append(bare.attempt(f"nobody-equal{size}x{i}", "not-the-password", second=place,
                                                        bind_as=other))
            cases["unknown"].append(_timed(lambda: svc.attempt_password(f"nobody{size}x{i}", "not-the-password",
                                                                          source=source)))
    finally:
        bare.close()
        fresh.close()
    return cases


def _api_rate(root: str, env: dict[str, str] | None, tag: str, first: int) -> dict:
    """attempt_second_factor's rate in one process (8 threads): backup codes never used before."""
    import mfa_core

    from .api import CODES_PER_USER, enroll, in_process
    svc = mfa_core.open_service(os.path.join(root, f"api-{tag}"), environ=env or {})
    names = [f"bench{first + i:05d}" for i in range(-(-API_REQUESTS // CODES_PER_USER))]
    pairs = enroll(svc, names)[:API_REQUESTS]
    import random
    random.Random(first).shuffle(pairs)
    if env:
        for name in names:  # bound to their entries, as by their first sign-in
            svc.directory.claim(name)
        _keep_connections(svc.directory)
        svc.directory.forget()  # the run starts with nobody's state cached, as after a restart
    gc.collect()  # every run starts with the collector's heap of the runs before it swept
    result = in_process(svc, pairs, API_THREADS)
    backend = getattr(svc.directory, "backend", None)
    if backend is not None:
        backend.close()
    if result["accepted"] != len(pairs):
        raise RuntimeError(f"{tag}: {result['accepted']} of {len(pairs)} right codes accepted")
    return result


def _keep_connections(directory) -> None:
    """Untimed: the service connections a stream of checks from ``API_THREADS`` threads keeps
    open (lookups of someone outside the run, the directory asked each time)."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(API_THREADS) as pool:
        list(pool.map(lambda _: directory.find("alice", fresh=True), range(API_THREADS * 10)))


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> str:
    import mfa_core
    from mfa_core.directory import config as ldap_config
    from tests.ldap.conftest import ldap_environ
    from tests.ldap_server import SlapdServer

    rounds = max(3, args.ldap_rounds)
    sizes = sorted({int(s) for s in str(args.ldap_entries).split(",") if s.strip()})
    ldap_config.SECRETS_FILE = None  # the developer's own secrets.toml never leaks in
    server = SlapdServer().start()
    root = tempfile.mkdtemp(prefix="mfa-bench-ldap-")
    rows, verdicts, api_rows, verdicts_design = [], [], [], []
    api_note = api_turns = ""
    try:
        env = ldap_environ(server)
        have = 4
        fresh = 0  # bench people from here on were never tried
        for size in sizes:
            have = _fill(server, have, max(size, have, fresh + 2 * rounds + 4), out)
            svc = mfa_core.open_service(os.path.join(root, f"data-{size}"), environ=env)
            out(f"bench ldap: {have:,} people: attempt_password …")
            cases = _password_cases(svc, server, rounds, root, have, fresh)
            svc.directory.backend.close()
            fresh += 2 * rounds
            floors = {k: cases[f"floor-{k}"] for k in ("right", "wrong", "unknown")}
            fresh_conn = cases["new-connection"]
            f50 = {k: p50(v) for k, v in floors.items()}
            labels = {"cached": ("right password, familiar place (person cached)", "right"),
                      "right": ("right password, new place, search included", "right"),
                      "wrong": ("wrong password, new place, search included", "wrong"),
                      "unknown": ("unknown name, new place, search included", "unknown")}
            floor_labels = {"right": "floor, right: bare search + bind + one durable write",
                            "wrong": "floor, wrong: the same, a wrong password",
                            "unknown": "floor, unknown: a search finding no one + a bind as no entry + the write"}
            design = {"right": floors["right"], "wrong": cases["design-wrong"], "unknown": cases["design-unknown"]}
            d50 = {k: p50(v) for k, v in design.items()}
            for key, label in floor_labels.items():
                rows.append((f"{have:,}", label, ms(f50[key]), ms(percentile(floors[key], 95)), "1.00×",
                             "1.00×" if key == "right" else ""))
            for key, label in (("wrong", "design floor, wrong: + the place's count, a second durable write"),
                               ("unknown", "design floor, unknown: + the place's count, and a bind as costly as "
                                           "a wrong password's (the equal-time rule)")):
                rows.append((f"{have:,}", label, ms(d50[key]), ms(percentile(design[key], 95)),
                             ratio(d50[key], f50[key]), "1.00×"))
            rows.append((f"{have:,}", "bare, right, a new StartTLS connection for the bind (comparison)",
                         ms(p50(fresh_conn)), ms(percentile(fresh_conn, 95)), ratio(p50(fresh_conn), f50["right"]), ""))
            for key, (label, floor_key) in labels.items():
                rows.append((f"{have:,}", label, ms(p50(cases[key])), ms(percentile(cases[key], 95)),
                             ratio(p50(cases[key]), f50[floor_key]), ratio(p50(cases[key]), d50[floor_key])))
            worst_design = max(p50(cases[k]) / d50[fk] for k, (_l, fk) in labels.items())
            verdicts_design.append(note_target("ldap", f"{have:,} people: every case p50 ≤ {OVER_FLOOR_MAX}× its "
                                               "design floor (information)", f"{worst_design:.2f}×",
                                               worst_design <= OVER_FLOOR_MAX))
            over = {k: p50(cases[k]) / f50[fk] for k, (_l, fk) in labels.items()}
            worst = max(over.values())
            three = [p50(cases[k]) for k in ("right", "wrong", "unknown")]
            spread = max(three) / min(three)
            verdicts.append(note_target("ldap", f"{have:,} people: every case p50 ≤ {OVER_FLOOR_MAX}× its floor",
                                        f"{worst:.2f}× ({max(over, key=over.get)})", worst <= OVER_FLOOR_MAX))
            verdicts.append(note_target("ldap", f"{have:,} people: right, wrong, unknown within ±40 %",
                                        f"{spread:.2f}×", spread <= SPREAD_MAX))
        out(f"bench ldap: the API's check, {API_REQUESTS} codes × {2 * API_TURNS} runs …")
        runs = {"embedded": [], "directory": []}
        first = fresh
        per_run = -(-API_REQUESTS // 10) + 1
        have = _fill(server, have, first + 2 * API_TURNS * per_run + 4, out)
        for turn in range(API_TURNS):
            for tag, run_env in (("embedded", None), ("directory", env)):
                runs[tag].append(_api_rate(root, run_env, f"{tag}{turn}", first))
                first += per_run
        for tag in ("embedded", "directory"):
            lat = [x * 1000 for r in runs[tag] for x in r["latencies"]]
            rate = p50([r["rate"] for r in runs[tag]])
            api_rows.append((tag, f"{rate:,.0f}", ms(p50(lat)), ms(percentile(lat, 99))))
        each = [d["rate"] / e["rate"] for e, d in zip(runs["embedded"], runs["directory"])]
        rel = p50(each)
        api_note = note_target("ldap", f"API check rate with the directory ≥ {API_RATE_MIN:.0%} of embedded",
                               f"{rel:.1%}", rel >= API_RATE_MIN)
        api_rows.append(("directory ÷ embedded (median of the turns)", f"{rel:.1%}", "", ""))
        api_turns = ", ".join(f"{r:.1%}" for r in each)
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)

    return "\n".join([
        "## ldap — the password and the API's check through the company directory", "",
        machine_note() + f"; {rounds} sign-ins a case, slapd on loopback with StartTLS.", "",
        table(["people", "case", "p50 ms", "p95 ms", "÷ its floor", "÷ its design floor"], rows, "rlrrrr"), "",
        f"Targets: every case p50 ≤ {OVER_FLOOR_MAX}× its floor ({', '.join(verdicts[0::2])}); right, wrong "
        f"and unknown within ±40 % of each other ({', '.join(verdicts[1::2])}).", "",
        "The design floors (information) add what this design must pay on top of the issue's floor: a "
        "wrong password and an unknown name count in two records (the person's or the name's, and the "
        "place's spraying count, issue 20), each written durably; and an unknown name's bind lasts as long "
        "as a wrong password's, which costs the server more than a bind as no entry. Every case p50 ≤ "
        f"{OVER_FLOOR_MAX}× its design floor: {', '.join(verdicts_design)}.", "",
        f"The verification API's check: `attempt_second_factor`, a backup code right and never used "
        f"before, {API_THREADS} threads in one process, {API_REQUESTS} codes a run, {API_TURNS} runs each, "
        f"alternating; the directory's runs start with no one's state cached, on service connections "
        f"already open. Checks/s: the median run; each turn's ratio: {api_turns}.", "",
        table(["directory", "checks/s", "p50 ms", "p99 ms"], api_rows, "lrrr"), "",
        f"Target: ≥ {API_RATE_MIN:.0%} of the embedded directory's rate: {api_note}.", ""])
