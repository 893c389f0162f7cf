"""TCP_NODELAY on accepted connections (mfa_services.api.NoDelayMiddleware).

Streamlit 1.67 listens on a socket made with ``proto=0``, so asyncio never
turns Nagle off on the connections it accepts, and each keep-alive response
waited ~40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from mfa_services import api


class _Transport:
    def __init__(self, sock) -> None:
        self.sock = sock

    def get_extra_info(self, name: str):
        return self.sock if name == "socket" else None


def test_set_nodelay_turns_nagle_off_on_a_socket_accepted_from_a_proto_0_listener():
    with socket.socket(socket.AF_INET) as listener:  # proto=0, as Streamlit makes it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == 0
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                assert api.set_nodelay(_Transport(accepted)) is True
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert client


def test_set_nodelay_leaves_what_it_cannot_use_alone():
    assert api.set_nodelay(None) is False
    assert api.set_nodelay(object()) is False
    assert api.set_nodelay(_Transport(None)) is False
    a, b = socket.socketpair()  # AF_UNIX: no TCP options
    with a, b:
        assert api.set_nodelay(_Transport(a)) is False


def _keep_alive_round_trips(url: str, path: str, count: int = 20) -> list[float]:
    parts = urlsplit(url)
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    times = []
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        reader = sock.makefile("rb")
        for _ in range(count):
            t = time.perf_counter()
            sock.sendall(request)
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            times.append(time.perf_counter() - t)
    return times


def test_keep_alive_responses_do_not_wait_for_the_delayed_ack(portal):
    # With Nagle on, every one of these took >= 40 ms on loopback (the delayed ACK), however
    # idle the machine. The fastest of 20 tells, not the median: on a busy machine many
    # round trips are slow for other reasons, but not all of them.
    for path in ("/api/v1/health", "/_stcore/health"):
        times = _keep_alive_round_trips(portal.url, path)
        assert min(times) < 0.03, (path, times)


def _scope(version: str, connection: bytes | None) -> dict:
    headers = [(b"host", b"127.0.0.1")] + ([(b"connection", connection)] if connection else [])
    return {"type": "http", "http_version": version, "headers": headers}


def test_requests_that_keep_their_connection_get_nodelay():
    assert api._keeps_alive(_scope("1.1", None))
    assert api._keeps_alive(_scope("1.1", b"keep-alive"))
    assert api._keeps_alive(_scope("1.0", b"Keep-Alive"))


def test_requests_that_close_their_connection_are_left_to_nagle():
    # The close sends the response's last segment at once: nothing waits behind it.
    assert not api._keeps_alive(_scope("1.1", b"close"))
    assert not api._keeps_alive(_scope("1.1", b"Close"))
    assert not api._keeps_alive(_scope("1.0", None))
