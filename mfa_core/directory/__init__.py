"""User directories behind one interface: ``users.yaml``, the database's table, or the company's LDAP / AD.

:class:`~.base.Directory` is what the engine asks (authenticate, find,
search, is_active, roles). :class:`LocalDirectory` gives the existing
``UserDirectory`` (file or database) that interface; :class:`CompanyDirectory`
is the company directory (LDAP, ``MFA_PORTAL_LDAP_URL``): it also answers the
``UserDirectory`` calls the portal and the command line make, refuses every
change (users are managed in the company directory) and keeps what it learns
about a person for at most :data:`CACHE_SECONDS` of the engine's clock, so a
leaver is refused within a minute without a search on every page run.

Only :mod:`.ldap` imports ldap3, and only when a directory URL is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import threading
import time
from typing import Any, Callable, Mapping

from ..errors import StorageError, TooManyAttempts
from ..storage import IO_ERRORS
from .entries import User
from .yaml_file import UserDirectory
from .base import (DIRECTORY_DOWN, MANAGED_ELSEWHERE, AccountInactive, Directory, DirectoryAccount,
                   DirectoryUnavailable, DirectoryUser, ManagedInDirectory)
from .config import DirectorySettingsError, LdapSettings, configured, load

__all__ = ["AccountInactive", "CACHE_SECONDS", "CompanyDirectory", "DIRECTORY_DOWN", "Directory",
           "DirectoryAccount", "DirectorySettingsError", "DirectoryUnavailable", "DirectoryUser", "LdapSettings",
           "LocalDirectory", "MANAGED_ELSEWHERE", "ManagedInDirectory", "as_directory", "configured",
           "open_company_directory"]

BIND_BUDGET = "directory_binds"  # in a person's password state: wrong binds counted (failures, last)
CACHE_SECONDS = 60.0  # a person's state is at most this old (engine clock): leavers go within a minute


class LocalDirectory:
    """:class:`Directory` over ``users.yaml`` or the database's table (bcrypt hashes)."""

    def __init__(self, users: UserDirectory) -> None:
        self.users = users

    def authenticate(self, username: str, password: str) -> bool:
        return bool(password) and self.users.check_password(username, password)

    def find(self, username: str) -> DirectoryAccount | None:
        user = self.users.get(username)
        if user is None:
            return None
        return DirectoryAccount(username=user.username, name=user.name, email=user.email,
                                roles=tuple(user.roles), stable_id=None)

    def search(self, query: str, limit: int = 25) -> list[DirectoryAccount]:
        index = self.users.index()
        return [a for a in map(self.find, list(index.search(query))[:limit]) if a is not None]

    def is_active(self, username: str) -> bool:
        return self.users.get(username) is not None

    def roles(self, username: str) -> list[str]:
        user = self.users.get(username)
        return list(user.roles) if user else []


class SearchIndex:
    """What the Helpdesk's search asks (``UserIndex``'s calls), answered by the directory's server.

    Each :meth:`search` is one server-side search of at most ``limit`` people
    (paged; never the whole directory); :meth:`user` and ``len()`` answer
    from the last search.
    """

    def __init__(self, directory: "CompanyDirectory", limit: int = 26) -> None:
        self._directory = directory
        self._limit = limit
        self._found: dict[str, DirectoryAccount] = {}

    def search(self, query: str | None) -> list[str]:
        accounts = self._directory.search(query or "", self._limit)
        self._found = {a.username: a for a in accounts}
        return [a.username for a in accounts]

    def user(self, username: str) -> User | None:
        account = self._found.get(username)
        return account.user() if account is not None else None

    def __len__(self) -> int:
        return len(self._found)


class UserList(list):
    """People listed from the directory, and whether that was all of them."""

    def __init__(self, users: Any = (), complete: bool = True) -> None:
        super().__init__(users)
        self.complete = complete


class _Bind:
    """What ``password_hash`` gives for a directory user: checked by a bind, never a hash."""

    __slots__ = ("_directory", "account")

    def __init__(self, directory: "CompanyDirectory", account: DirectoryAccount) -> None:
        self._directory = directory
        self.account = account

    def check(self, password: str, state: dict[str, Any] | None = None) -> bool:
        return self._directory.bind(self.account, password, state)

    def __str__(self) -> str:
        # What the sessions' password mark is made of (mfa_core.sessions): it changes when the
        # directory says the password changed (pwdChangedTime / pwdLastSet), so every portal
        # session of the person ends then, as after a change of a users.yaml hash.
        a = self.account
        return f"directory:{a.stable_id or a.dn}:{a.password_changed_at!r}"

    def __repr__(self) -> str:
        return f"<directory bind as {self.account.dn}>"


