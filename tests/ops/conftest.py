"""Fixtures for the operations tests: the CLI in a subprocess, users on file.

clock, data_dir and svc (the engine on the default backend, as the CLI runs it)
come from tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfa_core.users import UserDirectory

REPO = Path(__file__).resolve().parents[2]
from ..support import T0, FakeClock, code_for, enable_totp  # noqa: F401  (re-exported)


def snapshot(data_dir: Path) -> dict[str, str]:
    """Every file under the data dir with its content hash (empty lock files excluded)."""
    if not data_dir.exists():
        return {}
    return {str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data_dir.rglob("*")) if p.is_file() and p.suffix != ".lock"}


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a CLI run: no SMTP or key settings leak in from the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_PORTAL_")}
    env.update(PYTHONPATH=str(REPO), MFA_PORTAL_DATA_DIR=str(data_dir), MFA_PORTAL_ACTOR="ops-test",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    data_dir: Path
    cwd: Path

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60) -> Result:
        proc = subprocess.run([sys.executable, "-m", "mfa_core", *args], input=input,
                              capture_output=True, text=True, cwd=self.cwd, timeout=timeout,
                              env=env or cli_env(self.data_dir))
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mfa_core", *args], cwd=self.cwd,
                                env=cli_env(self.data_dir), **kwargs)


@pytest.fixture
def cli(data_dir: Path, tmp_path: Path) -> Cli:
    return Cli(data_dir, tmp_path)


@pytest.fixture
def directory(data_dir: Path) -> UserDirectory:
    """alice and bob (users, with mail addresses) and admin (helpdesk)."""
    users = UserDirectory(data_dir)
    users.add("alice", "alice-pass-1", name="Alice Example", email="alice@example.com")
    users.add("bob", "bob-pass-12", name="Bob Example", email="bob@example.com")
    users.add("admin", "admin-pass-1", name="Helpdesk Admin", email="admin@example.com",
              roles=["user", "admin"])
    return users
