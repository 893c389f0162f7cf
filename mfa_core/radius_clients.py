"""RADIUS clients: the VPN concentrators, switches and firewalls (NAS) that may ask the RADIUS server.

The sibling of :mod:`mfa_core.clients` (the verification API's clients):
same names, same commands (``radius clients add|list|remove|rotate``), same
audit events with ``kind`` "radius". A RADIUS client is known by the
addresses it sends from (one or more CIDR networks) and shares a secret with
the server. RADIUS needs that secret itself (every packet is signed with
it: HMAC-MD5), so unlike an API key it cannot be kept as a hash: it is kept
encrypted under the data dir's Fernet keys (``svc.keyring``), re-encrypted
by ``keys rotate``, and shown in clear only once, when it is made.

The registry is one keyed record of the configured store (``radius-clients``):
the TinyDB/file backend and PostgreSQL alike, so every replica sees a change
at once. Each change is a keyed transaction whose audit event commits with
it. The server reads the record on every request (one small read) and
decrypts the secrets again only when the record changed.

``mode`` says how the client asks (see :mod:`mfa_services.radius.modes`):
``code`` (User-Password is the one-time code), ``password+code`` (the
password and the code in one field), ``challenge`` (password, then
Access-Challenge, then the code).
"""

from __future__ import annotations

import ipaddress
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .audit import AuditEvent
from .clients import ClientError, ClientRegistryDamaged, check_client_name
from .errors import MFAError

STORE_KEY = "radius-clients"
FORMAT_VERSION = 1
KIND = "radius"
MODES = ("code", "password+code", "challenge")
DEFAULT_MODE = "code"
SECRET_LENGTH = 32          # characters of [A-Za-z0-9]: ~190 bits, safe on any command line
MAX_NETWORKS = 32
STATE_PREFIX = "radius-state:"  # keyed records of the Access-Challenge States (mfa_services.radius)
_ALPHABET = string.ascii_letters + string.digits

__all__ = ["RadiusClient", "RadiusClientRegistry", "ClientError", "MODES", "check_client_name",
           "check_mode", "check_networks", "new_secret", "open_radius_registry"]


@dataclass(frozen=True)
class RadiusClient:
    name: str
    networks: tuple[str, ...]
    mode: str
    created_at: float
    rotated_at: float | None = None
    kind: str = KIND

    @property
    def actor(self) -> str:
        """Who this client is in the audit trail."""
        return f"radius/{self.name}"


def check_mode(mode: Any) -> str:
    if not isinstance(mode, str):
        raise TypeError("the mode must be a str")
    if mode not in MODES:
        raise ValueError(f"The mode is one of {', '.join(MODES)}.")
    return mode


