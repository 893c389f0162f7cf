"""The embedded directory as a table in the shared database (``MFA_PORTAL_DATABASE_URL``)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from .entries import UserDirectoryError
from .yaml_file import LOCK_TIMEOUT, UserDirectory, demo_entries


class DatabaseUserDirectory(UserDirectory):
    """The directory as a table in the shared database (``PostgresStore``'s ``directory``).

    Every replica sees a change at once: a read checks the directory's
    version (one small query) and reads every entry again only when it moved;
    a change runs in one transaction under the directory's lock and writes
    only the entries it changed.
    """

    def __init__(self, store: Any, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.store = store
        self.path = None  # type: ignore[assignment]  (no file)
        self.lock_timeout = lock_timeout
        self._snapshot = None
        self._index = None
        self._parse_lock = threading.Lock()

    @property
    def location(self) -> str:
        return "the database's user directory"

    @contextlib.contextmanager
    def _database(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:  # DatabaseError: the text names no password
            raise UserDirectoryError(f"The user directory in the database cannot be {doing}: "
                                     f"{exc}") from exc

    def _load(self) -> tuple[Any, dict[str, Any]]:
        with self._database("read"):
            version, entries = self.store.directory_entries()
        return version, {"credentials": {"usernames": entries}}

    def _current_stamp(self) -> Any:
        with self._database("read"):
            return self.store.directory_state()[0]

    def exists(self) -> bool:
        return self._current_stamp() > 0

    def _change(self, fn: Callable[[dict[str, Any]], None]) -> None:
        cached = self._snapshot
        current = (cached[0], cached[1]["credentials"]["usernames"]) if cached else None
        with self._database("changed"):
            version, entries = self.store.change_directory(fn, current)
        self._snapshot = (version, {"credentials": {"usernames": entries}})

    def ensure_demo_users(self) -> bool:
        if self.exists():
            return False
        demo = demo_entries()
        with self._database("changed"):
            done = self.store.change_directory(lambda users: users.update(demo),
                                               only_if_new=True, demo=True)
        return done is not None

    def has_demo_users(self) -> bool:
        with self._database("read"):
            return self.store.directory_state()[1]


def open_directory(data_dir: str | Path, store: Any = None) -> UserDirectory:
    """The directory of a data dir, or of ``store`` when it is a shared database."""
    if store is not None and getattr(store, "database", False):
        return DatabaseUserDirectory(store)
    return UserDirectory(data_dir)
