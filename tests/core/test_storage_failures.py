"""When the store's files or database misbehave: clear StorageErrors, nothing half-done."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading

import pytest

import mfa_core
from mfa_core import storage

from ..support import leftover_temp_file
from .conftest import code_for, enable_totp


def user_file(data_dir, username):
    return data_dir / "users" / storage._user_key(username)[:2] / f"{storage._user_key(username)}.json"


# Damages one user's file: the sharded TinyDB store's layout.
def test_a_damaged_user_file_is_a_storage_error_for_that_user_only(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    secret = enable_totp(svc, clock, "bob")
    user_file(data_dir, "alice").write_bytes(b'{"mfa": {"1": {"username": "al')
    with pytest.raises(mfa_core.RecordDamaged, match="cannot be read. Contact the helpdesk"):
        svc.status("alice")
    with pytest.raises(mfa_core.StorageError):
        svc.attempt_second_factor("alice", "123456")
    svc.attempt_second_factor("bob", code_for(secret, clock()))


# Tears a line of the JSON-lines audit files (both TinyDB stores; SQLite keeps a table).
def test_a_torn_audit_line_loses_nothing_after_it(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    svc.create_totp("alice")
    [day_file] = (data_dir / "audit").glob("*.jsonl")
    with open(day_file, "ab") as fh:
        fh.write(b'{"time": 1700000020.0, "user": "al')  # a crash mid-append
    svc.create_totp("bob")
    svc.create_totp("carol")
    assert [e.user for e in svc.audit()] == ["alice", "bob", "carol"]


def test_refused_open_service_creates_nothing(open_svc, data_dir):
    with pytest.raises(ValueError):
        open_svc(issuer="a:b")
    with pytest.raises(TypeError):
        open_svc(clock="now")
    with pytest.raises(ValueError):
        open_svc(backend="nosql")
    assert not data_dir.exists()


def test_an_unusable_data_dir_is_a_storage_error(open_svc, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(mfa_core.StoreUnavailable) as caught:
        open_svc(blocker / "data")
    assert str(caught.value) == mfa_core.StorageError.default_message  # no path for visitors
    assert "cannot be used" in caught.value.detail  # the operator's


def test_a_locked_sqlite_database_is_a_storage_error(tmp_path, clock, monkeypatch):
    # The module SQLiteStore reads LOCK_TIMEOUT from (mfa_core.storage, or a module of the package).
    monkeypatch.setattr(sys.modules[storage.SQLiteStore.__module__], "LOCK_TIMEOUT", 0.2)
    svc = mfa_core.open_service(tmp_path / "data", clock=clock, backend="sqlite", environ={})
    holder = sqlite3.connect(tmp_path / "data" / "mfa.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(mfa_core.StorageError):
            svc.create_totp("alice")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert svc.status("alice").pending_enrollment is False
    svc.create_totp("alice")
    assert svc.status("alice").pending_enrollment


def test_two_rotations_at_once_leave_every_secret_readable(open_svc, data_dir, clock):
    svc = open_svc()
    secrets_ = {f"user{i}": enable_totp(svc, clock, f"user{i}") for i in range(12)}
    rotators = [open_svc() for _ in range(2)]
    errors: list[BaseException] = []

    def rotate(svc):
        try:
            svc.rotate_keys(actor="ops")
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=rotate, args=(r,)) for r in rotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    fresh = open_svc()
    for user, secret in secrets_.items():
        fresh.attempt_second_factor(user, code_for(secret, clock()))


# Plants temp files next to a user's file: the sharded TinyDB store's layout.
def test_sweep_removes_only_old_temp_files_of_killed_writers(tinydb_svc, data_dir, clock):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    before = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    [user_file] = [p for p in before if p.suffix == ".json" and "users" in p.parts]
    old = [leftover_temp_file(user_file.parent, user_file.name, 7200),
           leftover_temp_file(data_dir, "users.yaml", 4000)]
    fresh = leftover_temp_file(user_file.parent, user_file.name, 5)  # a writer may still own it
    assert storage.sweep_leftovers(data_dir) == 2
    assert not any(os.path.exists(p) for p in old) and os.path.exists(fresh)
    assert {p: p.read_bytes() for p in before} == before  # records, keys, locks, audit untouched
    assert svc.status("alice").totp_enabled
    assert storage.sweep_leftovers(data_dir, older_than=0) == 1


def test_sweep_refuses_a_bad_age(data_dir):
    with pytest.raises(TypeError):
        storage.sweep_leftovers(data_dir, older_than="1h")
    with pytest.raises(ValueError):
        storage.sweep_leftovers(data_dir, older_than=-1)
