"""A helpdesk reset from the command line while the user is enrolling leaves a consistent state."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import mfa_core
from mfa_core.authenticators import MAX_TOTP_APPS

from .conftest import FakeClock, code_for


def test_cli_resets_racing_an_enrolling_user_lose_no_update(cli, directory, data_dir):
    svc = mfa_core.open_service(data_dir, environ={})  # the real clock, like the CLI's
    enrolled: list[str] = []  # secrets whose verification succeeded, in order
    refused: list[str] = []
    cleared: list[int] = []  # disable_totp calls that removed apps (at the cap of apps per user)
    stop = threading.Event()

    failures: list[BaseException] = []

    def enroll_again_and_again() -> None:
        try:
            while not stop.is_set():
                try:
                    secret = svc.create_totp("alice").secret
                except mfa_core.TooManyAuthenticators:  # each enrollment adds an app: start over
                    try:
                        svc.disable_totp("alice")
                        cleared.append(1)
                    except mfa_core.NotEnabled:  # a reset got there first
                        pass
                    continue
                try:
                    svc.verify_totp("alice", code_for(secret, time.time()))
                except mfa_core.MFAError as exc:  # the reset removed the pending enrollment
                    refused.append(type(exc).__name__)
                else:
                    enrolled.append(secret)
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    worker = threading.Thread(target=enroll_again_and_again)
    worker.start()
    resets = 0
    try:
        while len(enrolled) < 3 and worker.is_alive():
            time.sleep(0.01)
        for _round in range(3):  # two helpdesk resets at once, three times
            procs = [cli.popen("mfa", "reset", "alice", "--reason", f"race {_round}",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2)]
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                resets += 1
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert failures == []

    # Every file parses; every change counted once (no lost update).
    for path in data_dir.rglob("*.json"):
        json.loads(path.read_text())
    status = svc.status("alice")
    assert status.mfa_epoch == len(enrolled) + resets + len(cleared)
    trail = [e for e in svc.audit("alice")
             if e.event in ("totp_enabled", "helpdesk_reset", "totp_removed")]
    assert sum(e.event == "totp_enabled" for e in trail) == len(enrolled)
    assert sum(e.event == "helpdesk_reset" for e in trail) == resets
    assert set(refused) <= {"NoPendingEnrollment"}

    # The final state is the last committed change: enrolled with the last secret, or reset.
    if trail[-1].event == "totp_enabled":
        assert status.totp_enabled
        later = FakeClock(time.time() + 60)
        checker = mfa_core.open_service(data_dir, clock=later, environ={})
        checker.attempt_second_factor("alice", code_for(enrolled[-1], later()))
    else:
        assert not status.totp_enabled and status.backup_codes_remaining == 0


def test_key_rotations_racing_enrollments_leave_every_secret_readable_with_the_new_key(cli, data_dir):
    svc = mfa_core.open_service(data_dir, environ={})
    users = [f"user{i}" for i in range(4)]
    last_secret: dict[str, str] = {}
    stop = threading.Event()

    failures: list[BaseException] = []

    def enroll_again_and_again() -> None:
        try:
            while not stop.is_set():
                for username in users:
                    if len(svc.status(username).authenticators) >= MAX_TOTP_APPS - 1:
                        svc.disable_totp(username)  # each round adds an app (and a pending one)
                    secret = svc.create_totp(username).secret
                    svc.verify_totp(username, code_for(secret, time.time()))
                    last_secret[username] = secret
                    svc.create_totp(username)  # and leave a pending enrollment behind
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    worker = threading.Thread(target=enroll_again_and_again)
    worker.start()
    try:
        while len(last_secret) < len(users) and worker.is_alive():
            time.sleep(0.01)
        for _ in range(3):
            result = cli("keys", "rotate")
            assert result.returncode == 0, result.stderr
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert failures == []

    keys = json.loads((data_dir / "keys.json").read_text())["fernet_keys"]
    assert len(keys) == 1
    later = FakeClock(time.time() + 60)
    fresh = mfa_core.open_service(data_dir, clock=later, environ={})  # reads only the final key
    for username in users:
        fresh.attempt_second_factor(username, code_for(last_secret[username], later()))
        assert fresh.pending_totp(username) is not None  # the pending secret decrypts too
