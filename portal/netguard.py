"""What the portal's server takes from a connection before anything reaches a page or the API.

Two pieces, both installed by ``portal.server`` (so ``streamlit run app.py``
and ``uvicorn app:app`` get the same):

- ``RealPeer`` (ASGI, the outermost of the portal's middleware): the client's
  address and scheme are the connection's own (``scope["client"]``,
  ``scope["scheme"]``, read back from uvicorn's transport), whatever
  ``X-Forwarded-For`` / ``X-Forwarded-Proto`` say. uvicorn rewrites both for
  any connection from 127.0.0.1 by default (``proxy_headers=True``,
  ``forwarded_allow_ips``), and Streamlit's ``st.App`` gives no way to turn
  that off, so a local client could pick its own address per request (the
  password throttle, the API's bad-key limit, the audit trail) and get a
  ``Secure`` cookie over plain HTTP. Only when the operator names the proxy's
  header (``MFA_PORTAL_PROXY_HEADER``) are the client's address (its last
  entry) and ``X-Forwarded-Proto`` (its last entry) believed. It also refuses
  request headers over ``MAX_HEADER_BYTES`` (431) and Streamlit's
  ``/_stcore/metrics`` (404 unless ``MFA_PORTAL_METRICS`` is on, and then to
  loopback clients only).
- ``install()``: limits on the connections themselves, added to uvicorn's
  HTTP protocols (httptools and h11): the request line and headers must
  arrive within ``HEADER_TIMEOUT`` seconds of the connection opening (or of
  the first byte of the next request on a kept-alive connection) and within
  ``MAX_HEADER_BYTES``; a body must keep coming (at least ``BODY_MIN_BYTES``
  in every ``BODY_TIMEOUT`` seconds, or all of it); one address may hold
  at most ``MAX_PER_ADDRESS`` open connections (websockets included); and
  when the server holds ``max_connections`` (four fifths of its descriptor
  limit), a new connection closes the one that has waited longest for its
  request headers (or is itself closed when none is waiting), so slow
  connections never keep the pages and the API from accepting. A
  connection over a limit is closed (431 first for headers too large).
  Idle kept-alive connections are closed by uvicorn itself
  (``timeout_keep_alive``, 5 s).

Settings (environment, read when the server starts): ``MFA_PORTAL_HEADER_TIMEOUT``
(10), ``MFA_PORTAL_BODY_TIMEOUT`` (10), ``MFA_PORTAL_MAX_HEADER_BYTES``
(32768), ``MFA_PORTAL_MAX_CONNECTIONS_PER_ADDRESS`` (64; off by default when
``MFA_PORTAL_PROXY_HEADER`` is set, as every connection then comes from the
proxy; 0 turns it off), ``MFA_PORTAL_MAX_CONNECTIONS`` (four fifths of the
descriptor limit, ``ulimit -n``; 0 turns it off), ``MFA_PORTAL_METRICS`` (off).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("portal")

ENV_HEADER_TIMEOUT = "MFA_PORTAL_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "MFA_PORTAL_BODY_TIMEOUT"
ENV_MAX_HEADER_BYTES = "MFA_PORTAL_MAX_HEADER_BYTES"
ENV_MAX_PER_ADDRESS = "MFA_PORTAL_MAX_CONNECTIONS_PER_ADDRESS"
ENV_METRICS = "MFA_PORTAL_METRICS"
ENV_MAX_CONNECTIONS = "MFA_PORTAL_MAX_CONNECTIONS"

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
BODY_MIN_BYTES = 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_PER_ADDRESS = 64

_OFF = ("0", "false", "no", "off", "")


def _number(env, name: str, default: float, kind=float) -> Any:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        log.error("%s=%r is not a number; %s used", name, raw[:40], default)
        return default
    if value < 0:
        log.error("%s must not be negative; %s used", name, default)
        return default
    return value


def _proxy_header(env=None) -> str:
    from . import config
    env = os.environ if env is None else env
    return (env.get(config.ENV_PROXY_HEADER) or "").strip()


class Limits:
    """The limits in force (from the environment)."""

    def __init__(self, env=None) -> None:
        env = os.environ if env is None else env
        self.header_timeout = _number(env, ENV_HEADER_TIMEOUT, HEADER_TIMEOUT)
        self.body_timeout = _number(env, ENV_BODY_TIMEOUT, BODY_TIMEOUT)
        self.max_header_bytes = _number(env, ENV_MAX_HEADER_BYTES, MAX_HEADER_BYTES, int)
        default = 0 if _proxy_header(env) else MAX_PER_ADDRESS
        self.max_per_address = _number(env, ENV_MAX_PER_ADDRESS, default, int)
        self.metrics = (env.get(ENV_METRICS) or "").strip().lower() not in _OFF
        self.max_connections = _number(env, ENV_MAX_CONNECTIONS, default_max_connections(), int)


def default_max_connections() -> int:
    """Four fifths of the process's descriptor limit (the rest: files, the check process)."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 800
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 10_000
    return max(16, soft * 4 // 5)


# -- ASGI: the real peer, header size, metrics ---------------------------------------

def _transport(receive) -> Any:
    """uvicorn's transport behind ``receive`` (its request cycle's or websocket protocol's)."""
    owner = getattr(receive, "__self__", None)
    transport = getattr(owner, "transport", None)
    return transport if callable(getattr(transport, "get_extra_info", None)) else None


def _peer(transport) -> tuple[str, int] | None:
    info = transport.get_extra_info("peername")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


def header_bytes(scope) -> int:
    return len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
        len(k) + len(v) + 4 for k, v in scope.get("headers", ()))


