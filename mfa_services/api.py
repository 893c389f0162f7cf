"""The verification API: other systems (VPN, SSH via PAM, internal apps) check a user's second factor.

``POST /api/v1/verify`` with ``Authorization: Bearer <client key>`` and JSON
``{"username": "...", "code": "...", "strategy": "totp" | "backup_code"}``
(``strategy`` optional: six digits are a TOTP code, anything else a backup
code) answers ``200 {"ok": true, "strategy": ...}`` or ``200 {"ok": false}``
and never why: an unknown user, a user without two-step, a wrong, expired or
already used code and a locked account all look the same to the caller (the
reason goes to the audit trail). The exceptions: ``429`` + ``Retry-After``
while the user's throttle holds (unknown names get the same throttle, kept
under a keyed hash of the name, so the 429 gives nothing away either) or while
the client exceeds its own rate; ``401`` for a missing, wrong or removed key
(audited); ``400`` + a JSON error for a body that is not what the
description says (bad JSON, wrong types, unknown fields); ``413`` (no body,
the connection closed) for a body over 4 kB and ``431`` for request headers
over ``portal.netguard.MAX_HEADER_BYTES``, both before the key is looked at;
``503`` when the store cannot be used.

The check is the sign-in page's own engine call,
``attempt_second_factor(..., actor="api/<client>")``: same window, replay
rule, throttle and audit, so a code used here cannot sign in to the portal
and vice versa. It does file I/O and fsync, so it never runs on the event
loop: by default in the server's check process (``mfa_services.checks``: a child
with threads of its own, so that the HTTP server and the engine do not share
one GIL), else in a thread pool of this process. ``Dispatch`` hands these
routes their requests ahead of Streamlit's own middleware.

``GET /api/v1/health`` (no key) for load balancers; ``GET /api/v1/openapi.json``
the OpenAPI 3.1 description (``mfa_services.openapi``).

Client rate limits are token buckets in the memory of the process that runs
the checks (one per server process): under uvicorn with N workers a client may
make up to N times its rate.

No Streamlit here, and none of the portal's page glue (``portal.signin``,
``portal.session``, streamlit-authenticator): ``app.py`` imports this module
before Streamlit's runtime exists (``portal.server`` wires its routes into
``st.App``). The one thing taken from ``portal/`` is the server's engine host,
``portal.config`` (data dir, clock, the engine cached per data dir; it imports
only ``mfa_core``), on first use: the API answers from the same engine, clock
and data dir as the pages it is served with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router

import mfa_core
from mfa_core import clients as api_clients
from mfa_core import validate
from mfa_core.audit import AuditEvent
from mfa_core.storage import IO_ERRORS

from . import checks, engine, openapi
from .checks import UNAVAILABLE, Answer
from .api_contract import MAX_BODY, PREFIX, REFUSAL_FLOOR, STRATEGIES

log = logging.getLogger("mfa_services.api")

FIELDS = {"username", "code", "strategy"}
BAD_KEY_RATE = 30           # 401s a minute one address may get (audited) before it must wait
MAX_BUCKETS = 10_000        # per limiter; idle (full) buckets are dropped beyond it
_TOTP_SHAPE = re.compile(r"[0-9]{6}")
API_HEADERS = {"Cache-Control": "no-store"}  # portal.web.SecurityHeaders adds the rest


# -- rate limits ----------------------------------------------------------------

@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """Token buckets by name: ``rate`` a minute, bursts up to a minute's worth. Thread-safe."""

    clock: Any = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, name: str, rate: int) -> int:
        """0 when a request may go ahead (one token taken), else whole seconds to wait."""
        now = self.clock()
        per_second = rate / 60.0
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now)
                bucket = self._buckets[name] = _Bucket(float(rate), now)
            bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.at) * per_second)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / per_second))

    def _prune(self, now: float) -> None:
        # Without the rate at hand, a bucket untouched for an hour is full again for any rate >= 1.
        for name in [n for n, b in self._buckets.items() if now - b.at > 3600]:
            del self._buckets[name]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()  # a flood of new names: forget rather than grow without end


_client_limits = RateLimiter()
_bad_key_limits = RateLimiter()


# -- the engine, the registry -------------------------------------------------

_registries: dict[Path, api_clients.FileClientRegistry] = {}
_registries_lock = threading.Lock()


def _portal():
    from portal import config  # on first use: see the module's doc
    return config, config.portal()


def registry() -> api_clients.FileClientRegistry:
    """The client registry of the portal's data dir (one object per data dir)."""
    _, found = _portal()
    with _registries_lock:
        reg = _registries.get(found.data_dir)
        if reg is None or reg._pepper != found.service.keyring.pepper:
            reg = _registries[found.data_dir] = api_clients.open_registry(found.data_dir, found.service)
        return reg


