"""A throwaway OpenLDAP server for the tests: ``slapd`` in a temp dir on free loopback ports.

``SlapdServer().start()`` writes a CA and a server certificate (made with
``cryptography``), a ``slapd.conf`` (mdb database ``dc=example,dc=com``, the
``memberof`` and ``ppolicy`` overlays, TLS for StartTLS and ldaps, a small
schema carrying Active Directory's account attributes), checks it with
``slaptest``, starts ``slapd`` in the foreground on
``ldap://127.0.0.1:PORT`` and ``ldaps://127.0.0.1:PORT2`` and loads a few
users and groups. ``stop()``/``start()`` again keep the same ports and data
(the "directory stopped mid-run" tests); ``close()`` removes it all.

Runs as root without ``-u`` (the temp dir is root's) or as the current user.
``find_slapd()`` is None when slapd is not installed: the tests that need it
skip with the apt hint, or fail when ``MFA_PORTAL_REQUIRE_LDAP=1`` (CI).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

INSTALL_HINT = "OpenLDAP is not installed: apt-get install slapd ldap-utils (CI sets MFA_PORTAL_REQUIRE_LDAP=1)"
BASE = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "admin-secret"
SERVICE_DN = f"cn=portal,ou=services,{BASE}"
SERVICE_PASSWORD = "portal-service-secret"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
HELPDESK_DN = f"cn=helpdesk,{GROUPS}"
POLICY_DN = f"cn=default,ou=policies,{BASE}"
STRICT_POLICY_DN = f"cn=strict,ou=policies,{BASE}"  # like AD's default: 10 wrong passwords lock
TIMED_POLICY_DN = f"cn=timed,ou=policies,{BASE}"  # a lock ends by itself after 300 s
MODULE_DIRS = ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib/aarch64-linux-gnu/ldap",
               "/usr/local/libexec/openldap")
SCHEMA_DIR = "/etc/ldap/schema"
START_TIMEOUT = 60.0  # seconds slapd may take to listen (a deadline, not a speed assumption)

# The few attributes of Active Directory's user accounts the portal reads, under a
# private arc (never a real directory's OIDs): enough to test the AD rules on slapd.
AD_SCHEMA = """
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.2 NAME 'accountExpires'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.3 NAME 'lockoutTime'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.4 NAME 'pwdLastSet'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.5 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.6 NAME 'objectGUID'
  EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.7 NAME 'msDS-User-Account-Control-Computed'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'mfaTestAdAccount' AUXILIARY
  MAY ( userAccountControl $ accountExpires $ lockoutTime $ pwdLastSet $ sAMAccountName $ objectGUID $
        msDS-User-Account-Control-Computed ) )
"""

# uid, password, given name, surname, groups
USERS = (
    ("alice", "alice-directory-1", "Alice", "Example", ()),
    ("bob", "bob-directory-1", "Bob", "Example", ()),
    ("carol", "carol-directory-1", "Carol", "Helpdesk", ("helpdesk",)),
    ("dave", "dave-directory-1", "Dave", "Example", ("staff",)),
)


def find_slapd() -> str | None:
    for candidate in (shutil.which("slapd"), "/usr/sbin/slapd", "/usr/local/libexec/slapd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_modules() -> str | None:
    for d in MODULE_DIRS:
        if Path(d, "back_mdb.so").exists() or Path(d, "ppolicy.so").exists():
            return d
    return None


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, name: str, log: Path) -> None:
    """Until ``proc`` (a server) accepts connections on 127.0.0.1:``port``; raises
    SubprocessError with the end of its ``log`` if it exits first, or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise subprocess.SubprocessError(
                f"{name} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise subprocess.SubprocessError(f"{name} did not listen in time") from None
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen | None) -> None:
    """Terminate a server started by the tests (killed if it does not end within 30 s)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def make_tls(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MFA Portal test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = root / "ca.pem", root / "server.pem", root / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    os.chmod(key_file, 0o600)
    return ca_file, cert_file, key_file


class SlapdServer:
    def __init__(self) -> None:
        slapd = find_slapd()
        modules = find_modules()
        if not slapd or not modules or not shutil.which("slaptest") and not Path("/usr/sbin/slaptest").exists():
            raise FileNotFoundError(INSTALL_HINT)
        self.slapd, self.modules = slapd, modules
        self.slaptest = shutil.which("slaptest") or "/usr/sbin/slaptest"
        self.root = Path(tempfile.mkdtemp(prefix="mfa-slapd-"))
        self.port, self.tls_port = free_port(), free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}"
        self.ca_file = self.root / "ca.pem"
        self.proc: subprocess.Popen | None = None
        self._configured = False

    # -- life cycle ----------------------------------------------------------

    def _configure(self) -> None:
        ca, cert, key = make_tls(self.root)
        (self.root / "ad.schema").write_text(AD_SCHEMA)
        (self.root / "db").mkdir()
        includes = "\n".join(f"include {SCHEMA_DIR}/{name}.schema"
                             for name in ("core", "cosine", "inetorgperson", "nis"))
        conf = f"""{includes}
