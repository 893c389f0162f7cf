"""The portal's own HTTP side against a real server: security headers, the session cookie route, the websocket's origin."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from mfa_core.users import UserDirectory


@pytest.fixture(scope="module")
def token(portal):
    UserDirectory(portal.data_dir).add("wendy", "wendy-web-pass-1")
    return portal.svc.sessions.start("wendy", second_factor_passed=True)


def origin_of(url: str, port_offset: int = 0) -> str:
    parts = urlsplit(url)
    return f"http://{parts.hostname}:{parts.port + port_offset}"


@pytest.mark.parametrize("path", ["/", "/Manage_MFA", "/api/v1/health"])
def test_every_response_forbids_framing_referrers_and_caching(portal, path):
    response = httpx.get(portal.url + path)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def post_session(portal, body, origin=None) -> httpx.Response:
    return httpx.post(portal.url + "/auth/session", json=body,
                      headers={"Origin": origin or origin_of(portal.url)})


def test_a_ticket_buys_one_httponly_strict_cookie(portal, token):
    ticket = portal.svc.sessions.ticket(token)
    response = post_session(portal, {"ticket": ticket})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"mfa_portal_session={token.lower()};")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert post_session(portal, {"ticket": ticket}).status_code == 403  # once
    assert "set-cookie" not in post_session(portal, {"ticket": "x" * 43}).headers


def test_the_cookie_route_refuses_other_origins_and_bad_bodies(portal, token):
    ticket = portal.svc.sessions.ticket(token)
    assert post_session(portal, {"ticket": ticket}, origin=origin_of(portal.url, 1)).status_code == 403
    assert httpx.post(portal.url + "/auth/session", json={"ticket": ticket}).status_code == 403
    bad = httpx.post(portal.url + "/auth/session", content=b"not json",
                     headers={"Origin": origin_of(portal.url)})
    assert bad.status_code == 400
    assert post_session(portal, {"ticket": ticket}).status_code == 200  # the refusals spent nothing


def test_clearing_expires_the_cookie(portal):
    response = post_session(portal, {"clear": True})
    assert response.status_code == 200
    assert "max-age=0" in response.headers["set-cookie"].lower()


async def _open(url: str, origin: str, cookie: str | None) -> str:
    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    headers = {"Cookie": f"mfa_portal_session={cookie}"} if cookie else None
    try:
        async with websockets.connect(ws_url, origin=origin, additional_headers=headers,
                                      subprotocols=["streamlit"], open_timeout=10):
            return "open"
    except websockets.exceptions.InvalidStatus as exc:
        return f"refused {exc.response.status_code}"


def test_a_websocket_from_another_origin_is_refused_even_with_the_cookie(portal, token):
    assert asyncio.run(_open(portal.url, origin_of(portal.url), token)) == "open"
    assert asyncio.run(_open(portal.url, origin_of(portal.url, 1), token)) == "refused 403"
    assert asyncio.run(_open(portal.url, "http://evil.example", token)) == "refused 403"
