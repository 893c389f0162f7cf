"""The command line, run as an operator runs it: a subprocess on a real data dir."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import termios
import time
import tomllib
from pathlib import Path

import pytest
import yaml

import mfa_core
from mfa_core import cli as cli_module
from mfa_core.users import UserDirectory

from .conftest import REPO, T0, FakeClock, cli_env, code_for, enable_totp, snapshot

COMMANDS = [
    [], ["users"], ["users", "add"], ["users", "list"], ["users", "remove"], ["users", "passwd"],
    ["users", "roles"],
    ["mfa"], ["mfa", "status"], ["mfa", "list"], ["mfa", "reset"], ["mfa", "unlock"],
    ["audit"], ["mail"], ["mail", "test"], ["keys"], ["keys", "rotate"],
]


def one_line_error(result) -> str:
    """The refusal: exactly one line on stderr, no traceback, nothing on stdout."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat()


# -- help and wiring --------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(cli, data_dir, command):
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m mfa_core")
    assert " ".join(command) in result.stdout.splitlines()[0]
    assert not data_dir.exists()  # --help touches nothing


def test_no_help_speaks_of_streamlit_authenticator(cli):
    for command in COMMANDS:
        result = cli(*command, "--help")
        assert "streamlit-authenticator" not in result.stdout, command


def _reader_gone(cli, *args: str) -> tuple[int, str]:
    """Run a command whose standard output's reader has already left (``... | head``)."""
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "mfa_core", *args], cwd=cli.cwd,
                            env=cli_env(cli.data_dir), stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    os.close(read)  # before the command writes anything: its first flush meets a closed pipe
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_a_reader_that_leaves_early_gets_no_error(cli, directory):
    for args in (["users", "list"], ["users", "list", "--json"], ["users", "export"]):
        status, err = _reader_gone(cli, *args)
        assert (status, err) == (141, ""), args  # 128 + SIGPIPE, as a shell reports `| head`
    status, err = _reader_gone(cli, "--help")
    assert err == "" and status in (0, 141)


def test_the_console_script_points_at_main():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["mfa-portal"].partition(":")
    assert (module, name) == ("mfa_core.cli", "main")
    assert callable(getattr(cli_module, name))


def test_a_command_is_required(cli):
    result = cli()
    assert result.returncode == 2
    assert "required" in one_line_error(result)


def test_data_dir_option_wins_over_the_environment(cli, tmp_path, data_dir):
    other = tmp_path / "other"
    result = cli("users", "add", "carol", "--password-stdin", "--data-dir", str(other),
                 input="carol-pass-1\n")
    assert result.returncode == 0, result.stderr
    assert UserDirectory(other).get("carol") is not None
    assert not (data_dir / "users.yaml").exists()


# -- users --------------------------------------------------------------------------

def test_users_add_stores_a_bcrypt_hash_email_name_and_roles(cli, data_dir):
    result = cli("users", "add", "carol", "--name", "Carol Jones", "--email", "carol@example.com",
                 "--role", "admin", "--password-stdin", input="carol-pass-1\n")
    assert result.returncode == 0, result.stderr
    assert "carol" in result.stdout
    raw = yaml.safe_load((data_dir / "users.yaml").read_text())
    entry = raw["credentials"]["usernames"]["carol"]
    assert entry["password"].startswith("$2b$")
    assert "carol-pass-1" not in (data_dir / "users.yaml").read_text()
    assert entry["email"] == "carol@example.com"
    assert (entry["first_name"], entry["last_name"]) == ("Carol", "Jones")
    assert entry["roles"] == ["user", "admin"]
    users = UserDirectory(data_dir)
    assert users.check_password("carol", "carol-pass-1")
    assert users.get("carol").is_admin


def test_users_add_admin_gives_the_admin_role(cli, data_dir):
    result = cli("users", "add", "dave", "--admin", "--password-stdin", input="dave-pass-12\n")
    assert result.returncode == 0, result.stderr
    assert UserDirectory(data_dir).get("dave").is_admin


