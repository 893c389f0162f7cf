"""`python -m mfa_core mfa pass issue|revoke` (issue 24): the helpdesk's temporary pass."""

from __future__ import annotations

import re

import pytest

import mfa_core

from .conftest import cli_env
from .test_cli import one_line_error

SHAPE = re.compile(r"^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$")


def test_issue_prints_the_pass_last_and_alone_and_it_signs_in_once(cli, directory, svc):
    result = cli("mfa", "pass", "issue", "alice", "--valid", "1h", "--reason", "lost phone, ticket 42",
                 "--actor", "helen")
    assert result.returncode == 0, result.stderr
    shown = result.stdout.splitlines()[-1]
    assert SHAPE.fullmatch(shown)
    assert shown not in "\n".join(result.stdout.splitlines()[:-1])
    assert svc.status("alice").temporary_pass_active
    [event] = [e for e in svc.audit("alice") if e.event == "temporary_pass_issued"]
    assert event.actor == "helen" and "lost phone, ticket 42" in event.detail and shown not in event.detail
    svc.attempt_second_factor("alice", shown, strategy="temporary_pass")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy="temporary_pass")
    status = cli("mfa", "status", "alice")
    assert "temporary pass:" in status.stdout and shown not in status.stdout


@pytest.mark.parametrize("valid", ["600s", "30m", "8h"])
def test_durations(cli, directory, valid):
    result = cli("mfa", "pass", "issue", "bob", "--valid", valid, "--reason", "new phone")
    assert result.returncode == 0, result.stderr


def test_several_uses(cli, directory, svc):
    result = cli("mfa", "pass", "issue", "alice", "--valid", "2h", "--reason", "r", "--uses", "3")
    assert result.returncode == 0, result.stderr
    assert svc.status("alice").temporary_pass_uses == 3


@pytest.mark.parametrize("args", [
    ["--valid", "5m", "--reason", "r"],          # shorter than ten minutes
    ["--valid", "9h", "--reason", "r"],          # longer than the maximum
    ["--valid", "soon", "--reason", "r"],
    ["--valid", "1h", "--reason", "  "],
    ["--valid", "1h", "--reason", "r", "--uses", "0"],
    ["--valid", "1h"],                           # no reason
    ["--reason", "r"],                           # no validity
])
def test_bad_input_is_one_line_and_exit_2(cli, directory, svc, args):
    result = cli("mfa", "pass", "issue", "alice", *args)
    assert result.returncode == 2
    one_line_error(result)
    assert not svc.status("alice").temporary_pass_active


def test_unknown_user_is_refused(cli, directory):
    result = cli("mfa", "pass", "issue", "nobody", "--valid", "1h", "--reason", "r")
    assert result.returncode == 2
    one_line_error(result)


def test_the_operator_sets_the_maximum(cli, directory, data_dir):
    env = cli_env(data_dir, MFA_PORTAL_PASS_MAX_VALID="1h")
    assert cli("mfa", "pass", "issue", "alice", "--valid", "2h", "--reason", "r", env=env).returncode == 2
    assert cli("mfa", "pass", "issue", "alice", "--valid", "1h", "--reason", "r", env=env).returncode == 0


def test_revoke(cli, directory, svc):
    shown = cli("mfa", "pass", "issue", "alice", "--valid", "1h", "--reason", "r").stdout.splitlines()[-1]
    result = cli("mfa", "pass", "revoke", "alice", "--reason", "caller was not alice")
    assert result.returncode == 0, result.stderr
    assert not svc.status("alice").temporary_pass_active
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", shown, strategy="temporary_pass")
    again = cli("mfa", "pass", "revoke", "alice", "--reason", "again")
    assert again.returncode == 2
    one_line_error(again)
    assert cli("mfa", "pass", "revoke", "alice").returncode == 2


def test_status_and_list_show_an_active_pass_and_until_when_never_the_pass(cli, directory, svc):
    import json
    import time
    before = time.time()
    shown = cli("mfa", "pass", "issue", "alice", "--valid", "1h", "--reason", "lost phone",
                "--uses", "2").stdout.splitlines()[-1]
    status = json.loads(cli("mfa", "status", "alice", "--json").stdout)
    assert status["temporary_pass_active"] is True and status["temporary_pass_uses"] == 2
    assert before + 3600 <= status["temporary_pass_until"] <= time.time() + 3600
    listed = {u["username"]: u for u in json.loads(cli("mfa", "list", "--json").stdout)}
    assert listed["alice"]["temporary_pass_until"] == status["temporary_pass_until"]
    assert listed["bob"]["temporary_pass_active"] is False and listed["bob"]["temporary_pass_until"] is None
    table = cli("mfa", "list").stdout
    header, *lines = table.splitlines()
    rows = {line.split()[0]: line for line in lines}
    column = header.index("TEMPORARY PASS")
    until = svc.status("alice").temporary_pass_until
    from mfa_core.cli import format_time
    assert rows["alice"][column:].startswith(f"until {format_time(until)}")
    assert rows["bob"][column:].startswith("- ")
    text = cli("mfa", "status", "alice").stdout
    assert f"until {format_time(until)} (2 sign-ins left)" in text
    normalized = shown.replace("-", "")
    for out in (table, text, json.dumps(status), json.dumps(listed)):
        assert shown not in out and normalized not in out

    assert cli("mfa", "pass", "revoke", "alice", "--reason", "found the phone").returncode == 0
    status = json.loads(cli("mfa", "status", "alice", "--json").stdout)
    assert (status["temporary_pass_active"], status["temporary_pass_until"]) == (False, None)
    rows = {line.split()[0]: line for line in cli("mfa", "list").stdout.splitlines()[1:]}
    assert "until" not in rows["alice"]
