"""The RADIUS server's worker processes: the port shared, a dead worker restarted, a clean stop.

``python -m mfa_core radius`` is a supervisor that binds the port and starts
``--processes`` workers (default 2). Against real servers: a worker killed
with SIGKILL is started again and the server keeps answering (requests that
reach the dead worker's socket wait for the new one); SIGTERM stops every
worker; a worker whose supervisor is killed stops by itself; a retransmission
reaches the worker holding the first answer. In-process, with throwaway
worker commands: the restart policy (a crash loop stops the server, exit 1)
and a worker that cannot start. And the startup refusals: one line, exit 2.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfa_core.cli import main

pyrad = pytest.importorskip("pyrad")
from pyrad import packet  # noqa: E402

from mfa_services.radius import workers  # noqa: E402

from . import test_radius as base  # noqa: E402
from .test_radius import Peer, free_udp_port, request, start_server, stop  # noqa: E402

# The module's server of test_radius (one of this module's own): its fixtures, re-exported.
cheap_passwords, radius = base.cheap_passwords, base.radius


def worker_pids(log: str) -> dict[int, int]:
    """The latest pid of each worker number, from the supervisor's log."""
    return {int(n): int(pid) for n, pid in re.findall(r"RADIUS worker (\d+) started \(pid (\d+)\)", log)}


def gone(pid: int) -> bool:
    """No such process, or a zombie (this container's init may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_for(condition, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling another process's state


def ask_from_new_sockets(radius, port: int, user: str, codes: list[str],
                         timeout: float = 60.0) -> list[int | None]:
    """One NAS socket a code (new source ports: the kernel spreads them over the workers).

    ``timeout`` is generous: an answer may wait for a worker being started again.
    """
    found = []
    for code in codes:
        nas = Peer(port)
        try:
            reply = nas.ask(request(radius.secrets["vpn"], user, code), timeout)
            found.append(reply.code if reply is not None else None)
        finally:
            nas.close()
    return found


# -- real servers ------------------------------------------------------------------

def test_a_killed_worker_is_started_again_and_the_server_keeps_answering(radius, tmp_path):
    port = free_udp_port()
    log_path = tmp_path / "radius.log"
    _, proc = start_server(radius.data_dir, log_path, "--processes", "2", port=port)
    try:
        log = log_path.read_text()
        assert "2 worker processes" in log
        first = worker_pids(log)
        assert sorted(first) == [1, 2]
        _, codes = radius.user("kilo", backup_codes=True)
        assert ask_from_new_sockets(radius, port, "kilo", codes[:4]) == [packet.AccessAccept] * 4

        os.kill(first[1], 9)
        # Asked at once: what reaches worker 1's socket waits for the new worker 1.
        assert ask_from_new_sockets(radius, port, "kilo", codes[4:8]) == [packet.AccessAccept] * 4
        wait_for(lambda: worker_pids(log_path.read_text())[1] != first[1], "worker 1 started again")
        log = log_path.read_text()
        assert re.search(rf"RADIUS worker 1 \(pid {first[1]}\) stopped \(killed by SIGKILL\); "
                         r"starting it again in 0.5 s", log), log
        assert worker_pids(log)[2] == first[2]  # the other one never stopped
        assert ask_from_new_sockets(radius, port, "kilo", codes[8:10]) == [packet.AccessAccept] * 2
        assert ask_from_new_sockets(radius, port, "kilo", codes[:2]) == [packet.AccessReject] * 2
        latest = worker_pids(log)
    finally:
        assert stop(proc) == 0
    assert all(gone(pid) for pid in latest.values())  # SIGTERM stopped every worker
    log = log_path.read_text()
    assert "RADIUS server stopped" in log and "Traceback" not in log
    assert radius.secrets["vpn"] not in log and not any(code in log for code in codes)


def test_a_worker_whose_supervisor_is_killed_stops(radius, tmp_path):
    log_path = tmp_path / "radius.log"
    _, proc = start_server(radius.data_dir, log_path, "--processes", "2")
    try:
        pids = worker_pids(log_path.read_text())
        proc.kill()
        proc.wait(timeout=30)
        wait_for(lambda: all(gone(pid) for pid in pids.values()), "the workers to stop")
        assert "RADIUS supervisor (pid %d) is gone" % proc.pid in log_path.read_text()
    finally:
        stop(proc)


def test_sigint_stops_the_supervisor_and_every_worker_with_exit_0(radius, tmp_path):
    """Ctrl-C (to the supervisor alone here; a terminal sends it to all, which ends the same)."""
    log_path = tmp_path / "radius.log"
    _, proc = start_server(radius.data_dir, log_path, "--processes", "2")
    pids = worker_pids(log_path.read_text())
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
    assert all(gone(pid) for pid in pids.values())
    log = log_path.read_text()
    assert "RADIUS server stopping (signal 2)" in log and "Traceback" not in log


def test_retransmissions_to_several_workers_get_the_first_answer_again(radius):
    """The module's server has the default two workers; eight NAS sockets reach both."""
    if workers.DEFAULT_PROCESSES < 2:
        pytest.skip("one CPU: one worker by default")
    assert "2 worker processes" in radius.log()
    _, codes = radius.user("rory", backup_codes=True)
    nases = [Peer(radius.port) for _ in range(8)]
    try:
        raws = [request(radius.secrets["vpn"], "rory", code).RequestPacket() for code in codes[:8]]
        firsts = []
        for nas, raw in zip(nases, raws):
            nas.send(raw)
            firsts.append(nas.receive())
        for nas, raw, first in zip(nases, raws, firsts):
            nas.send(raw)  # the NAS heard nothing (say): the very same request again
            assert first is not None and first[0] == packet.AccessAccept
            assert nas.receive() == first
    finally:
        for nas in nases:
            nas.close()
    assert len(radius.events("rory", "backup_code_used")) == 8
    assert not radius.events("rory", "second_factor_failed")


