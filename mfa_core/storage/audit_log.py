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

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Sequence

from .base import Event
from .files import write_atomic


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


    def count_by_day(self, events: frozenset[str], since: float, until: float) -> dict[str, int]:
        """"YYYY-MM-DD" -> how many of ``events`` (by name) happened in ``since <= time < until``.

        Counted per day file and remembered beside the files: ``.counts-<hash>.days.json``
        holds each day's [bytes counted, total], and ``.counts-<hash>/<day>.json``
        the day's details (each transaction's events' times). A day whose
        file did not grow is answered from the small file alone; a file that grew
        is read only from where its last count stopped, so a call reads the new
        lines of today and nothing else. Aborted transactions are not counted.
        """
        name = hashlib.sha256("\0".join(sorted(events)).encode()).hexdigest()[:12]
        index_path = self.directory / f".counts-{name}.days.json"
        details = self.directory / f".counts-{name}"
        try:
            raw = json.loads(index_path.read_bytes())
            index = raw["days"] if isinstance(raw, dict) and raw.get("v") == 2 else {}
            if not isinstance(index, dict):
                index = {}
        except (OSError, ValueError, KeyError, TypeError):
            index = {}
        first, last = _day(since), _day(until)
        counts: dict[str, int] = {}
        changed = False
        for path in sorted(self.directory.glob("*.jsonl")):
            day = path.stem
            if day < first or day > last:
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            start = _day_start(day)
            whole = since <= start and start + 86400 <= until
            known = index.get(day)
            if (whole and isinstance(known, list) and len(known) == 2 and known[0] == size
                    and type(known[1]) is int):
                total = known[1]
            else:
                entry = _read_details(details / f"{day}.json", size)
                if entry["size"] < size:
                    entry = _count_from(path, entry, events)
                    with contextlib.suppress(OSError):
                        details.mkdir(exist_ok=True)
                        write_atomic(details / f"{day}.json",
                                     json.dumps(entry, separators=(",", ":")).encode("utf-8"))
                counted = sum(map(len, entry["txns"].values()))
                if known != [entry["size"], counted]:
                    index[day] = [entry["size"], counted]
                    changed = True
                if whole:
                    total = counted
                else:  # a partial day: the events' own times
                    total = sum(1 for times in entry["txns"].values() for t in times if since <= t < until)
            if total:
                counts[day] = total
        if changed:
            with contextlib.suppress(OSError):
                write_atomic(index_path, json.dumps({"v": 2, "days": index},
                                                    separators=(",", ":")).encode("utf-8"))
            with contextlib.suppress(OSError):  # the one file of earlier versions (every detail)
                os.unlink(self.directory / f".counts-{name}.json")
        return counts


def _read_details(path: Path, size: int) -> dict:
    """A day's counted details ({"size": bytes counted, "txns": {txn: [event times]}}), or a
    fresh start when the file is missing, damaged or counted further than the day file now is
    (it was replaced)."""
    try:
        entry = json.loads(path.read_bytes())
        if (isinstance(entry, dict) and type(entry.get("size")) is int and entry["size"] <= size
                and isinstance(entry.get("txns"), dict)
                and all(isinstance(times, list) and set(map(type, times)) <= _NUMBER
                        for times in entry["txns"].values())):
            return entry
    except (OSError, ValueError):
        pass
    return {"size": 0, "txns": {}}


_NUMBER = frozenset({int, float})


def _count_from(path: Path, entry: dict, events: frozenset[str]) -> dict:
    """``entry`` (counted up to byte ``size``) brought up to the file's last whole line."""
    txns: dict[str, list[float]] = {txn: list(times) for txn, times in entry["txns"].items()}
    with open(path, "rb") as fh:
        fh.seek(entry["size"])
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a line still being written is counted next time
    for line in data[:end].splitlines():
        if b'"aborted"' not in line and not any(e.encode() in line for e in events):
            continue  # most lines: no parse
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        txn = str(event.get("txn"))
        if event.get("aborted"):
            txns.pop(txn, None)  # its events, whenever they were counted
            continue
        if event.get("event") in events:
            txns.setdefault(txn, []).append(float(event.get("time", 0)))
    return {"size": entry["size"] + end, "txns": txns}


@functools.lru_cache(maxsize=1024)
def _day_start(day: str) -> float:
    return dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp()


def _day(timestamp: float) -> str:
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        # Beyond the dates a datetime holds: a bound before or after every file.
        return "0000-00-00" if timestamp < 0 else "9999-99-99"

