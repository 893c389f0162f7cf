"""POST /api/v1/verify and friends against the real server (``streamlit run app.py``)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pyotp
import pytest
from openapi_spec_validator import validate

import mfa_core
from mfa_core import clients as api_clients
from mfa_core.cli import main as cli_main

from .conftest import fresh_code

# Headers that differ between any two responses whatever they say.
VOLATILE = {"date"}


def shape(response: httpx.Response) -> tuple:
    """What a caller can see of a response, but the date."""
    return (response.status_code, response.content,
            tuple(sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)))


def test_health_and_openapi_need_no_key_and_are_not_cached(portal):
    health = httpx.get(f"{portal.url}/api/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert health.headers["cache-control"] == "no-store"
    doc = httpx.get(f"{portal.url}/api/v1/openapi.json")
    assert doc.status_code == 200 and doc.headers["cache-control"] == "no-store"


def test_the_openapi_description_is_valid_and_matches_the_routes(portal):
    from mfa_services import api

    doc = httpx.get(f"{portal.url}/api/v1/openapi.json").json()
    validate(doc)  # raises on an invalid OpenAPI 3.1 document
    served = {(route.path, method.lower()) for route in api.routes()
              for method in route.methods if method != "HEAD"}
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert described == served
    request = doc["components"]["schemas"]["VerifyRequest"]
    assert set(request["properties"]) == api.FIELDS and request["additionalProperties"] is False
    responses = doc["paths"]["/api/v1/verify"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "413", "429", "431", "503"}


def test_a_right_code_is_ok_once_and_then_refused_by_the_portal_sign_in(portal):
    secret, _ = portal.enroll("tina")
    code = fresh_code(secret)
    first = portal.post({"username": "tina", "code": code})
    assert first.status_code == 200 and first.json() == {"ok": True, "strategy": "totp"}
    assert first.headers["cache-control"] == "no-store"
    again = portal.post({"username": "tina", "code": code, "strategy": "totp"})
    assert again.status_code == 200 and again.json() == {"ok": False}
    # The sign-in page's own call on the same data dir: the code is spent.
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        portal.svc.attempt_second_factor("tina", code)
    events = [e for e in portal.svc.audit("tina") if e.actor == "api/tests"]
    assert [e.event for e in events] == ["second_factor_passed", "second_factor_failed"]
    assert "code already used" in events[-1].detail


def test_a_code_used_at_the_portal_sign_in_is_refused_by_the_api(portal):
    secret, _ = portal.enroll("uma")
    code = fresh_code(secret)
    portal.svc.attempt_second_factor("uma", code)
    answer = portal.post({"username": "uma", "code": code})
    assert answer.status_code == 200 and answer.json() == {"ok": False}


def test_backup_codes_are_accepted_once_with_or_without_the_strategy(portal):
    _, codes = portal.enroll("ursula", backup_codes=True)
    ok = portal.post({"username": "ursula", "code": codes[0].upper()})
    assert ok.json() == {"ok": True, "strategy": "backup_code"}
    assert portal.post({"username": "ursula", "code": codes[0]}).json() == {"ok": False}
    typed = codes[1].replace("-", "")
    assert portal.post({"username": "ursula", "code": typed, "strategy": "backup_code"}).json() == \
        {"ok": True, "strategy": "backup_code"}
    assert portal.svc.status("ursula").backup_codes_remaining == 8


def test_unknown_user_no_two_step_and_wrong_code_look_the_same(portal):
    secret, _ = portal.enroll("victor")
    wrong = f"{(int(pyotp.TOTP(secret).now()) + 500_000) % 1_000_000:06d}"
    answers = {
        "wrong code": portal.post({"username": "victor", "code": wrong}),
        "unknown user": portal.post({"username": "nobody-here", "code": wrong}),
        "no second factor": portal.post({"username": "bob", "code": wrong}),  # a demo user
        "unknown, backup code": portal.post({"username": "nobody-else",
                                             "code": "abcd-efgh-jkmn-pqrs"}),
    }
    shapes = {why: shape(r) for why, r in answers.items()}
    assert len(set(shapes.values())) == 1, shapes
    assert answers["wrong code"].json() == {"ok": False}
    # The reasons are in the audit trail, for the helpdesk, never in the answer.
    details = [(e.user, e.detail) for e in portal.svc.audit() if e.actor == "api/tests"
               and e.event == "second_factor_failed"]
    assert ("victor", "wrong code") in details and (None, "unknown user") in details
    assert ("bob", "no second factor") in details


def test_unknown_users_cost_what_wrong_codes_cost_and_right_codes_are_not_held_back(portal):
    """Timing must not tell them apart either: every refusal leaves no sooner than
    REFUSAL_FLOOR after it arrived (a wrong code for an enrolled user costs the engine more
    than a name with no second factor); an accepted code is answered at once."""
    from mfa_services.api import REFUSAL_FLOOR
    codes = [portal.enroll(f"walt{i}", backup_codes=True)[1] for i in range(2)]
    wrong, unknown, right = [], [], []
    for i in range(8):  # interleaved; 4 failures per user stay under the throttle
        t = time.perf_counter()
        assert portal.post({"username": f"walt{i % 2}", "code": "000000"}).json() == {"ok": False}
        wrong.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert portal.post({"username": f"ghost{i}", "code": "000000"}).json() == {"ok": False}
        unknown.append(time.perf_counter() - t)
    assert min(wrong + unknown) >= REFUSAL_FLOOR
    # The fastest of each, not the medians: a busy machine only ever adds time, and what
    # would tell them apart (a path that skips work or the floor) shows in every answer.
    ratio = min(unknown) / min(wrong)
    assert 0.7 < ratio < 1.4, (ratio, wrong, unknown)
    for i in range(4):
        t = time.perf_counter()
        assert portal.post({"username": f"walt{i % 2}", "code": codes[i % 2][i]}).json()["ok"] is True
        right.append(time.perf_counter() - t)
    assert min(right) < REFUSAL_FLOOR, right  # held back, every one would take the floor


def test_the_user_throttle_answers_429_with_retry_after_for_users_and_unknown_names(portal):
    portal.enroll("xena")
    policy = portal.svc.policy
    answers = {}
    for name in ("xena", "nobody-at-all"):
        for _ in range(policy.free_failures):
            assert portal.post({"username": name, "code": "000000"}).json() == {"ok": False}
        answers[name] = portal.post({"username": name, "code": "000000"})
    for name, answer in answers.items():
        assert answer.status_code == 429, name
        wait = int(answer.headers["retry-after"])
        assert 0 < wait <= policy.base_delay
        assert answer.json() == {"ok": False, "error": "Too many attempts for this user.",
                                 "retry_after": wait}
    # The API client's wrong codes never make the owner wait at the portal (issue 20, F7).
    assert portal.svc.status("xena").retry_after == 0


def test_wrong_codes_through_the_api_never_keep_the_owner_out_of_the_portal(portal):
    secret, _ = portal.enroll("yara")
    policy = portal.svc.policy
    for _ in range(policy.free_failures):
        assert portal.post({"username": "yara", "code": "000000"}).json() == {"ok": False}
    assert portal.post({"username": "yara", "code": "000000"}).status_code == 429
    # The owner at the portal: no wait, the right code passes at once.
    assert portal.svc.status("yara").retry_after == 0
    portal.svc.attempt_second_factor("yara", fresh_code(secret), source="10.0.0.1")


def test_missing_wrong_and_removed_keys_get_401_and_are_audited(portal):
    key = portal.registry.add("short-lived")
    body = {"username": "nobody-short-lived", "code": "123456"}
    assert portal.post(body, key=key).status_code == 200
    assert cli_main(["clients", "remove", "short-lived", "--data-dir", str(portal.data_dir)]) == 0
    refused = {
        "no key": portal.post(body, key=None),
        "wrong key": portal.post(body, key=api_clients.new_key()),
        "removed key": portal.post(body, key=key),
        "not bearer": portal.post(body, key=None, headers={"Authorization": f"Basic {key}"}),
        "garbage": portal.post(body, key="x" * 500),
    }
    for why, answer in refused.items():
        assert answer.status_code == 401, why
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["ok"] is False
    audited = [e for e in portal.svc.audit() if e.event == "api_auth_failed"]
    assert len(audited) >= len(refused)
    assert any(e.detail.startswith("no client key") for e in audited)
    assert any(e.detail.startswith("wrong or removed client key") for e in audited)
    secret_part = key[len(api_clients.KEY_PREFIX):].encode()
    for path in portal.data_dir.rglob("*"):  # the audit trail, the registry, every record
        assert not path.is_file() or secret_part not in path.read_bytes(), path


def test_a_removed_key_is_refused_at_once_and_a_rotated_one_replaces_it(portal):
    key = portal.registry.add("rotating")
    body = {"username": "nobody-rotating", "code": "123456"}
    assert portal.post(body, key=key).status_code == 200
    new = portal.registry.rotate("rotating")
    assert portal.post(body, key=key).status_code == 401
    assert portal.post(body, key=new).status_code == 200


def test_each_client_has_its_own_rate_limit(portal):
    key = portal.registry.add("slow", rate=3)
    body = {"username": "nobody-rate", "code": "123456"}  # each name has its own throttle
    assert [portal.post({**body, "username": f"nobody-rate{i}"}, key=key).status_code
            for i in range(3)] == [200, 200, 200]
    over = portal.post(body, key=key)
    assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
    assert over.json()["ok"] is False and "rate" in over.json()["error"]
    assert portal.post(body).status_code == 200  # another client is not held up


@pytest.fixture(scope="module")
def petra(portal) -> str:
    portal.enroll("petra")
    return "petra"


@pytest.mark.parametrize("content, why", [
    (b"{", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "not an object"),
    (b"[" * 2000 + b"]" * 2000, "nested too deep"),  # within the 4 kB (a longer one is a 413)
    (b'{"username": "alice"}', "no code"),
    (b'{"username": "alice", "code": 123456}', "code is a number"),
    (b'{"username": ["alice"], "code": "123456"}', "username is a list"),
    (b'{"username": "alice", "code": "123456", "strategy": "sms"}', "unknown strategy"),
    (b'{"username": "alice", "code": "123456", "strategy": 1}', "strategy is a number"),
    (b'{"username": "alice", "code": "123456", "admin": true}', "unknown field"),
    (b'{"username": "", "code": "123456"}', "empty username"),
    (b'{"username": "a:b", "code": "123456"}', "username with a colon"),
])
def test_bad_bodies_get_400_with_a_json_error_and_change_nothing(portal, petra, content, why):
    before = portal.svc.status(petra)
    answer = portal.post(content=content.replace(b'"alice"', b'"petra"'),
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, why
    assert answer.json()["ok"] is False and answer.json()["error"]
    assert portal.svc.status(petra) == before


def test_an_oversized_body_is_413_with_the_connection_closed(portal, petra):
    """Over 4 kB, declared or not: refused before the key is looked at (issue 20 F10), with no
    detail, and the connection is not kept for the rest of the body."""
    before = portal.svc.status(petra)
    big = json.dumps({"username": petra, "code": "1" * 5000}).encode()

    def chunks():
        for _ in range(64):
            yield b" " * 1024  # 64 kB of blanks, sent chunked
    for content, key in ((big, portal.key), (chunks(), portal.key), (big, None)):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = httpx.post(f"{portal.url}/api/v1/verify", content=content, headers=headers,
                            timeout=30)
        assert answer.status_code == 413 and not answer.content
        assert answer.headers.get("connection") == "close"
    assert portal.svc.status(petra) == before


def test_a_malformed_code_is_just_not_ok(portal):
    portal.enroll("yuri")
    for code in ("", "12345", "abc", "1234567"):
        assert portal.post({"username": "yuri", "code": code}).json() == {"ok": False}
    assert portal.svc.status("yuri").failed_attempts == 0  # not a guess: counts nothing


def test_fifty_requests_racing_with_one_backup_code_accept_it_exactly_once(portal):
    _, codes = portal.enroll("zoe", backup_codes=True)
    body = {"username": "zoe", "code": codes[0], "strategy": "backup_code"}

    async def race() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*[
                client.post(f"{portal.url}/api/v1/verify", json=body,
                            headers={"Authorization": f"Bearer {portal.key}"}) for _ in range(50)])

    answers = asyncio.run(race())
    oks = [a for a in answers if a.status_code == 200 and a.json().get("ok") is True]
    assert len(oks) == 1
    assert all(a.status_code in (200, 429) for a in answers)
    assert all(a.json().get("ok") is False for a in answers if a not in oks)
    assert portal.svc.status("zoe").backup_codes_remaining == 9


def test_keys_and_codes_never_reach_the_server_log(portal):
    secret, _ = portal.enroll("quinn")
    code = fresh_code(secret)
    assert portal.post({"username": "quinn", "code": code}).json()["ok"] is True
    log = portal.server_log()
    assert portal.key not in log and code not in log
