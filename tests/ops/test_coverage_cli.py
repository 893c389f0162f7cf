"""`python -m mfa_core mfa coverage [--json|--csv]` and `policy remind`, in a subprocess (issue 23)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pyotp

import mfa_core

from ..support import Inbox, smtp_server
from .conftest import cli_env

SMTP = {"MFA_PORTAL_SMTP_SENDER": "MFA Portal <mfa@example.org>", "MFA_PORTAL_SMTP_HOST": "127.0.0.1"}


def in_days(n: int) -> str:
    return (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=n)).isoformat()


def test_coverage_json_csv_and_table(cli, directory, data_dir):
    svc = mfa_core.open_service(data_dir, environ={})  # the real clock, as the CLI's
    secret = svc.create_totp("bob").secret
    svc.verify_totp("bob", pyotp.TOTP(secret).now())
    assert cli("policy", "set", "--require", "everyone", "--grace-days", "14").returncode == 0
    assert cli("policy", "set", "--require", "role:admin", "--deadline", "2020-01-01").returncode == 0

    result = cli("mfa", "coverage", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("users", "covered", "enrolled", "in_grace", "overdue", "disallowed",
                                 "not_covered")} == {
        "users": 3, "covered": 3, "enrolled": 1, "in_grace": 1, "overdue": 1, "disallowed": 0,
        "not_covered": 0}
    assert data["overdue_users"] == ["admin"]
    assert data["grace"] == [{"username": "alice", "days_left": 14}]
    assert data["by_factor"] == {"totp": 1, "passkey": 0, "backup_code": 0}
    assert data["enrollments_per_day"][-1] == {"date": in_days(0), "count": 1}

    result = cli("mfa", "coverage", "--csv")
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["username", "state", "days_left"], ["admin", "overdue", "0"], ["alice", "grace", "14"]]

    result = cli("mfa", "coverage")
    assert result.returncode == 0, result.stderr
    assert "enrolled:" in result.stdout and "1 (33 %)" in result.stdout
    assert "overdue: admin" in result.stdout

    result = cli("mfa", "coverage", "--json", "--csv")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_policy_remind_mails_once_and_needs_mail_settings(cli, directory, data_dir):
    assert cli("policy", "set", "--require", "everyone", "--deadline", in_days(3)).returncode == 0
    result = cli("policy", "remind")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: No mail settings (smtp_host): no reminder was sent or recorded."]
    svc = mfa_core.open_service(data_dir, environ={})
    assert not [e for e in svc.audit() if e.event == "policy_reminder"]

    with smtp_server(Inbox()) as inbox:
        env = cli_env(data_dir, MFA_PORTAL_SMTP_PORT=str(inbox.port), **SMTP)
        first = cli("policy", "remind", env=env)
        again = cli("policy", "remind", env=env)
        assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
        assert first.stdout == "Sent 3 reminders.\n" and again.stdout == "Sent 0 reminders.\n"
        messages = inbox.wait_for(3)
    assert sorted(r[0] for r in inbox.recipients) == ["admin@example.com", "alice@example.com",
                                                      "bob@example.com"]
    text = messages[0].get_body(("plain",)).get_content()
    assert "requires two-step verification for your account by" in text
    assert "If this was not you" not in text
    assert sorted(e.user for e in svc.audit() if e.event == "policy_reminder") == ["admin", "alice", "bob"]