def _tty_run(cli, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal; type ``answers``."""
    import fcntl
    import pty

    master, slave = pty.openpty()

    def make_controlling() -> None:  # runs in the child after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "mfa_core", *args], stdin=slave, stdout=slave,
                            stderr=slave, cwd=cli.cwd, env=cli_env(cli.data_dir),
                            start_new_session=True, preexec_fn=make_controlling)
    os.close(slave)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break  # the child closed the terminal
        if not chunk:
            break
        output += chunk
        if pending and output.rstrip().endswith(b":"):
            os.write(master, pending.pop(0).encode() + b"\n")
            output += b"<typed>"
    os.close(master)
    return proc.wait(timeout=30), output.decode(errors="replace")


def test_users_add_asks_for_the_password_twice_without_echo(cli, data_dir):
    code, output = _tty_run(cli, ["users", "add", "erin"], ["erin-secret-1", "erin-secret-1"])
    assert code == 0, output
    assert "Password:" in output and "Repeat the password:" in output
    assert "erin-secret-1" not in output  # not echoed
    assert UserDirectory(data_dir).check_password("erin", "erin-secret-1")


def test_users_add_refuses_two_different_passwords(cli, data_dir):
    code, output = _tty_run(cli, ["users", "add", "erin"], ["erin-secret-1", "erin-secret-2"])
    assert code == 2
    assert "differ" in output and "Traceback" not in output
    assert not (data_dir / "users.yaml").exists()


def test_users_add_without_a_terminal_needs_password_stdin(cli, data_dir):
    result = cli("users", "add", "carol", input="carol-pass-1\n")
    assert result.returncode == 2
    assert "--password-stdin" in one_line_error(result)
    assert not (data_dir / "users.yaml").exists()


@pytest.mark.parametrize("password", [" leading-space", "trailing-space ", "tab-after\t"])
def test_users_add_refuses_a_password_the_sign_in_form_could_not_take(cli, data_dir, password):
    result = cli("users", "add", "carol", "--password-stdin", input=password + "\n")
    assert result.returncode == 2
    assert "cannot start or end with a space" in one_line_error(result)
    assert not (data_dir / "users.yaml").exists()


def test_users_list_shows_a_table_and_json(cli, directory):
    table = cli("users", "list")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["USERNAME", "NAME", "EMAIL", "ROLES"]
    assert [line.split()[0] for line in lines[1:]] == ["admin", "alice", "bob"]
    assert "user,admin" in lines[1]
    listed = json.loads(cli("users", "list", "--json").stdout)
    assert {u["username"]: u["email"] for u in listed} == {
        "admin": "admin@example.com", "alice": "alice@example.com", "bob": "bob@example.com"}
    assert all("password" not in u for u in listed)


def test_users_list_keeps_its_columns_straight_with_wide_names(cli, directory):
    directory.add("kenji", "kenji-pass-1", name="山田 健二", email="kenji@example.com")
    directory.add("zoe", "zoe-pass-12", name="Zoë Ünal", email="zoe@example.com")
    lines = cli("users", "list").stdout.splitlines()
    from mfa_core.cli import display_width
    columns = {display_width(line[:line.index("@") - line[:line.index("@")][::-1].index(" ")])
               for line in lines[1:]}
    assert len(columns) == 1, lines  # every address starts in the same terminal column
    assert display_width("山田 健二") == 9 and display_width("Zoë") == 3
    assert display_width("e\u0301") == 1  # a combining accent takes no column


def test_users_roles_shows_and_sets_the_roles(cli, directory):
    assert cli("users", "roles", "alice").stdout == "alice: user\n"
    result = cli("users", "roles", "alice", "user", "admin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Roles of alice: user -> user, admin.\n"
    assert directory.get("alice").roles == ["user", "admin"] and directory.get("alice").is_admin
    assert cli("users", "roles", "alice", "user").returncode == 0
    assert not directory.get("alice").is_admin


def test_users_roles_refuses_an_unknown_role_naming_the_known_ones(cli, directory, data_dir):
    before = snapshot(data_dir)
    for args in (["users", "roles", "alice", "admn"], ["users", "roles", "alice", "user", "auditor"]):
        result = cli(*args)
        assert result.returncode == 2
        line = one_line_error(result)
        assert "Unknown role" in line and "the roles are user, admin" in line, line
    refused = cli("users", "add", "carol", "--role", "admn", "--password-stdin", input="carol-pass-1\n")
    assert refused.returncode == 2 and "the roles are user, admin" in one_line_error(refused)
    assert snapshot(data_dir) == before
    same = cli("users", "roles", "alice", "user")
    assert same.returncode == 0 and same.stdout == "Roles of alice unchanged: user.\n"
    dropped = cli("users", "roles", "admin", "admin")
    assert dropped.stdout == "Roles of admin: user, admin -> admin.\n"


def test_users_export_leaves_out_the_fields_nobody_reads(cli, data_dir, directory):
    legacy = yaml.safe_load((data_dir / "users.yaml").read_text())
    for entry in legacy["credentials"]["usernames"].values():
        entry.update(failed_login_attempts=3, logged_in=True)  # as streamlit-authenticator wrote
    (data_dir / "users.yaml").write_text(yaml.safe_dump(legacy))
    exported = yaml.safe_load(cli("users", "export").stdout)["credentials"]["usernames"]
    assert set(exported) == {"admin", "alice", "bob"}
    for entry in exported.values():
        assert not {"failed_login_attempts", "logged_in"} & set(entry), entry
        assert entry["password"].startswith("$2b$")
    cli("users", "add", "carol", "--password-stdin", input="carol-pass-1\n")
    added = yaml.safe_load((data_dir / "users.yaml").read_text())["credentials"]["usernames"]["carol"]
    assert set(added) == {"email", "first_name", "last_name", "password", "roles"}


def test_users_passwd_changes_the_password(cli, directory):
    result = cli("users", "passwd", "alice", "--password-stdin", input="brand-new-pass\n")
    assert result.returncode == 0, result.stderr
    assert directory.check_password("alice", "brand-new-pass")
    assert not directory.check_password("alice", "alice-pass-1")


def test_users_remove_drops_the_user_and_resets_their_mfa(cli, directory, svc, clock, data_dir):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    epoch = svc.status("alice").mfa_epoch
    result = cli("users", "remove", "alice")
    assert result.returncode == 0, result.stderr
    assert directory.get("alice") is None
    status = svc.status("alice")
    assert not status.totp_enabled and status.backup_codes_remaining == 0
    assert status.mfa_epoch == epoch + 1
    reset = [e for e in svc.audit("alice") if e.event == "helpdesk_reset"]
    assert [(e.actor, e.detail) for e in reset] == [("ops-test", "user removed from the directory")]


# -- mfa ------------------------------------------------------------------------------

def test_mfa_status_shows_the_user_state(cli, directory, svc, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    result = cli("mfa", "status", "alice")
    assert result.returncode == 0, result.stderr
    assert "two-step:             on" in result.stdout
    assert "authenticators:       1" in result.stdout
    assert "backup codes left:    10" in result.stdout
    assert "locked:               no" in result.stdout
    data = json.loads(cli("mfa", "status", "alice", "--json").stdout)
    assert data["totp_enabled"] is True and data["backup_codes_remaining"] == 10
    assert data["email"] == "alice@example.com"
    assert data["last_activity"] == clock()  # the codes, generated one step after enrolling
    assert data["mfa_epoch"] == 1
    [app] = data["authenticators"]
    assert (app["kind"], app["label"], app["last_used_at"]) == ("totp", "Authentication app", None)


def test_mfa_status_lists_each_authenticator_with_its_id(cli, directory, svc, clock):
    enable_totp(svc, clock, "alice")
    secret = svc.create_totp("alice", label="Work tablet").secret
    svc.verify_totp("alice", code_for(secret, clock()))
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    out = cli("mfa", "status", "alice").stdout
    ids = {a.label: a.id for a in svc.status("alice").authenticators}
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ID "))
    assert lines[header].split() == ["ID", "KIND", "NAME", "ADDED", "LAST", "USED"]
    rows = lines[header + 1:]
    assert rows[0].startswith(ids["Authentication app"]) and rows[0].rstrip().endswith("-")
    assert rows[1].startswith(ids["Work tablet"]) and "Work tablet" in rows[1]
    assert not rows[1].rstrip().endswith("-")  # it signed in: a last-used time


def test_mfa_remove_takes_one_authenticator_with_a_reason(cli, directory, svc, clock):
    old = enable_totp(svc, clock, "alice")
    new = svc.create_totp("alice", label="Work tablet").secret
    svc.verify_totp("alice", code_for(new, clock()))
    svc.create_backup_codes("alice")
    clock.advance(30)
    tablet = {a.label: a.id for a in svc.status("alice").authenticators}["Work tablet"]
    refused = cli("mfa", "remove", "alice", tablet)
    assert refused.returncode != 0 and "--reason" in refused.stderr
    assert cli("mfa", "remove", "alice", tablet, "--reason", "  ").returncode != 0
    wrong = cli("mfa", "remove", "alice", "nope", "--reason", "lost")
    assert wrong.returncode != 0 and "no authenticator with the id" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert len(svc.status("alice").authenticators) == 2
    result = cli("mfa", "remove", "alice", tablet, "--reason", "tablet stolen", "--actor", "helen")
    assert result.returncode == 0, result.stderr
    assert "“Work tablet”" in result.stdout and "1 authenticator left" in result.stdout
    status = svc.status("alice")
    assert [a.label for a in status.authenticators] == ["Authentication app"]
    assert status.backup_codes_remaining == 10
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == (
        "authenticator_removed", "helen", "Work tablet (reason: tablet stolen)")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", code_for(new, clock()))
    svc.attempt_second_factor("alice", code_for(old, clock()))
    last = cli("mfa", "remove", "alice", status.authenticators[0].id, "--reason", "left")
    assert last.returncode == 0 and "two-step verification and the backup codes are off" in last.stdout
    assert not svc.status("alice").two_factor_enabled


def test_mfa_list_summarises_every_user(cli, directory, svc, clock):
    enable_totp(svc, clock, "alice")
    result = cli("mfa", "list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["alice"][1:4] == ["on", "1", "0"]
    assert rows["bob"][1:5] == ["off", "-", "-", "-"]
    listed = {u["username"]: u for u in json.loads(cli("mfa", "list", "--json").stdout)}
    assert listed["alice"]["totp_enabled"] and not listed["bob"]["totp_enabled"]
    assert listed["admin"]["roles"] == ["user", "admin"]


def test_mfa_reset_removes_the_factor_bumps_the_epoch_and_audits(cli, directory, svc, clock):
    secret = enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    before = svc.status("alice")
    result = cli("mfa", "reset", "alice", "--reason", "lost phone, ticket 42", "--actor", "helen")
    assert result.returncode == 0, result.stderr
    after = svc.status("alice")
    assert not after.totp_enabled and after.backup_codes_remaining == 0
    assert after.mfa_epoch == before.mfa_epoch + 1
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == ("helpdesk_reset", "helen", "lost phone, ticket 42")
    with pytest.raises(mfa_core.NotEnabled):
        svc.attempt_second_factor("alice", code_for(secret, clock()))


def test_mfa_reset_actor_defaults_to_the_environment(cli, directory, svc):
    assert cli("mfa", "reset", "bob", "--reason", "asked by phone").returncode == 0
    assert svc.audit("bob")[-1].actor == "ops-test"


def test_mfa_unlock_clears_a_lockout(cli, directory, svc, clock):
    secret = enable_totp(svc, clock, "alice")
    while not svc.status("alice").locked:
        clock.advance(4000)  # past any wait: every attempt counts
        with pytest.raises(mfa_core.MFAError):
            svc.attempt_second_factor("alice", "000000" if code_for(secret, clock()) != "000000" else "111111")
    with pytest.raises(mfa_core.AccountLocked):
        svc.retry_after("alice")
    result = cli("mfa", "unlock", "alice", "--reason", "identity checked")
    assert result.returncode == 0, result.stderr
    status = svc.status("alice")
    assert not status.locked and status.failed_attempts == 0 and status.totp_enabled
    event = svc.audit("alice")[-1]
    assert (event.event, event.actor, event.detail) == ("lockout_cleared", "ops-test", "identity checked")
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(secret, clock()))


# -- audit -----------------------------------------------------------------------------

@pytest.fixture
def history(directory, svc, clock):
    """alice enrolls on day 0, bob on day 1, alice's codes on day 2 (fake times).

    Returns every secret and code made, to check none is ever printed.
    """
    made = [enable_totp(svc, clock, "alice")]
    clock.advance(86400)
    made.append(enable_totp(svc, clock, "bob"))
    clock.advance(86400)
    made += svc.create_backup_codes("alice").codes
    return made


def test_audit_lists_the_trail_as_a_table(cli, history):
    result = cli("audit")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "USER", "ACTOR", "EVENT", "OUTCOME", "DETAIL"]
    events = [line.split()[4] for line in lines[1:]]
    assert events == ["totp_enrollment_started", "totp_enabled"] * 2 + ["backup_codes_generated"]


def test_audit_filters_by_user_and_time(cli, history):
    alice = json.loads(cli("audit", "--user", "alice", "--json").stdout)
    assert {e["user"] for e in alice} == {"alice"} and len(alice) == 3
    day1 = iso(T0 + 86400 - 60)
    day2 = iso(T0 + 2 * 86400 - 60)
    window = json.loads(cli("audit", "--since", day1, "--until", day2, "--json").stdout)
    assert [(e["user"], e["event"]) for e in window] == [("bob", "totp_enrollment_started"),
                                                          ("bob", "totp_enabled")]
    by_date = json.loads(cli("audit", "--since", "2023-11-16", "--json").stdout)
    assert [e["event"] for e in by_date] == ["backup_codes_generated"]
    assert by_date[0]["when"].startswith("2023-11-16T")


def test_audit_accepts_relative_times(cli, history):
    assert cli("audit", "--since", "24h").stdout == "No events.\n"  # the history is from 2023
    assert cli("mfa", "reset", "bob", "--reason", "test").returncode == 0
    recent = json.loads(cli("audit", "--since", "7d", "--json").stdout)
    assert [(e["event"], e["user"]) for e in recent] == [("helpdesk_reset", "bob")]
    assert json.loads(cli("audit", "--until", "30m", "--json").stdout)[-1]["event"] == "backup_codes_generated"


def test_the_audit_output_holds_no_secret_or_code(cli, history):
    text = cli("audit", "--json").stdout + cli("audit").stdout
    assert "backup_codes_generated" in text
    for secret in history:
        assert secret not in text and secret.replace("-", "") not in text


# -- bad input: one line, exit 2, nothing changed ------------------------------------------

BAD = {
    "unknown user status": ["mfa", "status", "ghost"],
    "unknown user reset": ["mfa", "reset", "ghost", "--reason", "x"],
    "unknown user unlock": ["mfa", "unlock", "ghost"],
    "malformed user reset": ["mfa", "reset", "Bad:Name", "--reason", "x"],
    "missing reason": ["mfa", "reset", "alice"],
    "empty reason": ["mfa", "reset", "alice", "--reason", "   "],
    "reason with a control character": ["mfa", "reset", "alice", "--reason", "a\x07b"],
    "empty unlock reason": ["mfa", "unlock", "alice", "--reason", ""],
    "bad time": ["audit", "--since", "yesterday"],
    "bad date": ["audit", "--since", "2026-13-40"],
    "since after until": ["audit", "--since", "2d", "--until", "3d"],
    "unknown audit user": ["audit", "--user", "ghost"],
    "malformed audit user": ["audit", "--user", "../etc"],
    "unknown command": ["frobnicate"],
    "unknown option": ["mfa", "status", "alice", "--colour"],
    "duplicate user": ["users", "add", "alice", "--password-stdin"],
    "malformed new user": ["users", "add", "Alice Smith", "--password-stdin"],
    "short password": ["users", "add", "carol", "--password-stdin"],
    "bad email": ["users", "add", "carol", "--email", "not-an-address", "--password-stdin"],
    "no password on stdin": ["users", "passwd", "alice", "--password-stdin"],
    "passwd unknown user": ["users", "passwd", "ghost", "--password-stdin"],
    "remove unknown user": ["users", "remove", "ghost"],
    "roles unknown user": ["users", "roles", "ghost", "admin"],
    "bad role name": ["users", "roles", "alice", "Admin!"],
    "bad role on add": ["users", "add", "carol", "--role", "a b", "--password-stdin"],
}
STDIN = {"duplicate user": "alice-pass-1\n", "bad role on add": "carol-pass-1\n",
         "malformed new user": "long-enough-1\n",
         "short password": "short\n", "bad email": "carol-pass-1\n", "no password on stdin": "\n",
         "passwd unknown user": "ghost-pass-1\n"}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_prints_one_line_exits_2_and_changes_nothing(cli, directory, svc, clock, data_dir, case):
    enable_totp(svc, clock, "alice")
    before = snapshot(data_dir)
    result = cli(*BAD[case], input=STDIN.get(case, ""))
    assert result.returncode == 2, result
    assert one_line_error(result)
    assert snapshot(data_dir) == before


def test_bad_input_on_a_fresh_data_dir_creates_nothing(cli, data_dir):
    for args in (["mfa", "reset", "ghost", "--reason", "x"], ["audit", "--since", "soon"]):
        result = cli(*args)
        assert result.returncode == 2
        one_line_error(result)
    assert snapshot(data_dir) == {}


def test_a_damaged_user_file_is_one_line_not_a_traceback(cli, data_dir):
    data_dir.mkdir()
    (data_dir / "users.yaml").write_text("credentials: [unclosed\n")
    result = cli("mfa", "status", "alice")
    assert result.returncode == 2
    assert "cannot be read" in one_line_error(result)


def test_an_unusable_data_dir_exits_1_with_one_line(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("users", "list", "--data-dir", str(blocker / "data"))
    assert result.returncode == 1
    one_line_error(result)


# -- keys ------------------------------------------------------------------------------------

def _enrolled(svc, clock, count: int) -> dict[str, str]:
    return {f"user{i:03d}": enable_totp(svc, clock, f"user{i:03d}") for i in range(count)}


def _all_readable(data_dir: Path, secrets: dict[str, str], clock: FakeClock) -> None:
    """A freshly opened service signs every user in with a code from their secret."""
    fresh = mfa_core.open_service(data_dir, clock=clock, environ={})
    clock.advance(30)
    for username, secret in secrets.items():
        fresh.attempt_second_factor(username, code_for(secret, clock()))


def _fernet_keys(data_dir: Path) -> list[str]:
    return json.loads((data_dir / "keys.json").read_text())["fernet_keys"]


def test_keys_rotate_reencrypts_every_secret_under_a_new_key(cli, svc, clock, data_dir):
    secrets = _enrolled(svc, clock, 3)
    svc.create_totp("user000")  # a pending enrollment is re-encrypted too
    old_keys = _fernet_keys(data_dir)
    tokens_before = {p: p.read_text() for p in (data_dir / "users").rglob("*.json")}
    result = cli("keys", "rotate")
    assert result.returncode == 0, result.stderr
    assert "4 secrets re-encrypted" in result.stdout
    new_keys = _fernet_keys(data_dir)
    assert len(new_keys) == 1 and new_keys[0] not in old_keys
    assert all(p.read_text() != text for p, text in tokens_before.items())
    _all_readable(data_dir, secrets, clock)
    event = svc.audit()[-1]
    assert (event.event, event.actor, event.detail) == ("keys_rotated", "ops-test", "4 secrets re-encrypted")


def test_keys_rotate_with_environment_keys_moves_secrets_to_the_first_key(cli, clock, data_dir):
    from cryptography.fernet import Fernet
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    pepper = "c2l4dGVlbi1ieXRlcy1wZXBwZXIh"
    before = mfa_core.open_service(data_dir, clock=clock, environ={
        "MFA_PORTAL_FERNET_KEYS": old, "MFA_PORTAL_PEPPER": pepper})
    secret = enable_totp(before, clock, "alice")
    result = cli("keys", "rotate", env=cli_env(data_dir, MFA_PORTAL_FERNET_KEYS=f"{new},{old}",
                                               MFA_PORTAL_PEPPER=pepper))
    assert result.returncode == 0, result.stderr
    assert "Re-encrypted 1 secret under the first key of MFA_PORTAL_FERNET_KEYS" in result.stdout
    assert not (data_dir / "keys.json").exists()
    after = mfa_core.open_service(data_dir, clock=clock, environ={
        "MFA_PORTAL_FERNET_KEYS": new, "MFA_PORTAL_PEPPER": pepper})
    after.attempt_second_factor("alice", code_for(secret, clock()))


def test_keys_rotate_with_a_malformed_environment_key_exits_1_in_one_line(cli, data_dir):
    result = cli("keys", "rotate", env=cli_env(data_dir, MFA_PORTAL_FERNET_KEYS="not-a-key",
                                               MFA_PORTAL_PEPPER="c2l4dGVlbi1ieXRlcy1wZXBwZXIh"))
    assert result.returncode == 1
    assert "malformed" in one_line_error(result)


def _paused_rotation(cli, tmp_path: Path, after: int, **kwargs) -> subprocess.Popen:
    """``keys rotate`` stopped after re-encrypting ``after`` secrets (tests/ops/_paused_cli.py).

    Returns once it waits there: the new key is on file, some secrets moved and the rest
    not, whatever the machine's speed (a signal sent at a guessed moment could land
    before the rotation starts or after it ends on a busy machine).
    """
    ready = tmp_path / "rotation-paused"
    proc = subprocess.Popen([sys.executable, "-m", "tests.ops._paused_cli", str(ready), str(after),
                             "--", "keys", "rotate"], cwd=cli.cwd, env=cli_env(cli.data_dir), **kwargs)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the rotation never reached its pause (exit {proc.returncode}): {out} {err}")
        time.sleep(0.01)  # polling for the file the paused process creates
    return proc


def test_a_killed_rotation_leaves_every_secret_readable_and_rerunning_finishes_it(cli, svc, clock, data_dir,
                                                                                   tmp_path):
    secrets = _enrolled(svc, clock, 12)
    old_key = _fernet_keys(data_dir)[0]
    proc = _paused_rotation(cli, tmp_path, 5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert len(_fernet_keys(data_dir)) == 2  # the new key is on file, 5 secrets moved
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    keys = _fernet_keys(data_dir)
    assert old_key in keys  # the old key is kept until every secret moved
    _all_readable(data_dir, secrets, clock)
    result = cli("keys", "rotate")
    assert result.returncode == 0, result.stderr
    assert len(_fernet_keys(data_dir)) == 1 and old_key not in _fernet_keys(data_dir)
    _all_readable(data_dir, secrets, clock)


def test_an_interrupted_rotation_says_so_in_one_line(cli, svc, clock, data_dir, tmp_path):
    secrets = _enrolled(svc, clock, 3)
    proc = _paused_rotation(cli, tmp_path, 1, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "run the command again" in err
    assert len(_fernet_keys(data_dir)) == 2
    _all_readable(data_dir, secrets, clock)


def _damage(data_dir, username: str, raw: bytes = b"\x00 damaged") -> None:
    from mfa_core.storage import user_key
    key = user_key(username)
    (data_dir / "users" / key[:2] / f"{key}.json").write_bytes(raw)


def test_mfa_status_of_a_damaged_record_says_so_and_how_to_repair_it(cli, directory, svc, clock,
                                                                     data_dir):
    enable_totp(svc, clock, "alice")
    _damage(data_dir, "alice")
    result = cli("mfa", "status", "alice")
    assert result.returncode == 1
    assert "record:               damaged" in result.stdout and "mfa reset alice" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert json.loads(cli("mfa", "status", "alice", "--json").stdout)["damaged"] is True
    rows = {line.split()[0]: line for line in cli("mfa", "list").stdout.splitlines()[1:]}
    assert "damaged" in rows["alice"] and "damaged" not in rows["bob"]
    assert cli("mfa", "reset", "alice", "--reason", "damaged record").returncode == 0
    assert "record:" not in cli("mfa", "status", "alice").stdout


def test_mfa_status_shows_wrong_passwords_and_the_block(cli, directory, svc, clock):
    for n in range(3):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("bob", "wrong", source=f"198.51.100.{n}")
    assert "wrong passwords:      3" in cli("mfa", "status", "bob").stdout


def test_the_command_line_sweeps(cli):
    svc = mfa_core.open_service(cli.data_dir, environ={})  # the real clock, as the command's
    token = svc.sessions.start("alice", second_factor_passed=True)
    svc.sessions.redeem(svc.sessions.ticket(token))
    result = cli("sweep")
    assert result.returncode == 0, result.stderr
    assert "Removed 1 expired record" in result.stdout
