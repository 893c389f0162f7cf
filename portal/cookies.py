"""The session cookie in the browser: set and cleared by the server, never seen by the page's scripts.

The page mounts a tiny component (plain JavaScript, ``st.components.v2``)
that POSTs a one-time ticket, or a clear request, to ``/auth/session``; the
route answers with ``Set-Cookie`` (``HttpOnly``, ``SameSite=Strict``). The
session token itself never goes to the page: the ticket is worth one cookie
for one minute. Reading is ``st.context.cookies`` (the browser sends the
cookie with the page's websocket).
"""

from __future__ import annotations

import secrets

import streamlit as st

from . import web

_JS = """
export default function (component) {
  const { data } = component;
  if (!data || !data.body) return;
  const done = "mfaPortalCookie" + data.nonce;
  if (window[done]) return;  // once per mount, whatever the component's reruns
  window[done] = true;
  fetch(data.url, {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(data.body),
  }).catch(() => {});
}
"""
_component = None


def _mount(body: dict, key: str) -> None:
    global _component
    if _component is None:  # declared in a script run, once per process
        _component = st.components.v2.component("mfa_portal_session_cookie", js=_JS)
    try:
        _component(data={"url": web.SESSION_ROUTE, "body": body, "nonce": secrets.token_hex(6)},
                   key=key)
    except Exception:  # no browser behind this run (a bare script run): no cookie to set
        pass


def set_for(ticket: str) -> None:
    """Have the browser trade ``ticket`` for the session cookie."""
    _mount({"ticket": ticket}, "portal_cookie_set")


def clear() -> None:
    """Have the browser drop the session cookie."""
    _mount({"clear": True}, "portal_cookie_clear")


def read() -> str | None:
    """The session cookie this browser sent for this page's scheme, if any."""
    try:
        jar = st.context.cookies
        origin = st.context.headers.get("Origin")
    except Exception:  # no request context (a bare script run)
        return None
    return pick(jar, https=isinstance(origin, str) and origin.lower().startswith("https://"))


def pick(jar, *, https: bool) -> str | None:
    """The cookie the server sets for this scheme, and no other (F3).

    Over HTTPS only ``__Host-mfa_portal_session``: a page on another port or
    an ``http://`` origin of the host can set a plain ``mfa_portal_session``
    (cookies do not keep ports apart), never a ``Secure`` ``__Host-`` one.
    Over HTTP only the plain name.
    """
    name = web.SECURE_COOKIE if https else web.COOKIE
    try:
        value = jar.get(name)
    except Exception:  # noqa: BLE001 (a jar that cannot be read: no cookie)
        return None
    return value if isinstance(value, str) and value else None


def user_agent() -> str | None:
    try:
        value = st.context.headers.get("User-Agent")
    except Exception:
        return None
    return value if isinstance(value, str) else None
