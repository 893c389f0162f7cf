"""The user directory as the pages read it: parsed once per change of ``users.yaml``.

Parsing a directory of 10,000 users takes a while; pages look a user up on
every run, so they read the directory's own cached parse
(``mfa_core.users.UserDirectory.entries``), kept until the file changes
(inode, mtime or size). ``config.portal()`` holds one directory per data dir,
so every session shares one snapshot; it is the shared directory, not anyone's
session data.

Public, read-only: ``entries(portal)`` (username -> raw entry), ``lookup(portal,
username)`` (one ``User``) and ``index(portal)`` (a ``mfa_core.users.UserIndex``
kept with the snapshot: sorted usernames, search, ``User`` per name).
"""

from __future__ import annotations

from typing import Any

from mfa_core.users import User, UserDirectoryError, UserIndex, user_from_entry

from . import config


def _entries(portal: config.Portal) -> dict[str, Any]:
    try:
        return portal.directory.entries()
    except UserDirectoryError:
        return {}  # a page shows "no such user" rather than a traceback


def lookup(portal: config.Portal, username: str | None) -> User | None:
    """The directory's user, or None (unknown, or the directory cannot be read)."""
    if not isinstance(username, str):
        return None
    entry = _entries(portal).get(username)
    return user_from_entry(username, entry) if isinstance(entry, dict) else None


def index(portal: config.Portal) -> UserIndex:
    """The directory's search index (``mfa_core.users.UserIndex``), kept with the snapshot.

    Built once per version of ``users.yaml`` (sorted usernames and lower-case
    search texts: ~10 ms at 10,000 users) and shared by every session until the
    file changes, so a page run only filters: ``index(p).search(query)`` gives
    the matching usernames, sorted; ``index(p).user(name)`` the ``User`` of one;
    ``len(index(p))`` how many users there are. Read only; never change it.
    An unreadable directory gives an empty index.
    """
    try:
        return portal.directory.index()
    except UserDirectoryError:
        return UserIndex({})


class Credentials(dict):
    """The library's ``credentials['usernames']``, copying an entry only when it is asked for.

    streamlit-authenticator writes to the entry of the user who signs in, so
    each session gets its own copy of that one entry; building a copy of the
    whole directory on every run of the sign-in screen would cost ~20 ms at
    10,000 users.
    """

    def __init__(self, entries: dict[str, Any]) -> None:
        super().__init__()
        self._entries = entries

    def __missing__(self, username: str) -> dict[str, Any]:
        entry = self._entries[username]
        if not isinstance(entry, dict):
            raise KeyError(username)
        copy = dict(entry)
        self[username] = copy
        return copy

    def __contains__(self, username: object) -> bool:
        return dict.__contains__(self, username) or (
            isinstance(self._entries.get(username), dict))  # type: ignore[arg-type]

    def get(self, username: str, default: Any = None) -> Any:
        try:
            return self[username]
        except (KeyError, TypeError):
            return default

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)


def entries(portal: config.Portal) -> dict[str, Any]:
    """username -> raw directory entry, the shared parsed snapshot: read it, never change it."""
    return _entries(portal)


def lazy_credentials(portal: config.Portal) -> Credentials:
    """The ``credentials['usernames']`` mapping the sign-in form hands the library."""
    return Credentials(_entries(portal))


def credentials(portal: config.Portal) -> dict[str, Any]:
    """A full copy ``{"usernames": {name: entry}}`` (entries copied; costs ~5 ms at 10k users)."""
    return {"usernames": {name: dict(entry) for name, entry in _entries(portal).items()
                          if isinstance(entry, dict)}}
