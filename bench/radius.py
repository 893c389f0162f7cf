"""Bench part ``radius``: Access-Requests per second at C concurrent NAS, beside the HTTP API and the engine.

One data dir, one run: the engine's ``attempt_second_factor`` in-process
with C threads (before and after the servers), the HTTP verification API as
shipped (``streamlit run app.py``, keep-alive, the ``api`` part's raw
client), and the RADIUS server (``python -m mfa_core radius``, mode
``code``). Every request is a right backup code never used before (a real
check with its store write), so each server does the same work. The RADIUS
load generator is C asyncio UDP endpoints, one request in flight each
(a NAS's own pace); the packets are made before the clock starts (pyrad),
the answers' Message-Authenticators are checked after it stops. Each code
must be accepted exactly once: the whole list is sent again afterwards
(new packets) and nothing may be accepted then.

Run alone: ``python -m bench radius [--radius-requests N] [--radius-clients C]
[--radius-processes N]`` (the server's worker processes; default: its own default).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import REPO, TMP_ROOT, api, child_env, machine_note, ms, note_target, percentile, stop_group, table

REQUESTS = 800
CLIENTS = 8
P99_MAX_MS = 50.0
ANSWER_TIMEOUT = 5.0  # seconds: a NAS's usual timeout; no answer by then is a lost request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("radius")
    g.add_argument("--radius-requests", type=int, default=REQUESTS,
                   help="Access-Requests per row (default %(default)s)")
    g.add_argument("--radius-clients", type=int, default=CLIENTS,
                   help="concurrent NAS (default %(default)s)")
    g.add_argument("--radius-processes", type=int, default=None,
                   help="the server's worker processes (--processes; default: the server's own)")


# -- the RADIUS load generator ------------------------------------------------------------

class _Nas(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


def _packets(secret: str, pairs: list[tuple[str, str]]) -> list[Any]:
    from pyrad import packet
    from pyrad.dictionary import Dictionary

    from mfa_services.radius.server import DICTIONARY

    dictionary = Dictionary(str(DICTIONARY))
    made = []
    for n, (user, code) in enumerate(pairs):
        pkt = packet.AuthPacket(code=packet.AccessRequest, secret=secret.encode(), dict=dictionary,
                                message_authenticator=True)
        pkt.authenticator = pkt.CreateAuthenticator()
        pkt.id = n % 256
        pkt["User-Name"] = user
        pkt["User-Password"] = pkt.PwCrypt(code)
        made.append((pkt, pkt.RequestPacket(), user, code))
    return made


async def radius_load(port: int, secret: str, pairs: list[tuple[str, str]],
                      clients: int) -> dict[str, Any]:
    """``clients`` NAS, each with its share of the requests, one in flight at a time."""
    loop = asyncio.get_running_loop()
    made = _packets(secret, pairs)
    shares = [made[i::clients] for i in range(clients)]
    latencies: list[float] = []
    answers: list[tuple[Any, bytes | None, str, str]] = []

    async def nas(share) -> None:
        transport, proto = await loop.create_datagram_endpoint(
            _Nas, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port))
        try:
            for pkt, raw, user, code in share:
                proto.waiter = loop.create_future()
                t = time.perf_counter()
                transport.sendto(raw)
                try:
                    got = await asyncio.wait_for(proto.waiter, ANSWER_TIMEOUT)
                except asyncio.TimeoutError:
                    got = None
                latencies.append(time.perf_counter() - t)
                answers.append((pkt, got, user, code))
        finally:
            transport.close()

    started = time.perf_counter()
    await asyncio.gather(*[nas(share) for share in shares])
    seconds = time.perf_counter() - started
    accepted: dict[tuple[str, str], int] = {}
    lost = bad = 0
    for pkt, raw, user, code in answers:  # after the clock: every answer's signature checked
        if raw is None:
            lost += 1
            continue
        reply = pkt.CreateReply(packet=raw)
        if not pkt.VerifyReply(reply, raw, enforce_ma=True):
            bad += 1
            continue
        if reply.code == 2:  # Access-Accept
            accepted[(user, code)] = accepted.get((user, code), 0) + 1
    return {"rate": len(pairs) / seconds, "latencies": latencies, "accepted": accepted,
            "sent": len(pairs), "lost": lost, "bad": bad}


class RadiusServer:
    def __init__(self, port: int, data_dir: Path, log: Path, processes: int | None = None) -> None:
        self.port, self.data_dir, self.log = port, data_dir, log
        self.processes = processes
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "RadiusServer":
        env = child_env({"MFA_PORTAL_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"})
        env["PYTHONPATH"] = str(REPO)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mfa_core", "radius", "--address", "127.0.0.1", "--port",
                 str(self.port), *(["--processes", str(self.processes)] if self.processes else [])], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while "listening on" not in self.log.read_text("utf-8", errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the RADIUS server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)  # polling a starting server
        return self

    def __exit__(self, *exc) -> None:
        proc, self.proc = self.proc, None
        stop_group(proc, 30)


def free_udp_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _once(got: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    got["twice"] = len(again["accepted"])
    got["missing"] = got["sent"] - len(got["accepted"])
    got["over_once"] = sum(1 for n in got["accepted"].values() if n > 1)
    got["accepted"] = sum(got["accepted"].values())
    return got


def run(requests: int, clients: int, progress: Callable[[str], None],
        processes: int | None = None) -> dict[str, Any]:
    import mfa_core
    from mfa_core import clients as api_clients
    from mfa_core import radius_clients

    root = Path(tempfile.mkdtemp(prefix="mfa-bench-radius-", dir=TMP_ROOT))
    try:
        data_dir = root / "data"
        svc = mfa_core.open_service(data_dir, environ={})
        key = api_clients.open_registry(data_dir, svc).add("bench", rate=api_clients.MAX_RATE)
        secret = radius_clients.open_radius_registry(svc).add("bench", ["127.0.0.1"], "code")
        codes = api.Codes(svc)
        res: dict[str, Any] = {"rows": []}

        def baseline(when: str) -> None:
            got = api.in_process(svc, codes.batch(requests), clients)
            res["rows"].append({"what": f"engine in-process, {clients} threads ({when})", **got})
            progress(f"bench radius: in-process {when}: {got['rate']:.0f}/s")

        baseline("at the start")
        shipped = next(s for s in api.SETUPS if s.shipped)
        # Both servers up at once, measured in turns A B B A (then the totals): the machine's
        # load changes by the minute, and a server measured only before the other would
        # take all of one kind of minute.
        with api.Server(shipped, api.free_port(), data_dir, root / "api.log") as http, \
                RadiusServer(free_udp_port(), data_dir, root / "radius.log", processes) as rad:
            workers = re.search(r"(\d+) worker process", rad.log.read_text()).group(1)
            res["radius_workers"] = int(workers)
            asyncio.run(api.load(http.port, key, codes.batch(2 * clients), clients, True))
            asyncio.run(radius_load(rad.port, secret, codes.batch(2 * clients), clients))
            half = max(1, requests // 2)

            def measure_api(turn: int) -> None:
                pairs = codes.batch(half)
                got = asyncio.run(api.load(http.port, key, pairs, clients, True))
                again = asyncio.run(api.load(http.port, key, pairs, clients, True))
                got.update(lost=0, bad=0)
                res["rows"].append({"what": f"HTTP API (`streamlit run app.py`, keep-alive), "
                                            f"turn {turn}", "api": True, **_once(got, again)})
                progress(f"bench radius: HTTP API turn {turn}: {got['rate']:.0f}/s")

            def measure_radius(turn: int) -> None:
                pairs = codes.batch(half)
                got = asyncio.run(radius_load(rad.port, secret, pairs, clients))
                again = asyncio.run(radius_load(rad.port, secret, pairs, clients))
                what = (f"RADIUS (`python -m mfa_core radius"
                        f"{f' --processes {processes}' if processes else ''}`, {workers} "
                        f"worker{'s' if workers != '1' else ''}, mode code)")
                res["rows"].append({"what": f"{what}, turn {turn}", "radius": True,
                                    **_once(got, again)})
                progress(f"bench radius: RADIUS turn {turn}: {got['rate']:.0f}/s")

            measure_api(1)
            measure_radius(1)
            measure_radius(2)
            measure_api(2)
        baseline("at the end")
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _lat(samples: list[float], q: float) -> float:
    return percentile([s * 1000 for s in samples], q)


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> str:
    head = machine_note()
    started = time.perf_counter()
    res = run(args.radius_requests, args.radius_clients, out, args.radius_processes)
    n, c = args.radius_requests, args.radius_clients
    for kind, label in (("api", "HTTP API, both turns"), ("radius", "RADIUS, both turns")):
        turns = [r for r in res["rows"] if r.get(kind) and not r.get("total")]
        seconds = sum(r["sent"] / r["rate"] for r in turns)
        total = {"what": f"**{label}**", kind: True, "total": True,
                 "rate": sum(r["sent"] for r in turns) / seconds,
                 "latencies": [x for r in turns for x in r["latencies"]]}
        for field in ("accepted", "sent", "twice", "missing", "over_once", "lost", "bad"):
            total[field] = sum(r[field] for r in turns)
        res["rows"].append(total)
    api_rate = next(r["rate"] for r in res["rows"] if r.get("api") and r.get("total"))
    lines = ["## RADIUS (issue 25): Access-Requests beside the HTTP API and the engine", "",
             f"{head}. {c} concurrent clients, each request a right backup code never used "
             "before (a real check with its store write), one data dir: the engine in-process "
             f"({n} requests), then the HTTP API as shipped (keep-alive, the `api` part's raw "
             "client) and the RADIUS server (PAP, mode `code`, Message-Authenticator on every "
             "request and answer; C UDP endpoints with one request in flight each), both "
             f"running, measured in turns API, RADIUS, RADIUS, API ({n // 2} requests a turn; "
             "the targets are judged on the totals), then the engine again. Latency per "
             "request at the client, ms. Every code is then sent "
             "again: \"accepted twice\" must be 0; \"lost\" is no answer within "
             f"{ANSWER_TIMEOUT:g} s.", ""]
    header = ["what", "requests/s", "of HTTP API", "p50", "p95", "p99", "accepted once",
              "accepted twice", "lost", "≥ HTTP API", f"p99 ≤ {P99_MAX_MS:g} ms"]
    rows = []
    for r in res["rows"]:
        lat = r["latencies"]
        if "twice" not in r:  # the engine in-process: nothing sent twice, nothing lost
            accepted, twice, lost = f"{r['accepted']}/{r['sent']}", "", ""
        else:
            accepted, twice, lost = f"{r['accepted']}/{r['sent']}", str(r["twice"]), str(r["lost"])
        if r.get("radius") and r.get("total"):
            exact = r["missing"] == 0 and r["over_once"] == 0 and r["twice"] == 0 and r["bad"] == 0
            p99 = _lat(lat, 99)
            rate_ok = r["rate"] >= api_rate and exact
            judged = [note_target("radius", "RADIUS ≥ HTTP API rate, each code accepted once",
                                  f"{r['rate']:.0f} vs {api_rate:.0f}/s", rate_ok),
                      note_target("radius", f"RADIUS p99 ≤ {P99_MAX_MS:g} ms", f"{ms(p99)} ms",
                                  p99 <= P99_MAX_MS)]
        else:
            judged = ["", ""]
        rows.append([r["what"], f"{r['rate']:.0f}", f"{r['rate'] / api_rate:.0%}",
                     ms(_lat(lat, 50)), ms(_lat(lat, 95)), ms(_lat(lat, 99)), accepted, twice, lost,
                     *judged])
    lines += [table(header, rows, "lrrrrrrrrll"), "",
              f"- Part took {time.perf_counter() - started:.0f} s.", ""]
    return "\n".join(lines)
