"""One person in the embedded directory (``users.yaml`` or the database's table): the
:class:`User` type, roles, the rules on usernames and passwords, and the check of
raw entries before they are stored (``users import``, ``db copy``).

No I/O: the file and the database are :mod:`.yaml_file` and :mod:`.database`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import bcrypt

from ..errors import MFAError

ADMIN_ROLE = "admin"
ROLES = ("user", ADMIN_ROLE)  # the roles the portal acts on (the command line refuses others)
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
MIN_PASSWORD = 8
# What bcrypt.checkpw takes: $2a$/$2b$/$2x$/$2y$, cost 04-31, 22 salt + 31 hash characters.
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

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


def check_entries(entries: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Copies of raw directory entries, each checked; UserDirectoryError names the first bad one.

    A user needs a valid username and a bcrypt password hash (a plain-text
    password is refused, never stored); roles a list of strings; name, e-mail
    strings.
    """
    checked: dict[str, dict[str, Any]] = {}
    for username, entry in entries.items():
        try:
            check_username(username)
        except (TypeError, ValueError):
            raise UserDirectoryError(f"{username!r} is not a valid username.") from None
        if not isinstance(entry, dict):
            raise UserDirectoryError(f"The entry of user {username!r} is not a mapping.")
        hashed = entry.get("password")
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise UserDirectoryError(f"User {username!r} has no bcrypt password hash; "
                                     "nothing was imported.")
        roles = entry.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise UserDirectoryError(f"The roles of user {username!r} are not a list of names.")
        for key in ("name", "first_name", "last_name", "email"):
            if not isinstance(entry.get(key, ""), str):
                raise UserDirectoryError(f"The {key} of user {username!r} is not text.")
        checked[username] = copy.deepcopy(entry)
    return checked


def new_entry(username: str, hashed: str, name: str, email: str,
              roles: list[str] | None) -> dict[str, Any]:
    """A new user's ``users.yaml`` entry (the layout streamlit-authenticator used, which the
    portal's own sign-in kept: ``credentials.usernames.<name>``)."""
    first, _, last = (name or username).partition(" ")
    return {"email": email, "first_name": first, "last_name": last, "password": hashed,
            "roles": list(roles or ["user"])}
