"""What the server takes from a connection, against real servers (issue 20: F2, F5, F9, F10, metrics).

- F2: one request's headers never stop the API's check process (431 before anything is
  forwarded; the child gets only what a check reads).
- F5: ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are ignored without
  ``MFA_PORTAL_PROXY_HEADER`` (uvicorn trusts them from 127.0.0.1 by default), under
  ``streamlit run`` and under ``uvicorn app:app``.
- F9: slow connections are closed (header and body timeouts, set small here), and one
  address holds at most so many connections.
- F10: a body over its limit is refused (413) without being read.
- ``/_stcore/metrics`` is not public.

Each server here is started with the limits small, and every wait polls for the outcome with a
generous deadline (nothing races the machine's speed).
"""

from __future__ import annotations

import json
import resource
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import mfa_core
from mfa_core import clients as api_clients

from .conftest import REPO, free_port, server_env, start_portal, stop, wait_healthy

LIMITS = dict(MFA_PORTAL_HEADER_TIMEOUT="1", MFA_PORTAL_BODY_TIMEOUT="1",
              MFA_PORTAL_MAX_CONNECTIONS_PER_ADDRESS="8")


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, data_dir: Path, log_path: Path,
                 svc: mfa_core.MFAService, key: str) -> None:
        self.url, self.proc, self.data_dir, self.log_path = url, proc, data_dir, log_path
        self.svc, self.key = svc, key
        self.port = int(url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")


def _prepare(root: Path) -> tuple[Path, mfa_core.MFAService, str]:
    data_dir = root / "data"
    svc = mfa_core.open_service(data_dir, environ={})
    key = api_clients.open_registry(data_dir, svc).add("limits", rate=100_000, actor="api-limits")
    return data_dir, svc, key


def _finish(server: Server) -> None:
    stop(server.proc)
    assert "Traceback" not in server.log(), server.log()[-3000:]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Server:
    """``streamlit run app.py`` with 1 s header and body timeouts and 8 connections an address."""
    root = tmp_path_factory.mktemp("limits")
    data_dir, svc, key = _prepare(root)
    log_path = root / "server.log"
    # Demo mode off: in demo mode any request with forwarding headers gets a plain 403
    # (portal.startup.DemoLoopbackGuard), and these tests forge them to see them ignored.
    url, proc = start_portal(data_dir, log_path, MFA_PORTAL_DEMO="0", **LIMITS)
    server = Server(url, proc, data_dir, log_path, svc, key)
    yield server
    _finish(server)


def _start(cmd: list[str], data_dir: Path, log_path: Path, url: str, nofile: int | None = None,
           **env: str) -> subprocess.Popen:
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=server_env(data_dir, **env), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=limit)
    try:
        wait_healthy(url, proc, log_path)
    except BaseException:
        stop(proc)
        raise
    return proc


