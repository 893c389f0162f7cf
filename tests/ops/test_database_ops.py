"""Operating on PostgreSQL: the directory and the API clients in the database, ``users import``/``export``,
``db upgrade`` and ``db copy`` from an embedded data dir (a throwaway cluster, tests/pg.py)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import bcrypt
import psycopg
import pyotp
import pytest
import yaml
from cryptography.fernet import Fernet

import mfa_core
from mfa_core import clients as api_clients
from mfa_core.storage.postgres import SCHEMA_VERSION, PostgresStore
from mfa_core.users import DatabaseUserDirectory, UserDirectory

from .conftest import Cli, cli_env, code_for, enable_totp, snapshot


def keys_env() -> dict[str, str]:
    return {"MFA_PORTAL_FERNET_KEYS": Fernet.generate_key().decode(),
            "MFA_PORTAL_PEPPER": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}


@pytest.fixture
def keys() -> dict[str, str]:
    return keys_env()


@pytest.fixture
def db_cli(cli: Cli, postgres_url: str, keys: dict[str, str]):
    """The CLI with the database and keys in its environment."""
    def run(*args: str, input: str | None = None, **extra: str):
        return cli(*args, input=input,
                   env=cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=postgres_url, **keys, **extra))
    return run


def dump(url: str) -> dict[str, list]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            "users": conn.execute("SELECT username, doc FROM users ORDER BY 1").fetchall(),
            "keyed": conn.execute("SELECT key, doc FROM keyed ORDER BY 1").fetchall(),
            "audit": conn.execute("SELECT copied_from, doc FROM audit ORDER BY 1").fetchall(),
            "directory": conn.execute("SELECT username, entry FROM directory ORDER BY 1").fetchall(),
        }


def test_the_directory_in_the_database_is_shared_at_once(postgres_url, data_dir, clock, keys):
    one = mfa_core.open_service(data_dir / "a", clock=clock, environ=keys, database_url=postgres_url)
    two = mfa_core.open_service(data_dir / "b", clock=clock, environ=keys, database_url=postgres_url)
    assert isinstance(one.directory, DatabaseUserDirectory)
    assert not one.directory.exists()
    one.directory.add("carol", "carol-pass-1", email="carol@example.com")
    assert two.directory.get("carol").email == "carol@example.com"
    assert two.directory.check_password("carol", "carol-pass-1")
    two.directory.set_roles("carol", ["user", "admin"])
    assert one.directory.get("carol").is_admin
    one.directory.remove("carol")
    assert two.directory.get("carol") is None
    assert not (data_dir / "a").exists() and not (data_dir / "b").exists()  # nothing on disk


def test_demo_users_are_made_once_and_remembered_in_the_database(postgres_url, data_dir, clock, keys):
    svc = mfa_core.open_service(data_dir, clock=clock, environ=keys, database_url=postgres_url)
    assert svc.directory.ensure_demo_users() is True
    other = mfa_core.open_service(data_dir / "x", clock=clock, environ=keys, database_url=postgres_url)
    assert other.directory.ensure_demo_users() is False
    assert other.directory.has_demo_users()
    assert {u.username for u in other.directory.users()} == {"alice", "bob", "admin"}


def test_api_clients_live_in_the_database(postgres_url, data_dir, clock, keys):
    one = mfa_core.open_service(data_dir / "a", clock=clock, environ=keys, database_url=postgres_url)
    two = mfa_core.open_service(data_dir / "b", clock=clock, environ=keys, database_url=postgres_url)
    key = api_clients.open_registry(data_dir / "a", one).add("vpn", 60, actor="ops")
    other = api_clients.open_registry(data_dir / "b", two)
    assert isinstance(other, api_clients.DatabaseClientRegistry)
    assert other.authenticate(key).name == "vpn"
    other.rotate("vpn", actor="ops")
    assert api_clients.open_registry(data_dir / "a", one).authenticate(key) is None
    assert [e.event for e in one.audit()] == ["api_client_added", "api_client_rotated"]
    assert not (data_dir / "a" / api_clients.CLIENTS_FILE).exists()


def test_users_import_and_export_through_the_database(db_cli, cli, tmp_path, postgres_url):
    source = tmp_path / "import"
    UserDirectory(source).add("dave", "dave-pass-1", name="Dave Doe", email="dave@example.com")
    result = db_cli("users", "import", str(source / "users.yaml"))
    assert result.returncode == 0, result.stderr
    assert "Imported 1 user" in result.stdout and "database" in result.stdout
    again = db_cli("users", "import", str(source / "users.yaml"))  # idempotent
    assert again.returncode == 0
    listed = db_cli("users", "list", "--json")
    assert [u["username"] for u in json.loads(listed.stdout)] == ["dave"]
    exported = db_cli("users", "export", str(tmp_path / "out.yaml"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out.yaml").stat().st_mode & 0o777 == 0o600
    back = yaml.safe_load((tmp_path / "out.yaml").read_text())["credentials"]["usernames"]
    original = yaml.safe_load((source / "users.yaml").read_text())["credentials"]["usernames"]
    assert back == original
    assert not cli.data_dir.exists()  # nothing written to the data dir


def test_a_bad_users_file_imports_nothing(db_cli, tmp_path, postgres_url):
    bad = tmp_path / "users.yaml"
    bad.write_text("credentials:\n  usernames:\n    erin: {password: plain-text}\n    Bad Name: {}\n")
    result = db_cli("users", "import", str(bad))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert dump(postgres_url)["directory"] == []


def test_with_a_database_the_keys_must_be_configured(cli, postgres_url):
    result = cli("mfa", "list", env=cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=postgres_url))
    assert result.returncode == 1
    assert "MFA_PORTAL_FERNET_KEYS" in result.stderr and "every replica" in result.stderr
    assert not (cli.data_dir / "keys.json").exists()


def test_the_database_url_may_come_from_secrets_toml(cli, postgres_url, keys):
    (cli.cwd / ".streamlit").mkdir()
    (cli.cwd / ".streamlit" / "secrets.toml").write_text(
        f'database_url = "{postgres_url}"\nMFA_PORTAL_PEPPER = "{keys["MFA_PORTAL_PEPPER"]}"\n'
        f'MFA_PORTAL_FERNET_KEYS = "{keys["MFA_PORTAL_FERNET_KEYS"]}"\n')
    added = cli("users", "add", "frank", "--password-stdin", input="frank-pass-1\n")
    assert added.returncode == 0, added.stderr
    assert [n for n, _ in dump(postgres_url)["directory"]] == ["frank"]
    assert cli("mfa", "status", "frank").returncode == 0
    assert not cli.data_dir.exists()


def test_a_database_password_is_never_printed(cli, postgres_cluster, keys):
    url = f"postgresql://mfa:Sup3rSecretPw@127.0.0.1:{postgres_cluster.port}/no_such_db?connect_timeout=3"
    for args in (("db", "upgrade"), ("users", "list"), ("mfa", "list")):
        result = cli(*args, env=cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=url, **keys))
        assert result.returncode == 1, (args, result.stderr)
        assert "Sup3rSecretPw" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    bad = "postgresql://mfa:Sup3rSecretPw@127.0.0.1:notaport/mfa"
    result = cli("db", "upgrade", env=cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=bad))
    assert result.returncode == 1 and "Sup3rSecretPw" not in result.stderr, result.stderr


def test_a_database_error_names_the_role_and_blanks_only_the_password(cli, postgres_cluster, keys):
    """The role and database names are not secret: the operator needs them. A URL without a
    password (it is in PGPASSWORD or ~/.pgpass) has nothing to blank at all."""
    base = f"127.0.0.1:{postgres_cluster.port}/mfa?connect_timeout=3"
    for url in (f"postgresql://no_such_role@{base}", f"postgresql://no_such_role:Sup3rSecretPw@{base}"):
        result = cli("db", "upgrade", env=cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=url, **keys))
        assert result.returncode == 1, result.stderr
        assert 'role "no_such_role" does not exist' in result.stderr, result.stderr
        assert "Sup3rSecretPw" not in result.stderr and "***" not in result.stderr, result.stderr


def test_redact_blanks_the_password_and_keeps_the_names():
    from mfa_core.settings import redact
    failed = ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
              'authentication failed for user "mfa"')
    assert redact(failed, "postgresql://mfa@db.internal:5432/mfa") == failed
    assert redact(failed, "postgresql://mfa:Sup3rSecretPw@db.internal:5432/mfa") == failed
    assert redact(failed, "host=db user=mfa password=Sup3rSecretPw dbname=mfa") == failed
    leaked = 'invalid "postgresql://mfa:Sup3rSecretPw@db/mfa" for user "mfa"'
    shown = redact(leaked, "postgresql://mfa:Sup3rSecretPw@db/mfa")
    assert "Sup3rSecret" not in shown and shown.endswith('for user "mfa"'), shown


def test_db_upgrade_brings_an_older_schema_up_and_the_engine_refuses_it_before(
        db_cli, postgres_url, data_dir, clock, keys):
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # back to version 1
        conn.execute("DROP TABLE directory, directory_meta")
        conn.execute("ALTER TABLE audit DROP COLUMN copied_from")
        conn.execute("DELETE FROM schema_version WHERE version > 1")
    try:
        with pytest.raises(mfa_core.StorageError, match="db upgrade"):
            mfa_core.open_service(data_dir, clock=clock, environ=keys, database_url=postgres_url)
        refused = db_cli("mfa", "list")
        assert refused.returncode == 1 and "db upgrade" in refused.stderr
        result = db_cli("db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert f"from version 1 to {SCHEMA_VERSION}" in result.stdout
        assert "nothing to do" in db_cli("db", "upgrade").stdout
        svc = mfa_core.open_service(data_dir, clock=clock, environ=keys, database_url=postgres_url)
        svc.directory.add("gina", "gina-pass-1")
    finally:
        PostgresStore(postgres_url, upgrade=True).close()


def test_coverage_follows_directory_changes_made_with_the_cli(db_cli, postgres_url, data_dir, keys):
    """`users add|roles|remove` change the directory's rows; `mfa coverage --json` counts them at
    once, and the roles column the database keeps (schema 5) says what each entry says."""
    svc = mfa_core.open_service(data_dir, environ=keys, database_url=postgres_url)  # the real clock
    hashed = bcrypt.hashpw(b"any-pass-123", bcrypt.gensalt(4)).decode()
    svc.directory.import_entries({n: {"password": hashed, "roles": r} for n, r in (
        ("ann", ["user"]), ("ben", ["user"]), ("cat", ["user"]), ("dan", []))})
    for name in ("ann", "ben"):
        secret = svc.create_totp(name).secret
        svc.verify_totp(name, pyotp.TOTP(secret).now())
    svc.store.close()
    assert db_cli("policy", "set", "--require", "role:user", "--grace-days", "14").returncode == 0
    before = json.loads(db_cli("mfa", "coverage", "--json").stdout)
    assert (before["users"], before["covered"], before["enrolled"], before["in_grace"]) == (4, 3, 2, 1)
    for args, done in ((("users", "add", "eve", "--password-stdin"), "eve-pass-123\n"),
                       (("users", "roles", "ann", "admin"), None),
                       (("users", "remove", "ben"), None),
                       (("users", "roles", "dan", "user"), None)):
        result = db_cli(*args, input=done)
        assert result.returncode == 0, result.stderr
    result = db_cli("mfa", "coverage", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    counts = ("users", "covered", "not_covered", "enrolled", "in_grace", "overdue")
    assert {k: data[k] for k in counts} == {
        "users": 4, "covered": 3, "not_covered": 1, "enrolled": 0, "in_grace": 3, "overdue": 0}
    assert sorted(g["username"] for g in data["grace"]) == ["cat", "dan", "eve"]
    assert data["by_factor"]["totp"] == 1  # ann's app (ben's went with him)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute("SELECT username, entry, roles FROM directory ORDER BY 1").fetchall()
    assert [(n, json.loads(text)) for n, _, text in rows] == [
        ("ann", ["admin"]), ("cat", ["user"]), ("dan", ["user"]), ("eve", ["user"])]
    assert all(json.loads(text) == entry["roles"] for _, entry, text in rows)


def embedded_data_dir(path: Path, clock) -> tuple[dict[str, str], str, str, str]:
    """A data dir used for a while on the embedded store: (its keys as env, a client key, alice's secret)."""
    svc = mfa_core.open_service(path, clock=clock, environ={})
    svc.directory.add("alice", "alice-pass-1", email="alice@example.com")
    svc.directory.add("bob", "bob-pass-12")
    secret = enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    with pytest.raises(mfa_core.InvalidCode):  # a source throttle record
        svc.attempt_password("bob", "wrong-password", source="192.0.2.7")
    token = svc.sessions.start("alice", second_factor_passed=True)
    key = api_clients.open_registry(path, svc).add("vpn", 120, actor="ops")
    stored = json.loads((path / "keys.json").read_text())
    env = {"MFA_PORTAL_FERNET_KEYS": ",".join(stored["fernet_keys"]), "MFA_PORTAL_PEPPER": stored["pepper"]}
    return env, key, secret, token


def copy_counts(stdout: str, kinds: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """kind -> (copied, already there) from ``db copy``'s table."""
    counts = {}
    for line in stdout.splitlines():
        for kind in kinds:
            if line.strip().startswith(kind + " "):
                copied, already = line.strip()[len(kind):].split()[:2]
                counts[kind] = (int(copied), int(already))
    assert set(counts) == set(kinds), stdout
    return counts


def test_db_copy_moves_a_data_dir_as_stored_verifies_and_is_idempotent(cli, tmp_path, postgres_url, clock):
    source = tmp_path / "embedded"
    keys, client_key, secret, token = embedded_data_dir(source, clock)
    before = snapshot(source)
    env = cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=postgres_url, **keys)
    first = cli("db", "copy", "--from", str(source), env=env)
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and postgres_url not in first.stdout
    assert snapshot(source) == before  # the source is only read
    copied = dump(postgres_url)
    assert "alice" in [n for n, _ in copied["users"]] and len(copied["directory"]) == 2
    assert copied["keyed"] and copied["audit"]
    second = cli("db", "copy", "--from", str(source), env=env)
    assert second.returncode == 0, second.stderr
    assert "were already in the database as in the data dir" in second.stdout
    assert dump(postgres_url) == copied  # run twice, same database
    # Each kind: how many rows the copy wrote and how many were already there.
    kinds = ("records", "keyed records", "audit events", "API clients", "directory users")
    firsts, seconds = copy_counts(first.stdout, kinds), copy_counts(second.stdout, kinds)
    assert firsts["audit events"] == (len(copied["audit"]), 0)
    assert firsts["directory users"] == (2, 0) and firsts["API clients"] == (1, 0)
    assert all(already == 0 for _, already in firsts.values())
    assert seconds == {kind: (0, copied) for kind, (copied, _) in firsts.items()}, second.stdout

    # Nothing was decrypted: the record holds the very token the file held.
    file_docs = [json.loads(p.read_text())["mfa"]["1"] for p in (source / "users").rglob("*.json")]
    alice = next(doc for doc in file_docs if doc["username"] == "alice")
    assert dict(copied["users"])["alice"] == alice and "gAAAA" in json.dumps(alice)
    # The replicas, with the data dir's keys, carry on where the embedded portal stopped.
    svc = mfa_core.open_service(tmp_path / "replica", clock=clock, environ=keys, database_url=postgres_url)
    assert svc.directory.check_password("alice", "alice-pass-1")
    clock.advance(60)
    assert svc.attempt_second_factor("alice", code_for(secret, clock())) is not None
    assert api_clients.open_registry(tmp_path / "replica", svc).authenticate(client_key).name == "vpn"
    assert svc.sessions.find(token).username == "alice"  # signed in before the move, still signed in
    events = [e.event for e in svc.audit("alice")]
    assert "totp_enabled" in events or len(events) >= 3


def test_db_copy_refuses_a_data_dir_with_a_damaged_record_and_writes_nothing(cli, tmp_path, postgres_url, clock):
    source = tmp_path / "embedded"
    keys, *_ = embedded_data_dir(source, clock)
    next((source / "users").rglob("*.json")).write_text("{truncated")
    result = cli("db", "copy", "--from", str(source),
                 env=cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=postgres_url, **keys))
    assert result.returncode == 2
    assert "cannot be read as a record" in result.stderr and "Traceback" not in result.stderr
    assert all(not rows for rows in dump(postgres_url).values())


