"""PAM: ``python -m mfa_core pam`` on its own, then under pam_exec through a real PAM stack (pamtester).

The pamtester journey writes /etc/pam.d/mfa-portal-test (removed afterwards):

    auth    required pam_exec.so expose_authtok quiet <python> -m mfa_core pam --url URL --key-file FILE
    account required pam_permit.so

and runs ``pamtester mfa-portal-test alice authenticate`` with the code on
standard input, as sshd's conversation would pass it. Without pamtester (or
root) it skips with the install hint; with MFA_PORTAL_REQUIRE_PAM=1 (CI) it
fails instead.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mfa_core.cli import main as cli_main

from .conftest import REPO, free_port, fresh_code

PAM_SERVICE = "mfa-portal-test"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
HINT = "the PAM journey needs pamtester: `sudo apt-get install pamtester` (and root, to write /etc/pam.d)"


def pam_env(user: str | None = "alice") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFA_PORTAL_", "PAM_"))}
    env["PYTHONPATH"] = str(REPO)
    if user is not None:
        env["PAM_USER"] = user
    return env


@pytest.fixture(scope="module")
def alice(portal) -> str:
    """The demo user pamtester signs in; only its journey spends alice's codes."""
    secret, _ = portal.enroll("alice")
    return secret


@pytest.fixture(scope="module")
def amy(portal) -> str:
    """For the command on its own (a code spent here would be a replay for alice's journey)."""
    secret, _ = portal.enroll("amy")
    return secret


@pytest.fixture(scope="module")
def key_file(portal, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pam") / "pam.key"
    path.write_text(portal.registry.add("pam") + "\n")
    path.chmod(0o600)
    return path


def run_pam(url: str, key_file: Path, stdin: bytes, user: str | None = "alice",
            *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfa_core", "pam", "--url", url,
                           "--key-file", str(key_file), "--timeout", "5", *extra],
                          input=stdin, capture_output=True, env=pam_env(user), cwd=REPO, timeout=60)


def test_pam_command_accepts_a_right_code_as_pam_exec_passes_it(portal, amy, key_file):
    done = run_pam(portal.url, key_file, fresh_code(amy).encode() + b"\0", "amy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""


def run_pam_here(url: str, key_file: Path, stdin: bytes, user: str | None) -> tuple[int, str]:
    """The same command in this process (faster): (exit status, standard error)."""
    err, out = io.StringIO(), io.StringIO()
    status = cli_main(["pam", "--url", url, "--key-file", str(key_file), "--timeout", "5"],
                      environ=pam_env(user), stdin=io.TextIOWrapper(io.BytesIO(stdin)),
                      stdout=out, stderr=err)
    assert out.getvalue() == ""
    return status, err.getvalue()


def test_pam_command_denies_every_failure_with_one_line(portal, amy, key_file, tmp_path):
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text("mfap_" + "x" * 43)
    wrong_key.chmod(0o600)
    nowhere = f"http://127.0.0.1:{free_port()}"
    cases = {
        "wrong code": (portal.url, key_file, b"000000\n", "amy"),
        "no code": (portal.url, key_file, b"\0", "amy"),
        "unknown user": (portal.url, key_file, b"123456\0", "nobody-pam"),
        "bad key": (portal.url, wrong_key, fresh_code(amy).encode(), "amy"),
        "server down": (nowhere, key_file, fresh_code(amy).encode(), "amy"),
        "no PAM_USER": (portal.url, key_file, b"123456", None),
        "missing key file": (portal.url, tmp_path / "absent", b"123456", "amy"),
        "not a URL": ("ftp://x", key_file, b"123456", "amy"),
    }
    for why, (url, key, stdin, user) in cases.items():
        status, err = run_pam_here(url, key, stdin, user)
        assert status != 0, why
        assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("pam:"), (why, err)


def test_pam_command_refuses_a_key_file_others_can_read(portal, key_file, tmp_path):
    loose = tmp_path / "loose.key"
    loose.write_text(key_file.read_text())
    loose.chmod(0o644)
    status, err = run_pam_here(portal.url, loose, b"123456", "amy")
    assert status == 2 and "chmod 600" in err


@pytest.fixture
def pam_service(key_file):
    """The PAM service file pam_exec reads; returns a function that points it at a URL."""
    problem = None
    if shutil.which("pamtester") is None:
        problem = HINT
    elif os.geteuid() != 0:
        problem = "the PAM journey writes /etc/pam.d: run it as root"
    if problem:
        if os.environ.get("MFA_PORTAL_REQUIRE_PAM") == "1":
            pytest.fail(f"MFA_PORTAL_REQUIRE_PAM=1 but {problem}", pytrace=False)
        pytest.skip(problem)

    def write(url: str) -> None:
        command = (f"{sys.executable} -m mfa_core pam --url {url} --key-file {key_file} "
                   "--timeout 5")
        PAM_FILE.write_text(f"auth required pam_exec.so expose_authtok quiet {command}\n"
                            "account required pam_permit.so\n")

    yield write
    PAM_FILE.unlink(missing_ok=True)


def pamtester(code: str) -> subprocess.CompletedProcess:
    # pam_exec's child gets a clean environment: PYTHONPATH from here would not reach it, so
    # the interpreter runs from the repo (cwd) -- pamtester's working directory is inherited.
    return subprocess.run(["pamtester", PAM_SERVICE, "alice", "authenticate"],
                          input=(code + "\n").encode(), capture_output=True, cwd=REPO, timeout=60)


def test_pamtester_accepts_a_right_code_and_denies_a_wrong_one_and_a_stopped_server(
        portal, alice, pam_service):
    pam_service(portal.url)
    right = pamtester(fresh_code(alice))
    assert right.returncode == 0, (right.stdout, right.stderr)
    assert b"successfully authenticated" in right.stdout + right.stderr

    wrong = pamtester("000000")
    assert wrong.returncode != 0, (wrong.stdout, wrong.stderr)

    pam_service(f"http://127.0.0.1:{free_port()}")  # nothing listens there: a stopped server
    stopped = pamtester(fresh_code(alice))
    assert stopped.returncode != 0, (stopped.stdout, stopped.stderr)