def check_networks(networks: Any) -> tuple[str, ...]:
    """CIDR networks (or single addresses) in their normal form; ValueError when one is not."""
    if isinstance(networks, str):
        networks = [networks]
    if not isinstance(networks, (list, tuple)) or not networks:
        raise ValueError("A RADIUS client needs at least one address (--address CIDR).")
    if len(networks) > MAX_NETWORKS:
        raise ValueError(f"At most {MAX_NETWORKS} addresses per client.")
    found = []
    for each in networks:
        if not isinstance(each, str):
            raise TypeError("an address must be a str")
        try:
            net = ipaddress.ip_network(each.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{each!r} is not an IP address or CIDR network.") from None
        if net.prefixlen == 0:
            raise ValueError(f"{each!r} is every address: give the NAS's own address or network.")
        if str(net) not in found:
            found.append(str(net))
    return tuple(found)


def new_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


class RadiusClientRegistry:
    """Who may ask the RADIUS server, with their secrets (encrypted). Safe from any thread."""

    def __init__(self, store: Any, keyring: Any, *, clock: Callable[[], float] = time.time,
                 max_age: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.keyring = keyring
        self.clock = clock
        self.max_age, self.monotonic = max_age, monotonic  # how long the server may reuse a read
        self._read_at = 0.0
        self._cache_lock = threading.Lock()
        self._cache: tuple[Any, list[tuple[RadiusClient, bytes, list[Any]]]] | None = None

    # -- reading -----------------------------------------------------------

    def _damaged(self) -> ClientRegistryDamaged:
        return ClientRegistryDamaged("The RADIUS client registry is damaged; no client is let in "
                                     "until it is fixed.")

    def _check(self, doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        if doc is None:
            return {}
        clients = doc.get("clients", {}) if set(doc) - {"username"} else {}
        if (set(doc) - {"username"} and doc.get("version") != FORMAT_VERSION) \
                or not isinstance(clients, dict):
            raise self._damaged()
        for name, entry in clients.items():
            try:
                ok = (isinstance(entry, dict) and check_client_name(name) == name
                      and isinstance(entry.get("secret"), str)
                      and check_mode(entry.get("mode")) == entry["mode"]
                      and isinstance(entry.get("networks"), list)
                      and check_networks(entry["networks"]) == tuple(entry["networks"])
                      and isinstance(entry.get("created_at"), (int, float))
                      and isinstance(entry.get("rotated_at"), (int, float, type(None))))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise self._damaged()
        return clients

    def _entries(self) -> dict[str, dict[str, Any]]:
        try:
            doc = self.store.read_keyed(STORE_KEY)
        except OSError as exc:
            raise ClientRegistryDamaged(f"The RADIUS client registry cannot be read: {exc}") from exc
        except MFAError as exc:  # RecordDamaged, StorageError
            raise self._damaged() from exc
        return self._check(doc)

    @staticmethod
    def _client(name: str, entry: dict[str, Any]) -> RadiusClient:
        return RadiusClient(name=name, networks=tuple(entry["networks"]), mode=entry["mode"],
                            created_at=float(entry["created_at"]), rotated_at=entry.get("rotated_at"))

    def clients(self) -> list[RadiusClient]:
        return [self._client(n, e) for n, e in sorted(self._entries().items())]

    def get(self, name: str) -> RadiusClient | None:
        entry = self._entries().get(check_client_name(name))
        return None if entry is None else self._client(name, entry)

    def resolved(self) -> list[tuple[RadiusClient, bytes, list[Any]]]:
        """Every client with its secret (bytes) and networks, for the server.

        Read from the store again when the last read is ``max_age`` seconds old
        (0: every time); decrypted again only when the record changed.
        """
        now = self.monotonic()
        with self._cache_lock:
            if self._cache is not None and now - self._read_at < self.max_age:
                return self._cache[1]
        entries = self._entries()
        with self._cache_lock:
            if self._cache is not None and self._cache[0] == entries:
                self._read_at = now
                return self._cache[1]
        found = [(self._client(name, entry), self.keyring.decrypt(entry["secret"]).encode("utf-8"),
                  [ipaddress.ip_network(n) for n in entry["networks"]])
                 for name, entry in sorted(entries.items())]
        with self._cache_lock:
            self._cache, self._read_at = (entries, found), now
        return found

    def match(self, address: str) -> tuple[RadiusClient, bytes] | None:
        """The client a packet from ``address`` belongs to (the most specific network), or None."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped
        best: tuple[int, RadiusClient, bytes] | None = None
        for client, secret, networks in self.resolved():
            for net in networks:
                if ip.version == net.version and ip in net \
                        and (best is None or net.prefixlen > best[0]):
                    best = (net.prefixlen, client, secret)
        return None if best is None else (best[1], best[2])

    # -- changing ------------------------------------------------------------

    def _change(self, name: str, actor: str, event: str, detail: str, change) -> Any:
        actor = actor if isinstance(actor, str) and actor.strip() else "operator"
        try:
            with self.store.keyed_transaction(STORE_KEY) as txn:
                entries = {n: dict(e) for n, e in self._check(txn.record).items()}
                result = change(entries)
                txn.record.clear()
                txn.record.update({"username": STORE_KEY, "version": FORMAT_VERSION,
                                   "clients": dict(sorted(entries.items()))})
                txn.log(AuditEvent(self.clock(), None, actor, event, "success",
                                   f"{KIND} client {name}{': ' + detail if detail else ''}").to_dict())
        except OSError as exc:
            raise ClientRegistryDamaged(f"The RADIUS client registry cannot be changed: {exc}") from exc
        return result

    @staticmethod
    def _known(entries: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in entries:
            raise ClientError(f"There is no RADIUS client named {name!r}.")
        return entries[name]

    def add(self, name: str, networks: Any, mode: str = DEFAULT_MODE, *,
            actor: str = "operator") -> str:
        """Register a client; returns its shared secret (the only time it exists in clear)."""
        name, networks, mode = check_client_name(name), check_networks(networks), check_mode(mode)
        secret = new_secret()
        token = self.keyring.encrypt(secret)

        def change(entries):
            if name in entries:
                raise ClientError(f"A RADIUS client named {name!r} already exists "
                                  f"(a new secret: 'radius clients rotate {name}').")
            entries[name] = {"networks": list(networks), "mode": mode, "secret": token,
                             "created_at": self.clock(), "rotated_at": None}
        self._change(name, actor, "radius_client_added", f"{', '.join(networks)}, mode {mode}", change)
        return secret

    def remove(self, name: str, *, actor: str = "operator") -> None:
        name = check_client_name(name)

        def change(entries):
            self._known(entries, name)
            del entries[name]
        self._change(name, actor, "radius_client_removed", "", change)

    def rotate(self, name: str, *, actor: str = "operator") -> str:
        name = check_client_name(name)
        secret = new_secret()
        token = self.keyring.encrypt(secret)

        def change(entries):
            entry = self._known(entries, name)
            entry["secret"], entry["rotated_at"] = token, self.clock()
        self._change(name, actor, "radius_client_rotated", "", change)
        return secret

    def reencrypt(self) -> int:
        """Every secret under the keyring's current key (``keys rotate``); returns how many moved."""
        moved = 0
        with self.store.keyed_transaction(STORE_KEY) as txn:
            if not txn.record.get("clients"):
                return 0
            entries = self._check(txn.record)
            for entry in entries.values():
                if not self.keyring.is_current(entry["secret"]):
                    entry["secret"] = self.keyring.reencrypt(entry["secret"])
                    moved += 1
        return moved


def open_radius_registry(svc: Any, *, max_age: float = 0.0) -> RadiusClientRegistry:
    """The RADIUS client registry of ``svc``'s store, secrets under its keyring.

    ``max_age``: seconds the server may answer from its last read of the
    registry (a change then takes effect within that time).
    """
    return RadiusClientRegistry(svc.store, svc.keyring, clock=svc.clock, max_age=max_age)


def state_record_expired(key: str, rec: dict[str, Any], now: float) -> bool:
    """For the store's sweep: an Access-Challenge State past its time (used or not)."""
    if not key.startswith(STATE_PREFIX):
        return False
    try:
        return float(rec.get("expires_at", 0)) < now
    except (TypeError, ValueError):
        return False
