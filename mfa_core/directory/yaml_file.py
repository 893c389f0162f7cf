"""The embedded directory in ``users.yaml`` (the data dir): read from a cached parse, changed under a lock.

Passwords are bcrypt hashes; roles say who is a helpdesk admin. Writes are
atomic and locked against other threads and processes, like the MFA store's;
reads share one parse of the file until it changes. The database's directory
(:mod:`.database`) is the same class over a table.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import bcrypt
import yaml

from ..storage.files import LockBusy, exclusive, make_dirs, path_lock, write_atomic
from .entries import (BCRYPT_HASH, DEMO_USERS, User, UserDirectoryError, check_entries, check_username,
                      hash_password, new_entry, user_from_entry)
from .index import UserIndex

USERS_FILE = "users.yaml"
DEMO_MARKER = ".demo-users"  # beside users.yaml: its demo users were made by the portal
# Fields of the streamlit-authenticator era the portal never reads: not written, not exported.
_OBSOLETE_FIELDS = ("failed_login_attempts", "logged_in")
LOCK_TIMEOUT = 30.0  # seconds a change waits for another writer before it gives up

# libyaml when PyYAML was built with it: ~4x faster on a big directory, same output.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# (st_ino, st_mtime_ns, st_size) of a parsed users.yaml; None: there is no file.
_Stamp = tuple[int, int, int]


def _stamp(st: os.stat_result) -> _Stamp:
    # The inode changes with every write_atomic (a new file is renamed in);
    # mtime and size catch an editor that rewrites the file in place.
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class UserDirectory:
    """``users.yaml`` in a data dir: read from a cached parse, changed under a lock.

    Reads parse the file only when it changed (inode, mtime or size), so a
    directory of 10,000 users is not parsed on every lookup; the cached parse
    is shared and never changed. Every change holds this path's thread lock and
    then a file lock (other processes), re-reads the file, and replaces it
    atomically. Safe to share between threads.
    """

    def __init__(self, data_dir: str | Path, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(data_dir) / USERS_FILE
        make_dirs(self.path.parent)
        self.lock_timeout = lock_timeout
        self._lock_file = str(self.path) + ".lock"
        self._thread_lock = path_lock(self.path)
        self._snapshot: tuple[_Stamp | None, dict[str, Any]] | None = None
        self._index: tuple[dict[str, Any], UserIndex] | None = None
        self._parse_lock = threading.Lock()  # one parse per new version, not one per reader

    # -- locking -----------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold this file's lock against other threads and processes.

        Raises UserDirectoryError when it is not free within ``lock_timeout`` seconds.
        """
        try:
            with exclusive(self._thread_lock, self._lock_file, self.lock_timeout):
                yield
        except LockBusy:
            raise self._lock_timed_out() from None

    def _lock_timed_out(self) -> UserDirectoryError:
        return UserDirectoryError(
            f"The user file {self.path} is being changed by someone else and stayed locked "
            f"for {self.lock_timeout:g} s; nothing was changed. Try again in a moment.")

    # -- reading ---------------------------------------------------------

    def _load(self) -> tuple[_Stamp | None, dict[str, Any]]:
        """The file parsed afresh, with the stamp of exactly the bytes parsed.

        Raises UserDirectoryError when the file cannot be read or is not a user file.
        """
        try:
            with open(self.path, "rb") as fh:
                # fstat of the open file: the stamp belongs to what is read, even
                # if a writer renames a new file in meanwhile.
                stamp = _stamp(os.fstat(fh.fileno()))
                raw = fh.read()
        except FileNotFoundError:
            return None, _normalized({}, self.path)
        except OSError as exc:
            raise UserDirectoryError(f"The user file {self.path} cannot be read.") from exc
        try:
            data = yaml.load(raw.decode("utf-8"), Loader=_LOADER)
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserDirectoryError(f"The user file {self.path} cannot be read.") from exc
        return stamp, _normalized(data, self.path)

    def _current_stamp(self) -> _Stamp | None:
        try:
            return _stamp(os.stat(self.path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UserDirectoryError(f"The user file {self.path} cannot be read.") from exc

    def _read(self) -> dict[str, Any]:
        """The cached parse of the file (shared: never change it), re-parsed if the file changed.

        Raises UserDirectoryError when the file cannot be read.
        """
        cached = self._snapshot
        if cached is not None and cached[0] == self._current_stamp():
            return cached[1]
        with self._parse_lock:
            cached = self._snapshot  # another reader may have parsed it meanwhile
            if cached is not None and cached[0] == self._current_stamp():
                return cached[1]
            cached = self._snapshot = self._load()
        return cached[1]

    def exists(self) -> bool:
        return self.path.exists()

    def entries(self) -> dict[str, Any]:
        """username -> raw entry, the shared cached parse: read it, never change it.

        The same object while the file is unchanged. Raises UserDirectoryError
        when the file cannot be read.
        """
        return self._read()["credentials"]["usernames"]

    def credentials(self) -> dict[str, Any]:
        """The ``credentials`` dict streamlit-authenticator takes (a copy).

        Raises UserDirectoryError when the file cannot be read.
        """
        return copy.deepcopy(self._read()["credentials"])

    def users(self) -> list[User]:
        """Every user, sorted by username. Raises UserDirectoryError when the file cannot be read."""
        entries = self.entries()
        return [self._user(name, entry) for name, entry in sorted(entries.items())]

    def admins(self) -> list[User]:
        """The users with the admin role (the helpdesk)."""
        return [u for u in self.users() if u.is_admin]

    def get(self, username: str) -> User | None:
        """The user, or None. Raises UserDirectoryError when the file cannot be read."""
        entry = self.entries().get(username)
        return self._user(username, entry) if entry is not None else None

    def require(self, username: str) -> User:
        """The user. Raises UserDirectoryError when there is none or the file cannot be read."""
        user = self.get(username)
        if user is None:
            raise UserDirectoryError(f"There is no user named {username!r}.")
        return user

    def password_hash(self, username: str) -> str | None:
        """The user's stored bcrypt hash, or None (no such user, or no usable hash).

        Read from the cached parse. Raises TypeError when ``username`` is not a
        str, UserDirectoryError when the file cannot be read.
        """
        if not isinstance(username, str):
            raise TypeError("username must be a str")
        entry = self.entries().get(username)
        hashed = entry.get("password") if isinstance(entry, dict) else None
        # A hand-edited entry may hold a plain-text password or junk: never usable.
        return hashed if isinstance(hashed, str) and BCRYPT_HASH.fullmatch(hashed) else None

    def check_password(self, username: str, password: str) -> bool:
        """True when ``password`` is the user's (bcrypt compares in constant time).

        Surrounding blanks are ignored, as on the sign-in form, so a password
        typed the same way works in both places. Raises TypeError for a
        non-str argument, UserDirectoryError when the file cannot be read.
        """
        if not isinstance(password, str) or not isinstance(username, str):
            raise TypeError("username and password must be str")
        password = password.strip()
        hashed = self.password_hash(username)
        if hashed is None or not password:
            return False
        try:
            return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
        except ValueError:
            return False

    def index(self) -> UserIndex:
        """Every user, searchable (see :class:`UserIndex`): built once per version of the file.

        Shared while the file is unchanged: read it, never change it. Raises
        UserDirectoryError when the file cannot be read.
        """
        entries = self.entries()
        cached = self._index
        if cached is not None and cached[0] is entries:
            return cached[1]
        built = UserIndex(entries)
        self._index = (entries, built)  # two threads may both build it; either one is right
        return built

    @staticmethod
    def _user(username: str, entry: dict[str, Any]) -> User:
        return user_from_entry(username, entry)

    # -- changing ----------------------------------------------------------

    def _change(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``fn`` to a fresh parse of the usernames and write the file, all under the lock.

        The cache is ignored: another process may have written since it was
        parsed, and the cached parse must never be changed. Raises what ``fn``
        raises (nothing is written then) and UserDirectoryError.
        """
        with self._locked():
            data = self._load()[1]
            fn(data["credentials"]["usernames"])
            self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        """Replace the file with ``data``; call with the lock held. ``data`` becomes the cache."""
        write_atomic(self.path, dump_yaml(data).encode("utf-8"), mode=0o600)
        # The next read needs no parse: nobody else writes while the lock is
        # held, so the stamp taken now is the stamp of what was just written.
        self._snapshot = (self._current_stamp(), data)

    def add(self, username: str, password: str, *, name: str = "", email: str = "",
            roles: list[str] | None = None) -> User:
        """Add a user; returns it.

        Raises TypeError/ValueError for a bad username or password, and
        UserDirectoryError when the user exists or the file cannot be changed.
        """
        username = check_username(username)
        entry = new_entry(username, hash_password(password), name, email, roles)  # bcrypt outside the lock

        def add(users: dict[str, Any]) -> None:
            if username in users:
                raise UserDirectoryError(f"A user named {username!r} already exists.")
            users[username] = entry
        self._change(add)
        return self.require(username)

    def remove(self, username: str) -> None:
        """Remove a user. Raises UserDirectoryError when there is none or the file cannot be changed."""
        def remove(users: dict[str, Any]) -> None:
            if users.pop(username, None) is None:
                raise UserDirectoryError(f"There is no user named {username!r}.")
        self._change(remove)

    def set_password(self, username: str, password: str) -> None:
        """Give a user a new password.

        Raises TypeError/ValueError for a password the portal refuses, and
        UserDirectoryError when there is no such user or the file cannot be changed.
        """
        hashed = hash_password(password)

        def change(users: dict[str, Any]) -> None:
            if username not in users:
                raise UserDirectoryError(f"There is no user named {username!r}.")
            users[username]["password"] = hashed
        self._change(change)

    def set_roles(self, username: str, roles: list[str]) -> None:
        """Replace a user's roles. Raises UserDirectoryError when there is no such user or the
        file cannot be changed."""
        def change(users: dict[str, Any]) -> None:
            if username not in users:
                raise UserDirectoryError(f"There is no user named {username!r}.")
            users[username]["roles"] = list(roles)
        self._change(change)

    def ensure_demo_users(self) -> bool:
        """Create the demo users (alice, bob, admin) on a fresh directory; True if this call did.

        Several processes may start the portal on one fresh data dir at once:
        the first to take the lock writes all three users in one change, the
        others then find the file and return False. A directory that has a
        ``users.yaml`` already is left alone. Raises UserDirectoryError when
        the lock stays taken or the file cannot be written.
        """
        if self.path.exists():
            return False  # the usual start: no hashing, no lock
        demo = demo_entries()
        with self._locked():
            if self.path.exists():
                return False  # another process created it while this one hashed
            data = _normalized({}, self.path)
            data["credentials"]["usernames"].update(demo)
            self._write(data)
            # Remember that these users are the demo's, so the banner never
            # advertises passwords of a directory somebody set up by hand.
            write_atomic(self.path.parent / DEMO_MARKER, b"demo users created by the portal\n",
                         mode=0o600)
        return True

    def has_demo_users(self) -> bool:
        """True when this directory's users were made by :meth:`ensure_demo_users`."""
        return (self.path.parent / DEMO_MARKER).exists()

    @property
    def location(self) -> str:
        """Where the directory is, for messages."""
        return str(self.path)

    def import_entries(self, entries: Mapping[str, Any], *, replace: bool = True) -> int:
        """Add or replace users from raw entries (``credentials.usernames`` of a users.yaml).

        All or nothing: every entry is checked first (:func:`check_entries`);
        returns how many users were given. ``replace=False`` leaves a user
        already there as it is. Raises UserDirectoryError (bad entry, file or
        database cannot be changed), TypeError/ValueError.
        """
        checked = check_entries(entries)

        def merge(users: dict[str, Any]) -> None:
            for name, entry in checked.items():
                if replace or name not in users:
                    users[name] = entry
        self._change(merge)
        return len(checked)

    def export_yaml(self) -> str:
        """The directory as a ``users.yaml`` (password hashes included: keep it 0600)."""
        entries = self.entries()
        return dump_yaml({"credentials": {"usernames": {
            n: {k: v for k, v in entries[n].items() if k not in _OBSOLETE_FIELDS}
            for n in sorted(entries)}}})


def demo_entries() -> dict[str, dict[str, Any]]:
    # Hashed before any lock is taken (~0.25 s each): writers never queue behind bcrypt.
    # hash_password is looked up in this module (here and in add, set_password): a
    # test that wants cheap hashes patches mfa_core.directory.yaml_file.hash_password.
    return {username: new_entry(username, hash_password(password), name, email, roles)
            for username, password, name, email, roles in DEMO_USERS}


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=True)


def load_yaml_file(path: str | os.PathLike) -> dict[str, Any]:
    """The ``credentials.usernames`` of a users.yaml file. Raises UserDirectoryError."""
    try:
        raw = Path(path).read_bytes()
        data = yaml.load(raw.decode("utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserDirectoryError(f"The user file {path} cannot be read.") from exc
    return _normalized(data, Path(path))["credentials"]["usernames"]


def _normalized(data: Any, path: Path) -> dict[str, Any]:
    """A parsed ``users.yaml`` with ``credentials.usernames`` a dict (an empty file has none).

    Raises UserDirectoryError for a file that is not a user file (a list, a string...).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserDirectoryError(f"The user file {path} cannot be read: it is not a mapping.")
    credentials = data.get("credentials")
    if credentials is None:
        credentials = data["credentials"] = {}
    if not isinstance(credentials, dict):
        raise UserDirectoryError(f"The user file {path} cannot be read: 'credentials' is not a mapping.")
    if credentials.get("usernames") is None:
        credentials["usernames"] = {}
    if not isinstance(credentials["usernames"], dict):
        raise UserDirectoryError(f"The user file {path} cannot be read: "
                                 "'credentials.usernames' is not a mapping.")
    return data
