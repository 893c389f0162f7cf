"""The portal's own HTTP pieces: the session-cookie route and the security middleware.

- ``POST /auth/session`` trades a one-time ticket (handed to the page by the
  server) for the session cookie, or clears it: the cookie is set and cleared
  only by the server, ``HttpOnly`` and ``SameSite=Strict``, ``Secure`` with a
  ``__Host-`` name when the portal is served over HTTPS. Requests from another
  origin (another port of the same host included) are refused.
- ``OriginGuard`` refuses a websocket (the page's live connection) whose
  ``Origin`` is not the portal's own, so a page from another origin cannot
  open a session with the browser's cookie.
- ``SecurityHeaders`` adds ``X-Frame-Options``, CSP ``frame-ancestors``,
  ``Referrer-Policy`` and ``Cache-Control: no-store`` to every response but
  Streamlit's static assets.

Nothing here imports Streamlit's script side (``portal.signin`` and friends):
``app.py`` loads this module before the runtime exists.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("portal")

COOKIE = "mfa_portal_session"
SECURE_COOKIE = "__Host-mfa_portal_session"
SESSION_ROUTE = "/auth/session"
MAX_BODY = 1024


def cookie_names() -> tuple[str, str]:
    return (SECURE_COOKIE, COOKIE)


def _same_origin(origin: str | None, host: str | None, secure: bool) -> bool:
    """Whether ``origin`` is this server's own (scheme, host and port)."""
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False
    default = 443 if parts.scheme == "https" else 80
    origin_host = f"{parts.hostname}:{parts.port or default}"
    served = urlsplit(f"{parts.scheme}://{host}")
    return origin_host == f"{served.hostname}:{served.port or default}"


def _is_https(request: Request) -> bool:
    from . import config
    return request.url.scheme == "https" or config.forwarded_https(request.headers)


async def session_cookie(request: Request) -> Response:
    """Set the session cookie for a ticket, or clear it (``{"clear": true}``)."""
    secure = _is_https(request)
    if not _same_origin(request.headers.get("origin"), request.headers.get("host"), secure):
        return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
    if not secure and not _plain_http_ok(request):
        # Another machine over plain HTTP: the cookie would travel in clear and reach every
        # port of this host. The page keeps working; only a reload signs in again.
        return JSONResponse({"error": "HTTPS required"}, status_code=403,
                            headers={"Cache-Control": "no-store"})
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"error": "body too large"}, status_code=400)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return JSONResponse({"error": "expected a JSON object"}, status_code=400)
    response = JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})
    name = SECURE_COOKIE if secure else COOKIE
    if data.get("clear") is True:
        for each in cookie_names():
            response.delete_cookie(each, path="/", secure=each == SECURE_COOKIE or secure,
                                   httponly=True, samesite="strict")
        return response
    token = await run_in_threadpool(_redeem, data.get("ticket"))
    if token is None:
        return JSONResponse({"ok": False}, status_code=403, headers={"Cache-Control": "no-store"})
    response.set_cookie(name, token, path="/", secure=secure, httponly=True, samesite="strict")
    return response


def _plain_http_ok(request: Request) -> bool:
    """Plain HTTP sets the cookie for this machine alone, or where the operator accepted it."""
    from . import config, startup
    peer = request.client.host if request.client else None
    return (startup.is_loopback(config.client_address(peer, request.headers))
            or startup.insecure_http_allowed())


def _redeem(ticket: object) -> str | None:
    from . import config
    try:
        return config.service().sessions.redeem(ticket)
    except Exception:  # a store that cannot be used: no cookie, never a traceback
        log.exception("a session ticket could not be redeemed")
        return None


class OriginGuard:
    """Refuse the page's websocket from any origin but the portal's own."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, headers.get("host"),
                                                       scope.get("scheme") == "wss"):
                log.warning("websocket from origin %r refused", origin[:100])
                await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


class SecurityHeaders:
    """Headers every response of the portal carries (static assets may be cached)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-frame-options", b"cache-control")
                           or (k.lower() == b"cache-control" and cacheable)]
                headers += _HEADERS
                if not cacheable:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def routes() -> list[Route]:
    return [Route(SESSION_ROUTE, session_cookie, methods=["POST"])]