@pytest.mark.parametrize("fails_at", ["read-back", "database error"])
def test_a_db_copy_that_fails_half_way_writes_nothing(tmp_path, postgres_url, clock, monkeypatch, fails_at):
    """The plan, the writes and the read-back are one transaction: a copy that fails after
    writing rows (a difference read back, a database error) leaves no row of it."""
    from mfa_core import dbcopy
    source = tmp_path / "embedded"
    keys, *_ = embedded_data_dir(source, clock)
    data = dbcopy.read_data_dir(source)
    store = PostgresStore(postgres_url)
    try:
        if fails_at == "read-back":
            monkeypatch.setattr(store, "copied_audit", lambda origins: 0)
            expected = dbcopy.CopyMismatch
        else:
            monkeypatch.setattr(DatabaseUserDirectory, "import_entries", _broken_import)
            expected = mfa_core.StorageError
        with pytest.raises(expected) as caught:
            dbcopy.copy_into(data, store)
        if fails_at == "read-back":
            assert str(caught.value).startswith("Nothing was copied")
        assert all(not rows for rows in dump(postgres_url).values())
        monkeypatch.undo()
        assert dbcopy.copy_into(data, store).records == len(data.records)  # the store goes on
        assert {n for n, _ in dump(postgres_url)["users"]} == set(data.records)
    finally:
        store.close()


