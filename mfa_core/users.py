"""The user directory streamlit-authenticator reads: ``users.yaml`` in the data dir.

Passwords are bcrypt hashes; roles say who is a helpdesk admin. Writes are
atomic and locked, like the MFA store's.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import bcrypt
import yaml
from filelock import FileLock

from .errors import MFAError
from .storage import write_atomic

USERS_FILE = "users.yaml"
ADMIN_ROLE = "admin"
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
MIN_PASSWORD = 8

DEMO_USERS = (
    ("alice", "alice-demo", "Alice Example", "alice@example.com", ["user"]),
    ("bob", "bob-demo", "Bob Example", "bob@example.com", ["user"]),
    ("admin", "admin-demo", "Helpdesk Admin", "admin@example.com", ["user", ADMIN_ROLE]),
)


class UserDirectoryError(MFAError):
    """A user-directory operation was refused (unknown user, duplicate, weak password)."""


@dataclass(frozen=True)
class User:
    username: str
    name: str
    email: str
    roles: list[str] = field(default_factory=list)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def check_username(username: Any) -> str:
    if not isinstance(username, str):
        raise TypeError("username must be a str")
    if not _USERNAME.fullmatch(username):
        raise ValueError("A username is 1-64 lower-case letters, digits, '.', '_', '@' or '-', "
                         "starting with a letter or digit.")
    return username


def user_from_entry(username: str, entry: Mapping[str, Any]) -> User:
    """The :class:`User` of one raw ``users.yaml`` entry (``credentials.usernames[username]``).

    The name is ``name``, else "first_name last_name", else the username; the
    entry is only read. Callers that hold a parsed directory (the portal's
    cached snapshot) use this instead of re-reading the file.
    """
    first, last = entry.get("first_name", ""), entry.get("last_name", "")
    name = entry.get("name") or f"{first} {last}".strip() or username
    return User(username=username, name=name, email=entry.get("email", ""),
                roles=list(entry.get("roles") or []))


def search_text(username: str, entry: Mapping[str, Any]) -> str:
    """What a user search looks in: username, name, first and last name, e-mail; lower case."""
    parts = (username, entry.get("name"), entry.get("first_name"), entry.get("last_name"),
             entry.get("email"))
    return " ".join(str(p) for p in parts if p).lower()


class UserIndex:
    """A read-only search index over parsed directory entries (username -> raw entry).

    Built once per version of ``users.yaml`` (O(n log n): the sorted usernames
    and their lower-case :func:`search_text`), then every :meth:`search` is one
    substring test per user and nothing is copied or re-sorted. Entries that
    are not mappings are left out. The index keeps a reference to ``entries``
    and never changes it; build a new index when the directory changes.
    """

    def __init__(self, entries: Mapping[str, Any]) -> None:
        self._entries = entries
        self.names: tuple[str, ...] = tuple(sorted(
            name for name, entry in entries.items() if isinstance(name, str) and isinstance(entry, dict)))
        self._texts: tuple[str, ...] = tuple(search_text(n, entries[n]) for n in self.names)

    def __len__(self) -> int:
        return len(self.names)

    def search(self, query: str | None) -> Sequence[str]:
        """Usernames, sorted, whose username, name or e-mail contains ``query``.

        Case-insensitive; surrounding blanks are ignored; an empty or blank
        query matches everyone.
        """
        needle = (query or "").strip().lower()
        if not needle:
            return self.names
        return [name for name, text in zip(self.names, self._texts) if needle in text]

    def user(self, username: str) -> User | None:
        """The :class:`User` for ``username``, or None when the index does not hold it."""
        entry = self._entries.get(username) if isinstance(username, str) else None
        return user_from_entry(username, entry) if isinstance(entry, dict) else None


def hash_password(password: str) -> str:
    """The bcrypt hash stored for a new password; raises ValueError for one the portal refuses."""
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    if password != password.strip():
        # The sign-in form (streamlit-authenticator) trims what is typed, so
        # such a password could never be typed in.
        raise ValueError("A password cannot start or end with a space (the sign-in form "
                         "ignores them).")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"A password needs at least {MIN_PASSWORD} characters.")
    if len(password.encode("utf-8")) > 72:
        raise ValueError("A password can be at most 72 bytes long.")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


class UserDirectory:
    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / USERS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", thread_local=False)

    # -- reading ---------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.path.read_text("utf-8")) or {}
        except FileNotFoundError:
            data = {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserDirectoryError(f"The user file {self.path} cannot be read.") from exc
        data.setdefault("credentials", {}).setdefault("usernames", {})
        if data["credentials"]["usernames"] is None:
            data["credentials"]["usernames"] = {}
        return data

    def exists(self) -> bool:
        return self.path.exists()

    def credentials(self) -> dict[str, Any]:
        """The ``credentials`` dict streamlit-authenticator takes (a copy)."""
        return copy.deepcopy(self._read()["credentials"])

    def users(self) -> list[User]:
        entries = self._read()["credentials"]["usernames"]
        return [self._user(name, entry) for name, entry in sorted(entries.items())]

    def get(self, username: str) -> User | None:
        entry = self._read()["credentials"]["usernames"].get(username)
        return self._user(username, entry) if entry is not None else None

    def require(self, username: str) -> User:
        user = self.get(username)
        if user is None:
            raise UserDirectoryError(f"There is no user named {username!r}.")
        return user

    def check_password(self, username: str, password: str) -> bool:
        """True when ``password`` is the user's (bcrypt compares in constant time).

        Surrounding blanks are ignored, as on the sign-in form, so a password
        typed the same way works in both places.
        """
        if not isinstance(password, str) or not isinstance(username, str):
            raise TypeError("username and password must be str")
        password = password.strip()
        entry = self._read()["credentials"]["usernames"].get(username)
        if not entry or not password:
            return False
        try:
            return bcrypt.checkpw(password.encode("utf-8"), str(entry.get("password", "")).encode("ascii"))
        except ValueError:
            return False

    def index(self) -> UserIndex:
        """Every user, searchable (parses the file once; see :class:`UserIndex`)."""
        return UserIndex(self._read()["credentials"]["usernames"])

    @staticmethod
    def _user(username: str, entry: dict[str, Any]) -> User:
        return user_from_entry(username, entry)

    # -- changing ----------------------------------------------------------

    def _change(self, fn) -> None:
        with self._lock:
            data = self._read()
            fn(data["credentials"]["usernames"])
            write_atomic(self.path, yaml.safe_dump(data, sort_keys=True).encode("utf-8"), mode=0o600)

    def add(self, username: str, password: str, *, name: str = "", email: str = "",
            roles: list[str] | None = None) -> User:
        username = check_username(username)
        hashed = hash_password(password)
        first, _, last = (name or username).partition(" ")

        def add(users: dict[str, Any]) -> None:
            if username in users:
                raise UserDirectoryError(f"A user named {username!r} already exists.")
            users[username] = {"email": email, "first_name": first, "last_name": last,
                               "password": hashed, "roles": list(roles or ["user"]),
                               "failed_login_attempts": 0, "logged_in": False}
        self._change(add)
        return self.require(username)

    def remove(self, username: str) -> None:
        def remove(users: dict[str, Any]) -> None:
            if users.pop(username, None) is None:
                raise UserDirectoryError(f"There is no user named {username!r}.")
        self._change(remove)

    def set_password(self, username: str, password: str) -> None:
        hashed = hash_password(password)

        def change(users: dict[str, Any]) -> None:
            if username not in users:
                raise UserDirectoryError(f"There is no user named {username!r}.")
            users[username]["password"] = hashed
        self._change(change)

    def set_roles(self, username: str, roles: list[str]) -> None:
        def change(users: dict[str, Any]) -> None:
            if username not in users:
                raise UserDirectoryError(f"There is no user named {username!r}.")
            users[username]["roles"] = list(roles)
        self._change(change)

    def ensure_demo_users(self) -> bool:
        """Create the demo users on a fresh directory; True if it did."""
        with self._lock:
            if self.path.exists():
                return False
        for username, password, name, email, roles in DEMO_USERS:
            try:
                self.add(username, password, name=name, email=email, roles=roles)
            except UserDirectoryError:
                pass  # another process created it first
        return True
