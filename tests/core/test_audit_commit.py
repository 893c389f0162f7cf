"""The record and its audit events commit together, on every backend.

An action whose audit events cannot be written does not happen (and says
so); an action whose record cannot be written says so and its events are not
in the trail; an action that committed is never reported as failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3

import pytest

import mfa_core
from mfa_core.storage import sharded

from ..support import enable_totp


@pytest.fixture
def codes(svc, clock) -> list[str]:
    enable_totp(svc, clock, "alice")
    return svc.create_backup_codes("alice").codes


def sql(data_dir, statement: str) -> None:
    """Change the SQLite store from another connection, as an operator's mistake would."""
    with contextlib.closing(sqlite3.connect(data_dir / "mfa.sqlite3")) as db:
        db.execute(statement)
        db.commit()


def pg_sql(url: str, statement: str) -> None:
    """Change the PostgreSQL store from another connection."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@contextlib.contextmanager
def pg_refusing(url: str, table: str, message: str):
    """Every insert or update on ``table`` fails (a trigger), as a full disk would."""
    pg_sql(url, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
    pg_sql(url, f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse()")
    try:
        yield
    finally:
        pg_sql(url, f"DROP TRIGGER refuse ON {table}")
        pg_sql(url, "DROP FUNCTION refuse()")


@contextlib.contextmanager
def audit_unwritable(svc, backend, data_dir, clock):
    """The trail refuses appends for real: a directory where today's day file goes, or no table."""
    if backend == "postgres":
        with pg_refusing(svc.store.url, "audit", "could not extend file: No space left on device"):
            yield
    elif backend == "sqlite":
        sql(data_dir, "ALTER TABLE audit RENAME TO audit_away")
        try:
            yield
        finally:
            sql(data_dir, "ALTER TABLE audit_away RENAME TO audit")
    else:
        day = dt.datetime.fromtimestamp(clock(), dt.timezone.utc).strftime("%Y-%m-%d")
        day_file = data_dir / "audit" / f"{day}.jsonl"
        kept = day_file.read_bytes()
        day_file.unlink()
        day_file.mkdir()
        try:
            yield
        finally:
            day_file.rmdir()
            day_file.write_bytes(kept)


@contextlib.contextmanager
def records_unwritable(backend, data_dir, monkeypatch, database_url=None):
    """The user's record cannot be written (a full disk), after the trail was."""
    if backend == "postgres":
        with pg_refusing(database_url, "users", "could not extend file: No space left on device"):
            yield
    elif backend == "sqlite":
        sql(data_dir, "CREATE TRIGGER full_disk BEFORE INSERT ON users "
                      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        try:
            yield
        finally:
            sql(data_dir, "DROP TRIGGER full_disk")
    else:
        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")
        with monkeypatch.context() as patch:
            patch.setattr(sharded, "write_atomic", full)
            yield


def test_an_action_whose_audit_cannot_be_written_does_not_happen(svc, backend, data_dir, clock,
                                                                  codes):
    with audit_unwritable(svc, backend, data_dir, clock):
        with pytest.raises(mfa_core.StorageError):
            svc.attempt_second_factor("alice", codes[0], "backup_code")
    # Nothing happened, truthfully reported: the code is still good, nothing was counted.
    status = svc.status("alice")
    assert (status.backup_codes_remaining, status.failed_attempts) == (10, 0)
    assert svc.attempt_second_factor("alice", codes[0], "backup_code").backup_codes_remaining == 9
    assert [e.event for e in svc.audit("alice")].count("backup_code_used") == 1


def test_an_action_whose_record_cannot_be_written_leaves_no_event(svc, backend, data_dir, clock,
                                                                  codes, monkeypatch, database_url):
    with records_unwritable(backend, data_dir, monkeypatch, database_url):
        with pytest.raises(mfa_core.StorageError):
            svc.attempt_second_factor("alice", codes[0], "backup_code")
    assert "backup_code_used" not in [e.event for e in svc.audit("alice")]
    assert svc.status("alice").backup_codes_remaining == 10
    svc.attempt_second_factor("alice", codes[0], "backup_code")
    assert [e.event for e in svc.audit("alice")].count("backup_code_used") == 1


def test_a_committed_action_is_never_reported_as_failed(tinydb_svc, data_dir, clock):
    """After the record is written nothing may fail the call: here the enrolment marker cannot be."""
    svc = tinydb_svc
    (data_dir / "enrolled").write_text("not a directory")
    enable_totp(svc, clock, "alice")  # would raise if the marker's failure escaped
    assert svc.status("alice").totp_enabled
    assert "totp_enabled" in [e.event for e in svc.audit("alice")]


def test_every_event_of_a_committed_transaction_is_in_the_trail(svc, clock, codes):
    svc.attempt_second_factor("alice", codes[0], "backup_code")
    trail = svc.audit("alice")
    kept = {e["event"] for e in svc.store.read("alice")["activity"]}
    assert kept <= {e.event for e in trail}
