"""PostgreSQL-only behaviour: selection by URL, the schema version, errors, two replicas on one database.

The shared suites (contract, lifecycle, throttle, passwords, sessions, damage,
audit commit, concurrency) run on PostgreSQL through the ``backend`` fixture;
these are the parts only a database has. They use the throwaway cluster of
tests/pg.py (skipped without PostgreSQL, failing in CI).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import traceback

import psycopg
import pytest

import mfa_core
from mfa_core.storage import open_store
from mfa_core.storage.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore

from ..support import code_for, enable_totp, write_users

PASSWORDS = {"alice": "alice-pass-1"}


def test_the_database_url_in_the_environment_selects_postgres(postgres_url, data_dir, clock):
    svc = mfa_core.open_service(data_dir, clock=clock, environ={"MFA_PORTAL_DATABASE_URL": postgres_url})
    assert isinstance(svc.store, PostgresStore)
    enable_totp(svc, clock, "alice")
    assert not (data_dir / "users").exists()  # nothing of the user's in the data dir


def test_without_a_url_the_embedded_store_is_used(data_dir, clock):
    svc = mfa_core.open_service(data_dir, clock=clock, environ={})
    assert type(svc.store).__name__ == "ShardedTinyDBStore"
    with pytest.raises(ValueError):
        mfa_core.open_service(data_dir, clock=clock, environ={}, backend="postgres")


def test_the_schema_is_versioned_and_a_newer_one_is_refused(postgres_url, data_dir, clock):
    store = PostgresStore(postgres_url)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    try:
        with pytest.raises(mfa_core.StorageError, match="newer than this portal knows"):
            mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=postgres_url)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DELETE FROM schema_version WHERE version > %s", (SCHEMA_VERSION,))


def test_a_version_2_database_is_upgraded_with_every_record_and_event_kept(
        postgres_cluster, postgres_url, data_dir, clock):
    """Version 3 keeps records as the JSON text written (``json``, not ``jsonb``) and indexes
    only copied audit events: a database the previous release made is brought up with
    nothing lost, and a signed-in user goes on as before."""
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=postgres_url)
    secret = enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    svc.attempt_second_factor("alice", codes[0], strategy="backup_code")
    token = svc.sessions.start("alice", second_factor_passed=True)
    svc.store.copy_audit({"old-event-1": {"time": 1.0, "user": "alice", "event": "copied"}})
    with psycopg.connect(postgres_url) as conn:  # everything as stored, to write as release 2 did
        rows = {table: conn.execute(f"SELECT {key}, doc::text FROM {table}").fetchall()
                for table, key in (("users", "username"), ("keyed", "key"))}
        audit = conn.execute("SELECT time, username, doc::text, copied_from FROM audit ORDER BY id").fetchall()
    svc.store.close()

    old = "mfa_release_2"
    with psycopg.connect(postgres_cluster.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {old}")
        conn.execute(f"CREATE DATABASE {old}")
    url = postgres_cluster.url.rsplit("/", 1)[0] + "/" + old
    try:
        with psycopg.connect(url) as conn:  # release 2's schema (jsonb) and its rows
            conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
            for step in (0, 1):
                conn.execute(MIGRATIONS[step])
                conn.execute("INSERT INTO schema_version VALUES (%s)", (step + 1,))
            for table, key in (("users", "username"), ("keyed", "key")):
                for name, doc in rows[table]:
                    conn.execute(f"INSERT INTO {table} ({key}, doc) VALUES (%s, %s::jsonb)", (name, doc))
            for row in audit:
                conn.execute("INSERT INTO audit (time, username, doc, copied_from) "
                             "VALUES (%s, %s, %s::jsonb, %s)", row)
        with pytest.raises(mfa_core.StorageError, match="db upgrade"):
            mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=url)
        store = PostgresStore(url, upgrade=True)
        assert (store.upgraded_from, store.schema_version()) == (2, SCHEMA_VERSION)
        store.close()

        upgraded = mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=url)
        assert upgraded.sessions.find(token).username == "alice"  # keyed records kept
        assert upgraded.status("alice").backup_codes_remaining == len(codes) - 1
        with pytest.raises(mfa_core.InvalidCode):  # the used backup code stays used
            upgraded.attempt_second_factor("alice", codes[0], strategy="backup_code")
        clock.advance(30)
        upgraded.attempt_second_factor("alice", code_for(secret, clock()))
        events = upgraded.store.query_audit("alice")
        kept = sorted((json.loads(doc) for _, _, doc, _ in audit), key=lambda e: e["time"])
        assert events[:len(audit)] == kept  # oldest first
        assert [e["event"] for e in events[len(audit):]] == ["second_factor_failed", "second_factor_passed"]
        # The copied event's origin still refuses a second copy of it; new events have none.
        upgraded.store.copy_audit({"old-event-1": {"time": 1.0, "user": "alice", "event": "copied"}})
        assert upgraded.store.copied_audit(["old-event-1"]) == 1
        upgraded.store.close()
    finally:
        with psycopg.connect(postgres_cluster.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {old} WITH (FORCE)")


def test_an_unreachable_database_is_a_storage_error(postgres_cluster, data_dir, clock):
    url = f"postgresql://mfa@127.0.0.1:{postgres_cluster.port}/no_such_database?connect_timeout=2"
    with pytest.raises(mfa_core.StoreUnavailable) as caught:
        mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=url)
    # What anyone may see says nothing of the database; the operator's detail does.
    assert str(caught.value) == mfa_core.StorageError.default_message
    assert "database cannot be used" in caught.value.detail and "no_such_database" in caught.value.detail


def test_a_database_failure_mid_operation_is_a_storage_error(postgres_url, data_dir, clock):
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=postgres_url)
    enable_totp(svc, clock, "alice")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE users RENAME TO users_away")
    try:
        with pytest.raises(mfa_core.StorageError):
            svc.status("alice")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE users_away RENAME TO users")
    assert svc.status("alice").totp_enabled


def test_a_commit_that_fails_writes_nothing_and_the_store_goes_on(postgres_url):
    """The record, its events and the commit go in one message: when one statement of it
    fails, nothing of it is kept, and the pooled connection is clean for the next one."""
    store = PostgresStore(postgres_url, max_size=1)  # one connection: the next call reuses it
    with store.transaction("alice") as txn:
        txn.record["n"] = 1
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit ADD CONSTRAINT refuse_boom CHECK (doc ->> 'event' <> 'boom')")
    try:
        with pytest.raises(OSError):  # DatabaseError: the engine reports a StorageError
            with store.transaction("alice") as txn:
                txn.record["n"] = 2
                with store.keyed_transaction("k") as keyed:
                    keyed.record["x"] = 1
                txn.log({"time": 1.0, "user": "alice", "event": "boom"})
        assert store.read("alice")["n"] == 1 and store.read_keyed("k") is None
        with store.transaction("alice") as txn:
            txn.record["n"] = 3
            txn.log({"time": 2.0, "user": "alice", "event": "fine"})
        assert store.read("alice")["n"] == 3
        assert [e["event"] for e in store.query_audit("alice")] == ["fine"]
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit DROP CONSTRAINT refuse_boom")
        store.close()


def test_a_users_transaction_is_a_lock_other_stores_wait_for(postgres_url):
    first, second = open_store("postgres", "", postgres_url), PostgresStore(postgres_url)
    order: list[str] = []
    entered = threading.Event()

    def hold():
        with first.transaction("alice") as txn:
            entered.set()
            time.sleep(0.3)
            txn.record["n"] = 1
            order.append("first")

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(60)
    with second.transaction("alice") as txn:  # waits for the first to commit, then sees it
        order.append("second")
        assert txn.record.get("n") == 1
        txn.record["n"] = 2
    holder.join()
    assert order == ["first", "second"] and first.read("alice")["n"] == 2
    assert second.read_keyed("nobody") is None and first.read("bob") is None  # nothing for readers
    assert list(first.usernames()) == ["alice"]


@pytest.fixture
def replicas(postgres_url, tmp_path, clock):
    """Two engines on one database, each with its own data dir holding the same keys and users."""
    one, two = tmp_path / "one", tmp_path / "two"
    write_users(one, PASSWORDS)
    a = mfa_core.open_service(one, clock=clock, environ={}, database_url=postgres_url)
    two.mkdir()
    for name in ("keys.json", "users.yaml"):
        shutil.copy2(one / name, two / name)
    b = mfa_core.open_service(two, clock=clock, environ={}, database_url=postgres_url)
    return a, b


def test_two_replicas_share_records_sessions_and_throttles(replicas, clock):
    a, b = replicas
    secret = enable_totp(a, clock, "alice")  # enroll on one ...
    clock.advance(30)
    b.attempt_second_factor("alice", code_for(secret, clock()))  # ... use on the other
    assert b.status("alice").totp_enabled
    token = a.sessions.start("alice", second_factor_passed=True)
    assert b.sessions.find(token) is not None
    b.sessions.end(token)  # ended on one, ended on the other
    assert a.sessions.find(token) is None
    for _ in range(mfa_core.ThrottlePolicy().free_failures):  # failures on one count on the other
        with pytest.raises(mfa_core.InvalidCode):
            (a if _ % 2 else b).attempt_second_factor("alice", "000000")
    with pytest.raises(mfa_core.TooManyAttempts):
        a.attempt_second_factor("alice", "000000")
    with pytest.raises(mfa_core.TooManyAttempts):
        b.attempt_second_factor("alice", "000000")
    assert [e.event for e in a.audit("alice")] == [e.event for e in b.audit("alice")]


@pytest.mark.parametrize("url", [
    "host=127.0.0.1 port=1 user=mfa password=Sup3rSecretPw dbname=mfa connect_timeout=2",
    "postgresql://mfa:Sup3rSecretPw@127.0.0.1:1/mfa?connect_timeout=2",
    "postgresql://mfa:Sup3rSecretPw@127.0.0.1:notaport/mfa",
    "host=127.0.0.1 password='Sup3rSecretPw' dbname",
    # A space (psycopg: unexpected spaces found in "..."), an unencoded "@" (psycopg reads the
    # rest as the host: failed to resolve host 'tpw@127.0.0.1').
    "postgresql://mfa:Sup3rSecret Pw@127.0.0.1:1/mfa?connect_timeout=2",
    "postgresql://mfa:Sup3r@SecretPw@127.0.0.1:1/mfa?connect_timeout=2",
    "postgresql://mfa:Sup3rSecret@Pw@127.0.0.1:1/mfa?connect_timeout=2",
    "host=127.0.0.1 port=1 user=mfa password='Sup3rSecret Pw' dbname=mfa connect_timeout=2",
])
def test_a_database_error_never_shows_the_password(url, data_dir, clock):
    with pytest.raises(mfa_core.StoreUnavailable) as caught:
        mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=url)
    assert "database cannot be used" in caught.value.detail
    shown = "".join(traceback.format_exception(caught.value)) + caught.value.detail  # a log's
    for piece in ("Sup3rSecret", "SecretPw", "Secret Pw", "Sup3r@", "@Pw", "Pw@"):
        assert piece not in shown, shown


def test_a_spray_slot_is_not_held_through_a_users_transaction(postgres_url, data_dir, clock):
    """attempt_password takes the source's slot inside the user's transaction: on PostgreSQL
    in a transaction of its own, so another sign-in from that address does not queue behind
    the first one's bcrypt check (held here as long as we like)."""
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=postgres_url)
    src = "a-source-key"
    took: list[float] = []

    def other_sign_in() -> None:
        start = time.monotonic()
        with svc._spray(src, clock(), "another-user-key") as spray:
            assert spray.error is None
            spray.ran()  # a wrong password: its slot stays counted
        took.append(time.monotonic() - start)

    with svc._transaction("alice"):
        with svc._spray(src, clock(), "alice-key") as spray:  # as attempt_password does, then bcrypt
            assert spray.error is None
            other = threading.Thread(target=other_sign_in)
            other.start()
            other.join(60)
            # It finished while alice's transaction is still open: it did not wait for it (that
            # would last until this block ends). No wall-clock bound: a busy machine is slow.
            assert took, "the other sign-in waited for alice's transaction"
            spray.passed()  # a success gives it back, still inside
    assert len(svc.store.read_keyed(src)["failures"]) == 1  # the other one's slot


def test_the_spray_limit_holds_for_parallel_wrong_passwords_from_one_source(postgres_url, data_dir, clock):
    names = {f"user{n}": f"pass-{n}-long" for n in range(40)}
    write_users(data_dir, {**names, "newcomer": "newcomer-pass-long"})
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=postgres_url)
    limit = svc.password_policy.spray_limit
    outcomes: list[str] = []
    barrier = threading.Barrier(40)

    def attempt(name: str) -> None:
        barrier.wait(10)
        try:
            svc.attempt_password(name, "Winter2026!", source="203.0.113.66")
        except mfa_core.TooManyAttempts:
            outcomes.append("refused")
        except mfa_core.InvalidCode:
            outcomes.append("checked")
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=attempt, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(outcomes)) == ["checked", "refused"], outcomes
    assert outcomes.count("checked") == limit  # never more checks than the limit allows
    # A user the source has not failed for is refused there now (issue 20, F12: users it
    # already counted keep only their own waits).
    with pytest.raises(mfa_core.TooManyAttempts):
        svc.attempt_password("newcomer", "newcomer-pass-long", source="203.0.113.66")
