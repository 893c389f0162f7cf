"""The verification API's clients: the services (VPN, SSH, internal apps) that may ask "is this code right?".

Each client has a name, a key and a request-rate limit. The key is shown once,
when it is made (``clients add`` / ``clients rotate``); the registry keeps only
its keyed hash (HMAC-SHA256 under the server's pepper), so a copy of the data
dir alone does not let anyone call the API. Keys look like ``mfap_<43
characters>`` (``secrets.token_urlsafe(32)``: 256 bits) so that a leaked one is
recognisable in a log or a secret scanner.

:class:`ClientRegistry` is the interface; :class:`FileClientRegistry` keeps
the clients in ``api_clients.json`` in the data dir (mode 0600, replaced
atomically, each change under a lock that excludes other threads and
processes, reads cached until the file changes). With a shared database,
:class:`DatabaseClientRegistry` keeps the same document as one keyed record
of the store (``api-clients``), changed in a keyed transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence


from .audit import AuditEvent
from .errors import MFAError, StorageError
from .storage.files import LockBusy, exclusive, make_dirs, path_lock, write_atomic

log = logging.getLogger(__name__)

CLIENTS_FILE = "api_clients.json"
FORMAT_VERSION = 1
KEY_PREFIX = "mfap_"
DEFAULT_RATE = 600          # requests a minute
MAX_RATE = 1_000_000
TOUCH_INTERVAL = 60.0       # seconds: ``last_used`` is kept to the minute (one write a minute, not a request)
LOCK_TIMEOUT = 10.0
MAX_KEY_LENGTH = 200
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HASH = re.compile(r"[0-9a-f]{64}")
_HASH_CONTEXT = b"mfa-portal api client key\x00"


class ClientError(MFAError):
    """A change to the client registry was refused (unknown or duplicate name, bad rate)."""


class ClientRegistryDamaged(StorageError):
    """The registry file exists but is not a valid registry: no client is let in (fail closed)."""

    default_message = "The API client registry cannot be read."


@dataclass(frozen=True)
class APIClient:
    name: str
    created_at: float
    rate: int                   # requests a minute
    last_used: float | None = None
    rotated_at: float | None = None

    @property
    def actor(self) -> str:
        """Who this client is in the audit trail."""
        return f"api/{self.name}"


def check_client_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError("the client name must be a str")
    if not _NAME.fullmatch(name):
        raise ValueError("A client name is 1-64 lower-case letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit.")
    return name


def check_rate(rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise TypeError("the rate must be an int (requests a minute)")
    if not 1 <= rate <= MAX_RATE:
        raise ValueError(f"The rate is 1 to {MAX_RATE:,} requests a minute.")
    return rate


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, _HASH_CONTEXT + key.encode("utf-8"), hashlib.sha256).hexdigest()


class ClientRegistry(ABC):
    """Who may call the verification API. Every method is safe to call from any thread."""

    @abstractmethod
    def add(self, name: str, rate: int = DEFAULT_RATE, *, actor: str = "operator") -> str:
        """Register a client; returns its new key (the only time it exists in clear).

        Raises ClientError when the name is taken, TypeError/ValueError for bad arguments.
        """

    @abstractmethod
    def clients(self) -> list[APIClient]:
        """Every client, sorted by name."""

    @abstractmethod
    def get(self, name: str) -> APIClient | None: ...

    @abstractmethod
    def remove(self, name: str, *, actor: str = "operator") -> None:
        """Remove a client: its key stops working at once. Raises ClientError when unknown."""

    @abstractmethod
    def rotate(self, name: str, *, actor: str = "operator") -> str:
        """A new key for the client; the old one stops working at once. Raises ClientError when unknown."""

    @abstractmethod
    def set_rate(self, name: str, rate: int, *, actor: str = "operator") -> APIClient: ...

    @abstractmethod
    def authenticate(self, key: Any) -> APIClient | None:
        """The client whose key this is, or None (wrong, removed or malformed key).

        The key's hash is compared with every client's in constant time.
        """

    @abstractmethod
    def touch(self, name: str) -> None:
        """Note that the client was just used (kept to the minute; never raises)."""


_Stamp = tuple[int, int, int]


class FileClientRegistry(ClientRegistry):
    """The registry as one small JSON file in the data dir (see the module's doc)."""

    def __init__(self, data_dir: str | os.PathLike, pepper: bytes, *,
                 clock: Callable[[], float] = time.time,
                 audit: Callable[[Sequence[dict[str, Any]]], None] | None = None,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
        if not isinstance(pepper, bytes) or len(pepper) < 16:
            raise TypeError("pepper must be at least 16 bytes")
        self.path = Path(data_dir) / CLIENTS_FILE
        self._pepper = pepper
        self._clock = clock
        self._audit = audit
        self.lock_timeout = lock_timeout
        self._lock_file = str(self.path) + ".lock"
        self._thread_lock = path_lock(self.path)
        self._snapshot: tuple[_Stamp | None, dict[str, dict[str, Any]]] | None = None
        self._parse_lock = threading.Lock()

    # -- reading -----------------------------------------------------------

    def _load(self) -> tuple[_Stamp | None, dict[str, dict[str, Any]]]:
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            return None, {}
        except OSError as exc:
            raise ClientRegistryDamaged(f"The API client registry {self.path} cannot be read: "
                                        f"{exc.strerror or type(exc).__name__}.") from exc
        return (st.st_ino, st.st_mtime_ns, st.st_size), self._parse(raw)

    def _damaged(self) -> ClientRegistryDamaged:
        return ClientRegistryDamaged(f"The API client registry {self.path} is damaged; "
                                     "no client is let in until it is fixed or removed.")

    def _parse(self, raw: bytes) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self._damaged() from None
        return self._check(data)

    def _check(self, data: Any) -> dict[str, dict[str, Any]]:
        """The clients of a registry document; ClientRegistryDamaged unless every part is valid."""
        damaged = self._damaged()
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION \
                or not isinstance(data.get("clients"), dict):
            raise damaged
        for name, entry in data["clients"].items():
            ok = (isinstance(name, str) and _NAME.fullmatch(name) and isinstance(entry, dict)
                  and isinstance(entry.get("key_hash"), str) and _HASH.fullmatch(entry["key_hash"])
                  and isinstance(entry.get("rate"), int) and not isinstance(entry["rate"], bool)
                  and 1 <= entry["rate"] <= MAX_RATE
                  and isinstance(entry.get("created_at"), (int, float))
                  and all(isinstance(entry.get(k), (int, float, type(None)))
                          for k in ("last_used", "rotated_at")))
            if not ok:
                raise damaged
        return data["clients"]

    def _current_stamp(self) -> _Stamp | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClientRegistryDamaged(f"The API client registry {self.path} cannot be read.") from exc
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _entries(self) -> dict[str, dict[str, Any]]:
        """The cached parse (shared: never change it), parsed again when the file changed."""
        cached = self._snapshot
        if cached is not None and cached[0] == self._current_stamp():
            return cached[1]
        with self._parse_lock:
            cached = self._snapshot
            if cached is None or cached[0] != self._current_stamp():
                cached = self._snapshot = self._load()
        return cached[1]

    @staticmethod
    def _client(name: str, entry: dict[str, Any]) -> APIClient:
        return APIClient(name=name, created_at=float(entry["created_at"]), rate=entry["rate"],
                         last_used=entry.get("last_used"), rotated_at=entry.get("rotated_at"))

    def clients(self) -> list[APIClient]:
        return [self._client(n, e) for n, e in sorted(self._entries().items())]

    def get(self, name: str) -> APIClient | None:
        entry = self._entries().get(check_client_name(name))
        return self._client(name, entry) if entry is not None else None

    def authenticate(self, key: Any) -> APIClient | None:
        if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
            return None
        wanted = key_hash(self._pepper, key)
        found = None
        for name, entry in self._entries().items():  # every hash compared: no early exit
            if hmac.compare_digest(entry["key_hash"], wanted) and found is None:
                found = self._client(name, entry)
        return found

    # -- changing ------------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self, timeout: float | None = None) -> Iterator[dict[str, dict[str, Any]]]:
        """The registry parsed afresh under the lock; written back (atomically, 0600) on success."""
        timeout = self.lock_timeout if timeout is None else timeout
        try:
            with exclusive(self._thread_lock, self._lock_file, timeout):
                _, entries = self._load()
                entries = {name: dict(entry) for name, entry in entries.items()}
                yield entries
                data = {"version": FORMAT_VERSION, "clients": dict(sorted(entries.items()))}
                make_dirs(self.path.parent)
                write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), 0o600)
        except LockBusy:
            raise self._busy() from None

    def _busy(self) -> ClientError:
        return ClientError(f"The API client registry {self.path} stayed locked for "
                           f"{self.lock_timeout:g} s; nothing was changed. Try again in a moment.")

    def _log(self, name: str, actor: str, event: str, detail: str = "") -> None:
        if self._audit is not None:
            self._audit([AuditEvent(self._clock(), None, actor, event, "success",
                                    f"client {name}{': ' + detail if detail else ''}").to_dict()])

    def add(self, name: str, rate: int = DEFAULT_RATE, *, actor: str = "operator") -> str:
        name, rate = check_client_name(name), check_rate(rate)
        key = new_key()
        with self._changing() as entries:
            if name in entries:
                raise ClientError(f"A client named {name!r} already exists "
                                  f"(rotate its key with 'clients rotate {name}').")
            entries[name] = {"key_hash": key_hash(self._pepper, key), "rate": rate,
                             "created_at": self._clock(), "last_used": None, "rotated_at": None}
        self._log(name, actor, "api_client_added", f"{rate} requests a minute")
        return key

    def _known(self, entries: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in entries:
            raise ClientError(f"There is no client named {name!r}.")
        return entries[name]

    def remove(self, name: str, *, actor: str = "operator") -> None:
        name = check_client_name(name)
        with self._changing() as entries:
            self._known(entries, name)
            del entries[name]
        self._log(name, actor, "api_client_removed")

    def rotate(self, name: str, *, actor: str = "operator") -> str:
        name = check_client_name(name)
        key = new_key()
        with self._changing() as entries:
            entry = self._known(entries, name)
            entry["key_hash"] = key_hash(self._pepper, key)
            entry["rotated_at"] = self._clock()
        self._log(name, actor, "api_client_rotated")
        return key

    def set_rate(self, name: str, rate: int, *, actor: str = "operator") -> APIClient:
        name, rate = check_client_name(name), check_rate(rate)
        with self._changing() as entries:
            entry = self._known(entries, name)
            entry["rate"] = rate
            client = self._client(name, entry)
        self._log(name, actor, "api_client_changed", f"{rate} requests a minute")
        return client

    def touch(self, name: str) -> None:
        now = self._clock()
        entry = self._entries().get(name)
        if entry is None or (entry.get("last_used") or 0) > now - TOUCH_INTERVAL:
            return
        try:
            with self._changing(timeout=0.5) as entries:  # never hold a request up for long
                if name in entries:
                    entries[name]["last_used"] = now
        except (MFAError, OSError) as exc:  # a missed "last used" must never fail a verification
            log.warning("last use of API client %s not recorded: %s", name, type(exc).__name__)


class DatabaseClientRegistry(FileClientRegistry):
    """The registry as one keyed record of a shared store: every replica sees a change at once.

    The record holds the file's document (``version``, ``clients``); it is
    read on every look-up (one indexed row) and changed in a keyed
    transaction, so changes from any replica serialize.
    """

    def __init__(self, store: Any, pepper: bytes, *, clock: Callable[[], float] = time.time,
                 audit: Callable[[Sequence[dict[str, Any]]], None] | None = None) -> None:
        super().__init__(os.devnull, pepper, clock=clock, audit=audit)
        self.store = store
        self.path = Path(STORE_KEY)  # for messages only

    def _damaged(self) -> ClientRegistryDamaged:
        return ClientRegistryDamaged("The API client registry in the database is damaged; "
                                     "no client is let in until it is fixed.")

    def _entries(self) -> dict[str, dict[str, Any]]:
        try:
            doc = self.store.read_keyed(STORE_KEY)
        except OSError as exc:
            raise ClientRegistryDamaged("The API client registry in the database cannot be read: "
                                        f"{exc}") from exc
        except MFAError as exc:  # RecordDamaged
            raise self._damaged() from exc
        return {} if doc is None else self._check(_registry_part(doc))

    @contextlib.contextmanager
    def _changing(self, timeout: float | None = None) -> Iterator[dict[str, dict[str, Any]]]:
        try:
            with self.store.keyed_transaction(STORE_KEY) as txn:
                entries = self._check(_registry_part(txn.record)) if txn.existed else {}
                entries = {name: dict(entry) for name, entry in entries.items()}
                yield entries
                txn.record = {"username": STORE_KEY, "version": FORMAT_VERSION,
                              "clients": dict(sorted(entries.items()))}
        except OSError as exc:
            raise ClientRegistryDamaged("The API client registry in the database cannot be "
                                        f"changed: {exc}") from exc


STORE_KEY = "api-clients"


def _registry_part(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "username"}


def open_registry(data_dir: str | os.PathLike, svc: Any) -> FileClientRegistry:
    """The registry of a data dir (or of the shared database), hashing under ``svc``'s pepper
    and auditing to its store."""
    if getattr(svc.store, "database", False):
        return DatabaseClientRegistry(svc.store, svc.keyring.pepper, clock=svc.clock,
                                      audit=svc.store.append_audit)
    return FileClientRegistry(data_dir, svc.keyring.pepper, clock=svc.clock,
                              audit=svc.store.append_audit)
