"""The HTTP side of the portal's server: the routes and middleware ``app.py`` mounts with ``st.App``.

Each feature that answers plain HTTP requests (not a page) adds its routes
here, so that ``make run``, uvicorn and the tests all serve the same set.
Nothing here imports a page; routes talk to ``mfa_core`` through
``portal.config`` only.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from . import web


def routes() -> list[BaseRoute]:
    return [*web.routes()]


def middleware() -> list[Middleware]:
    # The origin check first: a refused websocket never reaches Streamlit.
    return [Middleware(web.OriginGuard), Middleware(web.SecurityHeaders)]
