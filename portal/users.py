"""The user directory as the pages read it: parsed once per change of ``users.yaml``.

Parsing a directory of 10,000 users takes a while; pages look a user up on
every run, so the parsed file is kept until the file changes (size or mtime).
The snapshot is the shared directory, not anyone's session data.
"""

from __future__ import annotations

import threading
from typing import Any

import yaml

from mfa_core.users import User, UserDirectory

from . import config

_snapshots: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
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
    return UserDirectory._user(username, entry) if isinstance(entry, dict) else None


def credentials(portal: config.Portal) -> dict[str, Any]:
    """The ``credentials`` dict streamlit-authenticator takes; entries copied (it writes to them)."""
    return {"usernames": {name: dict(entry) for name, entry in _entries(portal).items()
                          if isinstance(entry, dict)}}
