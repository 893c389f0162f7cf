"""The portal refuses to start what must not serve, however it is started (F6, issue 21, F16).

- a data dir that holds data but lost keys.json (F6), a database without configured keys
  (issue 21): one line for the operator, the process exits, no keys are generated;
- demo mode on anything but loopback (issue 21 #3): `streamlit run --server.address
  0.0.0.0`, `uvicorn --host 0.0.0.0`; requests from elsewhere get nothing of the demo.
"""

from __future__ import annotations

import asyncio
import threading
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import mfa_core
from mfa_core import keys
from mfa_core.users import UserDirectory

from ..support import FakeClock, T0, enable_totp

REPO = Path(__file__).resolve().parents[2]
REFUSED = "MFA Portal refuses to start:"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFA_PORTAL_", "STREAMLIT_"))}
    env.update(MFA_PORTAL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def _streamlit(data_dir: Path, address: str, port: int, **extra: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
            "--server.address", address, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def _refused(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a server that must refuse: it exits by itself (the timeout only guards a hang)."""
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    return done


def _refusal_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if REFUSED in line]


def _used_data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    clock = FakeClock(T0)
    UserDirectory(data_dir).add("carol", "carol-pass-1")
    svc = mfa_core.open_service(data_dir, clock=clock, environ={})
    enable_totp(svc, clock, "carol")
    return data_dir


# -- keys -----------------------------------------------------------------------------------

def test_streamlit_run_on_data_without_keys_refuses_in_one_line_and_generates_none(tmp_path):
    data_dir = _used_data_dir(tmp_path)
    (data_dir / keys.KEY_FILE).unlink()
    port = _free_port()
    done = _refused(_streamlit(data_dir, "127.0.0.1", port), _env(data_dir, MFA_PORTAL_DEMO="0"))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = _refusal_lines(done)
    assert str(data_dir / keys.KEY_FILE) in line and "MFA_PORTAL_FERNET_KEYS" in line
    assert "Traceback" not in done.stderr
    assert not (data_dir / keys.KEY_FILE).exists()


def test_streamlit_run_on_a_database_without_keys_refuses(tmp_path):
    """No database is needed: the keys are checked before anything connects."""
    port = _free_port()
    data_dir = tmp_path / "data"
    done = _refused(_streamlit(data_dir, "127.0.0.1", port),
                    _env(data_dir, MFA_PORTAL_DEMO="0",
                         MFA_PORTAL_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = _refusal_lines(done)
    assert "MFA_PORTAL_FERNET_KEYS" in line and "never generated" in line
    assert "nobody" not in line
    assert not (data_dir / keys.KEY_FILE).exists()


def test_the_check_process_refuses_data_without_keys(tmp_path):
    data_dir = _used_data_dir(tmp_path)
    (data_dir / keys.KEY_FILE).unlink()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        done = subprocess.run([sys.executable, "-m", "mfa_services.check_child", str(theirs.fileno())],
                              pass_fds=(theirs.fileno(),), cwd=REPO, capture_output=True, text=True,
                              timeout=120, env=_env(data_dir))
        theirs.close()
        ours.settimeout(5)
        assert ours.recv(100) == b""  # no ready frame: the server's requests get 503
    assert done.returncode == 2
    assert "refuses to start" in done.stderr and str(data_dir / keys.KEY_FILE) in done.stderr
    assert not (data_dir / keys.KEY_FILE).exists()


# -- demo mode: loopback only --------------------------------------------------------------

def test_streamlit_run_on_every_interface_in_demo_mode_refuses(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    done = _refused(_streamlit(data_dir, "0.0.0.0", port), _env(data_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = _refusal_lines(done)
    assert "0.0.0.0" in line and "MFA_PORTAL_DEMO=0" in line
    assert not (data_dir / "users.yaml").exists()  # no demo users were made


def test_uvicorn_on_every_interface_in_demo_mode_refuses(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--host", "0.0.0.0", "--port", str(port)]
    done = _refused(cmd, _env(data_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = _refusal_lines(done)
    assert "0.0.0.0" in line and "MFA_PORTAL_DEMO=0" in line


def test_streamlit_run_for_other_machines_over_plain_http_refuses(tmp_path):
    """F3: without HTTPS the cookie would go in clear, and to every port of the host."""
    port = _free_port()
    data_dir = tmp_path / "data"
    done = _refused(_streamlit(data_dir, "0.0.0.0", port), _env(data_dir, MFA_PORTAL_DEMO="0"))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = _refusal_lines(done)
    assert "plain HTTP" in line and "MFA_PORTAL_PROXY_HEADER" in line and "MFA_PORTAL_INSECURE_HTTP=1" in line


def test_streamlit_run_on_every_interface_serves_behind_a_tls_proxy_with_demo_mode_off(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_streamlit(data_dir, "0.0.0.0", port), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_env(data_dir, MFA_PORTAL_DEMO="0",
                                         MFA_PORTAL_PROXY_HEADER="X-Forwarded-For"),
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)  # polling a starting process
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert REFUSED not in log.read_text()


def _ask(guard, scope) -> list[dict]:
    sent: list[dict] = []
    reached: list[bool] = []

    async def app(scope, receive, send):
        reached.append(True)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    # A loop of its own in a thread of its own: a session-scoped Playwright (sync API) leaves
    # an event loop running in this thread, where asyncio.run refuses to start another.
    worker = threading.Thread(target=asyncio.run, args=(guard(app)(scope, receive, send),))
    worker.start()
    worker.join(60)
    return sent if not reached else ["reached"]


@pytest.mark.parametrize("client, server, headers, served", [
    (("127.0.0.1", 5000), ("127.0.0.1", 8501), [], True),
    (("::1", 5000), ("::1", 8501), [], True),
    (("10.1.2.3", 5000), ("10.1.2.4", 8501), [], False),           # another machine
    (("127.0.0.1", 5000), ("10.1.2.4", 8501), [], False),          # over a network address
    (("127.0.0.1", 5000), ("127.0.0.1", 8501),
     [(b"x-forwarded-for", b"203.0.113.9")], False),                # a proxy on loopback relays others
    (None, None, [], False),                                        # unknown peer: fail closed
])
def test_demo_mode_answers_only_loopback_requests(monkeypatch, client, server, headers, served):
    from portal import startup
    monkeypatch.delenv("MFA_PORTAL_DEMO", raising=False)
    monkeypatch.delenv("MFA_PORTAL_PROXY_HEADER", raising=False)
    for kind in ("http", "websocket"):
        scope = {"type": kind, "client": client, "server": server, "headers": headers, "path": "/"}
        got = _ask(startup.DemoLoopbackGuard, scope)
        if served:
            assert got == ["reached"]
        elif kind == "http":
            assert got[0]["status"] == 403 and b"demo" in got[1]["body"] and b"admin" not in got[1]["body"]
        else:
            assert got == [{"type": "websocket.close", "code": 1008}]
    monkeypatch.setenv("MFA_PORTAL_DEMO", "0")  # demo mode off: the guard lets everything through
    scope = {"type": "http", "client": client, "server": server, "headers": headers, "path": "/"}
    assert _ask(startup.DemoLoopbackGuard, scope) == ["reached"]


def test_loopback_addresses():
    from portal.startup import is_loopback
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost", "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.5", "", None, "example.com"]))



@pytest.mark.parametrize("ip, headers, refused", [
    ("127.0.0.1", {"Host": "localhost:8501"}, False),
    ("10.1.2.3", {"Host": "10.1.2.4:8501"}, True),
    ("127.0.0.1", {"Host": "x", "X-Forwarded-For": "203.0.113.9"}, True),
    (None, {"Host": "x"}, False),       # st.App gives the script no peer: the middleware judged it
    (None, {"Host": "x", "Forwarded": "for=203.0.113.9"}, True),
    (None, {}, False),                  # no browser behind the run (AppTest, a bare run)
])
def test_a_page_run_without_app_py_shows_nothing_of_the_demo_to_another_machine(monkeypatch, ip, headers,
                                                                                 refused):
    """`streamlit run streamlit_app.py` has no app.py middleware: the sign-in guard checks each run."""
    from portal import startup
    monkeypatch.delenv("MFA_PORTAL_DEMO", raising=False)
    monkeypatch.delenv("MFA_PORTAL_PROXY_HEADER", raising=False)
    monkeypatch.setattr(startup, "_page_checked", True)
    shown = startup.page_refusal(ip, headers)
    assert bool(shown) is refused
    if shown:
        assert "admin" not in shown and "demo" in shown
    monkeypatch.setenv("MFA_PORTAL_DEMO", "0")
    assert startup.page_refusal(ip, headers) is None
