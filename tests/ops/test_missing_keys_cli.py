"""F6: the command line refuses a data dir that holds data but lost its key file (one line, exit 1)."""

from __future__ import annotations

from mfa_core import keys

from .conftest import enable_totp, snapshot


def test_a_command_on_data_without_keys_refuses_in_one_line_and_generates_nothing(cli, svc, clock, data_dir):
    enable_totp(svc, clock, "alice")
    (data_dir / keys.KEY_FILE).unlink()
    before = snapshot(data_dir)
    result = cli("keys", "rotate")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data_dir / keys.KEY_FILE) in lines[0], result.stderr
    assert "MFA_PORTAL_FERNET_KEYS" in lines[0]
    assert not (data_dir / keys.KEY_FILE).exists() and snapshot(data_dir) == before
