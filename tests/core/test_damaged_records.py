"""Fail closed: a record that exists but is not a valid record is damage, never "no second factor"."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

import mfa_core
from mfa_core.storage import user_key

from ..support import code_for, enable_totp, write_users

DAMAGED = "Your account's security settings cannot be read. Contact the helpdesk."


def user_file(data_dir, username):
    key = user_key(username)
    return data_dir / "users" / key[:2] / f"{key}.json"


def tinydb(record) -> bytes:
    return json.dumps({"mfa": {"1": record}}).encode()


def enrolled_record(svc, username) -> dict:
    return dict(svc.store.read(username))


# Whole-file damage on the sharded TinyDB store (the portal's): each kind the issue lists.
FILE_DAMAGE = {
    "empty": lambda rec: b"",
    "null": lambda rec: b"null",
    "list": lambda rec: b"[]",
    "default-table-only": lambda rec: b'{"_default": []}',
    "document-is-a-list": lambda rec: b'{"mfa": {"1": []}}',
    "no-document": lambda rec: b'{"mfa": {}}',
    "truncated": lambda rec: tinydb(rec)[:-25],
    "not-json": lambda rec: b"\x00\x01garbage",
}

# Damage inside the record, the same on every backend.
def as_version_1(rec):
    """The record as the release before several authenticators wrote it (one ``totp`` part)."""
    [app] = rec["authenticators"]
    old = {k: v for k, v in rec.items() if k != "authenticators"}
    return {**old, "v": 1, "totp": {"secret": app["secret"], "last_step": app["last_step"],
                                    "enabled_at": app["created_at"]}}


def _app(rec, **changes):
    [app] = rec["authenticators"]
    return {**rec, "authenticators": [{k: v for k, v in {**app, **changes}.items() if v is not ...}]}


RECORD_DAMAGE = {
    "authenticators-missing": lambda rec: {k: v for k, v in rec.items() if k != "authenticators"},
    "unknown-version": lambda rec: {**rec, "v": 99},
    "authenticators-wrong-shape": lambda rec: {**rec, "authenticators": ["secret"]},
    "authenticators-not-a-list": lambda rec: {**rec, "authenticators": {"a": 1}},
    "secret-missing": lambda rec: _app(rec, secret=...),
    "label-missing": lambda rec: _app(rec, label=...),
    "unknown-kind": lambda rec: _app(rec, kind="sms"),
    "last-step-not-a-number": lambda rec: _app(rec, last_step="7"),
    "two-with-one-id": lambda rec: {**rec, "authenticators": rec["authenticators"] * 2},
    "one-app-part-in-format-2": lambda rec: {**rec, "totp": as_version_1(rec)["totp"]},
    "format-1-totp-part-missing": lambda rec: {
        k: v for k, v in as_version_1(rec).items() if k != "totp"},
    "format-1-totp-wrong-shape": lambda rec: {**as_version_1(rec), "totp": ["secret"]},
    "format-1-secret-missing": lambda rec: {**as_version_1(rec),
                                            "totp": {"last_step": 1, "enabled_at": 1.0}},
    "format-1-with-authenticators": lambda rec: {**as_version_1(rec), "two_step": False,
                                                 "totp": None, "authenticators": "xx"},
    "format-1-with-authenticators-too": lambda rec: {**as_version_1(rec),
                                                     "authenticators": rec["authenticators"]},
    "disclosed-not-a-list-of-steps": lambda rec: _app(rec, disclosed=["7"]),
    "another-users-record": lambda rec: {**rec, "username": "mallory"},
    "backup-codes-without-authenticator": lambda rec: {
        k: v for k, v in rec.items() if k not in ("authenticators", "two_step", "v")},
    "epoch-not-a-number": lambda rec: {**rec, "mfa_epoch": "1"},
}


def write_record(svc, backend, data_dir, username, record) -> None:
    """Put ``record`` in the store as it is, past the engine (what a damaged disk does)."""
    if backend == "tinydb":
        user_file(data_dir, username).write_bytes(tinydb(record))
    elif backend == "postgres":  # another connection's UPDATE, past the engine
        import psycopg
        from psycopg.types.json import Jsonb
        with psycopg.connect(svc.store.url, autocommit=True) as db:
            db.execute("UPDATE users SET doc = %s WHERE username = %s", (Jsonb(record), username))
    elif backend == "sqlite":
        with contextlib.closing(sqlite3.connect(data_dir / "mfa.sqlite3")) as db:
            db.execute("UPDATE users SET doc = ? WHERE username = ?", (json.dumps(record), username))
            db.commit()
    else:  # the single-file baseline: through the store itself, past the engine's checks
        with svc.store.transaction(username, repair=True) as txn:
            txn.record = record


def every_operation(svc, clock, username):
    """Every operation on ``username``: each must fail closed."""
    return {
        "status": lambda: svc.status(username),
        "attempt_password": lambda: svc.attempt_password(username, "alice-pass-1", source="10.0.0.1"),
        "attempt_second_factor": lambda: svc.attempt_second_factor(username, "123456"),
        "backup_code": lambda: svc.attempt_second_factor(username, "abcd-efgh-jkmn-pqrs", "backup_code"),
        "create_totp": lambda: svc.create_totp(username),
        "verify_totp": lambda: svc.verify_totp(username, "123456"),
        "disable_totp": lambda: svc.disable_totp(username),
        "create_backup_codes": lambda: svc.create_backup_codes(username),
        "pending_totp": lambda: svc.pending_totp(username),
        "retry_after": lambda: svc.retry_after(username),
        "recent_activity": lambda: svc.recent_activity(username),
        "is_token_revoked": lambda: svc.is_token_revoked(username, "fp"),
        "revoke_token": lambda: svc.revoke_token(username, "fp", clock() + 60),
        "unlock": lambda: svc.unlock(username, actor="admin", reason="r"),
    }


def assert_fails_closed(svc, clock, username="alice"):
    for name, call in every_operation(svc, clock, username).items():
        with pytest.raises(mfa_core.RecordDamaged) as err:
            call()
        assert str(err.value) == DAMAGED, name
    [listed] = svc.statuses([username])
    assert listed.damaged and not listed.totp_enabled
    damage_events = [e for e in svc.audit(username) if e.event == "record_damaged"]
    assert len(damage_events) == 1  # audited once, however often it is met


@pytest.fixture
def alice(data_dir, svc, clock):
    write_users(data_dir, {"alice": "alice-pass-1", "bob": "bob-pass-1"})
    secret = enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    return secret


@pytest.mark.parametrize("kind", sorted(FILE_DAMAGE))
def test_a_damaged_record_file_fails_closed(tinydb_svc, data_dir, clock, kind):
    svc = tinydb_svc
    write_users(data_dir, {"alice": "alice-pass-1"})
    enable_totp(svc, clock, "alice")
    user_file(data_dir, "alice").write_bytes(FILE_DAMAGE[kind](enrolled_record(svc, "alice")))
    assert_fails_closed(svc, clock)


def test_a_deleted_record_file_of_an_enrolled_user_fails_closed(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    write_users(data_dir, {"alice": "alice-pass-1"})
    enable_totp(svc, clock, "alice")
    user_file(data_dir, "alice").unlink()
    assert_fails_closed(svc, clock)


def test_a_user_who_never_enrolled_has_no_record_and_that_is_fine(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    enable_totp(svc, clock, "bob")
    svc.disable_totp("bob")
    user_file(data_dir, "bob").unlink()  # no authenticator any more: nothing to protect
    assert not svc.status("bob").two_factor_enabled
    assert not svc.status("carol").two_factor_enabled


@pytest.mark.parametrize("kind", sorted(RECORD_DAMAGE))
def test_a_damaged_record_fails_closed_on_every_backend(svc, backend, data_dir, clock, alice, kind):
    write_record(svc, backend, data_dir, "alice", RECORD_DAMAGE[kind](enrolled_record(svc, "alice")))
    assert_fails_closed(svc, clock)


def test_other_users_are_not_touched_by_one_damaged_record(svc, backend, data_dir, clock, alice):
    secret = enable_totp(svc, clock, "bob")
    write_record(svc, backend, data_dir, "alice", {"username": "alice", "v": 99})
    svc.attempt_password("bob", "bob-pass-1")
    svc.attempt_second_factor("bob", code_for(secret, clock()))
    assert [s.damaged for s in svc.statuses(["alice", "bob"])] == [True, False]


def test_the_helpdesk_reset_replaces_a_damaged_record(svc, backend, data_dir, clock, alice):
    write_record(svc, backend, data_dir, "alice", {"username": "alice", "v": 99})
    status = svc.reset_mfa("alice", actor="admin", reason="record damaged, ticket 7")
    assert not status.totp_enabled and not status.damaged
    svc.attempt_password("alice", "alice-pass-1")
    assert not svc.status("alice").two_factor_enabled
    [reset] = [e for e in svc.audit("alice") if e.event == "helpdesk_reset"]
    assert "damaged record replaced" in reset.detail
    enable_totp(svc, clock, "alice")  # and she enrolls again


def test_the_damaged_file_is_kept_aside_for_whoever_investigates(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    user_file(data_dir, "alice").write_bytes(b"\x00garbage")
    svc.reset_mfa("alice", actor="admin", reason="damaged")
    [kept] = list(user_file(data_dir, "alice").parent.glob("*.damaged-*"))
    assert kept.read_bytes() == b"\x00garbage"
    assert "alice" in list(svc.usernames())


def test_records_from_before_format_versions_still_read_and_are_upgraded(svc, backend, data_dir,
                                                                         clock, alice):
    legacy = {k: v for k, v in as_version_1(enrolled_record(svc, "alice")).items()
              if k not in ("v", "two_step")}
    write_record(svc, backend, data_dir, "alice", legacy)
    assert svc.status("alice").totp_enabled
    svc.attempt_second_factor("alice", code_for(alice, clock()))
    assert svc.store.read("alice")["v"] == 2 and svc.store.read("alice")["two_step"] is True
    assert len(svc.store.read("alice")["authenticators"]) == 1


def test_a_time_that_is_not_a_finite_number_is_damage(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    good = enrolled_record(svc, "alice")
    for bad in (float("nan"), float("inf")):
        record = as_version_1(json.loads(json.dumps(good)))
        record["totp"]["enabled_at"] = bad
        user_file(data_dir, "alice").write_bytes(tinydb(record))
        with pytest.raises(mfa_core.RecordDamaged):
            svc.status("alice")
