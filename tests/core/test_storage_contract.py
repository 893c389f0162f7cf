"""One contract for every storage backend: the per-user transaction interface the engine relies on."""

from __future__ import annotations

import json

import pytest

import mfa_core
from mfa_core.storage import BACKENDS, Store, open_store

from .conftest import code_for


@pytest.fixture
def store(backend, tmp_path, database_url) -> Store:
    """A bare store of each backend (``backend`` is the parametrized fixture in conftest.py)."""
    store = open_store(backend, tmp_path / "store", database_url)
    yield store
    store.close()


def reopen(store: Store) -> Store:
    if hasattr(store, "url"):  # PostgresStore: the same database
        return type(store)(store.url)
    return type(store)(store.root)


def test_every_backend_is_a_store():
    assert set(BACKENDS) == {"tinydb", "tinydb-single-file", "sqlite"}
    assert all(issubclass(cls, Store) for cls in BACKENDS.values())


def test_unknown_user_reads_none(store):
    assert store.read("nobody") is None


def test_transaction_commits_the_record(store):
    with store.transaction("alice") as txn:
        assert txn.username == "alice" and not txn.existed
        txn.record["count"] = 1
        txn.record["nested"] = {"a": [1, 2]}
    assert store.read("alice")["count"] == 1
    assert reopen(store).read("alice")["nested"] == {"a": [1, 2]}
    with store.transaction("alice") as txn:
        assert txn.existed and txn.record["count"] == 1
        txn.record["count"] += 1
    assert reopen(store).read("alice")["count"] == 2


def test_transaction_rolls_back_on_exception(store):
    with store.transaction("alice") as txn:
        txn.record["count"] = 1
    with pytest.raises(RuntimeError):
        with store.transaction("alice") as txn:
            txn.record["count"] = 99
            txn.record.setdefault("nested", {})["x"] = 1
            txn.log({"time": 1.0, "user": "alice", "event": "should_not_be_logged"})
            raise RuntimeError("boom")
    assert store.read("alice") == {"username": "alice", "count": 1}
    assert reopen(store).read("alice") == {"username": "alice", "count": 1}
    assert not [e for e in store.query_audit() if e["event"] == "should_not_be_logged"]


def test_rolled_back_new_user_leaves_no_record(store):
    with pytest.raises(RuntimeError):
        with store.transaction("ghost") as txn:
            txn.record["x"] = 1
            raise RuntimeError
    assert store.read("ghost") is None
    assert "ghost" not in list(store.usernames())


def test_untouched_transaction_creates_no_record(store):
    with store.transaction("ghost"):
        pass
    assert store.read("ghost") is None
    assert list(store.usernames()) == []


def test_names_and_documents_are_stored_exactly_whatever_they_hold(store):
    """Quotes, backslashes, semicolons and SQL in a name or a document are data, nothing else
    (PostgreSQL binds them into its statements on the client)."""
    odd = "o'brien\\\"; DROP TABLE users; --"
    doc = {"label": "it's \\ a \"test\"; DELETE FROM audit; --", "emoji": "📱 Tablet ünïcode",
           "text": "line\nbreak\ttab", "n": 1.5}
    with store.transaction(odd) as txn:
        txn.record.update(doc)
        txn.log({"time": 1.0, "user": odd, "event": "odd'event", "detail": doc["label"]})
    with store.keyed_transaction(odd) as txn:
        txn.record.update(doc)
    with store.transaction("alice") as txn:
        txn.record["x"] = 1
    assert reopen(store).read(odd) == {"username": odd, **doc}
    assert store.read_keyed(odd) == {"username": odd, **doc}
    assert sorted(store.usernames()) == sorted(["alice", odd])
    assert [e["detail"] for e in store.query_audit(odd)] == [doc["label"]]


def test_a_keyed_transaction_inside_a_users_commits_with_it(store):
    with store.transaction("alice") as txn:
        txn.record["x"] = 1
        with store.keyed_transaction("k1") as keyed:
            keyed.record["owner"] = "alice"
            keyed.log({"time": 1.0, "user": "alice", "event": "keyed_inner"})
        with pytest.raises(RuntimeError):
            with store.keyed_transaction("k2") as keyed:
                keyed.record["owner"] = "nobody"
                keyed.log({"time": 2.0, "user": "alice", "event": "keyed_rolled_back"})
                raise RuntimeError("boom")
        txn.log({"time": 3.0, "user": "alice", "event": "outer"})
    assert store.read("alice")["x"] == 1
    assert store.read_keyed("k1")["owner"] == "alice"
    assert store.read_keyed("k2") is None
    assert [e["event"] for e in store.query_audit("alice")] == ["keyed_inner", "outer"]


