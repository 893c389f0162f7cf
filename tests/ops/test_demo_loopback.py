"""`make run` listens on loopback only unless told otherwise, and never serves the demo to others."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAMP = ".venv/.installed-stamp"  # make must not reinstall here: the venv is the one running us

pytestmark = pytest.mark.skipif(shutil.which("make") is None or not (REPO / ".venv/bin/streamlit").exists(),
                                reason="needs make and the project's .venv")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MFA_PORTAL_", "STREAMLIT_"))}
    env.update(MFA_PORTAL_DATA_DIR=str(tmp_path / "data"), STREAMLIT_SERVER_PORT=str(port),
               STREAMLIT_SERVER_HEADLESS="true", STREAMLIT_SERVER_FILE_WATCHER_TYPE="none",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _listening(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def _serve(tmp_path: Path, **extra: str):
    """Start `make run` (without reinstalling), wait for its health check; (proc, port, log path)."""
    port = _free_port()
    log = tmp_path / "make-run.log"
    host = extra.get("MFA_PORTAL_ADDRESS", "127.0.0.1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "-s", "-o", STAMP, "run"], cwd=REPO,
                                env=_env(tmp_path, port, **extra), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, port, log
        except OSError:
            time.sleep(0.2)  # polling a starting process
    _stop(proc)
    raise AssertionError("make run did not come up:\n" + log.read_text())


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_make_run_listens_on_127_0_0_1_only_and_prints_no_network_url(tmp_path):
    proc, port, log = _serve(tmp_path)
    try:
        assert _listening(port) == {"127.0.0.1"}
    finally:
        _stop(proc)
    printed = log.read_text()
    # Printed as localhost (passkeys need a name, not an IP address), served on 127.0.0.1.
    assert f"URL: http://localhost:{port}" in printed
    assert "Network URL" not in printed and "External URL" not in printed


def test_mfa_portal_address_picks_another_address(tmp_path):
    proc, port, log = _serve(tmp_path, MFA_PORTAL_ADDRESS="127.0.0.2")  # still loopback: demo allowed
    try:
        assert _listening(port) == {"127.0.0.2"}
    finally:
        _stop(proc)
    assert f"URL: http://127.0.0.2:{port}" in log.read_text()


@pytest.mark.parametrize("variable", ["MFA_PORTAL_ADDRESS", "STREAMLIT_SERVER_ADDRESS"])
def test_serving_other_machines_with_demo_mode_on_is_refused(tmp_path, variable):
    port = _free_port()
    done = subprocess.run(["make", "-s", "-o", STAMP, "run"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=_env(tmp_path, port, **{variable: "0.0.0.0"}))
    assert done.returncode != 0
    assert "MFA_PORTAL_DEMO=0" in done.stderr
    assert not _listening(port) and not (tmp_path / "data").exists()