@pytest.fixture(scope="module")
def under_uvicorn(tmp_path_factory) -> Server:
    """``uvicorn app:app``: uvicorn's own defaults (proxy headers trusted from 127.0.0.1)."""
    root = tmp_path_factory.mktemp("uvicorn")
    data_dir, svc, key = _prepare(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    proc = _start([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                   "--port", str(port)], data_dir, log_path, url, MFA_PORTAL_DEMO="0")
    server = Server(url, proc, data_dir, log_path, svc, key)
    yield server
    _finish(server)


def _verify(server: Server, username: str, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {server.key}", **headers}
    return httpx.post(f"{server.url}/api/v1/verify", json={"username": username, "code": "123456"},
                      headers=sent, timeout=60)


# -- raw connections -------------------------------------------------------------------

def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` s (what it sent first is read)."""
    return sock in _closing([sock], timeout)


def _closing(socks: list[socket.socket], timeout: float,
             enough: int | None = None) -> set[socket.socket]:
    """Those of ``socks`` the server closes within ``timeout`` s (stops once ``enough`` are)."""
    enough = len(socks) if enough is None else enough
    closed: set[socket.socket] = set()
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(closed) < enough:
            events = selector.select(max(0.0, deadline - time.monotonic()))
            for key, _ in events:
                try:
                    data = key.fileobj.recv(65536)
                except ConnectionError:
                    data = b""
                except BlockingIOError:
                    continue
                if not data:
                    closed.add(key.fileobj)
                    selector.unregister(key.fileobj)
            if time.monotonic() >= deadline:
                break
    return closed


def _raw_request(port: int, data: bytes) -> bytes | None:
    """Send ``data`` and read the answer until the server closes; None when it reset us."""
    sock = _connect(port)
    sock.settimeout(60)
    got = b""
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending: what it answered may still be there
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                break
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got or None


def _status(answer: bytes | None) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer else None


def _send_body(port: int, head: bytes, total: int) -> tuple[int, bytes]:
    """Send ``head`` then up to ``total`` bytes of body; (bytes of body sent, the answer)."""
    sock = _connect(port)
    sock.setblocking(False)
    sent, answer = 0, b""
    chunk = b"x" * 65536
    pending = head
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 5)
            if readable:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    break
                answer += data
                continue
            if writable:
                piece = pending or chunk[:total - sent]
                try:
                    n = sock.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
                except BlockingIOError:
                    continue
                if pending:
                    pending = pending[n:]
                else:
                    sent += n
            elif sent >= total and not readable:
                continue
        # Refused while still sending: the answer may have come in just before the reset.
        sock.setblocking(True)
        sock.settimeout(30)
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return sent, answer


# -- F2: one request without a key never stops the check process ---------------------------

def test_huge_headers_are_refused_with_431_and_never_stop_the_check_process(guarded):
    """1.2 MB of headers, and 180 kB of bytes 0x80-0xff (6x as long once escaped in JSON),
    while a keyed client verifies: every legitimate answer is a real one, none a 503."""
    answers: list[int] = []
    done = threading.Event()

    def legitimate() -> None:
        n = 0
        while not done.is_set() or n < 10:
            answers.append(_verify(guarded, f"nobody-f2-{n}").status_code)
            n += 1

    worker = threading.Thread(target=legitimate)
    worker.start()
    try:
        for junk in (b"a" * 1_200_000, b"\xe9" * 180_000) * 2:
            request = (b"POST /api/v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: " + junk +
                       b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            status = _status(_raw_request(guarded.port, request))
            assert status in (431, None), status  # refused (or reset while still sending)
            # right after it: the check process is still there
            assert _verify(guarded, "nobody-f2-after").status_code in (200, 429)
    finally:
        done.set()
        worker.join(120)
    assert answers and all(status in (200, 429) for status in answers), answers
    assert "unreadable request" not in guarded.log()


# -- F5: the client's address and scheme are the connection's own ---------------------------

def _keyless_with_forged_addresses(server: Server, tag: str) -> list[int]:
    statuses = []
    for n in range(40):
        answer = httpx.post(f"{server.url}/api/v1/verify", json={"username": "x", "code": "1"},
                            headers={"Authorization": "Bearer wrong-key",
                                     "X-Forwarded-For": f"203.0.{tag}.{n}"}, timeout=60)
        statuses.append(answer.status_code)
    return statuses


@pytest.mark.parametrize("which", ["streamlit", "uvicorn"])
def test_a_forged_x_forwarded_for_does_not_pick_the_source_of_wrong_keys(which, request):
    """60 wrong keys were all 401 with a new forged address each: now they are counted against
    the real address (30 a minute, then 429), and the audit trail names the real address."""
    server = request.getfixturevalue("guarded" if which == "streamlit" else "under_uvicorn")
    tag = "113" if which == "streamlit" else "114"
    statuses = _keyless_with_forged_addresses(server, tag)
    assert 429 in statuses, statuses
    assert set(statuses) <= {401, 429}
    details = [e.detail or "" for e in server.svc.audit() if e.event == "api_auth_failed"]
    assert details and not any(f"203.0.{tag}." in d for d in details), details[:5]
    assert all("127.0.0.1" in d for d in details), details[:5]


@pytest.mark.parametrize("which", ["streamlit", "uvicorn"])
def test_a_forged_x_forwarded_proto_gets_no_secure_cookie_over_plain_http(which, request):
    server = request.getfixturevalue("guarded" if which == "streamlit" else "under_uvicorn")
    token = server.svc.sessions.start("alice", second_factor_passed=True)
    ticket = server.svc.sessions.ticket(token)
    answer = httpx.post(f"{server.url}/auth/session", json={"ticket": ticket}, timeout=60,
                        headers={"Origin": server.url, "X-Forwarded-Proto": "https",
                                 "X-Forwarded-For": "198.51.100.7"})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("mfa_portal_session=") and "secure" not in cookie.lower(), cookie


def _echo_server(tmp_path: Path, **env: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    log_path = tmp_path / "echo.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.api.peer_echo:app",
                                 "--host", "127.0.0.1", "--port", str(port)], cwd=REPO,
                                env=server_env(tmp_path, **env), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()
        try:
            httpx.get(url, timeout=2)
            return url, proc
        except httpx.HTTPError:
            time.sleep(0.2)  # polling a starting process
    stop(proc)
    raise RuntimeError(log_path.read_text())


def _seen(url: str, headers: dict[str, str]) -> tuple[list, list]:
    import asyncio

    import websockets

    async def over_websocket():
        async with websockets.connect(url.replace("http://", "ws://") + "/_stcore/stream",
                                      additional_headers=headers, open_timeout=30) as ws:
            return json.loads(await ws.recv())
    return asyncio.run(over_websocket()), httpx.get(url, headers=headers, timeout=30).json()


FORGED = {"X-Forwarded-For": "192.0.2.99", "X-Forwarded-Proto": "https"}


def test_the_pages_websocket_gets_the_connections_own_peer_and_scheme(tmp_path):
    """What st.context.ip_address (the sign-in page's password throttle) and the scheme come
    from: the websocket's scope, which uvicorn rewrote from forged headers on loopback."""
    url, proc = _echo_server(tmp_path)
    try:
        websocket, http = _seen(url, FORGED)
    finally:
        stop(proc)
    assert websocket == ["127.0.0.1", "ws"] and http == ["127.0.0.1", "http"]


def test_with_the_proxy_header_configured_its_last_entry_and_scheme_are_used(tmp_path):
    url, proc = _echo_server(tmp_path, MFA_PORTAL_PROXY_HEADER="X-Forwarded-For")
    try:
        websocket, http = _seen(url, {**FORGED, "X-Forwarded-For": "6.6.6.6, 192.0.2.99"})
    finally:
        stop(proc)
    assert websocket == ["192.0.2.99", "wss"] and http == ["192.0.2.99", "https"]


# -- F9: slow connections are closed ----------------------------------------------------

def test_a_connection_that_sends_nothing_is_closed(guarded):
    sock = _connect(guarded.port)
    try:
        assert _closed(sock, 30)
    finally:
        sock.close()


def test_a_connection_trickling_its_headers_is_closed(guarded):
    sock = _connect(guarded.port)
    try:
        sock.sendall(b"POST /api/v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + 30
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"X")  # one byte of a header, then a pause
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = _closed(sock, 0.3)
        assert closed
    finally:
        sock.close()


def test_a_connection_trickling_its_body_is_closed(guarded):
    sock = _connect(guarded.port)
    try:
        sock.sendall(b"POST /api/v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        deadline = time.monotonic() + 30
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = _closed(sock, 0.3)
        assert closed
    finally:
        sock.close()


@pytest.fixture(scope="module")
def few_descriptors(tmp_path_factory) -> Server:
    """A server that may open 300 descriptors, with a header timeout too long to matter here."""
    root = tmp_path_factory.mktemp("nofile")
    data_dir, svc, key = _prepare(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    proc = _start(cmd, data_dir, log_path, url, nofile=300, MFA_PORTAL_HEADER_TIMEOUT="600",
                  MFA_PORTAL_MAX_CONNECTIONS_PER_ADDRESS="16", MFA_PORTAL_METRICS="1")
    server = Server(url, proc, data_dir, log_path, svc, key)
    yield server
    stop(server.proc)


def test_many_slow_connections_from_one_address_leave_the_server_to_the_others(few_descriptors):
    """400 half-open requests from 127.0.0.3 to a server with 300 descriptors: past 16 they are
    closed at once, and a client from another address is still served (pages and API)."""
    server = few_descriptors
    slow = []
    try:
        for _ in range(400):
            sock = _connect(server.port, "127.0.0.3")
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except ConnectionError:
                pass  # closed by the server already
            slow.append(sock)
        closed = _closing(slow, 60, enough=400 - 16)
        assert len(closed) >= 400 - 16, len(closed)
        assert httpx.get(f"{server.url}/api/v1/health", timeout=60).status_code == 200
        assert httpx.get(f"{server.url}/", timeout=60).status_code == 200
        assert _verify(server, "nobody-f9").status_code == 200
        assert len(_closing([s for s in slow if s not in closed], 1)) == 0  # 16 still open
    finally:
        for sock in slow:
            sock.close()


# -- F10: a body over its limit is never read -------------------------------------------

@pytest.mark.parametrize("path", ["/auth/session", "/api/v1/verify"])
def test_a_large_declared_body_is_refused_before_it_is_sent(guarded, path):
    total = 50 * 1024 * 1024
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\n"
            f"Origin: {guarded.url}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {total}\r\n\r\n").encode()
    sent, answer = _send_body(guarded.port, head, total)
    assert sent < total // 2, sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("path", ["/auth/session", "/api/v1/verify"])
def test_a_large_chunked_body_is_cut_off_at_its_limit(guarded, path):
    total = 50 * 1024 * 1024
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\n"
            f"Origin: {guarded.url}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    # One chunk as large as the whole: the server refuses after its first bytes.
    head += f"{total:x}\r\n".encode()
    sent, answer = _send_body(guarded.port, head, total)
    assert sent < total // 2, sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# -- metrics --------------------------------------------------------------------------

def test_streamlits_metrics_are_not_public(guarded):
    assert httpx.get(f"{guarded.url}/_stcore/metrics", timeout=60).status_code == 404


def test_metrics_when_configured_are_served_to_loopback(few_descriptors):
    assert httpx.get(f"{few_descriptors.url}/_stcore/metrics", timeout=60).status_code == 200


def test_slow_connections_from_many_addresses_make_room_for_a_fast_one(few_descriptors):
    """350 half-open requests from 25 addresses (each under its own cap) to a server with 300
    descriptors: at 240 open (four fifths), each new connection closes the one that has waited
    longest for its headers; a client from another address is still served."""
    server = few_descriptors
    slow = []
    try:
        for n in range(350):
            sock = _connect(server.port, f"127.0.1.{10 + n % 25}")
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except ConnectionError:
                pass
            slow.append(sock)
        assert httpx.get(f"{server.url}/api/v1/health", timeout=60).status_code == 200
        assert httpx.get(f"{server.url}/", timeout=60).status_code == 200
        assert _verify(server, "nobody-f9-many").status_code == 200
        assert len(_closing(slow, 60, enough=350 - 240)) >= 350 - 240
    finally:
        for sock in slow:
            sock.close()
