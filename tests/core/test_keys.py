"""The server's keys: outside the store's files, from the environment or a 0600 file, rotatable."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from cryptography.fernet import Fernet, InvalidToken

import mfa_core
from mfa_core import keys

from .conftest import code_for, data_files, database_dump, enable_totp, record_files


def stored_token(svc, username: str) -> str:
    return svc.store.read(username)["authenticators"][0]["secret"]


def key_file(data_dir) -> dict:
    return json.loads((data_dir / keys.KEY_FILE).read_text())


def env_keys(*fernet_keys: bytes) -> dict[str, str]:
    return {keys.ENV_KEYS: ",".join(k.decode() for k in fernet_keys),
            keys.ENV_PEPPER: base64.urlsafe_b64encode(os.urandom(32)).decode()}


def test_generated_key_file_is_0600(svc, data_dir):
    mode = stat.S_IMODE((data_dir / keys.KEY_FILE).stat().st_mode)
    assert mode == 0o600


def test_keys_are_in_no_store_file(svc, data_dir, backend, clock):
    enable_totp(svc, clock, "alice")
    svc.create_backup_codes("alice")
    material = key_file(data_dir)
    needles = [k.encode() for k in material["fernet_keys"]] + [material["pepper"].encode()]
    store_files = [p for p in data_files(data_dir) if p.name != keys.KEY_FILE]
    records = record_files(data_dir, backend)
    assert backend == "postgres" or (records and set(records) <= set(store_files))
    for path in store_files:
        for needle in needles:
            assert needle not in path.read_bytes(), path
    if backend == "postgres":  # nor in the database
        dump = database_dump()
        assert b"alice" in dump
        for needle in needles:
            assert needle not in dump


def test_secret_is_stored_as_a_fernet_token_of_the_file_key(svc, data_dir, clock):
    secret = enable_totp(svc, clock, "alice")
    token = stored_token(svc, "alice")
    assert token != secret
    [key] = key_file(data_dir)["fernet_keys"]
    assert Fernet(key.encode()).decrypt(token.encode()).decode() == secret


def test_environment_keys_are_used_when_set(open_svc, data_dir, clock):
    key = Fernet.generate_key()
    svc = open_svc(environ=env_keys(key))
    secret = enable_totp(svc, clock, "alice")
    assert not (data_dir / keys.KEY_FILE).exists()
    assert Fernet(key).decrypt(stored_token(svc, "alice").encode()).decode() == secret


def test_a_service_with_other_keys_cannot_read_the_secrets(open_svc, clock):
    svc = open_svc(environ=env_keys(Fernet.generate_key()))
    secret = enable_totp(svc, clock, "alice")
    stranger = open_svc(environ=env_keys(Fernet.generate_key()))
    with pytest.raises(mfa_core.KeyringError):
        stranger.attempt_second_factor("alice", code_for(secret, clock()))


def test_environment_keys_need_a_pepper(open_svc):
    with pytest.raises(mfa_core.KeyringError):
        open_svc(environ={keys.ENV_KEYS: Fernet.generate_key().decode()})


def test_malformed_environment_key_is_a_keyring_error(open_svc):
    env = env_keys(Fernet.generate_key())
    env[keys.ENV_KEYS] = "not-a-key"
    with pytest.raises(mfa_core.KeyringError):
        open_svc(environ=env)


def test_rotation_reencrypts_every_secret_and_codes_still_verify(svc, data_dir, clock):
    secrets_ = {u: enable_totp(svc, clock, u) for u in ("alice", "bob", "carol")}
    pending = svc.create_totp("dave").secret
    before = {u: stored_token(svc, u) for u in secrets_}
    old_keys = key_file(data_dir)["fernet_keys"]

    assert svc.rotate_keys(actor="ops") == 4

    new_keys = key_file(data_dir)["fernet_keys"]
    assert len(new_keys) == 1 and new_keys[0] not in old_keys
    for user, secret in secrets_.items():
        token = stored_token(svc, user)
        assert token != before[user]
        with pytest.raises(InvalidToken):
            Fernet(old_keys[0].encode()).decrypt(token.encode())
        svc.attempt_second_factor(user, code_for(secret, clock()))
    assert svc.verify_totp("dave", code_for(pending, clock())).totp_enabled
    assert stat.S_IMODE((data_dir / keys.KEY_FILE).stat().st_mode) == 0o600


def test_backup_codes_survive_a_rotation(svc, clock):
    enable_totp(svc, clock, "alice")
    codes = svc.create_backup_codes("alice").codes
    svc.rotate_keys(actor="ops")
    assert svc.attempt_second_factor("alice", codes[0], "backup_code").backup_codes_remaining == 9


def test_rotation_is_in_the_audit_trail(svc, clock):
    enable_totp(svc, clock, "alice")
    svc.rotate_keys(actor="ops")
    event = svc.audit()[-1]
    assert (event.event, event.actor, event.outcome) == ("keys_rotated", "ops", "success")


def test_interrupted_rotation_leaves_every_secret_readable(svc, open_svc, data_dir, clock):
    users = [f"user{i}" for i in range(6)]
    secrets_ = {u: enable_totp(svc, clock, u) for u in users}
    # A rotation that crashes half-way: the new key is in, only some secrets moved.
    svc.keyring.begin_rotation()
    for user in users[:3]:
        with svc.store.transaction(user) as txn:
            app = txn.record["authenticators"][0]
            app["secret"] = svc.keyring.reencrypt(app["secret"])
    assert len(key_file(data_dir)["fernet_keys"]) == 2

    fresh = open_svc()
    for user, secret in secrets_.items():
        fresh.attempt_second_factor(user, code_for(secret, clock()))
    # Running the rotation again finishes it.
    assert fresh.rotate_keys(actor="ops") == len(users)  # a new rotation moves every secret
    assert len(key_file(data_dir)["fernet_keys"]) == 1
    clock.advance(30)
    for user, secret in secrets_.items():
        open_svc().attempt_second_factor(user, code_for(secret, clock()))


def test_another_instance_picks_up_a_rotated_key_file(open_svc, data_dir, clock):
    first, second = open_svc(), open_svc()
    secret = enable_totp(first, clock, "alice")
    second.status("alice")
    first.rotate_keys(actor="ops")
    second.attempt_second_factor("alice", code_for(secret, clock()))
    # What the other instance writes now is under the new key alone.
    bob = second.create_totp("bob").secret
    [new_key] = key_file(data_dir)["fernet_keys"]
    token = second.store.read("bob")["pending"]["secret"]
    assert Fernet(new_key.encode()).decrypt(token.encode()).decode() == bob


def test_another_process_picks_up_a_rotated_key_file(open_svc, data_dir, backend, clock):
    first = open_svc()
    secret = enable_totp(first, clock, "alice")
    script = textwrap.dedent(f"""
        import sys, pyotp, mfa_core
        now = {clock()!r}
        svc = mfa_core.open_service(sys.argv[1], clock=lambda: now, environ={{}}, backend=sys.argv[2],
                                    database_url=sys.argv[3] or None)
        svc.status("alice")
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # wait until the rotation is done
        svc.attempt_second_factor("alice", pyotp.TOTP({secret!r}).at(now))
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_PORTAL_")}
    url = os.environ.get("MFA_PORTAL_TEST_DATABASE_URL", "") if backend == "postgres" else ""
    proc = subprocess.Popen([sys.executable, "-c", script, str(data_dir), backend, url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env,
                            cwd=os.path.dirname(os.path.dirname(mfa_core.__file__)))
    try:
        assert proc.stdout.readline() == "ready\n"
        first.rotate_keys(actor="ops")
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        proc.kill()
    assert out.strip() == "ok" and proc.returncode == 0


def test_rotation_with_environment_keys_reencrypts_under_the_first_key(open_svc, clock):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    env = env_keys(old)
    svc = open_svc(environ=env)
    secret = enable_totp(svc, clock, "alice")
    # The operator puts the new key first, re-encrypts, then drops the old one.
    env[keys.ENV_KEYS] = f"{new.decode()},{old.decode()}"
    assert open_svc(environ=env).rotate_keys(actor="ops") == 1
    env[keys.ENV_KEYS] = new.decode()
    later = open_svc(environ=env)
    later.attempt_second_factor("alice", code_for(secret, clock()))


def test_a_rotation_hidden_by_an_unchanged_file_signature_is_still_picked_up(open_svc, data_dir,
                                                                             clock):
    """On a file system with coarse timestamps the key file may look unchanged: reload on failure."""
    first, second = open_svc(), open_svc()
    secret = enable_totp(first, clock, "alice")
    second.status("alice")
    stale = second.keyring._mtime
    first.rotate_keys(actor="ops")
    st = (data_dir / keys.KEY_FILE).stat()
    second.keyring._mtime = (st.st_ino, st.st_mtime_ns, st.st_size)  # as if unchanged
    assert stale != second.keyring._mtime
    second.attempt_second_factor("alice", code_for(secret, clock()))
