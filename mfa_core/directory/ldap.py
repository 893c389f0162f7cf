"""The company directory over LDAP (OpenLDAP, Active Directory) with ``ldap3``.

The only module of the engine that imports ldap3. A pool of connections
bound as the portal's service account does the searches; a password is
checked by a bind as the user's DN on a connection of its own, never on a
pooled one. Servers are tried in the order configured; each connect and each
operation has the configured timeout; anything but an answer from a server
raises DirectoryUnavailable (fail closed). The typed name is escaped per RFC
4515 before it goes into a filter; an empty password never reaches a bind
(an unauthenticated bind "succeeds").
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import ssl
import threading
import time
import uuid
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from ..users import ADMIN_ROLE
from .base import DirectoryAccount, DirectoryUnavailable, normalize_dn
from .config import LdapSettings

log = logging.getLogger("mfa_core.directory")

POOL_SIZE = 4                  # service connections kept open
INVALID_CREDENTIALS = 49
SIZE_LIMIT_EXCEEDED = 4
NO_SUCH_OBJECT = 32
AD_NESTED_MEMBER = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN
UF_ACCOUNTDISABLE = 0x0002
UF_LOCKOUT = 0x0010
UF_PASSWORD_EXPIRED = 0x800000
AD_NEVER = (0, 0x7FFFFFFFFFFFFFFF)
_FILETIME_EPOCH = 11644473600  # seconds from 1601-01-01 to 1970-01-01


class LdapBackend:
    """Searches and binds against the configured servers. Safe to share between threads."""

    def __init__(self, settings: LdapSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        tls = None
        if any(urlsplit(u).scheme == "ldaps" for u in settings.urls) or settings.start_tls:
            tls = ldap3.Tls(ca_certs_file=settings.ca_file, validate=ssl.CERT_REQUIRED,
                            version=ssl.PROTOCOL_TLS_CLIENT)
        self._tls = tls
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()
        self.user_binds = 0  # binds as a user's DN (the tests count them)
        self.dummy_binds = 0  # binds for unknown names (as costly as a user's)

    # -- connections ---------------------------------------------------------

    def _connect(self, user: str, password: str) -> tuple[ldap3.Connection | None, int]:
        """A connection bound as ``user`` on the first server that answers: (conn, 0), or
        (None, result code) when a server answered but refused the bind.

        Raises DirectoryUnavailable when no server answers.
        """
        problems: list[str] = []
        for url in self.settings.urls:
            # A new Server each time: ldap3 remembers an address that failed once as
            # unavailable, and a directory back from a restart must be used at once.
            server = ldap3.Server(url, tls=self._tls, connect_timeout=self.settings.timeout,
                                  get_info=ldap3.NONE)
            conn = ldap3.Connection(server, user=user, password=password, read_only=True,
                                    receive_timeout=max(1, math.ceil(self.settings.timeout)), raise_exceptions=False,
                                    auto_referrals=False, return_empty_attributes=False)
            try:
                conn.open()
                if server.ssl is False and self.settings.start_tls and not conn.start_tls():
                    raise LDAPException(f"StartTLS refused: {conn.result.get('description')}")
                if conn.bind():
                    return conn, 0
                code = int(conn.result.get("result", -1))
                _close(conn)
                return None, code
            except Exception as exc:  # noqa: BLE001 - ldap3 raises more than LDAPException: fail closed
                problems.append(f"{server.host}:{server.port}: {type(exc).__name__}: {exc}")
                _close(conn)
        raise DirectoryUnavailable("; ".join(problems) or "no server configured")

    def _service(self) -> ldap3.Connection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        conn, code = self._connect(self.settings.bind_dn, self.settings.bind_password)
        if conn is None:
            raise DirectoryUnavailable(f"the portal's service account ({self.settings.bind_dn}) "
                                       f"was refused (result {code})")
        return conn

    def _give_back(self, conn: ldap3.Connection) -> None:
        if self._pool.qsize() < POOL_SIZE:
            self._pool.put(conn)
        else:
            _close(conn)

    def close(self) -> None:
        while True:
            try:
                _close(self._pool.get_nowait())
            except queue.Empty:
                return

    def _search(self, base: str, search_filter: str, attributes: Sequence[str], *,
                scope=ldap3.SUBTREE, size_limit: int = 0, paged_size: int | None = None) -> list[dict]:
        """Entries (dn, raw attributes), on a pooled service connection; one retry on a
        fresh connection when the pooled one broke (a server restarted)."""
        for attempt in (1, 2):
            conn = self._service()
            try:
                ok = conn.search(base, search_filter, scope, attributes=list(attributes),
                                 size_limit=size_limit, time_limit=max(1, int(self.settings.timeout)),
                                 paged_size=paged_size)
            except Exception as exc:  # noqa: BLE001 - a broken connection, whatever ldap3 raised
                _close(conn)
                if attempt == 2:
                    raise DirectoryUnavailable(f"search failed: {type(exc).__name__}: {exc}") from exc
                continue
            code = int(conn.result.get("result", -1))
            if not ok and code not in (0, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT):
                _close(conn)
                if attempt == 2:
                    raise DirectoryUnavailable(f"search refused: result {code} "
                                               f"{conn.result.get('description')}")
                continue
            found = [{"dn": r["dn"], "raw": r.get("raw_attributes") or {}}
                     for r in (conn.response or []) if r.get("type") == "searchResEntry"]
            self._give_back(conn)
            return found
        raise DirectoryUnavailable("search failed")  # not reached

    # -- the interface -----------------------------------------------------------

    def user_filter(self, username: str) -> str:
        """The filter that finds ``username``: the typed name escaped per RFC 4515."""
        attr = self.settings.preset.login_attribute
        return f"(&{self.settings.filter}({attr}={escape_filter_chars(username)}))"

    def find(self, username: str) -> DirectoryAccount | None:
        """The person whose login name is ``username`` (exactly one entry), or None."""
        found = self._search(self.settings.base_dn, self.user_filter(username),
                             self.settings.preset.attributes, size_limit=2)
        if len(found) != 1:
            return None  # unknown, or ambiguous: never guess which one
        return self._account(found[0])

    def find_by_id(self, stable_id: str) -> DirectoryAccount | None:
        """The person whose entryUUID / objectGUID is ``stable_id``, or None."""
        attr = self.settings.preset.id_attribute
        if attr == "objectGUID":
            value = escape_filter_chars(uuid.UUID(stable_id).bytes_le)
        else:
            value = escape_filter_chars(stable_id)
        found = self._search(self.settings.base_dn, f"(&{self.settings.filter}({attr}={value}))",
                             self.settings.preset.attributes, size_limit=2)
        return self._account(found[0]) if len(found) == 1 else None

    def search(self, query: str, limit: int = 25) -> list[DirectoryAccount]:
        """People whose login name, name or mail contains ``query``: at most ``limit``,
        searched on the server (paged), never the whole directory."""
        p = self.settings.preset
        needle = escape_filter_chars((query or "").strip())
        if needle:
            parts = "".join(f"({a}=*{needle}*)" for a in (p.login_attribute, "cn", p.email_attribute))
            flt = f"(&{self.settings.filter}(|{parts}))"
        else:
            flt = self.settings.filter
        found = self._search(self.settings.base_dn, flt, p.attributes, size_limit=limit,
                             paged_size=min(limit, 500))
        return sorted((self._account(e) for e in found[:limit]), key=lambda a: a.username)

    def admins(self, limit: int = 1000) -> list[DirectoryAccount]:
        """The members of the admin group (at any depth with nested groups), at most ``limit``;
        none without an admin group."""
        group = self.settings.admin_group
        if not group:
            return []
        rule = f":{AD_NESTED_MEMBER}:" if self.settings.preset.nested_groups else ""
        flt = f"(&{self.settings.filter}(memberOf{rule}={escape_filter_chars(group)}))"
        found = self._search(self.settings.base_dn, flt, self.settings.preset.attributes,
                             size_limit=limit, paged_size=min(limit, 500))
        return sorted((self._account(e) for e in found[:limit]), key=lambda a: a.username)

    def authenticate(self, dn: str, password: str) -> bool:
        """True when ``password`` binds as ``dn``. Raises DirectoryUnavailable when no server answers."""
        if not password or not dn:
            return False  # an empty password would be an unauthenticated bind: it "succeeds"
        with self._lock:
            self.user_binds += 1
        conn, _code = self._connect(dn, password)
        if conn is None:
            return False
        _close(conn)
        return True

    def dummy_bind(self, password: str) -> bool:
        """A bind as a DN that no entry has under the base (the server refuses it as it refuses
        a wrong password; no account's lockout counts it). Raises DirectoryUnavailable."""
        if not password:
            return False
        with self._lock:
            self.dummy_binds += 1
        conn, _code = self._connect(f"cn=mfa-portal-no-such-entry-{uuid.uuid4().hex},{self.settings.base_dn}",
                                    password)
        if conn is not None:  # a server that lets anything bind: never a way in, still no entry
            _close(conn)
        return False

    def check(self) -> str:
        """One search of the base as the service account; the server's name. Raises DirectoryUnavailable."""
        self._search(self.settings.base_dn, "(objectClass=*)", ["1.1"], scope=ldap3.BASE)
        return ", ".join(self.settings.urls)

    # -- reading entries -----------------------------------------------------

    def _account(self, entry: dict) -> DirectoryAccount:
        p = self.settings.preset
        raw = {k.lower(): v for k, v in entry["raw"].items()}

        def text(name: str) -> str | None:
            values = raw.get(name.lower()) or []
            return values[0].decode("utf-8", "replace") if values else None

        groups = tuple(v.decode("utf-8", "replace") for v in raw.get("memberof") or [])
        # Lower case, as the sign-in form takes names (uid and sAMAccountName match regardless
        # of case): one record per person, whatever case the directory spells them in.
        username = (text(p.login_attribute) or "").lower()
        admin = self._is_admin(entry["dn"], groups)
        active, reason, changed = self._state(text)
        if p.id_attribute == "objectGUID":
            guid = (raw.get("objectguid") or [b""])[0]
            stable_id = str(uuid.UUID(bytes_le=guid)) if len(guid) == 16 else None
        else:
            stable_id = text(p.id_attribute)
        return DirectoryAccount(
            username=username, name=text(p.name_attribute) or text("cn") or username,
            email=text(p.email_attribute) or "", roles=("user", ADMIN_ROLE) if admin else ("user",),
            dn=entry["dn"], stable_id=stable_id, active=active, inactive_reason=reason,
            password_changed_at=changed, groups=groups)

    def _is_admin(self, dn: str, groups: tuple[str, ...]) -> bool:
        group = self.settings.admin_group
        if not group:
            return False
        if normalize_dn(group) in {normalize_dn(g) for g in groups}:
            return True
        if self.settings.preset.nested_groups:
            # AD: membership at any depth, evaluated by the server (LDAP_MATCHING_RULE_IN_CHAIN).
            found = self._search(dn, f"(memberOf:{AD_NESTED_MEMBER}:={escape_filter_chars(group)})",
                                 ["1.1"], scope=ldap3.BASE)
            return bool(found)
        return False

    def _state(self, text: Callable[[str], str | None]) -> tuple[bool, str | None, float | None]:
        """(active, why not, when the password last changed) by the preset's rules."""
        now = self.clock()
        if self.settings.preset.name == "active-directory":
            uac = _int(text("userAccountControl"))
            changed = _filetime(_int(text("pwdLastSet")))
            if uac is not None and uac & UF_ACCOUNTDISABLE:
                return False, "disabled", changed
            expires = _int(text("accountExpires"))
            if expires is not None and expires not in AD_NEVER:
                at = _filetime(expires)
                if at is not None and now >= at:
                    return False, "expired", changed
            computed = _int(text("msDS-User-Account-Control-Computed"))
            if computed is not None:  # AD's own verdict, the domain's lockout duration applied
                if computed & UF_LOCKOUT:
                    return False, "locked", changed
                if computed & UF_PASSWORD_EXPIRED:
                    return False, "expired", changed
                return True, None, changed
            lockout = _filetime(_int(text("lockoutTime")))
            if lockout is not None:  # no computed attribute: lockoutTime within lockout_duration
                duration = self.settings.lockout_duration
                if duration == 0 or now < lockout + duration:
                    return False, "locked", changed
            return True, None, changed
        changed = _generalized(text("pwdChangedTime"))
        if text("pwdAccountLockedTime"):
            return False, "locked", changed
        end = _generalized(text("pwdEndTime"))
        if end is not None and now >= end:
            return False, "expired", changed
        start = _generalized(text("pwdStartTime"))
        if start is not None and now < start:
            return False, "disabled", changed
        return True, None, changed


def _close(conn: Any) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - a dead connection: nothing to tell
        pass


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _filetime(value: int | None) -> float | None:
    """AD's 100-ns intervals since 1601 as epoch seconds; None for 0 / never."""
    if value is None or value in AD_NEVER or value < 0:
        return None
    return value / 10_000_000 - _FILETIME_EPOCH


def _generalized(value: str | None) -> float | None:
    """An LDAP GeneralizedTime (``20261207123456Z``) as epoch seconds, or None."""
    if not value:
        return None
    digits = value.rstrip("Z").split(".")[0]
    try:
        when = dt.datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    return when.timestamp()
