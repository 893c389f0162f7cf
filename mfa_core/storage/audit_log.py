"""The embedded audit trail: append-only JSON lines, one file a day (UTC).

Written ahead of the record it belongs to: a transaction's events are
appended before its record is committed, so a committed action never lacks
its events, and an append that fails aborts the action (nothing happened,
and the caller is told so truthfully). A record write that fails after the
append is marked by an abort line naming the transaction, and readers drop
that transaction's events. A writer killed between the two writes leaves its
events without a record change: the trail may then hold an attempted action
that did not commit, but it never loses one that did.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Sequence

from .base import Event


class JSONLinesAuditLog:
    """Append-only audit trail, one JSON-lines file a day (UTC).

    An append costs the same however long the trail is; a line torn by a crash
    is skipped when read.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> None:
        by_day: dict[str, list[str]] = {}
        for event in events:
            day = dt.datetime.fromtimestamp(event["time"], dt.timezone.utc).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).append(json.dumps(event, separators=(",", ":")) + "\n")
        with self._lock:
            for day, lines in by_day.items():
                fd = os.open(self.directory / f"{day}.jsonl",
                             os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    data = "".join(lines).encode("utf-8")
                    # A line torn by a crash has no newline: start on a fresh
                    # line, or this batch's first event would be lost with it.
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        data = b"\n" + data
                    # One write per batch: O_APPEND keeps concurrent writers'
                    # lines whole and in one piece.
                    # No fsync: the write reaches the OS before the call
                    # returns, so a killed process loses nothing; only a power
                    # cut could, and each event is also in the user's own
                    # record (fsynced, ``activity``) until 25 newer ones pass.
                    # A short write (disk full) raises: the transaction aborts.
                    if os.write(fd, data) != len(data):
                        raise OSError(28, "short write to the audit trail")
                finally:
                    os.close(fd)

    def abort(self, txn_id: str, at: float) -> None:
        """Mark transaction ``txn_id`` (whose events were appended) as not committed."""
        self.append([{"time": at, "txn": txn_id, "aborted": True}])

    def query(self, username: str | None = None, since: float | None = None,
              until: float | None = None) -> list[Event]:
        first = _day(since) if since is not None else None
        last = _day(until) if until is not None else None
        events: list[Event] = []
        aborted: set[str] = set()
        for path in sorted(self.directory.glob("*.jsonl")):
            day = path.stem
            if (first and day < first) or (last and day > last):
                continue
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a line torn by a crash mid-append
                    if not isinstance(event, dict):
                        continue
                    if event.get("aborted"):
                        aborted.add(event.get("txn"))
                        continue
                    if username is not None and event.get("user") != username:
                        continue
                    t = event.get("time", 0)
                    if (since is not None and t < since) or (until is not None and t >= until):
                        continue
                    events.append(event)
        if aborted:
            events = [e for e in events if e.get("txn") not in aborted]
        events.sort(key=lambda e: e.get("time", 0))
        return events


def _day(timestamp: float) -> str:
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        # Beyond the dates a datetime holds: a bound before or after every file.
        return "0000-00-00" if timestamp < 0 else "9999-99-99"

