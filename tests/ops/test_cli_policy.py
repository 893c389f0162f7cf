"""`python -m mfa_core policy set|show|clear` (issue 23): the two-step policy from the command line."""

from __future__ import annotations

import json

import pytest

from .conftest import enable_totp, snapshot
from .test_cli import one_line_error


@pytest.fixture
def engine(svc):
    svc.policy_max_age = 0  # the CLI changes the policy from another process
    return svc


def test_set_replaces_that_targets_rule_and_keeps_the_others(cli, directory, engine):
    assert cli("policy", "set", "--require", "everyone", "--grace-days", "30").returncode == 0
    result = cli("policy", "set", "--require", "role:admin", "--deadline", "2027-03-01",
                 "--allow", "totp,passkey")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Set role:admin: deadline 2027-03-01, allow totp, passkey (set ")
    result = cli("policy", "set", "--require", "role:admin", "--grace-days", "7", "--actor", "helen")
    assert result.returncode == 0, result.stderr
    rules = {r.target: r for r in engine.two_step_policy().rules}
    assert set(rules) == {"everyone", "role:admin"}
    assert (rules["role:admin"].grace_days, rules["role:admin"].deadline) == (7, None)
    assert rules["everyone"].grace_days == 30
    changes = [(e.actor, e.detail) for e in engine.audit() if e.event == "policy_changed"]
    assert changes[-1] == ("helen", "role:admin: deadline 2027-03-01, allow totp, passkey \u2192 "
                                    "grace 7 days, allow totp, passkey, backup_code")
    assert [a for a, _ in changes] == ["ops-test", "ops-test", "helen"]


def test_show_prints_the_rules_and_json(cli, directory):
    empty = cli("policy", "show")
    assert empty.returncode == 0 and "voluntary" in empty.stdout
    assert json.loads(cli("policy", "show", "--json").stdout)["rules"] == []
    cli("policy", "set", "--require", "group:CN=VPN Users,DC=example,DC=com", "--deadline", "2027-03-01",
        "--allow", "passkey,totp")
    shown = cli("policy", "show")
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0].startswith(
        "group:cn=vpn users,dc=example,dc=com: deadline 2027-03-01, allow totp, passkey (set ")
    data = json.loads(cli("policy", "show", "--json").stdout)
    (rule,) = data["rules"]
    assert {k: rule[k] for k in ("target", "grace_days", "deadline", "allow")} == {
        "target": "group:cn=vpn users,dc=example,dc=com", "grace_days": None,
        "deadline": "2027-03-01", "allow": ["totp", "passkey"]}
    assert data["changed_by"] == "ops-test"


def test_clear_removes_every_rule(cli, directory, engine):
    cli("policy", "set", "--require", "everyone", "--grace-days", "30")
    cli("policy", "set", "--require", "role:user", "--grace-days", "3")
    result = cli("policy", "clear")
    assert result.returncode == 0 and result.stdout.startswith("Removed 2 rules")
    assert engine.two_step_policy().rules == ()
    assert "voluntary" in cli("policy", "show").stdout


@pytest.mark.parametrize("args, says", [
    (["--require", "admins", "--grace-days", "3"], "is not a target"),
    (["--require", "everyone", "--deadline", "2027-02-30"], "not a day of the calendar"),
    (["--require", "everyone", "--grace-days", "3", "--allow", "sms"], "is not a factor"),
    (["--require", "everyone", "--grace-days", "3", "--allow", ","], "allow list is empty"),
    (["--require", "everyone", "--grace-days", "3", "--allow", "backup_code"], "Backup codes alone"),
    (["--require", "everyone", "--grace-days", "-2"], "from 0 to"),
    (["--require", "everyone", "--grace-days", "3", "--deadline", "2027-03-01"], "not allowed with"),
    (["--require", "everyone"], "required"),
])
def test_bad_rules_exit_2_with_one_line_and_change_nothing(cli, directory, data_dir, args, says):
    before = snapshot(data_dir)
    result = cli("policy", "set", *args)
    assert result.returncode == 2
    assert says in one_line_error(result)
    assert snapshot(data_dir) == before


def test_a_rule_that_would_lock_out_the_admins_exits_2_with_the_reason(cli, directory, svc, clock):
    enable_totp(svc, clock, "admin")
    result = cli("policy", "set", "--require", "role:admin", "--grace-days", "0", "--allow", "passkey")
    assert result.returncode == 2
    assert one_line_error(result) == ("error: This policy would lock out the helpdesk: no admin has a "
                                      "passkey, which it requires of admins. Add one to an admin's "
                                      "account first.")
    assert "voluntary" in cli("policy", "show").stdout
    assert cli("policy", "set", "--require", "role:admin", "--grace-days", "0",
               "--allow", "totp").returncode == 0


@pytest.mark.parametrize("command", [["policy"], ["policy", "set"], ["policy", "show"], ["policy", "clear"]])
def test_policy_commands_have_help(cli, command):
    result = cli(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m mfa_core")


def test_a_deadline_already_past_is_set_with_a_warning_line(cli, directory, engine):
    # Everyone it covers without two-step is overdue at once: allowed (an organization may mean
    # it), but said on stderr, one line, so a typo in the year does not pass unnoticed.
    result = cli("policy", "set", "--require", "everyone", "--deadline", "2020-01-01")
    assert result.returncode == 0 and result.stdout.startswith("Set everyone: deadline 2020-01-01")
    (line,) = result.stderr.splitlines()
    assert line.startswith("warning: the deadline 2020-01-01 has passed: ")
    result = cli("policy", "set", "--require", "role:user", "--grace-days", "0")
    assert result.returncode == 0 and result.stderr.startswith("warning: no grace period: ")
    result = cli("policy", "set", "--require", "role:user", "--deadline", "2999-01-01")
    assert result.returncode == 0 and result.stderr == ""


def test_clear_repairs_a_policy_record_that_is_not_json(cli, directory, engine, data_dir):
    from pathlib import Path
    cli("policy", "set", "--require", "everyone", "--grace-days", "30")
    (path,) = [p for p in (Path(data_dir) / "sources").rglob("*.json") if "policy" in p.read_text()]
    path.write_text("{not json")
    result = cli("policy", "show")
    assert result.returncode != 0 and "cannot be read" in result.stderr
    result = cli("policy", "clear")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Replaced the damaged policy record")
    assert "voluntary" in cli("policy", "show").stdout
    assert [e.detail for e in engine.audit() if e.event == "policy_changed"][-1] == \
        "damaged policy record replaced: no rules"
