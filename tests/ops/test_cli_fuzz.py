"""Whatever an operator types, the command line answers with a status and at most one error line."""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfa_core import cli
from mfa_core.users import UserDirectory

TOKENS = ["users", "add", "list", "remove", "passwd", "roles", "mfa", "status", "reset", "unlock",
          "audit", "keys", "rotate", "alice", "ghost", "Bad:Name", "--reason", "--actor", "--user",
          "--since", "--until", "--json", "--admin", "--role", "--email", "--name",
          "--password-stdin", "--keep-mfa", "--data-dir", "admin", "24h", "7d", "2026-11-28",
          "yesterday", "", " ", "x" * 600, "\x00", "-", "--", "--help=no", "é", "0", "-1",
          "import", "db", "upgrade", "copy", "--from"]  # (not "export": it writes the file named)


@pytest.fixture(scope="module")
def data_dir():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data"
        UserDirectory(path).add("alice", "alice-pass-1", email="alice@example.com")
        yield path


def run_main(argv: list[str], data_dir: Path, stdin: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"MFA_PORTAL_DATA_DIR": str(data_dir), "MFA_PORTAL_ACTOR": "fuzz"}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv, environ=env, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), max_size=7),
       stdin=st.sampled_from(["", "\n", "short\n", "long-enough-password\n", "\x00\n"]))
def test_any_command_line_gets_a_status_and_one_error_line_at_most(data_dir, argv, stdin):
    if "--help" in argv or "-h" in argv:
        argv = [a for a in argv if a not in ("--help", "-h")]
    code, err = run_main(argv, data_dir, stdin)
    assert code in (0, 1, 2)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err
    assert (code == 0) == (err == ""), (code, err)


@given(text=st.text(max_size=40))
def test_parse_time_refuses_with_a_usage_error_only(text):
    now = time.time()
    try:
        value = cli.parse_time(text, now)
    except cli.UsageError as err:
        assert text.strip() in str(err) or repr(text) in str(err)
    else:
        assert isinstance(value, float | int)


@pytest.mark.parametrize("text, expected", [
    ("24h", -86400), ("7d", -7 * 86400), ("30m", -1800), ("2w", -14 * 86400), ("90s", -90),
    ("now", 0), (" 24H ", -86400),
])
def test_parse_time_relative_forms(text, expected):
    assert cli.parse_time(text, 1_000_000.0) == 1_000_000.0 + expected


@pytest.mark.parametrize("text, iso", [
    ("2026-11-28", "2026-11-28T00:00:00+00:00"),
    ("2026-11-28T09:30", "2026-11-28T09:30:00+00:00"),
    ("2026-11-28T09:30Z", "2026-11-28T09:30:00+00:00"),
    ("2026-11-28T11:30+02:00", "2026-11-28T09:30:00+00:00"),
])
def test_parse_time_iso_forms_default_to_utc(text, iso):
    import datetime as dt
    assert cli.parse_time(text, 0.0) == dt.datetime.fromisoformat(iso).timestamp()
