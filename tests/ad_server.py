"""A throwaway Active Directory for the tests: Debian's Samba AD DC provisioned into a temp dir.

``SambaDC().start()`` runs ``samba-tool domain provision`` (realm TEST.LOCAL,
no DNS) into a temp dir, writes a CA and a server certificate for
127.0.0.1 (``make_tls`` of tests/ldap_server.py), starts ``samba -i -M single``
with only its LDAP service, on 127.0.0.1, using that certificate, and adds a
few people and groups with ``samba-tool`` (a helpdesk group reached through a
nested group, one disabled account, one expired).

Samba's LDAP ports are fixed (389 and 636, 3268 and 3269 for the global
catalog: no setting moves them), and provisioning chowns files, so the server
runs as root only: as another user, or with those ports taken, ``SambaDC()``
raises ``Unavailable`` and the tests skip (or fail when
``MFA_PORTAL_REQUIRE_AD=1``). Its stdin is a pipe: samba ends by itself when
the test run that started it dies (EOF on stdin), and ``--maximum-runtime``
caps it anyway. Nothing is written outside the temp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .ldap_server import make_tls, stop_process, wait_listening

INSTALL_HINT = ("Samba AD DC is not installed: apt-get install samba-ad-dc samba-ad-provision "
                "(CI sets MFA_PORTAL_REQUIRE_AD=1)")
REALM = "TEST.LOCAL"
DOMAIN = "TEST"
BASE = "DC=test,DC=local"
USERS = f"CN=Users,{BASE}"
HOST = "127.0.0.1"
PORTS = (389, 636, 3268, 3269)  # samba's LDAP, LDAPS and global catalog ports: fixed
ADMIN_DN = f"CN=Administrator,{USERS}"
ADMIN_PASSWORD = "Forest-Admin-2026!"
SERVICE = "mfa-portal"
SERVICE_DN = f"CN={SERVICE},{USERS}"
SERVICE_PASSWORD = "Portal-Service-2026!"
HELPDESK = "MFA Helpdesk"
HELPDESK_DN = f"CN={HELPDESK},{USERS}"
TIER_ONE = "Tier One"  # a member of MFA Helpdesk: its members are admins through the nesting
TIER_ONE_DN = f"CN={TIER_ONE},{USERS}"
START_TIMEOUT = 120.0  # seconds provisioning + start may take (a deadline, not a speed assumption)
MAX_RUNTIME = 3 * 3600  # samba ends by itself after this long whatever happens to the test run

# sAMAccountName, password (AD's complexity rules: three kinds of character, not the name),
# given name, surname, groups
PEOPLE = (
    ("alice", "Wonder-Land-41", "Alice", "Example", ()),
    ("carol", "Help-Desk-Tier-1", "Carol", "Nested", (TIER_ONE,)),
    ("dave", "Direct-Member-7", "Dave", "Direct", (HELPDESK,)),
    ("erin", "Gone-Away-2026", "Erin", "Disabled", ()),
    ("frank", "Past-Contract-9", "Frank", "Expired", ()),
)
PASSWORDS = {p[0]: p[1] for p in PEOPLE}


class Unavailable(RuntimeError):
    """Samba cannot run here (not installed, not root, ports taken): the reason, for a skip."""


def find_samba() -> tuple[str, str] | None:
    samba = shutil.which("samba") or ("/usr/sbin/samba" if os.access("/usr/sbin/samba", os.X_OK) else None)
    tool = shutil.which("samba-tool") or ("/usr/bin/samba-tool" if os.access("/usr/bin/samba-tool", os.X_OK) else None)
    if not samba or not tool or not Path("/usr/share/samba/setup/ad-schema").is_dir():
        return None
    return samba, tool


def user_dn(name: str) -> str:
    return f"CN={name},{USERS}"


class SambaDC:
    def __init__(self) -> None:
        found = find_samba()
        if found is None:
            raise Unavailable(INSTALL_HINT)
        if os.geteuid() != 0:
            raise Unavailable("Samba AD DC needs root here: provisioning chowns files and its LDAP "
                              "ports (389, 636) are fixed")
        for port in PORTS:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((HOST, port))
                except OSError:
                    raise Unavailable(f"{HOST}:{port} is taken: another LDAP server runs here") from None
        self.samba, self.tool = found
        self.root = Path(tempfile.mkdtemp(prefix="mfa-samba-"))
        self.dc = self.root / "dc"
        self.conf = self.dc / "etc" / "smb.conf"
        self.sam = self.dc / "private" / "sam.ldb"
        self.url = f"ldap://{HOST}"        # StartTLS
        self.ldaps_url = f"ldaps://{HOST}"
        self.ca_file = self.root / "ca.pem"
        self.proc: subprocess.Popen | None = None
        self.timings: dict[str, float] = {}

    # -- life cycle ----------------------------------------------------------

    def _run(self, argv: list[str], timeout: float = START_TIMEOUT) -> str:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, "HOME": str(self.root)})
        if done.returncode != 0:
            raise subprocess.SubprocessError(
                f"{' '.join(argv[:3])} exited with {done.returncode}: "
                f"{done.stdout.decode(errors='replace')[-2000:]}")
        return done.stdout.decode(errors="replace")

    def tool_run(self, *args: str) -> str:
        """``samba-tool ARGS`` on this domain's database (local, no network)."""
        return self._run([self.tool, *args, "-H", str(self.sam), "-s", str(self.conf)])

    def start(self) -> "SambaDC":
        started = time.monotonic()
        self._run([self.tool, "domain", "provision", f"--realm={REALM}", f"--domain={DOMAIN}",
                   "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
                   f"--adminpass={ADMIN_PASSWORD}", f"--targetdir={self.dc}",
                   f"--option=interfaces={HOST}", "--option=bind interfaces only=yes"])
        self.timings["provision"] = time.monotonic() - started
        ca, cert, key = make_tls(self.root)
        run = self.dc / "run"
        run.mkdir()
        options = {
            "interfaces": HOST, "bind interfaces only": "yes",
            "server services": "ldap",  # no KDC, SMB, NetBIOS, RPC, DNS: just the directory
            "pid directory": run, "ncalrpc dir": run / "ncalrpc",
            "winbindd socket directory": run / "winbindd", "ntp signd socket directory": run / "ntp",
            "log file": self.root / "samba.log",
            "tls enabled": "yes", "tls keyfile": key, "tls certfile": cert, "tls cafile": ca,
        }
        log = open(self.root / "samba.out", "ab")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [self.samba, "-i", "-M", "single", "-s", str(self.conf), f"--maximum-runtime={MAX_RUNTIME}",
             *(f"--option={k}={v}" for k, v in options.items())],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_listening(self.proc, 636, START_TIMEOUT, "samba", self.root / "samba.out")
        self.timings["start"] = time.monotonic() - began
        began = time.monotonic()
        self._load()
        self.timings["people"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- data -----------------------------------------------------------------

    def _load(self) -> None:
        self.tool_run("user", "add", SERVICE, SERVICE_PASSWORD, "--use-username-as-cn")
        for group in (HELPDESK, TIER_ONE):
            self.tool_run("group", "add", group)
        self.tool_run("group", "addmembers", HELPDESK, TIER_ONE)
        for name, password, given, surname, groups in PEOPLE:
            self.add_user(name, password, given=given, surname=surname)
            for group in groups:
                self.tool_run("group", "addmembers", group, name)
        self.tool_run("user", "disable", "erin")
        # Expired at the start of this century (setexpiry counts days from now, and the
        # tests' clock is their own): accountExpires in FILETIME, 2000-01-01.
        self.modify(user_dn("frank"), {"accountExpires": str((946684800 + 11644473600) * 10_000_000)})

    def add_user(self, name: str, password: str, *, given: str = "Test", surname: str = "User") -> str:
        self.tool_run("user", "add", name, password, "--use-username-as-cn", f"--given-name={given}",
                      f"--surname={surname}", f"--mail-address={name}@test.local")
        return user_dn(name)

    def admin(self):
        """An ldap3 connection over LDAPS bound as the domain's Administrator."""
        import ssl

        import ldap3
        tls = ldap3.Tls(ca_certs_file=str(self.ca_file), validate=ssl.CERT_REQUIRED)
        return ldap3.Connection(ldap3.Server(self.ldaps_url, tls=tls, connect_timeout=10, get_info=ldap3.NONE),
                                ADMIN_DN, ADMIN_PASSWORD, auto_bind=True, receive_timeout=30,
                                raise_exceptions=True)

    def modify(self, dn: str, changes: dict[str, str]) -> None:
        import ldap3
        conn = self.admin()
        try:
            conn.modify(dn, {k: [(ldap3.MODIFY_REPLACE, [v])] for k, v in changes.items()})
        finally:
            conn.unbind()


def ad_environ(server: SambaDC, **extra: str) -> dict[str, str]:
    """The settings an Active Directory deployment would give (LDAPS, the test CA, the AD preset)."""
    env = {
        "MFA_PORTAL_LDAP_URL": server.ldaps_url,
        "MFA_PORTAL_LDAP_PRESET": "active-directory",
        "MFA_PORTAL_LDAP_BIND_DN": SERVICE_DN,
        "MFA_PORTAL_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "MFA_PORTAL_LDAP_BASE_DN": BASE,
        "MFA_PORTAL_LDAP_CA_FILE": str(server.ca_file),
        "MFA_PORTAL_LDAP_ADMIN_GROUP": HELPDESK_DN,
        "MFA_PORTAL_LDAP_TIMEOUT": "10",
    }
    env.update(extra)
    return env
