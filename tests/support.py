"""Test helpers: the injected clock, authenticator codes, loopback SMTP servers, leftover temp files."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import socket
import subprocess
import tempfile
import threading
import time
from typing import Iterator

import pyotp
import pytest

import mfa_core

# A step boundary + 10 s, so that "now" sits well inside a 30-second step (2023-11-14T22:13:40Z).
T0 = 56_666_667 * 30 + 10  # 1_700_000_020


class FakeClock:
    """A clock the test moves by hand; the service calls it for "now"."""

    def __init__(self, start: float = T0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def code_for(secret: str, timestamp: float) -> str:
    """What an authenticator app shows at ``timestamp`` (pyotp, independent of the engine)."""
    return pyotp.TOTP(secret).at(timestamp)


def enable_totp(svc: mfa_core.MFAService, clock: FakeClock, username: str) -> str:
    """Enroll and verify ``username``; returns the secret. Leaves the clock one step on."""
    secret = svc.create_totp(username).secret
    svc.verify_totp(username, code_for(secret, clock()))
    clock.advance(30)
    return secret


class Inbox:
    """aiosmtpd handler keeping every message that arrives (a real SMTP server on loopback)."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages


class HeldInbox(Inbox):
    """An SMTP server that accepts a message only once ``release`` is set (a slow relay)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.arrived.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


@contextlib.contextmanager
def smtp_server(handler: Inbox) -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on a free loopback port, delivering to ``handler``."""
    from aiosmtpd.controller import Controller
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    try:
        yield handler
    finally:
        if isinstance(handler, HeldInbox):
            handler.release.set()
        controller.stop()


def leftover_temp_file(directory, target: str, age: float) -> str:
    """A temp file as ``write_atomic`` names them (a killed writer's), last touched ``age`` s ago."""
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=directory, prefix=f".{target}.", suffix=".tmp")
    os.write(fd, b'{"half": ')
    os.close(fd)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_users(data_dir, passwords: dict[str, str], *, rounds: int = 4) -> None:
    """A users.yaml with these users and passwords, hashed at a low bcrypt cost (fast tests).

    The portal's own hashes cost 2^12; the engine checks any bcrypt hash the
    same way, so the rules under test do not depend on the cost.
    """
    import bcrypt
    import yaml
    os.makedirs(data_dir, exist_ok=True)
    users = {name: {"email": f"{name}@example.com", "first_name": name.capitalize(),
                    "last_name": "Example", "roles": ["user"],
                    "password": bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds)).decode()}
             for name, pw in passwords.items()}
    with open(os.path.join(data_dir, "users.yaml"), "w", encoding="utf-8") as fh:
        yaml.safe_dump({"credentials": {"usernames": users}}, fh)
    # A test on PostgreSQL (the postgres_url fixture sets this): the directory is the database's.
    url = os.environ.get("MFA_PORTAL_TEST_DATABASE_URL")
    if url:
        from mfa_core.storage.postgres import PostgresStore
        from mfa_core.users import DatabaseUserDirectory
        store = PostgresStore(url)
        try:
            DatabaseUserDirectory(store).import_entries(users)
        finally:
            store.close()


@contextlib.contextmanager
def running(make, *, require: str, what: str, hint: str | None = None, close: str = "stop",
            missing: tuple[type[BaseException], ...] = (FileNotFoundError,),
            broken: tuple[type[BaseException], ...] = (subprocess.SubprocessError,)):
    """A real server the tests start: ``make()``, then ``.start()``; stopped afterwards (its
    ``close`` method). Not installed here (``make`` raised one of ``missing``): the tests skip
    with ``hint`` (else the exception's text), or fail when the environment's ``require`` is
    "1" (as in CI). Installed but not starting (``broken``): they fail with its output."""
    try:
        server = make()
    except missing as exc:
        reason = hint or str(exc)
        if os.environ.get(require) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        server.start()
    except broken as exc:
        getattr(server, close)()
        output = getattr(exc, "output", b"") or b""
        pytest.fail(f"{what} did not start: {exc}\n{output.decode(errors='replace')}")
    try:
        yield server
    finally:
        getattr(server, close)()
