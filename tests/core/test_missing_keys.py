"""F6: a data dir that holds data but lost its key file refuses; keys are generated only into an empty one."""

from __future__ import annotations

import pickle

import pytest

import mfa_core
from mfa_core import keys

from ..support import FakeClock, T0, enable_totp


def _used_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    clock = FakeClock(T0)
    svc = mfa_core.open_service(data_dir, clock=clock, environ={})
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    return data_dir, clock


def test_an_empty_data_dir_gets_generated_keys(tmp_path):
    mfa_core.open_service(tmp_path / "fresh", environ={})
    assert (tmp_path / "fresh" / keys.KEY_FILE).exists()
    assert not keys.holds_data(tmp_path / "fresh")  # empty directories and the key file are no data


def test_a_data_dir_with_records_but_no_key_file_refuses_and_writes_no_new_keys(tmp_path):
    data_dir, clock = _used_data_dir(tmp_path)
    (data_dir / keys.KEY_FILE).unlink()
    assert keys.holds_data(data_dir)
    with pytest.raises(mfa_core.KeysMissing) as caught:
        mfa_core.open_service(data_dir, clock=clock, environ={})
    assert not (data_dir / keys.KEY_FILE).exists()
    err = caught.value
    assert isinstance(err, mfa_core.KeyringError)
    # The operator's detail names the file; what a visitor may see names nothing.
    assert str(data_dir / keys.KEY_FILE) in err.detail and "MFA_PORTAL_FERNET_KEYS" in err.detail
    assert "temporarily unavailable" in str(err)
    assert "keys.json" not in str(err) and str(tmp_path) not in str(err)
    assert pickle.loads(pickle.dumps(err)).detail == err.detail


@pytest.mark.parametrize("only", ["audit", "enrolled", "api_clients.json"])
def test_any_kind_of_data_counts(tmp_path, only):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if only.endswith(".json"):
        (data_dir / only).write_text("{}")
    else:
        (data_dir / only / "x").mkdir(parents=True)
        (data_dir / only / "x" / "file").write_text("x")
    with pytest.raises(mfa_core.KeysMissing):
        mfa_core.open_service(data_dir, environ={})


def test_users_yaml_alone_is_no_data_for_the_keys(tmp_path):
    """`users add` before the first start writes users.yaml (password hashes, no key needed)."""
    data_dir = tmp_path / "data"
    mfa_core.users.UserDirectory(data_dir).add("carol", "carol-pass-1")
    mfa_core.open_service(data_dir, environ={})
    assert (data_dir / keys.KEY_FILE).exists()


def test_a_key_file_removed_while_running_is_temporarily_unavailable_for_users(tmp_path):
    data_dir, clock = _used_data_dir(tmp_path)
    svc = mfa_core.open_service(data_dir, clock=clock, environ={})
    (data_dir / keys.KEY_FILE).unlink()
    with pytest.raises(mfa_core.KeysMissing) as caught:
        svc.attempt_second_factor("alice", "123456")
    assert "key" not in str(caught.value).lower()
    assert not (data_dir / keys.KEY_FILE).exists()


def test_environment_keys_need_no_key_file(tmp_path):
    data_dir, clock = _used_data_dir(tmp_path)
    (data_dir / keys.KEY_FILE).unlink()
    import base64
    import os
    from cryptography.fernet import Fernet
    env = {keys.ENV_KEYS: Fernet.generate_key().decode(),
           keys.ENV_PEPPER: base64.urlsafe_b64encode(os.urandom(32)).decode()}
    mfa_core.open_service(data_dir, clock=clock, environ=env)  # the operator's choice: no refusal
    assert not (data_dir / keys.KEY_FILE).exists()