_LOOPBACK = ("127.", "::1", "::ffff:127.")


async def _refuse(scope, send, status: int) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", b"0"), (b"connection", b"close"),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


class RealPeer:
    """The connection's own address and scheme in the scope, unless a proxy is configured."""

    def __init__(self, app) -> None:
        self.app = app
        self.limits = Limits()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        transport = _transport(receive)
        if transport is not None:
            secure = bool(transport.get_extra_info("sslcontext"))
            peer = _peer(transport)
            if peer is not None:
                scope["client"] = peer
            scope["scheme"] = _scheme(scope["type"], secure)
        header = _proxy_header()
        if header:
            from starlette.datastructures import Headers

            from . import config
            headers = Headers(scope=scope)
            client = scope.get("client")
            address = config.client_address(client[0] if client else None, headers)
            if address is not None:
                scope["client"] = (address, client[1] if client else 0)
            if config.forwarded_https(headers):
                scope["scheme"] = _scheme(scope["type"], True)
        if header_bytes(scope) > self.limits.max_header_bytes:
            await _refuse(scope, send, 431)
            return
        if scope["type"] == "http" and scope.get("path", "").rstrip("/").endswith("/_stcore/metrics"):
            client = scope.get("client")
            if not (self.limits.metrics and client and str(client[0]).startswith(_LOOPBACK)):
                await _refuse(scope, send, 404)
                return
        await self.app(scope, receive, send)


def _scheme(kind: str, secure: bool) -> str:
    if kind == "websocket":
        return "wss" if secure else "ws"
    return "https" if secure else "http"


# -- the connections: uvicorn's HTTP protocols ---------------------------------------

_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
              b"connection: close\r\n\r\n")

_open: dict[str, set] = {}   # address -> transports that may still be open
_all: set = set()            # every transport that may still be open
_waiting: dict = {}          # protocols whose request headers are incomplete, oldest first
_installed: list[type] = []


class _Watch:
    """One connection's limits: the header deadline, the body's progress."""

    __slots__ = ("limits", "timer", "cycle", "header_bytes", "body_bytes", "phase", "address")

    def __init__(self, limits: Limits, address: str | None) -> None:
        self.limits, self.address = limits, address
        self.timer = None
        self.cycle = None          # the request cycle last seen (its headers are complete)
        self.header_bytes = 0
        self.body_bytes = 0
        self.phase = "idle"        # "headers", "body" or "idle"


_noted: dict[str, list] = {}  # why -> [count since the last line, when that line was written]
NOTE_EVERY = 10.0


def _note(why: str, address: str | None) -> None:
    """One log line per reason every NOTE_EVERY s at most (a flood must not fill the log)."""
    import time
    now = time.monotonic()
    entry = _noted.setdefault(why, [0, -NOTE_EVERY])
    entry[0] += 1
    if now - entry[1] >= NOTE_EVERY:
        log.warning("closed %d connection(s): %s (the latest from %s)", entry[0], why, address)
        entry[0], entry[1] = 0, now


def _cancel(watch: _Watch) -> None:
    if watch.timer is not None:
        watch.timer.cancel()
        watch.timer = None


def _leave_headers(protocol, watch: _Watch, phase: str) -> None:
    _cancel(watch)
    watch.phase = phase
    _waiting.pop(protocol, None)


def _make_room(limits: Limits, protocol) -> bool:
    """Whether one more connection fits: at the limit, the connection that has waited longest
    for its request headers is closed to make room (a slow one never keeps a fast one out)."""
    if len(_all) < limits.max_connections:
        return True
    for transport in [t for t in _all if t.is_closing()]:
        _all.discard(transport)
    while len(_all) >= limits.max_connections and _waiting:
        oldest = next(iter(_waiting))
        _waiting.pop(oldest, None)
        if oldest is not protocol and _ours(oldest):
            _note("the slowest request headers when the server was full", oldest._mfa_watch.address)
            oldest.transport.close()
            _all.discard(oldest.transport)
    return len(_all) < limits.max_connections


def _ours(protocol) -> bool:
    transport = getattr(protocol, "transport", None)
    return transport is not None and not transport.is_closing() and \
        getattr(transport, "get_protocol", lambda: protocol)() is protocol