# Where the checks run: by default in a check process of the server's own
# (``mfa_services.checks``), so that one interpreter is not both the HTTP server and
# the engine; with MFA_PORTAL_API_PROCESS=0 (or a test's injected clock, which
# another process cannot share) in threads of this process. Either way a check
# spends much of its time in fsync, so several run at once, in a pool of their
# own that keeps the pages' thread pool out of it. Four: with eight the checks
# queue for the GIL behind each other (three interleaved A/B runs of the check
# process, 4 against 8 threads: 722-734 against 641-669/s keep-alive, 699-703
# against 574-639/s new connections; 2, 3 and 6 were no better than 4).
CHECK_THREADS = 4
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _registries_lock:
            if _executor is None:
                _executor = concurrent.futures.ThreadPoolExecutor(CHECK_THREADS,
                                                                  thread_name_prefix="mfa-api")
    return _executor


# -- responses ----------------------------------------------------------------
# An answer is (status, JSON payload, extra headers): plain data, so that a check
# process (``mfa_services.checks``) can send it back; ``_json`` makes the response.

def _json(answer: Answer) -> JSONResponse:
    status, payload, headers = answer
    return JSONResponse(payload, status_code=status, headers={**API_HEADERS, **headers})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return status, {"ok": False, "error": message}, headers or {}


def _unauthorized() -> Answer:
    return _error(401, "A valid client key is required: Authorization: Bearer KEY.",
                  {"WWW-Authenticate": 'Bearer realm="mfa-portal"'})


def _throttled(wait: int, message: str) -> Answer:
    return 429, {"ok": False, "error": message, "retry_after": wait}, {"Retry-After": str(wait)}


NOT_OK = {"ok": False}


class BadRequest(Exception):
    """The request body is not what the API takes; ``str()`` is the message returned."""


# -- the request ---------------------------------------------------------------

async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is longer than MAX_BODY (reading stops there)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number.")
        if int(declared) > MAX_BODY:
            return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes | None) -> tuple[str, str, str | None]:
    """(username, code, strategy or None) from the JSON body; raises BadRequest."""
    if body is None:
        raise BadRequest(f"The body is larger than {MAX_BODY} bytes.")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("The body is not JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0]!r}: the fields are username, code, strategy.")
    username, code, strategy = data.get("username"), data.get("code"), data.get("strategy")
    if not isinstance(username, str) or not isinstance(code, str):
        raise BadRequest("username and code are required strings.")
    if strategy is not None and strategy not in STRATEGIES:
        raise BadRequest("strategy is 'totp' or 'backup_code' (or left out).")
    if len(code) > 64:
        raise BadRequest("code is at most 64 characters.")
    try:
        validate.name(username)
    except (TypeError, ValueError):
        raise BadRequest("username is not a valid user name.") from None
    return username, code, strategy


def guess_strategy(code: str) -> str:
    """Six digits (spaces and dashes aside) are a TOTP code; anything else a backup code."""
    return "totp" if _TOTP_SHAPE.fullmatch(re.sub(r"[\s-]", "", code)) else "backup_code"


def verify(svc: mfa_core.MFAService, client: api_clients.APIClient, username: str, code: str,
           strategy: str | None) -> Answer:
    """The engine's answer as (status, payload, headers). Synchronous: file I/O and fsync."""
    strategy = strategy or guess_strategy(code)
    try:
        # source: the client, not its address, so a VPN server's address never
        # becomes a "familiar place" for the users' portal passwords.
        svc.attempt_second_factor(username, code, strategy, source=client.actor, actor=client.actor,
                                  diagnose=False)  # the caller never hears why: no drift search
    except mfa_core.AccountLocked:
        return 200, NOT_OK, {}
    except mfa_core.TooManyAttempts as exc:
        return _throttled(exc.retry_after, "Too many attempts for this user.")
    except (mfa_core.NotEnabled, mfa_core.NoBackupCodes):
        wait = engine.count_no_factor(svc, username, client.actor)
        if wait:
            return _throttled(wait, "Too many attempts for this user.")
        return 200, NOT_OK, {}
    except (mfa_core.InvalidCode, mfa_core.InvalidCodeFormat):
        return 200, NOT_OK, {}
    return 200, {"ok": True, "strategy": strategy}, {}


