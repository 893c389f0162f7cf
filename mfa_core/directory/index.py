"""The Helpdesk's search over the embedded directory: :class:`UserIndex`, built once per version."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .entries import User, user_from_entry


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