def _headers_late(protocol) -> None:
    watch = protocol._mfa_watch
    watch.timer = None
    _waiting.pop(protocol, None)
    if _ours(protocol) and watch.phase == "headers":
        _note(f"request headers not in within {watch.limits.header_timeout:g} s", watch.address)
        protocol.transport.close()


def _body_check(protocol) -> None:
    watch = protocol._mfa_watch
    watch.timer = None
    if not _ours(protocol) or watch.phase != "body":
        return
    cycle = watch.cycle
    if cycle is None or not cycle.more_body or cycle.response_complete:
        watch.phase = "idle"
        return
    flow = getattr(protocol, "flow", None)
    if watch.body_bytes < BODY_MIN_BYTES and not getattr(flow, "read_paused", False):
        # (not while the server itself stopped reading: the app has not taken the body yet)
        _note(f"request body under {BODY_MIN_BYTES} bytes in {watch.limits.body_timeout:g} s",
              watch.address)
        protocol.transport.close()
        return
    watch.body_bytes = 0
    watch.timer = protocol.loop.call_later(watch.limits.body_timeout, _body_check, protocol)


def _start_headers(protocol, watch: _Watch) -> None:
    _cancel(watch)
    watch.phase, watch.header_bytes = "headers", 0
    _waiting.pop(protocol, None)
    _waiting[protocol] = None
    if watch.limits.header_timeout:
        watch.timer = protocol.loop.call_later(watch.limits.header_timeout, _headers_late, protocol)


def _patch(cls: type) -> None:
    if getattr(cls, "_mfa_guarded", False):
        return
    made, received, lost = cls.connection_made, cls.data_received, cls.connection_lost

    def connection_made(self, transport) -> None:
        made(self, transport)
        limits = _limits()
        peer = _peer(transport) if hasattr(transport, "get_extra_info") else None
        address = peer[0] if peer else None
        self._mfa_watch = watch = _Watch(limits, address)
        live = None
        if address is not None and limits.max_per_address:
            live = {t for t in _open.get(address, ()) if not t.is_closing()}
            _open[address] = live
            if len(live) >= limits.max_per_address:
                _note("over the connections one address may hold", address)
                transport.close()
                return
        if limits.max_connections and not _make_room(limits, self):
            _note("over the connections the server may hold", address)
            transport.close()
            return
        _all.add(transport)
        if live is not None:
            live.add(transport)
            if len(_open) > 4096:
                _prune()
        _start_headers(self, watch)

    def data_received(self, data: bytes) -> None:
        watch = getattr(self, "_mfa_watch", None)
        if watch is None:
            received(self, data)
            return
        cycle = getattr(self, "cycle", None)
        if watch.phase == "idle" and (cycle is None or cycle.response_complete):
            _start_headers(self, watch)  # the first byte of the next request
        if watch.phase == "headers":
            watch.header_bytes += len(data)
        elif watch.phase == "body":
            watch.body_bytes += len(data)
        received(self, data)
        if not _ours(self):
            _leave_headers(self, watch, "idle")  # closed, or a websocket now (pings of its own)
            return
        cycle = getattr(self, "cycle", None)
        if watch.phase == "headers":
            if cycle is not None and cycle is not watch.cycle:
                watch.cycle = cycle
                _leave_headers(self, watch, "idle")
                if cycle.more_body and not cycle.response_complete and watch.limits.body_timeout:
                    watch.phase, watch.body_bytes = "body", 0
                    watch.timer = self.loop.call_later(watch.limits.body_timeout, _body_check, self)
            elif watch.header_bytes > watch.limits.max_header_bytes:
                _leave_headers(self, watch, "idle")
                _note(f"request headers over {watch.limits.max_header_bytes} bytes", watch.address)
                self.transport.write(_TOO_LARGE)
                self.transport.close()
        elif watch.phase == "body" and (cycle is None or not cycle.more_body):
            _cancel(watch)
            watch.phase = "idle"

    def connection_lost(self, exc) -> None:
        watch = getattr(self, "_mfa_watch", None)
        if watch is not None:
            _leave_headers(self, watch, "idle")
        _all.discard(getattr(self, "transport", None))
        lost(self, exc)

    cls.connection_made, cls.data_received, cls.connection_lost = (
        connection_made, data_received, connection_lost)
    cls._mfa_guarded = True
    _installed.append(cls)


def _prune() -> None:
    for address in list(_open):
        live = {t for t in _open[address] if not t.is_closing()}
        if live:
            _open[address] = live
        else:
            del _open[address]


_current: Limits | None = None


def _limits() -> Limits:
    global _current
    if _current is None:
        _current = Limits()
    return _current


def install() -> None:
    """Add the connection limits to uvicorn's HTTP protocols (once a process)."""
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError:  # another server: only the ASGI side applies
        return
    _patch(H11Protocol)
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return
    _patch(HttpToolsProtocol)