def _bearer(headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def answer(peer: str | None, headers, body: bytes | None) -> Answer:
    """Everything after the body was read (synchronous: file I/O and fsync).

    Run by the check process (``mfa_services.check_child``), or by a thread of this one.
    A store that cannot be used, or anything unforeseen, is a 503 (never an
    "ok", never a traceback to the caller): nothing here raises.
    """
    try:
        return _answer(peer, headers, body)
    except mfa_core.StorageError:
        log.error("verification API: the store cannot be used")
    except Exception as exc:  # fail closed, the same in both places a check runs
        log.error("verification API: a check failed (%s)", type(exc).__name__)
    return UNAVAILABLE


def _answer(peer: str | None, headers, body: bytes | None) -> Answer:
    config, found = _portal()
    svc = found.service
    reg = registry()
    key = _bearer(headers)
    client = reg.authenticate(key) if key is not None else None
    if client is None:
        source = config.client_address(peer, headers) or "an unknown address"
        wait = _bad_key_limits.take(source, BAD_KEY_RATE)
        if wait:
            return _throttled(wait, "Too many requests without a valid key.")
        why = "no client key" if key is None else "wrong or removed client key"
        try:
            svc.store.append_audit([AuditEvent(svc.clock(), None, "api", "api_auth_failed",
                                               "refused", f"{why} from {source}").to_dict()])
        except IO_ERRORS:
            log.warning("a refused API request could not be audited")
        return _unauthorized()
    wait = _client_limits.take(client.name, client.rate)
    if wait:
        return _throttled(wait, f"Client {client.name} is over its rate of {client.rate} a minute.")
    reg.touch(client.name)
    try:
        username, code, strategy = parse_body(body)
    except BadRequest as exc:
        return _error(400, str(exc))
    return verify(svc, client, username, code, strategy)


# A refusal leaves no sooner than REFUSAL_FLOOR after the request arrived (api_contract: why).
def _refused(answer: Answer) -> bool:
    status, payload, _ = answer
    return status == 429 or (status == 200 and payload == NOT_OK)


async def verify_endpoint(request: Request) -> Response:
    started = time.monotonic()
    got = await _verify(request)
    if isinstance(got, Response):
        return got
    if _refused(got):
        await asyncio.sleep(max(0.0, started + REFUSAL_FLOOR - time.monotonic()))
    return _json(got)


def too_large() -> Response:
    """413, and the connection closed: the rest of the body is never read."""
    return Response(status_code=413, headers={**API_HEADERS, "Connection": "close"})


async def _verify(request: Request) -> Answer | Response:
    try:
        body = await _read_body(request)
    except BadRequest as exc:
        return _error(400, str(exc))
    except ClientDisconnect:
        return Response(status_code=400)
    if body is None:  # over MAX_BODY: refused here, before anything goes to a check
        return too_large()
    peer = request.client.host if request.client else None
    if checks.wanted():
        return await checks.ask(peer, request.scope["headers"], body)
    return await asyncio.get_running_loop().run_in_executor(_threads(), answer, peer,
                                                            request.headers, body)


def _healthy() -> bool:
    try:
        registry().clients()
        return True
    except (mfa_core.MFAError, *IO_ERRORS):
        return False


async def health_endpoint(request: Request) -> Response:
    # The check process too (its first start, when a load balancer's probe comes first).
    if await run_in_threadpool(_healthy) and (not checks.wanted() or await checks.ready()):
        return _json((200, {"status": "ok"}, {}))
    return _json((503, {"status": "unavailable"}, {}))


async def openapi_endpoint(request: Request) -> Response:
    return _json((200, openapi.document(), {}))


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/verify", verify_endpoint, methods=["POST"]),
        Route(f"{PREFIX}/health", health_endpoint, methods=["GET"]),
        Route(f"{PREFIX}/openapi.json", openapi_endpoint, methods=["GET"]),
    ]


class Dispatch:
    """Hand ``/api/v1/...`` requests straight to the API's routes (pure ASGI).

    Placed after the portal's own middleware (TCP_NODELAY, security headers),
    before Streamlit's (path checks for static files, its session cookie,
    gzip) and its router: none of those has anything to do with a JSON API
    call, and on a 2-core machine they cost the API a tenth of its CPU.
    Anything else goes on unchanged.
    """

    def __init__(self, app) -> None:
        self.app = app
        # As Starlette builds its own stack: a wrong method or an unknown path
        # under the prefix is an HTTPException (405, 404), answered here.
        self.router = ExceptionMiddleware(Router(routes()))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.router(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# -- TCP_NODELAY -------------------------------------------------------------

class NoDelayMiddleware:
    """Turn Nagle off on every connection the server accepted (pure ASGI, per request).

    Streamlit 1.67 (and uvicorn with ``--workers``/``--fd``) create the
    listening socket with ``proto=0``, so asyncio's accept never sets
    ``TCP_NODELAY`` (it only does for ``proto == IPPROTO_TCP``). Every
    keep-alive response written in two pieces then waits for the client's
    delayed ACK: ~40 ms each. ASGI gives an app no socket, but uvicorn's
    ``receive`` is a method of the connection's protocol or request cycle,
    which holds the asyncio transport; when that is not there (another
    server), nothing happens.

    A request that closes its connection (``Connection: close``, or HTTP/1.0
    without keep-alive) is left alone: no later response can wait behind
    its last segment, and the close sends it at once, with the FIN.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket" or (scope["type"] == "http" and _keeps_alive(scope)):
            set_nodelay(getattr(getattr(receive, "__self__", None), "transport", None))
        await self.app(scope, receive, send)


def _keeps_alive(scope) -> bool:
    """Whether the client asked to keep the connection open after this request."""
    connection = b""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"connection":
            connection = value.lower()
            break
    if scope.get("http_version") == "1.0":
        return b"keep-alive" in connection
    return b"close" not in connection


def set_nodelay(transport: Any) -> bool:
    """TCP_NODELAY on the transport's TCP socket; True when it was set (or already on)."""
    get = getattr(transport, "get_extra_info", None)
    sock = get("socket") if callable(get) else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        if not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True
    except OSError:
        return False