def _broken_import(directory, entries, *, replace=False):
    directory.store.change_directory(lambda rows: rows.update(entries))
    raise mfa_core.StorageError("the database went away half-way")


def test_db_copy_refuses_what_is_not_a_data_dir(db_cli, tmp_path, postgres_url):
    (tmp_path / "empty").mkdir()
    for where in (tmp_path / "missing", tmp_path / "empty"):
        result = db_cli("db", "copy", "--from", str(where))
        assert result.returncode == 2 and "Traceback" not in result.stderr
    assert all(not rows for rows in dump(postgres_url).values())


def test_db_commands_without_a_database_say_how_to_configure_one(cli, tmp_path):
    result = cli("db", "copy", "--from", str(tmp_path))
    assert result.returncode == 2 and "MFA_PORTAL_DATABASE_URL" in result.stderr


def test_users_import_and_export_work_on_the_embedded_directory_too(cli, tmp_path):
    source = tmp_path / "import"
    UserDirectory(source).add("ivan", "ivan-pass-12", email="ivan@example.com")
    result = cli("users", "import", str(source / "users.yaml"))
    assert result.returncode == 0, result.stderr
    assert UserDirectory(cli.data_dir).get("ivan").email == "ivan@example.com"
    exported = cli("users", "export")
    assert yaml.safe_load(exported.stdout) == yaml.safe_load((source / "users.yaml").read_text())
    missing = cli("users", "import", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot be read" in missing.stderr


def test_a_second_db_copy_never_rolls_back_what_the_database_changed(cli, tmp_path, postgres_url, clock):
    source = tmp_path / "embedded"
    keys, client_key, secret, token = embedded_data_dir(source, clock)
    env = cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=postgres_url, **keys)
    assert cli("db", "copy", "--from", str(source), env=env).returncode == 0
    # The replicas carry on on the database: an authenticator removed, a password changed,
    # an API key rotated, a session ended.
    svc = mfa_core.open_service(tmp_path / "replica", clock=clock, environ=keys, database_url=postgres_url)
    svc.disable_totp("alice", actor="helpdesk")
    svc.directory.set_password("bob", "bob-new-pass-2")
    registry = api_clients.open_registry(tmp_path / "replica", svc)
    new_key = registry.rotate("vpn", actor="ops")
    svc.sessions.end(token)
    changed = dump(postgres_url)

    refused = cli("db", "copy", "--from", str(source), env=env)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "Nothing was copied" in line and "--overwrite" in line
    assert "1 user record" in line and "1 API client" in line and "1 directory user" in line
    assert dump(postgres_url) == changed  # nothing written
    assert not svc.status("alice").two_factor_enabled
    assert svc.directory.check_password("bob", "bob-new-pass-2")
    assert registry.authenticate(client_key) is None and registry.authenticate(new_key).name == "vpn"
    assert svc.sessions.find(token) is None

    # A client removed in the database is not brought back either.
    registry.remove("vpn", actor="ops")
    again = cli("db", "copy", "--from", str(source), env=env)
    assert again.returncode == 2 and "1 API client" in again.stderr

    # --overwrite: the data dir wins, every change above is undone.
    forced = cli("db", "copy", "--from", str(source), "--overwrite", env=env)
    assert forced.returncode == 0, forced.stderr
    svc = mfa_core.open_service(tmp_path / "replica2", clock=clock, environ=keys, database_url=postgres_url)
    assert svc.status("alice").two_factor_enabled
    assert svc.directory.check_password("bob", "bob-pass-12")
    registry = api_clients.open_registry(tmp_path / "replica2", svc)
    assert registry.authenticate(client_key).name == "vpn" and registry.authenticate(new_key) is None
    assert svc.sessions.find(token).username == "alice"