include {self.root}/ad.schema
modulepath {self.modules}
moduleload back_mdb
moduleload memberof
moduleload ppolicy
pidfile {self.root}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
sizelimit 500

database mdb
maxsize 104857600
suffix "{BASE}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {self.root}/db
index objectClass eq
index uid,cn,mail,sAMAccountName eq,sub
index member,memberOf eq
# As a deployment should: the portal's account may page through everyone (users list), while
# a search that is not paged still stops at the soft limit above.
limits dn.exact="{SERVICE_DN}" size.soft=500 size.hard=unlimited size.prtotal=unlimited
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay ppolicy
ppolicy_default "{POLICY_DN}"
ppolicy_use_lockout
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by anonymous auth
"""
        (self.root / "slapd.conf").write_text(conf)
        # -u: the empty database is not opened (slaptest opens it read-only); slapd
        # itself then runs from slapd.conf (no cn=config tree needed for a throwaway server).
        subprocess.run([self.slaptest, "-u", "-f", str(self.root / "slapd.conf")],
                       check=True, timeout=60, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._configured = True

    def start(self) -> "SlapdServer":
        if not self._configured:
            self._configure()
        log = open(self.root / "slapd.log", "ab")
        self.proc = subprocess.Popen(
            [self.slapd, "-d", "0", "-f", str(self.root / "slapd.conf"),
             "-h", f"{self.url}/ {self.ldaps_url}/"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_listening(self.proc, self.port, START_TIMEOUT, "slapd", self.root / "slapd.log")
        if not getattr(self, "_loaded", False):
            self._load()
            self._loaded = True
        return self

    def stop(self) -> None:
        """Stop slapd (data and ports stay for start())."""
        stop_process(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- data -----------------------------------------------------------------

    def admin(self):
        """An ldap3 connection bound as the directory's manager."""
        import ldap3
        conn = ldap3.Connection(ldap3.Server(self.url, connect_timeout=10), ADMIN_DN, ADMIN_PASSWORD,
                                auto_bind=True, receive_timeout=30, raise_exceptions=True)
        return conn

    def _load(self) -> None:
        with self._conn(None) as c:
            c.add(BASE, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
            for ou in ("people", "groups", "services", "policies"):
                c.add(f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
            c.add(SERVICE_DN, ["organizationalRole", "simpleSecurityObject"],
                  {"cn": "portal", "userPassword": SERVICE_PASSWORD})
            # Generous: the portal's own throttle must act long before this one.
            c.add(POLICY_DN, ["person", "pwdPolicy"],
                  {"cn": "default", "sn": "policy", "pwdAttribute": "userPassword", "pwdLockout": "TRUE",
                   "pwdMaxFailure": "50", "pwdFailureCountInterval": "0"})
            c.add(STRICT_POLICY_DN, ["person", "pwdPolicy"],
                  {"cn": "strict", "sn": "policy", "pwdAttribute": "userPassword", "pwdLockout": "TRUE",
                   "pwdMaxFailure": "10", "pwdFailureCountInterval": "600"})
            c.add(TIMED_POLICY_DN, ["person", "pwdPolicy"],
                  {"cn": "timed", "sn": "policy", "pwdAttribute": "userPassword", "pwdLockout": "TRUE",
                   "pwdMaxFailure": "10", "pwdLockoutDuration": "300"})
            for uid, password, given, sn, _groups in USERS:
                self.add_user(uid, password, given=given, sn=sn, conn=c)
            for group in ("helpdesk", "staff"):
                members = [self.user_dn(u[0]) for u in USERS if group in u[4]]
                c.add(f"cn={group},{GROUPS}", ["groupOfNames"], {"cn": group, "member": members})

    @staticmethod
    def user_dn(uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    def add_user(self, uid: str, password: str, *, given: str = "Test", sn: str = "User",
                 ad: dict | None = None, conn=None) -> str:
        """Add a person (inetOrgPerson; with ``ad`` attributes also the AD-shaped class); its DN."""
        dn = self.user_dn(uid)
        classes = ["inetOrgPerson"]
        attrs = {"uid": uid, "cn": f"{given} {sn}", "givenName": given, "sn": sn,
                 "mail": f"{uid}@example.com", "userPassword": password}
        if ad is not None:
            classes.append("mfaTestAdAccount")
            attrs.update({"sAMAccountName": uid, "objectGUID": uuid.uuid4().bytes_le, **ad})
        with self._conn(conn) as c:
            c.add(dn, classes, attrs)
        return dn

    def modify(self, dn: str, changes: dict) -> None:
        """Replace attributes (value None deletes the attribute)."""
        import ldap3
        mods = {k: ([(ldap3.MODIFY_DELETE, [])] if v is None else [(ldap3.MODIFY_REPLACE, v if isinstance(v, list) else [v])])
                for k, v in changes.items()}
        with self._conn(None) as c:
            c.modify(dn, mods)

    def add_member(self, group_dn: str, member_dn: str) -> None:
        import ldap3
        with self._conn(None) as c:
            c.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})

    def remove_member(self, group_dn: str, member_dn: str) -> None:
        import ldap3
        with self._conn(None) as c:
            c.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [member_dn])]})

    def rename(self, dn: str, new_rdn: str) -> str:
        with self._conn(None) as c:
            c.modify_dn(dn, new_rdn)
        return f"{new_rdn},{dn.split(',', 1)[1]}"

    def delete(self, dn: str) -> None:
        with self._conn(None) as c:
            c.delete(dn)

    @contextlib.contextmanager
    def _conn(self, conn):
        if conn is not None:
            yield conn
            return
        c = self.admin()
        try:
            yield c
        finally:
            c.unbind()


