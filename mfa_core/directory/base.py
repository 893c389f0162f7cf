"""What the engine asks of a user directory, whichever it is (users.yaml, the database, LDAP / AD)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from ..errors import InvalidCode, StorageError
from .entries import ADMIN_ROLE, User, UserDirectoryError

DIRECTORY_DOWN = "The company directory cannot be reached; try again in a minute."
MANAGED_ELSEWHERE = ("Users are managed in the company directory (MFA_PORTAL_LDAP_URL is set): "
                     "add, remove, change passwords and group memberships there.")


def normalize_dn(dn: str) -> str:
    """A DN compared case- and space-insensitively (enough for group DNs the portal is given):
    spaces around the separators go and a run of spaces inside a value counts as one, as
    LDAP's insignificant-space handling compares them (RFC 4518)."""
    parts = []
    for rdn in dn.split(","):
        attr, _, value = rdn.partition("=")
        parts.append(f"{attr.strip().lower()}={' '.join(value.lower().split())}")
    return ",".join(parts)


class DirectoryUnavailable(StorageError):
    """The company directory cannot be reached (every server tried) or refused the portal's account.

    A StorageError, so every caller that fails closed on a store that is
    down (the API's 503, the sign-in page's message) does so here too.
    ``str()`` is the text anyone may see; ``detail`` is for the operator.
    Nothing is counted against the user.
    """

    default_message = DIRECTORY_DOWN

    def __init__(self, detail: str = "the directory cannot be reached") -> None:
        super().__init__(DIRECTORY_DOWN)
        self.detail = detail


class AccountInactive(InvalidCode):
    """The account is disabled, locked or expired in the company directory."""

    default_message = "This account is disabled in the company directory."


class ManagedInDirectory(UserDirectoryError):
    """A change to a user the company directory owns (add, remove, password, roles)."""

    default_message = MANAGED_ELSEWHERE


@dataclass(frozen=True)
class DirectoryUser(User):
    """A :class:`User` as the company directory has them, with their state there."""

    active: bool = True
    inactive_reason: str | None = None
    stable_id: str | None = None


@dataclass(frozen=True)
class DirectoryAccount:
    """One person as the directory has them right now."""

    username: str
    name: str = ""
    email: str = ""
    roles: tuple[str, ...] = ("user",)
    dn: str | None = None
    stable_id: str | None = None        # entryUUID / objectGUID: survives renames
    active: bool = True
    inactive_reason: str | None = None  # "disabled", "locked", "expired"
    password_changed_at: float | None = None
    groups: tuple[str, ...] = field(default=(), repr=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def user(self) -> DirectoryUser:
        return DirectoryUser(username=self.username, name=self.name or self.username, email=self.email,
                             roles=list(self.roles), active=self.active,
                             inactive_reason=self.inactive_reason, stable_id=self.stable_id)


@runtime_checkable
class Directory(Protocol):
    """The engine's view of a user directory.

    ``authenticate`` answers only True/False for a known, active user's
    password (unknown, inactive and wrong look alike); every method raises
    DirectoryUnavailable when the directory cannot be asked.
    """

    def authenticate(self, username: str, password: str) -> bool: ...

    def find(self, username: str) -> DirectoryAccount | None: ...

    def search(self, query: str, limit: int = 25) -> Sequence[DirectoryAccount]: ...

    def is_active(self, username: str) -> bool: ...

    def roles(self, username: str) -> Sequence[str]: ...
