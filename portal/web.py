"""The portal's own HTTP pieces: the session-cookie route and the security middleware.

- ``POST /auth/session`` trades a one-time ticket (handed to the page by the
  server) for the session cookie, or clears it: the cookie is set and cleared
  only by the server, ``HttpOnly`` and ``SameSite=Strict``, ``Secure`` with a
  ``__Host-`` name when the portal is served over HTTPS. Requests from another
  origin (another port of the same host included) are refused; a body over
  ``MAX_BODY`` is refused (413) without being read further.
- ``OriginGuard`` refuses a websocket (the page's live connection) whose
  ``Origin`` is not the portal's own, so a page from another origin cannot
  open a session with the browser's cookie.
- ``UnknownPage`` answers an address that is no page with the portal's own
  "Page not found" (404), not Streamlit's message over the home page.
- ``SecurityHeaders`` adds ``X-Frame-Options``, CSP ``frame-ancestors``,
  ``Referrer-Policy`` and ``Cache-Control: no-store`` to every response but
  Streamlit's static assets.

Nothing here imports Streamlit's script side (``portal.signin`` and friends):
``app.py`` loads this module before the runtime exists.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
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
    body = await read_bounded(request, MAX_BODY)
    if body is None:
        return too_large()
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


def too_large() -> Response:
    """413 with no detail, and the connection closed: the rest of the body is never read."""
    return Response(status_code=413, headers={"Connection": "close", "Cache-Control": "no-store"})


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is (or says it is) longer than ``limit``: reading stops there.

    ``Content-Length`` is looked at first; without one (chunked) the bytes are
    counted as they come. A disconnect mid-body is an empty body (refused as not JSON).
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        return None
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)


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


# -- an address that is no page ------------------------------------------------

_APP_DIR = Path(__file__).resolve().parent.parent
# Streamlit's own paths and files (never a page): its assets, websocket, components, media.
_NOT_PAGES = {"_stcore", "static", "component", "media", "app", "auth", "api", "~"}
NOT_FOUND_TITLE = "Page not found"
_NOT_FOUND_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Page not found · MFA Portal</title>
<style>body{font-family:system-ui,sans-serif;color:#161514;max-width:40rem;margin:3rem auto;
padding:0 1rem;line-height:1.5}a{color:#1c6dd0}</style></head>
<body><main><h1>Page not found</h1>
<p>There is no page at this address in the MFA Portal. Check the address, or
<a href="/">go to the MFA Portal's home page</a> to sign in.</p></main></body></html>
"""


def page_names(app_dir: Path = _APP_DIR) -> set[str]:
    """The URL paths Streamlit serves a page at ("" for the home page), lower case: one per
    file in ``pages/``, its number prefix dropped as Streamlit does."""
    names = {""}
    for file in (app_dir / "pages").glob("*.py"):
        names.add(re.sub(r"^[0-9]*[_ -]*", "", file.stem).replace(" ", "_").lower())
    return names


class UnknownPage:
    """An address that is neither a page nor one of Streamlit's own paths: the portal's "Page
    not found" (404) instead of Streamlit's "Page not found … Running the app's main page"
    over the home page."""

    def __init__(self, app) -> None:
        self.app = app
        self.pages = page_names()

    def is_unknown(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        if parts[0] in _NOT_PAGES or "." in parts[-1]:  # Streamlit's paths, files
            return False
        return "/".join(parts).lower() not in self.pages

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] == "http" and scope.get("method") in ("GET", "HEAD")
                and self.is_unknown(scope.get("path", "/"))):
            response = HTMLResponse(_NOT_FOUND_HTML, status_code=404)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def routes() -> list[Route]:
    return [Route(SESSION_ROUTE, session_cookie, methods=["POST"])]