def ldap_environ(server: "SlapdServer", **extra: str) -> dict[str, str]:
    """The settings a deployment would give, pointing at the test slapd (StartTLS, the test CA)."""
    env = {
        "MFA_PORTAL_LDAP_URL": server.url,
        "MFA_PORTAL_LDAP_PRESET": "openldap",
        "MFA_PORTAL_LDAP_BIND_DN": SERVICE_DN,
        "MFA_PORTAL_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "MFA_PORTAL_LDAP_BASE_DN": BASE,
        "MFA_PORTAL_LDAP_CA_FILE": str(server.ca_file),
        "MFA_PORTAL_LDAP_ADMIN_GROUP": HELPDESK_DN,
        "MFA_PORTAL_LDAP_TIMEOUT": "5",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def engines_on(data_dir, clock, env: dict[str, str]):
    """``make(**env overrides)`` -> an engine on the directory ``env`` names, the developer's own
    secrets.toml never read; every engine's directory connections closed afterwards."""
    import mfa_core
    from mfa_core.directory import config as ldap_config
    opened = []

    def make(**extra: str):
        original = ldap_config.SECRETS_FILE
        ldap_config.SECRETS_FILE = None
        try:
            svc = mfa_core.open_service(data_dir, clock=clock, environ={**env, **extra})
        finally:
            ldap_config.SECRETS_FILE = original
        opened.append(svc)
        return svc
    try:
        yield make
    finally:
        for svc in opened:
            backend = getattr(svc.directory, "backend", None)
            if backend is not None:
                backend.close()
