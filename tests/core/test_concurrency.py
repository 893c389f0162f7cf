"""Many threads and processes on one data dir: no lost update, no corrupt file, exactly-once codes."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import sqlite3
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mfa_core
from mfa_core import ThrottlePolicy

from . import _workers
from ..support import write_users
from .conftest import code_for, database_dump, enable_totp

THREADS = 8
PROCESSES = 4
# The losers of a race are failed attempts; let them all be free so each one reports why it lost.
LENIENT = ThrottlePolicy(free_failures=THREADS + 1, lockout_after=100)


def every_user_file_parses(data_dir: Path, backend: str = "tinydb") -> int:
    """Every user record on disk parses and no temp file is left behind; returns how many records."""
    assert not list(data_dir.rglob("*.tmp")), "a temp file was left behind"
    if backend == "sqlite":
        with contextlib.closing(sqlite3.connect(data_dir / "mfa.sqlite3")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            docs = [json.loads(doc) for (doc,) in db.execute("SELECT doc FROM users")]
    elif backend == "postgres":
        docs = [json.loads(doc) for doc in database_dump("users").splitlines()]
    elif backend == "tinydb-single-file":
        docs = list(json.loads((data_dir / "mfa.json").read_bytes())["users"].values())
    else:
        docs = [json.loads(path.read_bytes()) for path in (data_dir / "users").rglob("*.json")]
    assert all(isinstance(doc, dict) for doc in docs)
    return len(docs)


def in_threads(fn, count: int = THREADS) -> list:
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait(timeout=30)
        return fn(i)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def outcome(call) -> str:
    try:
        call()
        return "ok"
    except mfa_core.MFAError as exc:
        return type(exc).__name__


@pytest.mark.parametrize("shared_instance", [True, False], ids=["one-service", "service-per-thread"])
def test_threads_lose_no_failure_count(data_dir, clock, shared_instance):
    per_thread = 10
    never_waits = ThrottlePolicy(free_failures=THREADS * per_thread + 1, lockout_after=100)
    services = [mfa_core.open_service(data_dir, clock=clock, environ={}, policy=never_waits)
                for _ in range(THREADS)]
    enable_totp(services[0], clock, "alice")

    def work(i):
        svc = services[0] if shared_instance else services[i]
        for _ in range(per_thread):
            with pytest.raises(mfa_core.InvalidCode):
                svc.attempt_second_factor("alice", "000000")
    in_threads(work)
    assert services[0].status("alice").failed_attempts == THREADS * per_thread
    every_user_file_parses(data_dir)


def test_threads_enrolling_different_users_all_end_enabled(svc, data_dir, backend, clock):
    def work(i):
        for n in range(5):
            user = f"t{i}-u{n}"
            secret = svc.create_totp(user).secret
            svc.verify_totp(user, code_for(secret, clock()))
    in_threads(work)
    users = [f"t{i}-u{n}" for i in range(THREADS) for n in range(5)]
    assert all(svc.status(u).totp_enabled for u in users)
    assert set(svc.usernames()) == set(users)
    assert every_user_file_parses(data_dir, backend) == len(users)


def test_one_backup_code_redeemed_by_eight_threads_succeeds_once(open_svc, clock):
    svc = open_svc(policy=LENIENT)
    enable_totp(svc, clock, "alice")
    code = svc.create_backup_codes("alice").codes[0]
    services = [open_svc(policy=LENIENT) for _ in range(THREADS)]
    results = in_threads(lambda i: outcome(
        lambda: services[i].attempt_second_factor("alice", code, "backup_code")))
    assert results.count("ok") == 1, results
    assert set(results) == {"ok", "InvalidCode"}
    assert svc.status("alice").backup_codes_remaining == 9


def test_one_totp_code_sent_by_eight_threads_is_accepted_once(open_svc, clock):
    svc = open_svc(policy=LENIENT)
    secret = enable_totp(svc, clock, "alice")
    code = code_for(secret, clock())
    results = in_threads(lambda i: outcome(lambda: svc.attempt_second_factor("alice", code)))
    assert results.count("ok") == 1, results
    assert set(results) == {"ok", "CodeAlreadyUsed"}


def test_threads_mixing_every_operation_keep_every_user_consistent(open_svc, data_dir, backend,
                                                                   clock):
    svc = open_svc(policy=LENIENT)
    secret = enable_totp(svc, clock, "shared")
    codes = svc.create_backup_codes("shared").codes

    def work(i):
        results = []
        results.append(outcome(lambda: svc.attempt_second_factor("shared", codes[i], "backup_code")))
        results.append(outcome(lambda: svc.attempt_second_factor("shared", codes[0], "backup_code")))
        own = svc.create_totp(f"own{i}").secret
        results.append(outcome(lambda: svc.verify_totp(f"own{i}", code_for(own, clock()))))
        svc.status("shared"), svc.audit("shared"), svc.recent_activity("shared")
        return results
    results = in_threads(work)
    # codes[0] is used once by thread 0 or by someone's second try, never twice.
    used = [r for rs in results for r in rs[:2] if r == "ok"]
    assert len(used) == THREADS  # codes[0..7] each once
    assert svc.status("shared").backup_codes_remaining == 10 - THREADS
    assert all(rs[2] == "ok" for rs in results)
    assert svc.attempt_second_factor("shared", code_for(secret, clock())).strategy == "totp"
    assert every_user_file_parses(data_dir, backend) == 1 + THREADS


def test_four_processes_on_one_data_dir(open_svc, data_dir, backend, clock, monkeypatch):
    """Spawned processes race for one backup code and one TOTP code, count failures, enroll users."""
    # A spawned child re-runs the parent's __main__ file; after a page test,
    # AppTest has left the portal's script there (which then fails in the child).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    write_users(data_dir, {"counted": "counted-pass-1"})
    svc = open_svc(policy=LENIENT)
    secret = enable_totp(svc, clock, "shared")
    code = svc.create_backup_codes("shared").codes[0]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    failures, users_each = 20, 5
    procs = [ctx.Process(target=_workers.race,
                         args=(str(data_dir), backend, clock(), w, barrier, results),
                         kwargs=dict(totp_secret=secret, backup_code=code, failures=failures,
                                     users_each=users_each))
             for w in range(PROCESSES)]
    outcomes = _workers.outcomes_of(procs, results)
    assert not [o["error"] for o in outcomes if "error" in o]
    assert [o["backup"] for o in outcomes].count("ok") == 1, outcomes
    assert {o["backup"] for o in outcomes} == {"ok", "InvalidCode"}
    assert [o["totp"] for o in outcomes].count("ok") == 1, outcomes
    assert {o["totp"] for o in outcomes} == {"ok", "CodeAlreadyUsed"}
    assert svc.status("shared").backup_codes_remaining == 9
    assert svc.status("counted").password_failures == PROCESSES * failures
    enrolled = [f"p{w}-u{n}" for w in range(PROCESSES) for n in range(users_each)]
    assert all(svc.status(u).totp_enabled for u in enrolled)
    assert every_user_file_parses(data_dir, backend) == len(enrolled) + 2
    assert len([e for e in svc.audit("counted") if e.event == "password_failed"]) == PROCESSES * failures
