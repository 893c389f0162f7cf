"""The embedded user directory, as it was imported before issue 22 split it by job.

A compatibility re-export: the code lives in :mod:`mfa_core.directory` —
:mod:`~mfa_core.directory.entries` (the :class:`User` type, roles, usernames,
password hashes, the check of raw entries), :mod:`~mfa_core.directory.index`
(the Helpdesk's search index), :mod:`~mfa_core.directory.yaml_file`
(``users.yaml``) and :mod:`~mfa_core.directory.database` (the same directory
as a table in the shared database). New code imports from there.
"""

from __future__ import annotations

from .directory.database import DatabaseUserDirectory, open_directory
from .directory.entries import (ADMIN_ROLE, DEMO_USERS, MIN_PASSWORD, ROLES, User, UserDirectoryError,
                                check_entries, check_username, hash_password, user_from_entry)
from .directory.index import UserIndex, search_text
from .directory.yaml_file import (DEMO_MARKER, LOCK_TIMEOUT, USERS_FILE, UserDirectory, dump_yaml,
                                  load_yaml_file)

__all__ = ["ADMIN_ROLE", "DEMO_MARKER", "DEMO_USERS", "DatabaseUserDirectory", "LOCK_TIMEOUT",
           "MIN_PASSWORD", "ROLES", "USERS_FILE", "User", "UserDirectory", "UserDirectoryError",
           "UserIndex", "check_entries", "check_username", "dump_yaml", "hash_password",
           "load_yaml_file", "open_directory", "search_text", "user_from_entry"]
