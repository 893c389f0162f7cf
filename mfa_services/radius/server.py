"""The RADIUS server: Access-Request (PAP) and Status-Server over UDP, answered by the engine.

One receiving thread reads the datagrams; a pool of check threads does
everything else (an engine call spends most of its time in fsync or the
database), so a slow check never holds up the next packet. The datagrams wait
for a check thread in one queue per source address, and the threads take the
sources in turn (``FairQueue``): a NAS that floods the server (wrong names,
say) waits behind its own requests, while another NAS's are checked at once.
For each packet:

1. the client is the registry entry whose network holds the source address
   (most specific first); none → dropped without an answer, counted;
2. pyrad decodes the packet with that client's secret; anything but an
   Access-Request or a Status-Server → dropped;
3. the Message-Authenticator is required (BlastRADIUS, CVE-2024-3596) and
   must be right: missing or wrong (a wrong secret) → dropped, counted;
4. a retransmission (same source, Identifier and Request Authenticator within
   30 s) gets the first answer again (``dedupe``), never a second check;
5. Status-Server → Access-Accept (health check); an Access-Request → the
   client's mode (``modes.decide``): Accept, Reject or Challenge, with the
   Message-Authenticator first and Proxy-State copied (pyrad does both);
6. a store that cannot be used → no answer (the NAS fails over), never an Accept.

Counters of every outcome and drop are kept (``counts``), logged to stderr
when the server stops and every ``STATS_INTERVAL`` seconds while drops happen.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pyrad import packet
from pyrad.dictionary import Dictionary

import mfa_core
from mfa_core.audit import AuditEvent

from . import modes
from .dedupe import IN_FLIGHT, NEW, DedupeCache

log = logging.getLogger("mfa_services.radius")

DICTIONARY = Path(__file__).with_name("dictionary")
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 1812
CHECK_THREADS = 8
RECEIVE_BUFFER = 1 << 20
STATS_INTERVAL = 60.0
# A request that waited longer than this for a check thread is dropped unchecked: its NAS
# (3-5 s timeout) has given up on it or sent it again, and a check now would only spend the
# code after nobody listens. Only when the checks cannot keep up (or the store hangs).
QUEUE_DEADLINE = 3.0
MAX_PENDING = 10_000    # datagrams waiting for a check thread; more are dropped on arrival (a flood)
MAX_PENDING_SOURCE = 2_000  # of those from one source address (a NAS): its flood never fills the queue
REGISTRY_MAX_AGE = 1.0  # seconds the client registry is reused between reads (one read a packet costs ~0.2 ms)
MAX_CALLING_STATION = 64

_REFUSED_METHODS = {3: "CHAP", 60: "CHAP", 79: "EAP"}
_MICROSOFT = 311


class Dropped(Exception):
    """The packet gets no answer; ``str()`` is the counter's name."""


