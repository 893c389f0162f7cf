"""The API's check process (``mfa_services.checks``): the engine calls in a child of the server.

A real server each (``streamlit run app.py``): its check process is killed,
stopped and orphaned here, and every request meanwhile must fail closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pyotp
import pytest

import mfa_core
from mfa_core import clients as api_clients
from mfa_services import checks

from .conftest import start_portal, stop


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def check_process(server_pid: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(server_pid):
            try:
                if b"mfa_services.check_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                pass
        time.sleep(0.05)  # polling another process's children
    raise AssertionError("no check process")


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)  # polling another process's exit
    return False


class Server:
    def __init__(self, root: Path, **env: str) -> None:
        self.data_dir = root / "data"
        self.svc = mfa_core.open_service(self.data_dir, environ={})
        self.key = api_clients.open_registry(self.data_dir, self.svc).add("tests", rate=100_000)
        self.log_path = root / "server.log"
        self.url, self.proc = start_portal(self.data_dir, self.log_path, **env)

    def post(self, username: str, code: str, timeout: float = 30) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/verify", timeout=timeout,
                          json={"username": username, "code": code, "strategy": "backup_code"},
                          headers={"Authorization": f"Bearer {self.key}"})


def enroll(svc: mfa_core.MFAService, username: str) -> list[str]:
    secret = svc.create_totp(username).secret
    svc.verify_totp(username, pyotp.TOTP(secret).at(time.time() - 30))
    return svc.create_backup_codes(username).codes


def test_frames_round_trip_and_a_broken_length_is_refused():
    buffer = bytearray(checks.frame([1, "127.0.0.1", [["host", "x"]], "{}"]) + checks.frame([2]))
    partial = checks.frame(["cut"])
    buffer += partial[:-1]
    assert checks._unpack(buffer) == [[1, "127.0.0.1", [["host", "x"]], "{}"], [2]]
    assert bytes(buffer) == partial[:-1]  # kept until the rest arrives
    buffer += partial[-1:]
    assert checks._unpack(buffer) == [["cut"]] and not buffer
    with pytest.raises(ValueError):
        checks._unpack(bytearray(checks._HEADER.pack(checks.MAX_FRAME + 1)))


def test_checks_run_in_a_child_of_the_server_that_fails_closed_is_replaced_and_ends_with_it(
        tmp_path):
    server = Server(tmp_path)
    try:
        codes = enroll(server.svc, "carla")
        assert server.post("carla", codes[0]).json() == {"ok": True, "strategy": "backup_code"}
        child = check_process(server.proc.pid)

        # Stopped, then killed while a request waits on it: that request gets a 503, never
        # an "ok", and its code is still unused (the check never ran).
        os.kill(child, signal.SIGSTOP)

        async def while_stopped() -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                waiting = asyncio.ensure_future(client.post(
                    f"{server.url}/api/v1/verify", headers={"Authorization": f"Bearer {server.key}"},
                    json={"username": "carla", "code": codes[1], "strategy": "backup_code"}))
                await asyncio.sleep(0.5)
                assert not waiting.done()
                os.kill(child, signal.SIGKILL)
                return await waiting

        answer = asyncio.run(while_stopped())
        assert answer.status_code == 503 and answer.json()["ok"] is False
        assert "retry-after" in answer.headers
        assert gone(child, 10)

        # The next request starts another (at most one start a second).
        deadline = time.monotonic() + 15
        while True:
            answer = server.post("carla", codes[1])
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the restart pause
        assert answer.json() == {"ok": True, "strategy": "backup_code"}
        assert server.post("carla", codes[1]).json() == {"ok": False}
        replacement = check_process(server.proc.pid)
        assert replacement != child
        assert server.svc.status("carla").backup_codes_remaining == 8

        # The server killed outright: its check process reads the end of its socket and exits.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        assert gone(replacement, 15)
    finally:
        stop(server.proc)
        for pid in children(server.proc.pid):
            os.kill(pid, signal.SIGKILL)
    log = server.log_path.read_text("utf-8", errors="replace")
    assert "Traceback" not in log
    assert codes[2] not in log and server.key not in log


def test_with_the_check_process_off_the_checks_run_in_the_server_and_hold_the_same_rules(tmp_path):
    server = Server(tmp_path, MFA_PORTAL_API_PROCESS="0")
    try:
        codes = enroll(server.svc, "dora")
        assert server.post("dora", codes[0]).json() == {"ok": True, "strategy": "backup_code"}
        assert server.post("dora", codes[0]).json() == {"ok": False}

        async def race() -> list[httpx.Response]:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20),
                                         timeout=60) as client:
                return await asyncio.gather(*[client.post(
                    f"{server.url}/api/v1/verify", headers={"Authorization": f"Bearer {server.key}"},
                    json={"username": "dora", "code": codes[1]}) for _ in range(20)])

        answers = asyncio.run(race())
        assert sum(1 for a in answers if a.status_code == 200 and a.json()["ok"] is True) == 1
        assert not [pid for pid in children(server.proc.pid)
                    if b"mfa_services.check_child" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    finally:
        stop(server.proc)
    assert "Traceback" not in server.log_path.read_text("utf-8", errors="replace")


def test_the_check_process_is_wanted_unless_turned_off_or_the_clock_is_a_tests():
    from portal import config

    assert checks.wanted({})
    assert checks.wanted({checks.ENV: "1"})
    for off in ("0", "false", "no", "OFF"):
        assert not checks.wanted({checks.ENV: off})
    saved = config.CLOCK
    try:
        config.CLOCK = lambda: 1_000_000.0
        assert not checks.wanted({})
    finally:
        config.CLOCK = saved


# -- the server's side alone, with children that misbehave ------------------------------------

def _ask(proc: checks.CheckProcess, body: bytes = b"{}") -> checks.Answer:
    async def go():
        try:
            return await proc.ask("127.0.0.1", [(b"host", b"x")], body)
        finally:
            link = proc._link
            proc.close()
            if link is not None and link.proc.poll() is None:
                link.proc.kill()
    return asyncio.run(go())


@pytest.mark.parametrize("script", [
    "import sys; sys.exit(3)",                                     # dies at once
    "import socket, sys; socket.socket(fileno=int(sys.argv[1])).sendall(b'\\xff' * 8)",  # garbage
    "import time; time.sleep(60)",                                 # never says it is ready
])
def test_a_check_process_that_does_not_start_fails_closed(script, monkeypatch):
    monkeypatch.setattr(checks, "START_TIMEOUT", 1.0)
    proc = checks.CheckProcess((sys.executable, "-c", script))
    started = time.monotonic()
    assert _ask(proc) == checks.UNAVAILABLE
    assert time.monotonic() - started < 10
    assert proc._link is None


def test_a_check_process_that_answers_nothing_times_out_closed_and_is_stopped(monkeypatch):
    monkeypatch.setattr(checks, "TIMEOUT", 0.5)
    ready_then_silent = ("import socket, sys, time; from mfa_services import checks; "
                         "s = socket.socket(fileno=int(sys.argv[1])); "
                         "s.sendall(checks.frame([checks.READY])); time.sleep(60)")
    proc = checks.CheckProcess((sys.executable, "-c", ready_then_silent))

    async def go():
        answer = await proc.ask("127.0.0.1", [], b"{}")
        child = proc._link.proc  # the connection's end is seen on the next turn of the loop
        await asyncio.sleep(0.2)
        return answer, child

    answer, child = asyncio.run(go())
    assert answer == checks.UNAVAILABLE
    assert proc._link is None  # silent for the whole wait: stopped, replaced on the next request
    assert child.wait(timeout=10) is not None


@pytest.fixture
def inherited(tmp_path, monkeypatch) -> tuple[mfa_core.MFAService, list[tuple[bytes, bytes]]]:
    """A data dir the check process inherits from the environment, and headers with a client key."""
    data_dir = tmp_path / "data"
    svc = mfa_core.open_service(data_dir, environ={})
    key = api_clients.open_registry(data_dir, svc).add("unit", rate=100_000)
    monkeypatch.setenv("MFA_PORTAL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MFA_PORTAL_DEMO", "0")
    return svc, [(b"authorization", f"Bearer {key}".encode())]


def backup_body(username: str, code: str) -> bytes:
    return f'{{"username": "{username}", "code": "{code}"}}'.encode()


def test_the_real_check_process_answers_for_the_data_dir_it_inherits(inherited):
    svc, headers = inherited
    codes = enroll(svc, "erin")
    proc = checks.CheckProcess()

    async def go():
        try:
            body = backup_body("erin", codes[0])
            return [await proc.ask(None, headers, body), await proc.ask(None, headers, body),
                    await proc.ask(None, [], body), await proc.ask(None, headers, b"[")]
        finally:
            proc.close()

    ok, again, no_key, bad = asyncio.run(go())
    assert ok == (200, {"ok": True, "strategy": "backup_code"}, {})
    assert again == (200, {"ok": False}, {})
    assert no_key[0] == 401 and bad[0] == 400
    assert svc.status("erin").backup_codes_remaining == 9


def test_a_check_process_left_on_a_closed_event_loop_is_stopped_and_replaced(inherited):
    svc, headers = inherited
    codes = enroll(svc, "fern")
    proc = checks.CheckProcess()

    try:
        assert asyncio.run(proc.ask(None, headers, backup_body("fern", codes[0])))[1] == {
            "ok": True, "strategy": "backup_code"}
        first = proc._link.proc
        assert asyncio.run(proc.ask(None, headers, backup_body("fern", codes[1])))[1] == {
            "ok": True, "strategy": "backup_code"}
        assert proc._link.proc is not first
        assert gone(first.pid, 10)
    finally:
        if proc._link is not None and proc._link.proc.poll() is None:
            proc._link.proc.kill()


def test_anything_unforeseen_in_a_check_is_a_503_in_either_place_it_runs(monkeypatch, caplog):
    from mfa_services import api

    def broken(*_):
        raise RuntimeError("mfap_secret-looking detail")

    monkeypatch.setattr(api, "_answer", broken)
    assert api.answer("127.0.0.1", {}, b"{}") == checks.UNAVAILABLE
    assert "RuntimeError" in caplog.text and "mfap_secret" not in caplog.text


def test_only_what_a_check_reads_goes_to_the_check_process(inherited):
    """Issue 20 F2: every header went into the frame; 180 kB of bytes 0x80-0xff (escaped six
    times as long) made it longer than MAX_FRAME and the child exited. Now only the key and the
    content type go, each capped, and the check is answered."""
    svc, headers = inherited
    codes = enroll(svc, "gail")
    proc = checks.CheckProcess()
    junk = [(b"x-junk", b"\xe9" * 180_000), (b"cookie", b"a" * 500_000)]

    async def go():
        try:
            return await proc.ask(None, headers + junk, backup_body("gail", codes[0]))
        finally:
            proc.close()

    assert asyncio.run(go()) == (200, {"ok": True, "strategy": "backup_code"}, {})
    assert checks._latin1(headers + junk + [(b"Content-Type", b"j" * 9000)]) == [
        [headers[0][0].decode(), headers[0][1].decode()], ["content-type", "j" * 256]]


def test_an_unreadable_frame_never_ends_the_check_process(inherited):
    """A frame over MAX_FRAME, one that is not JSON, one of the wrong shape: each is dropped or
    answered 400, and the same child answers the next request."""
    svc, headers = inherited
    codes = enroll(svc, "hana")
    proc = checks.CheckProcess()

    async def go():
        try:
            link = await proc._ready()
            link.transport.write(checks._HEADER.pack(checks.MAX_FRAME + 10)
                                 + b"x" * (checks.MAX_FRAME + 10))
            link.transport.write(checks._HEADER.pack(3) + b"{{{")
            link.transport.write(checks.frame([10**9, "two", "parts"]))
            link.transport.write(checks.frame([10**9 + 1, None, [["a"]], None]))
            answer = await proc.ask(None, headers, backup_body("hana", codes[0]))
            return answer, proc._link is link and link.proc.poll() is None
        finally:
            proc.close()

    answer, same = asyncio.run(go())
    assert answer == (200, {"ok": True, "strategy": "backup_code"}, {})
    assert same


def test_the_frame_reader_skips_a_broken_frame_and_reads_on():
    reader = checks.FrameReader()
    big = checks._HEADER.pack(checks.MAX_FRAME + 3) + b"y" * (checks.MAX_FRAME + 3)
    good = checks.frame([5, None, [], "{}"])
    found = reader.feed(big[:1000])
    found += reader.feed(big[1000:] + checks._HEADER.pack(2) + b"{]" + good[:3])
    found += reader.feed(good[3:])
    assert found == [checks.FrameReader.BROKEN, checks.FrameReader.BROKEN, [5, None, [], "{}"]]