class CompanyDirectory(UserDirectory):
    """The company's LDAP / AD as the engine's, the portal's and the CLI's user directory."""

    company = True  # the portal and the CLI ask this, not the type

    def __init__(self, backend: Any, clock: Callable[[], float] = time.time, *,
                 store: Any = None, pepper: bytes | None = None) -> None:
        # No users.yaml: none of UserDirectory's file state.
        self.backend = backend
        self.store = store    # the engine's: wrong binds counted per person (every replica sees them)
        self.pepper = pepper
        self.settings: LdapSettings = backend.settings
        self.clock = clock
        self.path = None  # type: ignore[assignment]
        self._cache: dict[str, tuple[float, DirectoryAccount | None]] = {}
        self._cache_lock = threading.Lock()
        self._claimed: dict[str, tuple[float, str]] = {}  # name -> (when, id) its binding was seen true

    # -- Directory ---------------------------------------------------------------

    def find(self, username: str, *, fresh: bool = False) -> DirectoryAccount | None:
        """The person (active or not), or None; at most CACHE_SECONDS old unless ``fresh``.

        Raises DirectoryUnavailable when the directory cannot be asked and
        nothing fresh enough is known.
        """
        if not isinstance(username, str):
            raise TypeError("username must be a str")
        now = self.clock()
        if not fresh:
            with self._cache_lock:
                cached = self._cache.get(username)
            if cached is not None and 0 <= now - cached[0] < CACHE_SECONDS:
                return cached[1]
        account = self.backend.find(username)
        if account is not None and account.username != username:
            account = None  # another spelling (upper case): one record per person, lower case
        with self._cache_lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[username] = (now, account)
        return account

    def would_ask(self, username: str) -> bool:
        """Whether :meth:`claim` for ``username`` would ask the directory now (nothing fresh
        enough cached): a caller's throttle-first step is needed only then."""
        now = self.clock()
        with self._cache_lock:
            cached = self._cache.get(username)
        return cached is None or not 0 <= now - cached[0] < CACHE_SECONDS

    def forget(self, username: str | None = None) -> None:
        """Drop what is cached about ``username`` (everyone: None)."""
        with self._cache_lock:
            if username is None:
                self._cache.clear()
                self._claimed.clear()
            else:
                self._cache.pop(username, None)
                self._claimed.pop(username, None)

    def authenticate(self, username: str, password: str) -> bool:
        account = self.find(username)
        if account is None or not account.active or not password:
            return False
        return self.backend.authenticate(account.dn, password)

    def bind(self, account: DirectoryAccount, password: str, state: dict[str, Any] | None = None) -> bool:
        """The password checked by a bind as the person's DN, within the portal's bind budget.

        At most ``bind_failures`` wrong binds, then none (TooManyAttempts) until
        ``bind_window`` seconds passed since the last: the directory's own
        lockout (AD's threshold, ppolicy's pwdMaxFailure) never counts more
        than that from the portal, whatever the number of places an attacker
        tries from. A success clears the count. ``state``: the person's password
        state in their record, in the transaction the engine holds around the
        check (the count is kept there, written with the attempt's own outcome:
        no write of its own); without it (a damaged record) a keyed record of its
        own. Raises DirectoryUnavailable.
        """
        if not password or not account.dn:
            return False
        check = lambda: self.backend.authenticate(account.dn, password)  # noqa: E731
        if state is not None:
            now = self.clock()
            self._wait(state.get(BIND_BUDGET) or {}, now)
            ok = bool(check())
            spent = self._counted(state.get(BIND_BUDGET) or {}, ok, now)
            if spent:
                state[BIND_BUDGET] = spent
            else:
                state.pop(BIND_BUDGET, None)
            return ok
        return self._budgeted(self._account_key(account), check)

    def dummy_bind(self, password: str, name_key: str = "") -> None:
        """What an unknown name costs: the same bind budget (kept under the name's key, so
        a name's existence never shows by when TooManyAttempts starts) and a bind as a DN no
        entry has (refused by the server, counted against nobody), so unknown and wrong
        cost alike. Raises TooManyAttempts, DirectoryUnavailable."""
        self._budgeted(self._unknown_key(name_key), lambda: self.backend.dummy_bind(password))

    def bind_wait(self, state: dict[str, Any] | None, name_key: str) -> TooManyAttempts | None:
        """Whether the bind budget holds a check back now, read without the directory (the
        engine's throttle-first step): the person's count in ``state`` (their password
        state), or with no record the unknown name's. Raises StorageError."""
        try:
            if state is None:
                if self.store is None or self.pepper is None:
                    return None
                spent = self.store.read_keyed(self._unknown_key(name_key)) or {}
            else:
                spent = state.get(BIND_BUDGET) or {}
            self._wait(spent, self.clock())
        except TooManyAttempts as exc:
            return exc
        except IO_ERRORS as exc:
            raise StorageError() from exc
        return None

    def budget_key(self, stored: Any = None, name_key: str = "") -> str | None:
        """The keyed record a check made without the person's record counts its bind in:
        the account's (``stored``, what ``password_hash`` gave; a damaged record) or an
        unknown name's (``name_key``). None when budgets are not kept (no store)."""
        if self.store is None or self.pepper is None:
            return None
        if isinstance(stored, _Bind):
            return self._account_key(stored.account)
        return self._unknown_key(name_key)

    def _account_key(self, account: DirectoryAccount) -> str:
        return self._key(f"ldap-bind:{account.stable_id or account.dn}")

    def _unknown_key(self, name_key: str) -> str:
        return self._key(f"ldap-bind-unknown:{name_key}")

    def _key(self, what: str) -> str:
        return hmac.new(self.pepper or b"", what.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def _wait(self, spent: Mapping[str, Any], now: float) -> None:
        """TooManyAttempts while ``spent`` (failures, last) holds binds back."""
        budget, window = self.settings.bind_failures, self.settings.bind_window
        failures, last = int(spent.get("failures", 0)), float(spent.get("last", 0))
        if failures >= budget and now - last < window:
            raise TooManyAttempts(max(1, math.ceil(last + window - now)))

    def _counted(self, spent: Mapping[str, Any], ok: bool, now: float) -> dict[str, Any]:
        """``spent`` after a bind: cleared by a success, one more failure otherwise (counting
        again from one when the last was a window ago)."""
        if ok:
            return {}
        failures = int(spent.get("failures", 0)) if now - float(spent.get("last", 0)) < self.settings.bind_window \
            else 0
        return {"failures": failures + 1, "last": now}

    def _budgeted(self, key: str, check: Callable[[], bool | None]) -> bool:
        """The bind budget in a keyed record of its own (unknown names; a damaged record), held
        under its lock through the bind as a person's record is through theirs: parallel
        guesses at one name from many places never bind more often than the budget allows,
        and the attempt costs one read and one write of it."""
        if self.store is None or self.pepper is None:
            return bool(check())
        now = self.clock()
        with self._budget(key) as rec:
            self._wait(rec, now)
            ok = bool(check())
            spent = self._counted(rec, ok, now)
            rec.clear()
            rec.update(spent)
        return ok

    def claim(self, username: str, *, first_sight: bool = True) -> DirectoryAccount | None:
        """Make the MFA record under ``username`` the current directory entry's (see
        :mod:`.identity`: renamed entries keep their authenticators, a new entry reusing a
        name does not inherit them); returns the person. Call outside any user transaction."""
        account = self.find(username)
        if account is None or not account.stable_id or self.store is None or self.pepper is None:
            return account
        now = self.clock()
        with self._cache_lock:  # bound to this entry lately (CACHE_SECONDS): no read of the binding
            seen = self._claimed.get(username)
        if seen is not None and seen[1] == account.stable_id and 0 <= now - seen[0] < CACHE_SECONDS:
            return account
        from .identity import UNBOUND, claim
        try:
            done = claim(self.store, self.pepper, account, now, first_sight=first_sight)
        except IO_ERRORS as exc:
            raise StorageError() from exc
        if done != UNBOUND:
            with self._cache_lock:
                if len(self._claimed) > 100_000:
                    self._claimed.clear()
                self._claimed[username] = (now, account.stable_id)
        return account

    @contextlib.contextmanager
    def _budget(self, key: str):
        try:
            with self.store.own_keyed_transaction(key) as txn:
                yield txn.record
        except IO_ERRORS as exc:
            raise StorageError() from exc

    def search(self, query: str, limit: int = 25) -> list[DirectoryAccount]:  # type: ignore[override]
        return self.backend.search(query, limit)

    def is_active(self, username: str) -> bool:
        account = self.find(username)
        return account is not None and account.active

    def roles(self, username: str) -> list[str]:
        account = self.find(username)
        return list(account.roles) if account is not None and account.active else []

    def check(self) -> str:
        return self.backend.check()

    # -- what the engine's password check uses -------------------------------------

    def password_hash(self, username: str) -> _Bind | None:  # type: ignore[override]
        """For ``attempt_password``: a bind handle for an active person, else None (as unknown)."""
        if not isinstance(username, str):
            raise TypeError("username must be a str")
        account = self.find(username)
        if account is None or not account.active or not account.dn:
            return None
        return _Bind(self, account)

    def check_password(self, username: str, password: str) -> bool:
        if not isinstance(password, str) or not isinstance(username, str):
            raise TypeError("username and password must be str")
        return self.authenticate(username, password.strip())

    # -- UserDirectory's reads --------------------------------------------------------

    def get(self, username: str) -> User | None:
        account = self.find(username)
        return account.user() if account is not None else None

    def require(self, username: str) -> User:
        user = self.get(username)
        if user is None:
            raise ManagedInDirectory(f"There is no user named {username!r} in the company directory.")
        return user

    def users(self) -> "UserList":
        """Everyone in the directory, 1,000 a page (``users list``, ``mfa list``); ``complete``
        is False when the server stopped the listing early (its size limit for the service
        account). The portal's pages never list everyone (:meth:`index`)."""
        accounts, complete = self.backend.all_accounts()
        return UserList([a.user() for a in accounts], complete)

    def admins(self) -> list[User]:
        """The helpdesk admins: the admin group's active members (at most 1,000), asked of the server."""
        return [a.user() for a in self.backend.admins(1000) if a.active]

    def entries(self) -> dict[str, Any]:
        return {}  # never the whole directory: pages look people up one by one

    def credentials(self) -> dict[str, Any]:
        return {"usernames": {}}

    def index(self) -> SearchIndex:  # type: ignore[override]
        return SearchIndex(self)

    def exists(self) -> bool:
        return True

    def has_demo_users(self) -> bool:
        return False

    def ensure_demo_users(self) -> bool:
        return False  # never demo users beside a company directory

    @property
    def location(self) -> str:
        return f"the company directory {self.settings.describe()}"

    def export_yaml(self) -> str:
        raise ManagedInDirectory(MANAGED_ELSEWHERE)

    # -- changes: the company directory's own tools make them ---------------------------

    def add(self, *args: Any, **kwargs: Any) -> User:  # type: ignore[override]
        raise ManagedInDirectory(MANAGED_ELSEWHERE)

    def remove(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise ManagedInDirectory(MANAGED_ELSEWHERE)

    def set_password(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise ManagedInDirectory(MANAGED_ELSEWHERE)

    def set_roles(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise ManagedInDirectory(MANAGED_ELSEWHERE)

    def import_entries(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        raise ManagedInDirectory(MANAGED_ELSEWHERE)

    def _change(self, fn: Any) -> None:
        raise ManagedInDirectory(MANAGED_ELSEWHERE)


def check_stored(password: str, stored: Any, state: dict[str, Any] | None = None) -> bool | None:
    """The engine's password check for a non-hash ``password_hash`` answer (a directory bind,
    its budget counted in ``state``, the user's password state, when given); None when
    ``stored`` is a hash (the caller compares it)."""
    if isinstance(stored, _Bind):
        return stored.check(password, state)
    return None


def as_directory(users: Any) -> Directory:
    """The :class:`Directory` interface of any user directory the engine holds."""
    if isinstance(users, CompanyDirectory):
        return users
    return LocalDirectory(users)


def open_company_directory(environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time,
                           secrets_path: Any = "default", *, store: Any = None,
                           pepper: bytes | None = None) -> CompanyDirectory | None:
    """The company directory when ``MFA_PORTAL_LDAP_URL`` (or ``[ldap] url``) is set, else None.

    Settings are checked here (DirectorySettingsError); no server is asked yet.
    """
    from .config import SECRETS_FILE
    settings = load(environ, SECRETS_FILE if secrets_path == "default" else secrets_path)
    if settings is None:
        return None
    from .ldap import LdapBackend  # ldap3 only when a directory is configured
    return CompanyDirectory(LdapBackend(settings, clock), clock, store=store, pepper=pepper)
