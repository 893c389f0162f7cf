"""F3: what a page on another port of the portal's host can do with the session cookie.

Cookies do not keep ports apart: the browser sends ``mfa_portal_session`` to
every port of the host, and any port may set it. The portal therefore
- reads over HTTPS only the ``__Host-`` cookie (``Secure``: no ``http://``
  port can set it) and over HTTP only the plain one;
- sets no cookie for another machine over plain HTTP (403), unless the operator
  set ``MFA_PORTAL_INSECURE_HTTP=1``;
- refuses to start for other machines without HTTPS (tests/ops/test_startup_refusals.py).
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from portal import cookies, web


def test_over_https_a_plain_cookie_planted_by_another_port_is_ignored():
    planted = {web.COOKIE: "attacker-session-token"}
    assert cookies.pick(planted, https=True) is None
    both = {web.COOKIE: "attacker-session-token", web.SECURE_COOKIE: "mine"}
    assert cookies.pick(both, https=True) == "mine"


def test_over_http_only_the_plain_cookie_counts():
    assert cookies.pick({web.COOKIE: "mine"}, https=False) == "mine"
    assert cookies.pick({web.SECURE_COOKIE: "x"}, https=False) is None
    assert cookies.pick({}, https=False) is None


@pytest.fixture
def route(data_dir, svc, monkeypatch):
    monkeypatch.delenv("MFA_PORTAL_INSECURE_HTTP", raising=False)
    monkeypatch.delenv("MFA_PORTAL_PROXY_HEADER", raising=False)
    token = svc.sessions.start("alice", second_factor_passed=True)

    def post(client_host: str, **headers: str):
        app = Starlette(routes=web.routes())
        with TestClient(app, base_url="http://portal.example:8501", client=(client_host, 5000)) as client:
            return client.post(web.SESSION_ROUTE, json={"ticket": svc.sessions.ticket(token)},
                               headers={"Origin": "http://portal.example:8501", **headers})
    return post


def test_no_cookie_for_another_machine_over_plain_http(route, monkeypatch):
    refused = route("10.1.2.3")
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert "set-cookie" in route("127.0.0.1").headers  # this machine: the developer's case
    monkeypatch.setenv("MFA_PORTAL_INSECURE_HTTP", "1")  # the operator accepted it
    assert "set-cookie" in route("10.1.2.3").headers


def test_behind_a_tls_proxy_the_cookie_is_host_only_and_secure(route, monkeypatch):
    monkeypatch.setenv("MFA_PORTAL_PROXY_HEADER", "X-Forwarded-For")
    answer = route("127.0.0.1", **{"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https",
                                   "Origin": "https://portal.example:8501"})
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith("__host-mfa_portal_session=") and "secure" in cookie
    plain = route("127.0.0.1", **{"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "http"})
    assert plain.status_code == 403 and "set-cookie" not in plain.headers
