"""The user directory as the pages read it: parsed once per change of ``users.yaml``.

Parsing a directory of 10,000 users takes a while; pages look a user up on
every run, so the parsed file is kept until the file changes (size or mtime).
The snapshot is the shared directory, not anyone's session data.

Public, read-only: ``entries(portal)`` (username -> raw entry), ``lookup(portal,
username)`` (one ``User``) and ``index(portal)`` (a ``mfa_core.users.UserIndex``
kept with the snapshot: sorted usernames, search, ``User`` per name).
"""

from __future__ import annotations

import threading
from typing import Any

import yaml

from mfa_core.users import User, UserIndex, user_from_entry

from . import config

_snapshots: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
_indexes: dict[str, tuple[dict[str, Any], UserIndex]] = {}
_lock = threading.Lock()


def _entries(portal: config.Portal) -> dict[str, Any]:
    path = portal.directory.path
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        return {}
    cached = _snapshots.get(str(path))
    if cached and cached[0] == stamp:
        return cached[1]
    with _lock:
        try:
            data = yaml.load(path.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except (OSError, yaml.YAMLError):
            return {}
        entries = ((data.get("credentials") or {}).get("usernames") or {})
        _snapshots[str(path)] = (stamp, entries)
    return entries


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
    entries = _entries(portal)
    key = str(portal.directory.path)
    cached = _indexes.get(key)
    if cached and cached[0] is entries:
        return cached[1]
    built = UserIndex(entries)
    if entries:  # an unreadable file ({} each time) is not kept
        _indexes[key] = (entries, built)
    return built


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
