"""The mail outbox: hands each committed audit event to the notifier, in the caller or in the background.

A page click must not wait for a slow mail relay (up to its timeout): the
portal sends from one background thread, in order. The command line sends in
the caller, so its exit status covers the mail. Whether the user was told is
audited (``notification_sent`` / ``notification_failed``); a mail failure
never blocks the action.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

from .audit import AuditEvent

log = logging.getLogger("mfa_core")

# Called with each audit event after commit; returns True when it told the user
# (audited as notification_sent); whatever it raises is logged and audited.
Notifier = Callable[[AuditEvent], object]
QUEUE_LIMIT = 1000  # mails waiting in the background; beyond it, sent in the caller


class Outbox:
    def __init__(self, notifier: Notifier | None, *, background: bool,
                 audit: Callable[[AuditEvent], None], clock: Callable[[], float]) -> None:
        self.notifier = notifier
        self._clock = clock
        self.background = bool(background)
        self._audit = audit  # appends one event to the trail; may raise OSError
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._queued: set[Future] = set()

    def send(self, events: Iterable[AuditEvent]) -> None:
        if self.notifier is None:
            return
        for event in events:
            if not (self.background and self._queue(event)):
                self._deliver(event)

    def _deliver(self, event: AuditEvent) -> None:
        """Hand ``event`` to the notifier and audit whether the user was told."""
        try:
            sent = self.notifier(event)
        except Exception as exc:  # a mail failure never blocks the action
            log.warning("notification for %s failed: %s", event.event, type(exc).__name__)
            self._note(event, "notification_failed", "failure")
            return
        if sent:  # a notifier returns True when it told the user: the helpdesk sees it
            self._note(event, "notification_sent", "success")

    def _note(self, event: AuditEvent, what: str, outcome: str) -> None:
        try:
            self._audit(AuditEvent(self._clock(), event.user, "system", what, outcome, event.event))
        except OSError:
            log.warning("notification for %s: %s not audited", event.event, what)

    def _queue(self, event: AuditEvent) -> bool:
        """Queue ``event`` for the background sender; False when the queue is full."""
        with self._lock:
            if len(self._queued) >= QUEUE_LIMIT:
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfa-notify")
            future = self._pool.submit(self._deliver_queued, event)
            self._queued.add(future)
        future.add_done_callback(self._forget)
        return True

    def _deliver_queued(self, event: AuditEvent) -> None:
        try:
            self._deliver(event)
        except Exception:  # nobody waits on this thread: log instead of losing the reason
            log.exception("notification for %s could not be handled", event.event)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._queued.discard(future)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification was handled; False if ``timeout`` ran out.

        Queued mails are also sent before the process exits (the sender thread
        is joined at interpreter shutdown). Raises TypeError/ValueError on a bad timeout.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError("timeout must be a number of seconds or None")
            if not timeout >= 0:
                raise ValueError("timeout must not be negative.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                waiting = list(self._queued)
            if not waiting:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                waiting[0].result(timeout=left)
            except Exception:  # TimeoutError is checked on the next turn; _deliver logs the rest
                pass
