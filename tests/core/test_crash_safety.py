"""A writer killed with SIGKILL at random moments, many times: the store always opens, old or new state.

On the embedded store (files) and on PostgreSQL (a replica killed mid-transaction).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mfa_core
from mfa_core.storage import sweep_leftovers

from .conftest import T0

KILLS = 30
USERS = ("ann", "ben", "cat")

WRITER = textwrap.dedent("""
    import sys
    import mfa_core
    data_dir, now = sys.argv[1], float(sys.argv[2])
    users = sys.argv[3].split(",")
    svc = mfa_core.open_service(data_dir, clock=lambda: now, environ={}, database_url=sys.argv[4] or None)
    def revoked(u):
        return len((svc.store.read(u) or {}).get("revoked_tokens") or {})
    counts = {u: revoked(u) for u in users}
    print("ready", flush=True)
    i = 0
    while True:
        user = users[i % len(users)]
        if i % 7 == 3:
            svc.create_totp(user)  # a pending secret: encrypted, rewritten in the same file
        svc.revoke_token(user, f"token-{counts[user]}", now + 10 ** 6)  # one more entry a write
        counts[user] += 1
        print(user, counts[user], flush=True)
        i += 1
""")


def revoked(svc: mfa_core.MFAService, user: str) -> int:
    """How many writes of the user's record committed (each revokes one more token)."""
    return len((svc.store.read(user) or {}).get("revoked_tokens") or {})


def start_writer(data_dir: Path, url: str = "") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_PORTAL_")}
    root = Path(mfa_core.__file__).resolve().parent.parent
    errors = open(data_dir.parent / "writer-stderr.txt", "w")  # noqa: SIM115 (closed with the process)
    with errors:
        return subprocess.Popen([sys.executable, "-c", WRITER, str(data_dir), str(T0), ",".join(USERS), url],
                                stdout=subprocess.PIPE, stderr=errors, text=True, env=env, cwd=root)


def kill_midway(data_dir: Path, rng: random.Random, committed: dict[str, int], url: str = "") -> bool:
    """Start a writer, SIGKILL it after a random number (1-5) of its writes, record what it reported.

    The kill follows the writer's own progress, not a wall-clock delay (on a busy machine a
    writer given 0.1 s may not have written at all): it lands while the writer is on its
    next write. Returns whether it reported anything (always, now: kept for the count).
    """
    proc = start_writer(data_dir, url)
    lines: list[str] = []
    try:
        ready = proc.stdout.readline()
        assert ready == "ready\n", (data_dir.parent / "writer-stderr.txt").read_text()
        for _ in range(rng.randint(1, 5)):
            line = proc.stdout.readline()
            assert line.endswith("\n"), (data_dir.parent / "writer-stderr.txt").read_text()
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        # Read through the same buffered reader as readline(): it may hold lines already.
        out = "".join(lines) + proc.stdout.read()
        proc.stdout.close()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (data_dir.parent / "writer-stderr.txt").read_text()
    for line in out.split("\n")[:-1]:  # whole lines only: the kill may cut the last one
        user, count = line.split()
        committed[user] = int(count)
    return bool(out)


def test_store_survives_sigkill_mid_write_many_times(data_dir):
    rng = random.Random(6238)
    committed = {u: 0 for u in USERS}  # what the writers reported as done
    seen = {u: 0 for u in USERS}  # what the store held after the previous kill
    kills_mid_run = 0
    for _ in range(KILLS):
        kills_mid_run += kill_midway(data_dir, rng, committed)

        # Every user file parses (temp files from the killed writer are not user files).
        files = list((data_dir / "users").rglob("*.json"))
        for path in files:
            json.loads(path.read_bytes())
        # The store opens, and every user's state is the old or the new one.
        svc = mfa_core.open_service(data_dir, clock=lambda: T0, environ={})
        for user in USERS:
            failures = revoked(svc, user)
            # At most one transaction can have committed without being reported.
            assert committed[user] <= failures <= committed[user] + 1, (user, failures, committed)
            assert failures >= seen[user], "a committed state was lost"
            seen[user] = failures
            committed[user] = failures
            pending = svc.pending_totp(user)
            assert pending is None or len(pending.secret) == 32
        assert svc.audit() is not None  # a torn audit line never stops a query
    assert kills_mid_run >= KILLS // 2, "the writer was rarely killed while writing"
    assert sum(seen.values()) > KILLS
    # No writer is alive now: every temp file left by a kill can go, and nothing else.
    sweep_leftovers(data_dir, older_than=0)
    assert not [p for p in data_dir.rglob("*.tmp")]
    svc = mfa_core.open_service(data_dir, clock=lambda: T0, environ={})
    assert {u: revoked(svc, u) for u in USERS} == seen


def test_postgres_loses_nothing_committed_when_a_writer_is_killed_mid_transaction(postgres_url, data_dir):
    rng = random.Random(6238)
    committed = {u: 0 for u in USERS}
    seen = {u: 0 for u in USERS}
    kills_mid_run = 0
    for kill in range(KILLS // 2):
        kills_mid_run += kill_midway(data_dir, rng, committed, postgres_url)
        # The killed writer's transaction and its user locks are gone with its connection.
        svc = mfa_core.open_service(data_dir, clock=lambda: T0, environ={}, database_url=postgres_url)
        for user in USERS:
            found = revoked(svc, user)
            assert committed[user] <= found <= committed[user] + 1, (user, found, committed)
            assert found >= seen[user], "a committed state was lost"
            seen[user] = committed[user] = found
            svc.revoke_token(user, f"after-kill-{kill}", T0 + 10 ** 6)  # the user is not left locked
            pending = svc.pending_totp(user)
            assert pending is None or len(pending.secret) == 32
        assert svc.audit() is not None
        svc.store.close()
        for user in USERS:
            seen[user] = committed[user] = seen[user] + 1  # the token revoked above
    assert kills_mid_run >= KILLS // 4, "the writer was rarely killed while writing"
    assert sum(seen.values()) > KILLS // 2
