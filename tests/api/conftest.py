"""The verification API against a real server: ``streamlit run app.py`` on a free loopback port.

One server for the whole directory (it takes a few seconds to start), on a
fresh data dir in demo mode (so alice, bob and admin exist in the user
directory). Tests enroll their own users with the engine on the same data
dir (``svc``, real time: the server's clock is real time too) and add their
own API clients; the server sees both at once (the records and the client
registry are files it re-reads).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

import mfa_core
from mfa_core import clients as api_clients
from mfa_core.users import UserDirectory

REPO = Path(__file__).resolve().parents[2]
TOTP_PERIOD = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_PORTAL_")}
    # MFA_PORTAL_POLICY_CACHE=0: the server reads the two-step policy at every use, so a test
    # sees its change at once (the default keeps a read 5 s).
    env.update(MFA_PORTAL_DATA_DIR=str(data_dir), MFA_PORTAL_DEMO="1", PYTHONUNBUFFERED="1",
               PYTHONDONTWRITEBYTECODE="1", MFA_PORTAL_POLICY_CACHE="0")
    env.update(extra)
    return env


@dataclass
class Portal:
    """The running server, the engine on its data dir, and helpers to call the API."""

    url: str
    data_dir: Path
    log_path: Path
    svc: mfa_core.MFAService
    registry: api_clients.FileClientRegistry
    key: str  # the "tests" client's key
    proc: subprocess.Popen

    def post(self, body: Any = None, *, key: str | None = "default", content: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        sent = dict(headers or {})
        key = self.key if key == "default" else key
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if content is None:
            return httpx.post(f"{self.url}/api/v1/verify", json=body, headers=sent, timeout=30)
        return httpx.post(f"{self.url}/api/v1/verify", content=content, headers=sent, timeout=30)

    def enroll(self, username: str, backup_codes: bool = False) -> tuple[str, list[str]]:
        """TOTP on (verified with the previous step's code, so the current one is fresh)."""
        secret = self.svc.create_totp(username).secret
        self.svc.verify_totp(username, pyotp.TOTP(secret).at(time.time() - TOTP_PERIOD))
        codes = self.svc.create_backup_codes(username).codes if backup_codes else []
        return secret, codes

    def server_log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")


def fresh_code(secret: str) -> str:
    """The current code, from a step with at least 3 s left (so it is still current when checked)."""
    if TOTP_PERIOD - time.time() % TOTP_PERIOD < 3:
        time.sleep(TOTP_PERIOD - time.time() % TOTP_PERIOD + 0.1)  # the TOTP clock, not the server
    return pyotp.TOTP(secret).now()


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a starting process
    raise RuntimeError(f"the server did not become healthy:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_portal(data_dir: Path, log_path: Path, **env: str) -> tuple[str, subprocess.Popen]:
    """``streamlit run app.py`` on a free port; ``env`` adds settings (e.g. a database URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=server_env(data_dir, **env), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_healthy(url, proc, log_path)
    except BaseException:
        stop(proc)
        raise
    return url, proc


@pytest.fixture(scope="session")
def portal(tmp_path_factory) -> Portal:
    root = tmp_path_factory.mktemp("api")
    data_dir = root / "data"
    # The demo users first: the portal creates them only in a data dir without data (F16),
    # and the API client below is data.
    UserDirectory(data_dir).ensure_demo_users()
    svc = mfa_core.open_service(data_dir, environ={})  # keys generated here, read by the server
    registry = api_clients.open_registry(data_dir, svc)
    key = registry.add("tests", rate=100_000, actor="api-tests")
    log_path = root / "server.log"
    url, proc = start_portal(data_dir, log_path)
    yield Portal(url=url, data_dir=data_dir, log_path=log_path, svc=svc, registry=registry,
                 key=key, proc=proc)
    stop(proc)
    log = log_path.read_text("utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]