class RadiusServer:
    def __init__(self, svc: Any, registry: Any, address: str = DEFAULT_ADDRESS,
                 port: int = DEFAULT_PORT, *, threads: int = CHECK_THREADS,
                 clock: Callable[[], float] | None = None,
                 dedupe: DedupeCache | None = None, reuse_port: bool = False,
                 sock: socket.socket | None = None, parent: int | None = None) -> None:
        self.svc, self.registry = svc, registry
        self.clock = clock or svc.clock
        self.dictionary = Dictionary(str(DICTIONARY))
        self.dedupe = dedupe or DedupeCache()
        self.counts: collections.Counter[str] = collections.Counter()
        self._counts_lock = threading.Lock()
        self._warned: dict[tuple, float] = {}
        self._queue = FairQueue(MAX_PENDING_SOURCE, MAX_PENDING)
        self._threads = threads
        self._stop = threading.Event()
        self.parent = parent  # a worker's supervisor (workers.py): gone → this worker stops
        if sock is not None:  # a worker: the supervisor bound it (workers.bind)
            self.sock = sock
            self.address = sock.getsockname()
            return
        info = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass
        if reuse_port:
            # Several servers on one port (one per core): Linux spreads the datagrams by
            # source address and port, so a NAS's retransmission reaches the server that
            # holds its first answer.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(info[4])
        self.address = self.sock.getsockname()

    # -- the loop ------------------------------------------------------------

    def serve_forever(self) -> None:
        if self.parent is None:
            log.info("RADIUS server listening on %s port %d (UDP)", self.address[0], self.address[1])
        else:
            log.info("RADIUS worker ready (pid %d)", os.getpid())
        last_stats = time.monotonic()
        checkers = [threading.Thread(target=self._check_loop, name=f"radius-check-{n}", daemon=True)
                    for n in range(self._threads)]
        for each in checkers:
            each.start()
        try:
            while not self._stop.is_set():
                if self.parent is not None and os.getppid() != self.parent:
                    log.warning("the RADIUS supervisor (pid %d) is gone: this worker stops",
                                self.parent)
                    break
                ready, _, _ = select.select([self.sock], [], [], 0.5)
                if ready:
                    try:
                        data, peer = self.sock.recvfrom(8192)
                    except OSError:
                        continue
                    full = self._queue.put(peer[0], (data, peer, time.monotonic()))
                    if full:
                        self._count(f"dropped_{full}")
                        self._warn(("overload", peer[0]), "dropped RADIUS requests from %s: too "
                                   "many wait for a check (%s)", peer[0], full)
                if time.monotonic() - last_stats >= STATS_INTERVAL:
                    last_stats = time.monotonic()
                    self._log_stats()
        finally:
            self._queue.close()  # the threads answer what waits, then stop
            for each in checkers:
                each.join()
            self.sock.close()
            self._log_stats()

    def stop(self) -> None:
        self._stop.set()

    def _count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1

    def _warn(self, key: tuple, message: str, *args: Any) -> None:
        """A warning at most once a minute for the same kind of drop from the same address."""
        now = time.monotonic()
        with self._counts_lock:
            if now - self._warned.get(key, -STATS_INTERVAL) < STATS_INTERVAL:
                return
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned[key] = now
        log.warning(message, *args)

    def _log_stats(self) -> None:
        with self._counts_lock:
            counts = dict(self.counts)
        if counts:
            log.info("RADIUS counts: %s", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    # -- one packet ------------------------------------------------------------

    def _check_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.handle(*item)

    def handle(self, data: bytes, peer: tuple, received: float | None = None) -> None:
        """Answer one datagram (or not). Never raises: a check thread must not die."""
        try:
            if received is not None and time.monotonic() - received > QUEUE_DEADLINE:
                self._warn(("late",), "dropped RADIUS requests that waited over %g s for a check "
                           "(the checks cannot keep up, or the store hangs)", QUEUE_DEADLINE)
                raise Dropped("late")
            self._handle(data, peer)
        except Dropped as exc:
            self._count(f"dropped_{exc}")
            log.debug("dropped a packet from %s: %s", peer[0], exc)
        except Exception:  # noqa: BLE001 (fail closed: no answer, never an Accept)
            self._count("dropped_error")
            log.exception("a RADIUS request from %s failed; no answer sent", peer[0])

    def _handle(self, data: bytes, peer: tuple) -> None:
        try:
            found = self.registry.match(peer[0])
        except mfa_core.StorageError:
            self._warn(("store",), "the store cannot be used: RADIUS requests get no answer "
                       "(the NAS fails over)")
            raise Dropped("store_unavailable") from None
        if found is None:
            self._warn(("unknown", peer[0]), "dropped RADIUS packets from %s: no client has that "
                       "address", peer[0])
            raise Dropped("unknown_client")
        client, secret = found
        try:
            pkt = packet.AuthPacket(packet=data, secret=secret, dict=self.dictionary)
        except Exception:  # noqa: BLE001 (anything pyrad cannot decode)
            raise Dropped("malformed") from None
        if pkt.code not in (packet.AccessRequest, packet.StatusServer):
            raise Dropped("not_access_request")
        if not pkt.message_authenticator:
            self._warn(("no-ma", peer[0]), "dropped RADIUS requests from %s (client %s): no "
                       "Message-Authenticator", peer[0], client.name)
            raise Dropped("no_message_authenticator")
        try:
            valid = pkt.verify_message_authenticator()
        except Exception:  # noqa: BLE001
            valid = False
        if not valid:
            self._warn(("bad-ma", peer[0]), "dropped RADIUS requests from %s (client %s): wrong "
                       "Message-Authenticator (wrong shared secret?)", peer[0], client.name)
            raise Dropped("bad_authenticator")
        key = (peer[0], peer[1], pkt.id, pkt.authenticator)
        seen = self.dedupe.begin(key)
        if seen is IN_FLIGHT:
            raise Dropped("duplicate_in_flight")
        if seen is not NEW:
            self._count("retransmission_answered")
            self.sock.sendto(seen, peer)
            return
        try:
            raw = self._answer(pkt, client)
        except BaseException:
            self.dedupe.forget(key)
            raise
        self.dedupe.finish(key, raw)
        self.sock.sendto(raw, peer)

    def _answer(self, pkt: packet.AuthPacket, client: Any) -> bytes:
        reply = pkt.CreateReply()  # Message-Authenticator (sent first), Proxy-State copied
        if pkt.code == packet.StatusServer:
            self._count("status_server")
            reply.code = packet.AccessAccept
            return reply.ReplyPacket()
        request = self._request(pkt, client)
        if request.refused_method:
            self._refused(client, request)
            outcome = modes.REJECT
        else:
            try:
                outcome = modes.decide(self.svc, client, request, self.clock)
            except modes.Unanswerable:
                self._warn(("store",), "the store cannot be used: RADIUS requests get no answer "
                           "(the NAS fails over)")
                raise Dropped("store_unavailable") from None
        self._count({modes.ACCESS_ACCEPT: "accept", modes.ACCESS_REJECT: "reject",
                     modes.ACCESS_CHALLENGE: "challenge"}[outcome.code])
        reply.code = outcome.code
        if outcome.message:
            reply.AddAttribute("Reply-Message", outcome.message)
        if outcome.state is not None:
            reply.AddAttribute("State", outcome.state)
        return reply.ReplyPacket()

    def _request(self, pkt: packet.AuthPacket, client: Any) -> modes.Request:
        def raw(code: int) -> list[bytes]:
            return list(pkt.get(code) or [])

        names, passwords, states = raw(1), raw(2), raw(24)
        username = None
        if len(names) == 1:
            try:
                username = names[0].decode("utf-8")
            except UnicodeDecodeError:
                username = None
        password = None
        if len(passwords) == 1:
            try:
                password = pkt.PwDecrypt(passwords[0])
            except Exception:  # noqa: BLE001 (a bad length)
                password = None
        refused = next((name for code, name in _REFUSED_METHODS.items() if raw(code)), None)
        if refused is None and any(isinstance(k, tuple) and k[0] == _MICROSOFT for k in pkt.keys()):
            refused = "MS-CHAP"
        source = client.actor
        calling = raw(31)
        if len(calling) == 1:
            text = calling[0].decode("utf-8", "replace")[:MAX_CALLING_STATION]
            if text.isprintable() and text.strip():
                source = f"{client.actor}@{text.strip()}"  # the user's own address, as the NAS saw it
        return modes.Request(username=username or "", password=password,
                             state=states[0] if len(states) == 1 else None,
                             source=source, refused_method=refused)

    def _refused(self, client: Any, request: modes.Request) -> None:
        self._count(f"refused_{request.refused_method.lower().replace('-', '')}")
        try:
            self.svc.store.append_audit([AuditEvent(
                self.clock(), None, client.actor, "radius_request_refused", "refused",
                f"{request.refused_method} is not supported (PAP only)").to_dict()])
        except (mfa_core.MFAError, OSError):
            log.warning("a refused RADIUS request could not be audited")


class FairQueue:
    """Datagrams waiting for a check thread: one queue per source, the sources served in turn.

    ``put`` refuses (returns the counter's name) when the source already has
    ``per_source`` waiting or everything ``total``; ``get`` blocks until an
    item waits and returns None once closed and empty.
    """

    def __init__(self, per_source: int, total: int) -> None:
        self.per_source, self.total = per_source, total
        self._queues: dict[Any, collections.deque] = {}
        self._turns: collections.deque = collections.deque()  # sources with items, in turn order
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, source: Any, item: Any) -> str | None:
        with self._cond:
            if self._size >= self.total:
                return "overload"
            queue = self._queues.get(source)
            if queue is None:
                queue = self._queues[source] = collections.deque()
                self._turns.append(source)
            elif len(queue) >= self.per_source:
                return "source_overload"
            queue.append(item)
            self._size += 1
            self._cond.notify()
            return None

    def get(self) -> Any:
        with self._cond:
            while not self._turns:
                if self._closed:
                    return None
                self._cond.wait()
            source = self._turns.popleft()
            queue = self._queues[source]
            item = queue.popleft()
            self._size -= 1
            if queue:
                self._turns.append(source)  # its next item after every other source's
            else:
                del self._queues[source]
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return self._size


def serve(svc: Any, registry: Any, address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT,
          *, threads: int = CHECK_THREADS, reuse_port: bool = False,
          sock: socket.socket | None = None, ready: Callable[[], None] | None = None,
          parent: int | None = None) -> int:
    """Run until SIGTERM or SIGINT (systemd-friendly: logs to stderr, exits 0).

    A worker (``workers.py``) is given its supervisor's ``sock``, calls
    ``ready`` once it can answer, and stops when its ``parent`` is gone.
    """
    import signal

    server = RadiusServer(svc, registry, address, port, threads=threads, reuse_port=reuse_port,
                          sock=sock, parent=parent)

    def stop(signum, frame):  # noqa: ARG001
        if parent is None:
            log.info("RADIUS server stopping (signal %d)", signum)
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if ready is not None:
        ready()
    server.serve_forever()
    return 0


def threads_from_env(environ) -> int:
    try:
        value = int(environ.get("MFA_PORTAL_RADIUS_THREADS", CHECK_THREADS))
    except ValueError:
        return CHECK_THREADS
    return max(1, min(value, 64))


__all__ = ["FairQueue", "RadiusServer", "serve", "DEFAULT_ADDRESS", "DEFAULT_PORT"]
