"""The company directory over LDAP (OpenLDAP, Active Directory) with ``ldap3``.

The only module of the engine that imports ldap3. A pool of connections
bound as the portal's service account does the searches; a password is
checked by a bind as the user's DN on a pool of connections kept for binds
only (TLS up: one round trip), never on a service one, and never searched
on. Servers are tried in the order configured; each connect and each
operation has the configured timeout; anything but an answer from a server
raises DirectoryUnavailable (fail closed). The typed name is escaped per RFC
4515 before it goes into a filter; an empty password never reaches a bind
(an unauthenticated bind "succeeds").
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import math
import socket
import ssl
import threading
import time
import uuid
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from .entries import ADMIN_ROLE
from .base import DirectoryAccount, DirectoryUnavailable, normalize_dn
from .config import LdapSettings

log = logging.getLogger("mfa_core.directory")

POOL_SIZE = 8                  # connections kept open: service (searches), and for users' binds (each)
REFUSALS_KEPT = 15             # wrong passwords' bind times kept: an unknown name's lasts their median
POLICY_CACHE_SECONDS = 60.0    # a password policy's lockout duration is read at most this often
IDLE_MAX = 60.0                # seconds a kept connection may sit unused before it is closed instead
POOL_WAIT_MAX = 0.25           # seconds a request waits for a connection being opened by another
LIST_PAGE_SIZE = 1000          # people a page when listing everyone (AD's MaxPageSize)
PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696's control
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
        self._pool = _Pool()     # bound as the service account: searches only
        self._binders = _Pool()  # TLS up, used only for users' binds (each bind replaces the last)
        # How long a request waits for another's connection rather than opening its own: short
        # beside the timeout, so a directory that does not answer holds a page little longer.
        self._pool_wait = min(POOL_WAIT_MAX, settings.timeout / 10)
        self._lock = threading.Lock()
        self.user_binds = 0  # binds as a user's DN (the tests count them)
        self.dummy_binds = 0  # binds for unknown names (as costly as a user's)
        self.searches = 0  # searches as the service account (the tests count them)
        self.connections = 0  # connections opened (the tests count them)
        self._refusals: collections.deque[float] = collections.deque(maxlen=REFUSALS_KEPT)
        self._sleep = time.sleep
        self._policies: dict[str, tuple[float, float | None]] = {}  # ppolicy DN -> (read at, lockout duration)

    # -- connections ---------------------------------------------------------

    def _connect(self, user: str, password: str, *,
                 keep_refused: bool = False) -> tuple[ldap3.Connection | None, int]:
        """A connection bound as ``user`` on the first server that answers: (conn, 0), or
        (None, result code) when a server answered but refused the bind (``keep_refused``:
        (conn, code), the connection still open).

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
                with self._lock:
                    self.connections += 1
                conn.open()
                _no_delay(conn)
                if server.ssl is False and self.settings.start_tls and not conn.start_tls():
                    raise LDAPException(f"StartTLS refused: {conn.result.get('description')}")
                code = _bind(conn, user, password)
                if code == 0 or keep_refused:
                    return conn, code
                _close(conn)
                return None, code
            except Exception as exc:  # noqa: BLE001 - ldap3 raises more than LDAPException: fail closed
                problems.append(f"{server.host}:{server.port}: {type(exc).__name__}: {exc}")
                _close(conn)
        raise DirectoryUnavailable("; ".join(problems) or "no server configured")

    def _service(self, fresh: bool = False) -> ldap3.Connection:
        """A connection bound as the service account: a kept one, or (``fresh``, or none kept) a
        new one. A retry after a kept one broke asks for a fresh one: after a server restart
        every kept connection is dead, and a second dead one must not fail the search."""
        conn = None if fresh else self._pool.take(self._pool_wait)
        if conn is not None:
            return conn
        try:
            conn, code = self._connect(self.settings.bind_dn, self.settings.bind_password)
        finally:
            if not fresh:
                self._pool.opened()
        if conn is None:
            raise DirectoryUnavailable(f"the portal's service account ({self.settings.bind_dn}) "
                                       f"was refused (result {code})")
        return conn

    def _give_back(self, conn: ldap3.Connection) -> None:
        self._pool.give_back(conn)

    def close(self) -> None:
        self._pool.close()
        self._binders.close()

    def _bind_as(self, dn: str, password: str) -> bool:
        """A bind as ``dn``: on a kept connection (one round trip: TCP and TLS are up), or on a
        new one when none is kept or the kept one broke (a server restarted; its idle time ran
        out). A connection that answered is kept for the next bind, whoever it is bound as: it
        is never searched on. Raises DirectoryUnavailable when no server answers."""
        conn = self._binders.take(self._pool_wait)
        opening = conn is None  # take() left the opening to this caller: opened() after it
        if conn is not None:
            try:
                code = _bind(conn, dn, password)
            except Exception:  # noqa: BLE001 - the kept connection broke: a new one, once
                _close(conn)
            else:
                return self._after_bind(conn, code)
        try:
            conn, code = self._connect(dn, password, keep_refused=True)
        finally:
            if opening:
                self._binders.opened()
        return self._after_bind(conn, code)

    def _after_bind(self, conn: ldap3.Connection | None, code: int) -> bool:
        if conn is not None:
            if code in (0, INVALID_CREDENTIALS):
                self._binders.give_back(conn)
            else:  # busy, unavailable, an odd answer: not kept
                _close(conn)
        return code == 0

    def _search(self, base: str, search_filter: str, attributes: Sequence[str], *,
                scope=ldap3.SUBTREE, size_limit: int = 0, paged_size: int | None = None) -> list[dict]:
        """Entries (dn, raw attributes), on a pooled service connection; one retry on a
        fresh connection when the pooled one broke (a server restarted)."""
        with self._lock:
            self.searches += 1
        for attempt in (1, 2):
            conn = self._service(fresh=attempt == 2)
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

    def _paged(self, base: str, search_filter: str, attributes: Sequence[str],
               page_size: int) -> tuple[list[dict], bool]:
        """Every entry the search finds, page by page (the paged results control, RFC 2696) on
        one service connection: (entries, complete). ``complete`` is False when the server
        ended the listing early (its size limit for the portal's account). One retry on a fresh
        connection when the pooled one broke before the first page; DirectoryUnavailable when
        a later page fails (never half a list passed off as whole)."""
        for attempt in (1, 2):
            conn = self._service(fresh=attempt == 2)
            found: list[dict] = []
            cookie = None
            pages = 0
            try:
                while True:
                    with self._lock:
                        self.searches += 1
                    ok = conn.search(base, search_filter, ldap3.SUBTREE, attributes=list(attributes),
                                     time_limit=max(1, int(self.settings.timeout)),
                                     paged_size=page_size, paged_cookie=cookie)
                    code = int(conn.result.get("result", -1))
                    if not ok and code not in (0, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT):
                        raise LDAPException(f"search refused: result {code} {conn.result.get('description')}")
                    pages += 1
                    found += [{"dn": r["dn"], "raw": r.get("raw_attributes") or {}}
                              for r in (conn.response or []) if r.get("type") == "searchResEntry"]
                    cookie = (((conn.result.get("controls") or {}).get(PAGED_RESULTS) or {})
                              .get("value") or {}).get("cookie")
                    if code == SIZE_LIMIT_EXCEEDED or not cookie:
                        self._give_back(conn)
                        return found, code != SIZE_LIMIT_EXCEEDED
            except Exception as exc:  # noqa: BLE001 - a broken connection, whatever ldap3 raised
                _close(conn)
                if attempt == 2 or pages:
                    raise DirectoryUnavailable(f"paged search failed after {pages} pages: "
                                               f"{type(exc).__name__}: {exc}") from exc
        raise DirectoryUnavailable("paged search failed")  # not reached

    def all_accounts(self, page_size: int = LIST_PAGE_SIZE) -> tuple[list[DirectoryAccount], bool]:
        """Every person in the directory, ``page_size`` a page: (people by name, complete).

        For ``users list``; the Helpdesk never lists everyone (:meth:`search`). With nested
        groups (AD) the helpdesk group's members at any depth are asked for once, not once a
        person."""
        p = self.settings.preset
        found, complete = self._paged(self.settings.base_dn, self.settings.filter, p.attributes, page_size)
        admins = None
        if p.nested_groups and self.settings.admin_group:
            members, _ = self._paged(
                self.settings.base_dn,
                f"(&{self.settings.filter}(memberOf:{AD_NESTED_MEMBER}:={escape_filter_chars(self.settings.admin_group)}))",
                ["1.1"], page_size)
            admins = {normalize_dn(m["dn"]) for m in members}
        accounts = [self._account(e, admins) for e in found]
        return sorted(accounts, key=lambda a: a.username), complete

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
                             size_limit=limit, paged_size=min(limit, 500))[:limit]
        members = {normalize_dn(e["dn"]) for e in found}  # all of them, by the filter: no search each
        return sorted((self._account(e, members) for e in found), key=lambda a: a.username)

    def authenticate(self, dn: str, password: str) -> bool:
        """True when ``password`` binds as ``dn``. Raises DirectoryUnavailable when no server answers."""
        if not password or not dn:
            return False  # an empty password would be an unauthenticated bind: it "succeeds"
        with self._lock:
            self.user_binds += 1
        started = time.monotonic()
        ok = self._bind_as(dn, password)
        if not ok:
            with self._lock:
                self._refusals.append(time.monotonic() - started)
        return ok

    def dummy_bind(self, password: str) -> bool:
        """A bind as a DN that no entry has under the base (the server refuses it as it refuses
        a wrong password; no account's lockout counts it). Raises DirectoryUnavailable."""
        if not password:
            return False
        with self._lock:
            self.dummy_binds += 1
        started = time.monotonic()
        # A server that lets anything bind: never a way in, still no entry.
        self._bind_as(f"cn=mfa-portal-no-such-entry-{uuid.uuid4().hex},{self.settings.base_dn}", password)
        self._sleep(self.refusal_pad(time.monotonic() - started))
        return False

    def refusal_pad(self, took: float) -> float:
        """Seconds an unknown name's bind waits after it took ``took``, to last as long as a
        wrong password's bind lately does (the median of the last REFUSALS_KEPT).

        A wrong password for a real entry costs the server more than a bind as no entry: it
        writes the failure down (ppolicy's pwdFailureTime, AD's badPwdCount), 10 ms or more.
        Without the wait, the answer's time would tell which names exist.
        """
        with self._lock:
            recent = sorted(self._refusals)
        if not recent:
            return 0.0
        typical = recent[len(recent) // 2]
        return max(0.0, min(typical, float(self.settings.timeout)) - took)

    def check(self) -> str:
        """One search of the base as the service account; the server's name. Raises DirectoryUnavailable."""
        self._search(self.settings.base_dn, "(objectClass=*)", ["1.1"], scope=ldap3.BASE)
        return ", ".join(self.settings.urls)

    # -- reading entries -----------------------------------------------------

    def _account(self, entry: dict, admins: set[str] | None = None) -> DirectoryAccount:
        p = self.settings.preset
        raw = {k.lower(): v for k, v in entry["raw"].items()}

        def text(name: str) -> str | None:
            values = raw.get(name.lower()) or []
            return values[0].decode("utf-8", "replace") if values else None

        groups = tuple(v.decode("utf-8", "replace") for v in raw.get("memberof") or [])
        # Lower case, as the sign-in form takes names (uid and sAMAccountName match regardless
        # of case): one record per person, whatever case the directory spells them in.
        username = (text(p.login_attribute) or "").lower()
        admin = self._is_admin(entry["dn"], groups, admins)
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

    def _is_admin(self, dn: str, groups: tuple[str, ...], admins: set[str] | None = None) -> bool:
        group = self.settings.admin_group
        if not group:
            return False
        if normalize_dn(group) in {normalize_dn(g) for g in groups}:
            return True
        if admins is not None:  # the nested members, asked for once (all_accounts)
            return normalize_dn(dn) in admins
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
        locked_at = text("pwdAccountLockedTime")
        if locked_at and not self._lock_over(locked_at, text("pwdPolicySubentry"), now):
            return False, "locked", changed
        end = _generalized(text("pwdEndTime"))
        if end is not None and now >= end:
            return False, "expired", changed
        start = _generalized(text("pwdStartTime"))
        if start is not None and now < start:
            return False, "disabled", changed
        return True, None, changed


    def _lock_over(self, locked_at: str, policy_dn: str | None, now: float) -> bool:
        """Whether a ppolicy lock (``pwdAccountLockedTime``) has ended by itself, as the password
        policy draft (draft-behera-ldap-password-policy) has it: ``000001010000Z`` locks for
        good (an administrator's lock); otherwise the lock lasts the policy's
        ``pwdLockoutDuration`` seconds, and for good when that is 0 or absent. The policy is
        the entry's ``pwdPolicySubentry``, else the default one named by the settings; one
        that can't be read keeps the account locked (fail closed)."""
        if locked_at.startswith("000001010000"):
            return False
        at = _generalized(locked_at)
        dn = policy_dn or self.settings.password_policy
        if at is None or not dn:
            return False
        duration = self._lockout_duration(dn, now)
        return bool(duration) and now >= at + duration

    def _lockout_duration(self, dn: str, now: float) -> float | None:
        """The policy's pwdLockoutDuration (0: none set), read at most once a minute a policy;
        None when it can't be read."""
        key = normalize_dn(dn)
        with self._lock:
            cached = self._policies.get(key)
        if cached is not None and 0 <= now - cached[0] < POLICY_CACHE_SECONDS:
            return cached[1]
        found = self._search(dn, "(objectClass=pwdPolicy)", ["pwdLockoutDuration"], scope=ldap3.BASE)
        duration = None
        if len(found) == 1:
            values = {k.lower(): v for k, v in found[0]["raw"].items()}.get("pwdlockoutduration") or [b"0"]
            duration = float(_int(values[0].decode("ascii", "replace")) or 0)
        with self._lock:
            self._policies[key] = (now, duration)
        return duration


class _Pool:
    """Open connections kept for reuse, newest first; one idle longer than ``IDLE_MAX`` seconds
    is closed instead of used (a firewall may have dropped it silently: a bind on it would wait
    out the whole timeout)."""

    def __init__(self, size: int = POOL_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._items: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a connection given back, or an opening ended
        self._opening = 0  # callers opening a connection now (take() gave them None)

    def __len__(self) -> int:
        return len(self._items)

    def take(self, wait: float = 0.0) -> Any:
        """A kept connection, or None: then the caller opens one, and calls ``opened()`` after.

        While none is kept and another caller is opening one already, wait up to ``wait``
        seconds for a connection given back or that opening to end: a burst of requests
        (forty at once) would otherwise open as many connections, a TLS handshake each with
        the company's directory (~3 ms of CPU here), where waiting for a search to end takes
        about one. So connections grow one at a time, as many as are used at once.
        """
        stale = []
        deadline = time.monotonic() + wait
        try:
            with self._changed:
                while True:
                    now = self._clock()
                    while self._items:
                        since, conn = self._items.pop()
                        if now - since <= IDLE_MAX:
                            return conn
                        stale.append(conn)
                    left = deadline - time.monotonic()
                    if self._opening == 0 or left <= 0:
                        self._opening += 1
                        return None
                    self._changed.wait(left)
        finally:
            for conn in stale:
                _close(conn)

    def opened(self) -> None:
        """The opening that ``take()`` left to the caller ended (a connection or a failure)."""
        with self._changed:
            self._opening = max(0, self._opening - 1)
            self._changed.notify_all()

    def give_back(self, conn: Any) -> None:
        with self._changed:
            if len(self._items) < self._size:
                self._items.append((self._clock(), conn))
                self._changed.notify()
                return
        _close(conn)

    def close(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for _since, conn in items:
            _close(conn)


def _bind(conn: Any, user: str, password: str) -> int:
    """Bind ``conn`` as ``user``: the server's result code (0: bound). Raises when no answer came.

    Never on a closed connection: ldap3 would open it again by itself, without StartTLS.
    """
    if conn.closed:
        raise LDAPException("the connection is closed")
    conn.user, conn.password = user, password
    if conn.bind():
        return 0
    result = conn.result or {}
    code = int(result.get("result", -1))
    if code < 0 or conn.closed or result.get("type") != "bindResponse":
        raise LDAPException(f"no answer to the bind: {result.get('description')}")
    return code


def _no_delay(conn: Any) -> None:
    """TCP_NODELAY on the connection's socket: a bind's request leaves at once instead of waiting
    for the server's delayed ack of the last TLS record (about 40 ms on Linux)."""
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