def test_a_second_db_copy_adds_what_is_new_in_the_data_dir(cli, tmp_path, postgres_url, clock):
    source = tmp_path / "embedded"
    keys, *_ = embedded_data_dir(source, clock)
    env = cli_env(cli.data_dir, MFA_PORTAL_DATABASE_URL=postgres_url, **keys)
    assert cli("db", "copy", "--from", str(source), env=env).returncode == 0
    svc = mfa_core.open_service(source, clock=clock, environ={})
    svc.directory.add("carl", "carl-pass-12")
    result = cli("db", "copy", "--from", str(source), env=env)
    assert result.returncode == 0, result.stderr
    assert "carl" in [n for n, _ in dump(postgres_url)["directory"]]


@pytest.mark.parametrize("field, value, said", [
    ("roles", ["user", "Admin Role"], "is not a role name"),
    ("roles", ["user", "admin\n"], "is not a role name"),
    ("email", "erin@example.com\nBcc: all@example.com", "is not a mail address"),
    ("email", "erin@example.com\x1b[2J", "is not a mail address"),
    ("email", "not-an-address", "is not a mail address"),
    ("first_name", "Erin\r\nX-Header: 1", "control character"),
    ("name", "Erin\tDoe", "control character"),
])
def test_users_import_checks_what_users_add_checks_and_imports_nothing(
        db_cli, tmp_path, postgres_url, field, value, said):
    source = tmp_path / "import"
    UserDirectory(source).add("dave", "dave-pass-1", name="Dave Doe", email="dave@example.com")
    UserDirectory(source).add("erin", "erin-pass-1", name="Erin Doe", email="erin@example.com")
    path = source / "users.yaml"
    data = yaml.safe_load(path.read_text())
    data["credentials"]["usernames"]["erin"][field] = value
    path.write_text(yaml.safe_dump(data))
    result = db_cli("users", "import", str(path))
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert said in line and "'erin'" in line
    assert dump(postgres_url)["directory"] == []  # all or nothing: dave is not imported either


def test_users_add_refuses_control_characters_in_the_name(db_cli, postgres_url):
    result = db_cli("users", "add", "erin", "--name", "Erin\nDoe", "--password-stdin",
                    input="erin-pass-12\n")
    assert result.returncode == 2 and "control character" in result.stderr
    assert dump(postgres_url)["directory"] == []