# -- startup refusals: one line, exit 2 ----------------------------------------------------

def run_cli(*args: str, environ: dict | None = None) -> tuple[int, str]:
    err = io.StringIO()
    status = main(["radius", *args], environ=environ or {}, stdout=io.StringIO(), stderr=err)
    return status, err.getvalue()


def test_a_port_in_use_is_one_line_and_exit_2_before_the_data_dir_is_made(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        status, err = run_cli("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert status == 2
    assert err == (f"error: UDP port {port} on 127.0.0.1 is in use (another RADIUS server? "
                   "--reuse-port shares it on purpose).\n")
    assert not (tmp_path / "data").exists()


def test_a_port_shared_by_another_server_is_in_use_too_unless_asked(tmp_path):
    """Two servers started by mistake would split the datagrams: refused without --reuse-port."""
    socks = workers.bind("127.0.0.1", 0, 2)
    try:
        port = socks[0].getsockname()[1]
        status, err = run_cli("--port", str(port), "--data-dir", str(tmp_path / "data"))
        assert status == 2 and "is in use" in err
        shared = workers.bind("127.0.0.1", port, 1, share=True)  # what --reuse-port does
        shared[0].close()
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("address, says", [
    ("nosuch.invalid", "Cannot listen on 'nosuch.invalid': not an address of this host"),
    ("192.0.2.1", "Cannot listen on 192.0.2.1: not an address of this host."),
])
def test_a_bad_address_is_one_line_and_exit_2(tmp_path, address, says):
    status, err = run_cli("--address", address, "--port", "1812", "--data-dir",
                          str(tmp_path / "data"), environ={"MFA_PORTAL_DEMO": "0"})
    assert status == 2 and err.startswith(f"error: {says}") and err.count("\n") == 1


def test_processes_out_of_range_is_refused(tmp_path):
    status, err = run_cli("--processes", "0", "--port", "1812", "--data-dir", str(tmp_path / "d"))
    assert (status, err) == (2, "error: --processes is 1 to 64.\n")


def test_the_refusals_print_no_traceback_from_the_real_command(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        done = subprocess.run([sys.executable, "-m", "mfa_core", "radius", "--port",
                               str(holder.getsockname()[1]), "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "in use" in done.stderr and not done.stdout


# -- the supervisor with throwaway workers (no RADIUS in them) ------------------------------------

def throwaway(body: str):
    """Worker commands that run ``body`` (READY is the ready pipe's descriptor)."""
    def command(fd: int, ready: int) -> list[str]:
        return [sys.executable, "-c", f"import os, sys, time\nREADY = {ready}\n{body}"]
    return command


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_restart_delay_doubles_and_the_fifth_death_within_a_minute_stops():
    clock = FakeClock()
    restarts = workers.Restarts(clock)
    assert [restarts.died() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert restarts.died() is None
    clock.now += 61  # a minute later the count starts again
    assert restarts.died() == 0.5
    clock.now += 30
    assert restarts.died() == 1.0


def test_a_worker_that_keeps_dying_stops_the_server_with_exit_1(caplog):
    socks = workers.bind("127.0.0.1", 0, 2)
    supervisor = workers.Supervisor(
        socks, throwaway("os.write(READY, b'1')\nsys.exit(3)"), os.environ,
        restarts=workers.Restarts(first=0.01))
    with caplog.at_level("INFO", "mfa_services.radius"):
        assert supervisor.run() == 1
    said = caplog.text
    assert "stopped (exit status 3); starting it again in 0.01 s" in said
    assert "the fifth time within 60 s: the server stops (exit 1)" in said
    assert all(s.fileno() == -1 for s in socks)  # closed


def test_a_worker_that_cannot_start_stops_the_server_with_exit_1(caplog):
    socks = workers.bind("127.0.0.1", 0, 2)
    supervisor = workers.Supervisor(socks, throwaway("sys.exit(2)"), os.environ)
    with caplog.at_level("INFO", "mfa_services.radius"):
        assert supervisor.run() == 1
    assert "could not start (exit status 2): the server stops" in caplog.text


def test_stop_ends_every_worker_and_returns_0():
    socks = workers.bind("127.0.0.1", 0, 3)
    supervisor = workers.Supervisor(
        socks, throwaway("import signal\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                         "os.write(READY, b'1')\nwhile True: time.sleep(1)"), os.environ)
    import threading
    done: list[int] = []
    runner = threading.Thread(target=lambda: done.append(supervisor.run()))
    runner.start()
    wait_for(lambda: all(w.ready for w in supervisor.workers), "the workers to be ready")
    procs = [w.proc for w in supervisor.workers]
    supervisor.stop()
    runner.join(60)
    assert done == [0]
    assert all(p.returncode == 0 for p in procs)
