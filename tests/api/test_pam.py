"""PAM: ``python -m mfa_core pam`` on its own, then under pam_exec through a real PAM stack (pamtester).

The pamtester journey writes /etc/pam.d/mfa-portal-test (removed afterwards):

    auth    required pam_exec.so expose_authtok quiet <python> -m mfa_core pam --url URL --key-file FILE
    account required pam_permit.so

and runs ``pamtester mfa-portal-test alice authenticate`` with the code on
standard input, as sshd's conversation would pass it. Without pamtester (or
root) it skips with the install hint; with MFA_PORTAL_REQUIRE_PAM=1 (CI) it
fails instead.

Every command here runs as the README installs it: the package built from the checkout
(``pip install``, no build isolation, no dependencies) into a fresh venv, run from a
working directory that is not the checkout and without PYTHONPATH, so a module the package
leaves out fails here as it would under sshd. The fresh venv reaches the dev venv's
site-packages (the dependencies) through a .pth file, never the checkout.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from mfa_core.cli import main as cli_main

from .conftest import REPO, free_port, fresh_code

PAM_SERVICE = "mfa-portal-test"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
HINT = "the PAM journey needs pamtester: `sudo apt-get install pamtester` (and root, to write /etc/pam.d)"


def pam_env(user: str | None = "alice") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MFA_PORTAL_", "PAM_")) and k != "PYTHONPATH"}
    if user is not None:
        env["PAM_USER"] = user
    return env


def not_shipped(folder: str, names: list[str]) -> set[str]:
    """What the copy of the checkout leaves out: the venv, runtime data, tests, build leftovers."""
    top = Path(folder) == REPO
    return {n for n in names
            if n in ("__pycache__", "build", "dist") or n.endswith(".egg-info")
            or (top and n in (".git", ".venv", "data", "tests", "test-artifacts", ".pytest_cache"))}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> "Installed":
    """The package installed into a fresh venv; its python and a working directory outside the checkout."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"  # a copy: the build writes build/ and *.egg-info beside the sources
    shutil.copytree(REPO, source, ignore=not_shipped)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    (site / "dev-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")  # the dependencies
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                           "--no-deps", "--no-build-isolation", "--no-index", str(source)],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(python=python, bin=venv / "bin", site=site, cwd=elsewhere)


class Installed:
    def __init__(self, *, python: Path, bin: Path, site: Path, cwd: Path) -> None:
        self.python, self.bin, self.site, self.cwd = python, bin, site, cwd


def test_the_installed_package_holds_every_module_of_the_engine_and_services(installed):
    for package in ("mfa_core", "mfa_services"):
        shipped = {p.relative_to(installed.site).as_posix() for p in (installed.site / package).rglob("*.py")}
        source = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py")}
        assert source - shipped == set()
    assert (installed.site / "mfa_services" / "radius" / "dictionary").is_file()
    where = subprocess.run([str(installed.python), "-c",
                            "import sys, mfa_core.cli, mfa_core.storage.postgres, mfa_core.dbcopy, "
                            "mfa_services.radius.server; "
                            "print(mfa_core.__file__); print('streamlit' in sys.modules)"],
                           capture_output=True, text=True, cwd=installed.cwd, env=pam_env(None), timeout=60)
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines() == [str(installed.site / "mfa_core" / "__init__.py"), "False"]


def test_the_installed_console_script_and_module_run_outside_the_checkout(installed):
    for command in ([str(installed.bin / "mfa-portal"), "--help"],
                    [str(installed.python), "-m", "mfa_core", "pam", "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, cwd=installed.cwd,
                              env=pam_env(None), timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        assert "usage:" in done.stdout


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


def run_pam(installed: Installed, url: str, key_file: Path, stdin: bytes, user: str | None = "alice",
            *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed.python), "-m", "mfa_core", "pam", "--url", url,
                           "--key-file", str(key_file), "--timeout", "5", *extra],
                          input=stdin, capture_output=True, env=pam_env(user), cwd=installed.cwd,
                          timeout=60)


def test_pam_command_accepts_a_right_code_as_pam_exec_passes_it(portal, amy, key_file, installed):
    done = run_pam(installed, portal.url, key_file, fresh_code(amy).encode() + b"\0", "amy")
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
def pam_service(key_file, installed):
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
        command = (f"{installed.python} -m mfa_core pam --url {url} --key-file {key_file} "
                   "--timeout 5")
        PAM_FILE.write_text(f"auth required pam_exec.so expose_authtok quiet {command}\n"
                            "account required pam_permit.so\n")

    yield write
    PAM_FILE.unlink(missing_ok=True)


def pamtester(code: str, cwd: Path) -> subprocess.CompletedProcess:
    # pam_exec's child gets a clean environment and pamtester's working directory (never the
    # checkout here, as under sshd): only the installed package can answer.
    return subprocess.run(["pamtester", PAM_SERVICE, "alice", "authenticate"],
                          input=(code + "\n").encode(), capture_output=True, cwd=cwd, timeout=60)


def test_pamtester_accepts_a_right_code_and_denies_a_wrong_one_and_a_stopped_server(
        portal, alice, pam_service, installed):
    pam_service(portal.url)
    right = pamtester(fresh_code(alice), installed.cwd)
    assert right.returncode == 0, (right.stdout, right.stderr)
    assert b"successfully authenticated" in right.stdout + right.stderr

    wrong = pamtester("000000", installed.cwd)
    assert wrong.returncode != 0, (wrong.stdout, wrong.stderr)

    pam_service(f"http://127.0.0.1:{free_port()}")  # nothing listens there: a stopped server
    stopped = pamtester(fresh_code(alice), installed.cwd)
    assert stopped.returncode != 0, (stopped.stdout, stopped.stderr)
