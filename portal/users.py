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
    if getattr(portal.directory, "company", False):
        return _company_lookup(portal, username)
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


def entries(portal: config.Portal) -> dict[str, Any]:
    """username -> raw directory entry, the shared parsed snapshot: read it, never change it."""
    return _entries(portal)


def _company_lookup(portal: config.Portal, username: str) -> User | None:
    """The company directory's person, while active (at most 60 s stale): a leaver's session
    ends at their next page run. The directory down: the page stops with the plain message
    (fail closed, the session is kept for when it is back)."""
    import streamlit as st

    from mfa_core.directory import DirectoryUnavailable
    try:
        account = portal.directory.find(username)
    except DirectoryUnavailable as err:
        st.error(str(err))
        st.stop()
    return account.user() if account is not None and account.active else None
