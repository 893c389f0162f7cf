"""Work run in other processes by the concurrency tests (importable by spawned children)."""

from __future__ import annotations

import os

import pyotp

import mfa_core


def race(data_dir: str, backend: str, now: float, worker: int, barrier, results, *,
         totp_secret: str, backup_code: str, failures: int, users_each: int) -> None:
    """One process's share: the shared code race, failures on one user, enrolling its own users."""
    policy = mfa_core.ThrottlePolicy(free_failures=10, lockout_after=100)  # losers all get a reason
    svc = mfa_core.open_service(data_dir, clock=lambda: now, environ={}, backend=backend,
                                policy=policy,
                                database_url=os.environ.get("MFA_PORTAL_TEST_DATABASE_URL")
                                if backend == "postgres" else None)
    outcome: dict = {"worker": worker}
    try:
        barrier.wait(timeout=60)
        try:
            svc.attempt_second_factor("shared", backup_code, "backup_code")
            outcome["backup"] = "ok"
        except mfa_core.MFAError as exc:
            outcome["backup"] = type(exc).__name__
        barrier.wait(timeout=60)
        try:
            svc.attempt_second_factor("shared", pyotp.TOTP(totp_secret).at(now))
            outcome["totp"] = "ok"
        except mfa_core.MFAError as exc:
            outcome["totp"] = type(exc).__name__
        for n in range(failures):  # each from its own address: no per-source wait
            try:
                svc.attempt_password("counted", "wrong", source=f"192.0.2.{worker}/{n}")
            except mfa_core.InvalidCode:
                pass
        for n in range(users_each):
            user = f"p{worker}-u{n}"
            secret = svc.create_totp(user).secret
            svc.verify_totp(user, pyotp.TOTP(secret).at(now))
        outcome["done"] = True
    except BaseException as exc:  # reported to the test, which fails on it
        outcome["error"] = repr(exc)
    results.put(outcome)


def remind(data_dir: str, backend: str, now: float, barrier, results, smtp_port: int) -> None:
    """One reminder run (``send_policy_reminders``), started with another process at once;
    mails through the test's loopback SMTP server."""
    from mfa_core import notify
    outcome: dict = {}
    try:
        env = {"MFA_PORTAL_SMTP_HOST": "127.0.0.1", "MFA_PORTAL_SMTP_PORT": str(smtp_port),
               "MFA_PORTAL_SMTP_SENDER": "MFA Portal <mfa@example.org>"}
        notifier = notify.from_settings(data_dir, env, secrets_path=None)
        svc = mfa_core.open_service(data_dir, clock=lambda: now, environ={}, backend=backend,
                                    notifier=notifier,
                                    database_url=os.environ.get("MFA_PORTAL_TEST_DATABASE_URL")
                                    if backend == "postgres" else None)
        barrier.wait(timeout=60)
        outcome["sent"] = svc.send_policy_reminders()
    except BaseException as exc:  # reported to the test, which fails on it
        outcome["error"] = repr(exc)
    results.put(outcome)


def outcomes_of(procs, results, timeout: float = 120) -> list:
    """Start the worker processes and collect one outcome each from ``results`` (a queue); none
    is left running afterwards."""
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
