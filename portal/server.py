"""The HTTP side of the portal's server: the routes and middleware ``app.py`` mounts with ``st.App``.

Each feature that answers plain HTTP requests (not a page) adds its routes
here, so that ``make run``, uvicorn and the tests all serve the same set.
Nothing here imports a page; routes talk to ``mfa_core`` through
``portal.config`` only.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from mfa_services import api

from . import netguard, startup, web


def routes() -> list[BaseRoute]:
    # The API's routes are served by api.Dispatch (below), ahead of Streamlit's middleware.
    return [*web.routes()]


def middleware() -> list[Middleware]:
    # The connection limits go into uvicorn's protocols (``portal.netguard``); the
    # connection's real peer and scheme go into the scope before anything reads them.
    # Then TCP_NODELAY (every accepted connection: pages, websocket, API), then demo
    # mode's loopback-only guard (nothing at all for another machine), the origin
    # check: a refused websocket never reaches Streamlit; the security headers, then
    # the API, which needs none of Streamlit's own, then an address that is no page
    # (the portal's own "Page not found").
    netguard.install()
    return [Middleware(netguard.RealPeer), Middleware(api.NoDelayMiddleware),
            Middleware(startup.DemoLoopbackGuard), Middleware(web.OriginGuard),
            Middleware(web.SecurityHeaders), Middleware(api.Dispatch), Middleware(web.UnknownPage)]