def test_keys_removed_from_the_record_are_removed(store):
    with store.transaction("alice") as txn:
        txn.record.update(totp={"secret": "x"}, backup={"hashes": ["h"]}, keep=True)
    with store.transaction("alice") as txn:
        del txn.record["totp"]
        txn.record.pop("backup")
    for s in (store, reopen(store)):
        record = s.read("alice")
        assert "totp" not in record and "backup" not in record and record["keep"] is True


def test_read_returns_a_copy(store):
    with store.transaction("alice") as txn:
        txn.record["list"] = [1]
    store.read("alice")["list"].append(2)
    assert store.read("alice")["list"] == [1]


def test_users_are_independent(store):
    for name in ("alice", "bob", "名前", "a b@c/d"):
        with store.transaction(name) as txn:
            txn.record["me"] = name
    for name in ("alice", "bob", "名前", "a b@c/d"):
        assert store.read(name)["me"] == name


def test_usernames_lists_every_user(store):
    names = {f"user{i}" for i in range(12)} | {"名前"}
    for name in names:
        with store.transaction(name) as txn:
            txn.record["x"] = 1
    assert set(store.usernames()) == names
    assert set(reopen(store).usernames()) == names


def test_put_writes_a_record(store):
    store.put("alice", {"username": "alice", "x": 1})
    assert store.read("alice") == {"username": "alice", "x": 1}


def event(t: float, user: str | None, name: str = "e") -> dict:
    return {"time": t, "user": user, "actor": user, "event": name, "outcome": "success", "detail": ""}


def test_audit_appends_and_queries_by_user_and_time(store):
    day = 86400.0
    t0 = 1_700_000_000.0
    store.append_audit([event(t0, "alice", "a1"), event(t0 + 10, "bob", "b1")])
    store.append_audit([event(t0 + 2 * day, "alice", "a2"), event(t0 + 3 * day, None, "sys")])
    with store.transaction("alice") as txn:
        txn.record["x"] = 1
        txn.log(event(t0 + 20, "alice", "a-txn"))
    names = lambda events: [e["event"] for e in events]  # noqa: E731
    assert names(store.query_audit()) == ["a1", "b1", "a-txn", "a2", "sys"]
    assert names(store.query_audit("alice")) == ["a1", "a-txn", "a2"]
    assert names(store.query_audit(since=t0 + 10)) == ["b1", "a-txn", "a2", "sys"]
    assert names(store.query_audit(until=t0 + 10)) == ["a1"]  # until is exclusive
    assert names(store.query_audit("alice", since=t0 + 1, until=t0 + 3 * day)) == ["a-txn", "a2"]
    assert names(reopen(store).query_audit("bob")) == ["b1"]


def test_audit_of_unknown_user_is_empty(store):
    store.append_audit([event(1.0, "alice")])
    assert store.query_audit("nobody") == []


def test_records_are_json(store):
    with store.transaction("alice") as txn:
        txn.record["x"] = {"y": [1, 2.5, "z", None, True]}
    assert json.loads(json.dumps(store.read("alice"))) == store.read("alice")


# -- the service over every backend ---------------------------------------------------

def test_service_lifecycle_over_each_backend(backend, tmp_path, clock, database_url):
    data_dir = tmp_path / "data"
    svc = mfa_core.open_service(data_dir, clock=clock, backend=backend, environ={},
                                database_url=database_url)
    secret = svc.create_totp("alice").secret
    enrollment = code_for(secret, clock())
    assert svc.verify_totp("alice", enrollment).totp_enabled
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", enrollment)
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    codes = svc.create_backup_codes("alice").codes
    svc.attempt_second_factor("alice", codes[0].upper().replace("-", ""), "backup_code")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", codes[0], "backup_code")
    for _ in range(mfa_core.ThrottlePolicy().free_failures - 1):  # the reused code was one
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_second_factor("alice", "000000")
    with pytest.raises(mfa_core.TooManyAttempts):
        svc.attempt_second_factor("alice", codes[1], "backup_code")
    svc.reset_mfa("alice", actor="admin", reason="lost phone")

    again = mfa_core.open_service(data_dir, clock=clock, backend=backend, environ={},
                                  database_url=database_url)
    status = again.status("alice")
    assert not status.totp_enabled and status.failed_attempts == 0 and status.mfa_epoch == 2
    events = [e.event for e in again.audit("alice")]
    assert events[0] == "totp_enrollment_started" and events[-1] == "helpdesk_reset"
    assert list(again.usernames()) == ["alice"]
