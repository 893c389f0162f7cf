"""Retransmissions (RFC 5080 section 2.2.2): a duplicate gets the first answer again, not a second check.

A NAS that got no answer sends the same request again (same source address
and port, Identifier and Request Authenticator). Checked twice, a right
code would be a replay the second time: a lost Accept would turn into a
Reject. So each request's answer is kept for ``TTL`` seconds; a duplicate
that arrives while the first is still being checked is dropped (the NAS
will hear the first answer, or ask again), one that arrives after gets the
same bytes again. A request that got no answer (the store could not be
used) is forgotten, so that its retransmission is checked afresh.

The cache lives in one worker process's memory: a retransmission reaches
the same worker (the supervisor keeps every socket of the port open, so
Linux's choice of socket by source address and port never changes; see
``workers``), and the same host (a NAS fails over only after its retries).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable

TTL = 30.0
MAX_ENTRIES = 100_000

IN_FLIGHT = object()   # begin(): a duplicate of a request still being checked
NEW = None             # begin(): a new request; call finish() or forget() after


class DedupeCache:
    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl, self.clock, self.max_entries = ttl, clock, max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()

    def begin(self, key: Hashable) -> object:
        """``NEW`` (now in flight), ``IN_FLIGHT``, or the bytes of the first answer."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            found = self._entries.get(key)
            if found is not None:
                return found[1]
            self._entries[key] = (now, IN_FLIGHT)
            return NEW

    def finish(self, key: Hashable, answer: bytes) -> None:
        with self._lock:
            if key in self._entries:
                self._entries[key] = (self._entries[key][0], answer)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (since, answer) = next(iter(entries.items()))
            if now - since < self.ttl and len(entries) <= self.max_entries:
                break
            if answer is IN_FLIGHT and now - since < self.ttl:
                break  # over the size limit, but still being checked: kept
            entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
