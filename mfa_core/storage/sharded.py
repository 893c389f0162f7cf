"""The portal's embedded store: one small TinyDB file per user, atomic writes, striped locks.

Each write rewrites one user's file (temp file, fsync, ``os.replace``), so its
cost does not grow with the number of users. Locks hold across Streamlit's
threads and across processes. A file that exists but is not a record (empty,
torn, not JSON, the wrong layout) is damage, never "no record".
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document

from .. import summary as summaries
from ..errors import RecordDamaged, StorageError
from .audit_log import JSONLinesAuditLog
from .base import (ENROLLMENT_EVENTS, LOCK_TIMEOUT, Event, Record, Store, Transaction, canonical_json,
                   check_record, commit_after_audit, parse_record, user_key)
from .files import LockBusy, exclusive, make_dirs, write_atomic

log = logging.getLogger("mfa_core.storage")

TABLE = "mfa"
# A record whose ``two_step`` is true must exist: the store remembers that
# outside the record (a marker file under ``enrolled/``), so a deleted or
# lost record file reads as damage instead of as "no second factor".
GUARD = "two_step"
BUILT = "BUILT"  # in summary/: the coverage index holds every record's summary
# The second witness of the same (issue 20): an empty file under ``witness/`` named by an HMAC
# of the username under the pepper, so it cannot be found from the name without the keys.
# Looked at only when both the record and its marker are missing; written and removed with
# the marker. Without a pepper (a store opened outside ``MFAService``) there is none.
WITNESS_LABEL = b"mfa-portal enrolled witness"


def witness_key(pepper: bytes) -> bytes:
    return hmac.new(pepper, WITNESS_LABEL, hashlib.sha256).digest()


def witness_name(key: bytes, username: str) -> str:
    """The file name of ``username``'s second witness under ``witness_key(pepper)``."""
    return hmac.new(key, username.encode("utf-8"), hashlib.sha256).hexdigest()


class AtomicJSONStorage(Storage):
    """TinyDB storage that never rewrites a file in place (TinyDB's own JSONStorage does).

    One instance serves one transaction: the file is parsed once (or handed
    over already parsed, ``preloaded``) and what was read or written is kept,
    so TinyDB's several reads per operation cost one. Locking is not its job:
    the store takes the record's lock around the whole read-change-write.
    """

    def __init__(self, path: str | Path, create_dirs: bool = True,
                 preloaded: dict[str, Any] | None = None, **_: Any) -> None:
        self.path = os.fspath(path)
        self._create_dirs = create_dirs  # on the first write, not on every open
        self._data: dict[str, dict[str, Any]] | None = preloaded
        self._loaded = preloaded is not None

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self._loaded:
            self._data = self._read_file()
            self._loaded = True
        # Like TinyDB's MemoryStorage, hand out the object itself: TinyDB changes
        # it only on the way to write(), and an instance lives for one
        # transaction, so nothing else ever sees a half-changed copy.
        return self._data

    def _read_file(self) -> dict[str, dict[str, Any]] | None:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None
        return parse_record(raw, f"The store file {os.path.basename(self.path)}")

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        body = canonical_json(data)
        try:
            write_atomic(self.path, body)
        except FileNotFoundError:
            if not self._create_dirs:
                raise
            make_dirs(os.path.dirname(self.path))
            write_atomic(self.path, body)
        self._data = data
        self._loaded = True

    def close(self) -> None:
        pass


class StripedLocks:
    """Locks that hold across Streamlit's threads and across processes.

    A fixed set of lock files (keys hash onto them) keeps the directory small;
    a thread lock in front of each queues the threads of one process, so
    only one of them at a time polls the file's flock (``files.exclusive``).

    A stripe is re-entrant for the thread that holds it: two keys can hash
    onto one stripe, and a transaction on one may open a transaction on the
    other (the source throttle's record, then a directory budget's), which
    would otherwise wait on itself until LOCK_TIMEOUT and fail.
    """

    def __init__(self, directory: Path, stripes: int = 256) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stripes = stripes
        self._thread_locks = [threading.Lock() for _ in range(stripes)]
        root = os.fspath(directory)  # plain strings: 256 pathlib joins cost more than a command
        self._paths = [os.path.join(root, f"{n:03d}.lock") for n in range(stripes)]
        self._held = threading.local()

    def stripe(self, key: str) -> int:
        return int(key[:8], 16) % self.stripes

    @contextlib.contextmanager
    def hold_all(self, keys: Sequence[str]) -> Iterator[None]:
        """Hold the stripes of ``keys`` at once, in ascending order: two threads or processes
        that each need two stripes never hold one each while waiting for the other's."""
        with contextlib.ExitStack() as held:
            for key in sorted(set(keys), key=self.stripe):
                held.enter_context(self.hold(key))
            yield

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        n = self.stripe(key)
        held: set[int] = self._held.__dict__.setdefault("stripes", set())
        if n in held:  # this thread already holds the stripe (and its flock)
            yield
            return
        try:
            with exclusive(self._thread_locks[n], self._paths[n], LOCK_TIMEOUT, poll_interval=0.001):
                held.add(n)
                try:
                    yield
                finally:
                    held.discard(n)
        except LockBusy as exc:
            raise StorageError() from exc


def load_document(path: str, what: str) -> tuple[dict[str, Any] | None, Record | None]:
    """(the parsed file, its record) of one TinyDB file holding document 1; (None, None) if absent.

    Raises RecordDamaged for a file that exists but is not such a file.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None, None
    data = parse_record(raw, what)
    table = data.get(TABLE)
    if not isinstance(table, dict):
        raise RecordDamaged(detail=f"{what} has no {TABLE} table")
    # A copy: TinyDB's update clears the stored document before refilling it.
    return data, dict(check_record(table.get("1"), what))


class ShardedTinyDBStore(Store):
    """One TinyDB file per user under ``users/<2 hex>/<sha256>.json``.

    File names are hashes, so no username can reach outside the directory,
    and each write rewrites one small file. Source records (password
    throttling) live the same way under ``sources/``, with locks of their own.
    """

    TABLE = TABLE

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir)
        self.users_dir = self.root / "users"
        make_dirs(self.users_dir)
        self._users_root = str(self.users_dir)
        self._sources_root = str(self.root / "sources")
        self._guards_root = str(self.root / "enrolled")
        self._witness_root = str(self.root / "witness")
        self._witness_key: bytes | None = None
        self._locks = StripedLocks(self.root / "locks")
        self._source_locks = StripedLocks(self.root / "locks" / "sources", stripes=64)
        self._summary_root = str(self.root / "summary")
        self._summary_locks = StripedLocks(self.root / "locks" / "summary", stripes=256)
        self.audit = JSONLinesAuditLog(self.root / "audit")
        if not any(self.users_dir.iterdir()):  # a new store: its (empty) index is complete
            with contextlib.suppress(OSError):
                os.makedirs(self._summary_root, exist_ok=True)
                if not os.path.exists(os.path.join(self._summary_root, BUILT)):
                    write_atomic(os.path.join(self._summary_root, BUILT), b"coverage index built\n")

    def _path(self, key: str) -> str:
        # Plain strings: pathlib's parsing showed up in the per-call profile.
        return os.path.join(self._users_root, key[:2], key + ".json")

    def _guard(self, key: str) -> str:
        return os.path.join(self._guards_root, key[:2], key)

    def use_pepper(self, pepper: bytes) -> None:
        self._witness_key = witness_key(pepper)

    def _witness(self, username: str) -> str | None:
        if self._witness_key is None:
            return None
        name = witness_name(self._witness_key, username)
        return os.path.join(self._witness_root, name[:2], name)

    def _load_user(self, key: str, username: str) -> tuple[dict[str, Any] | None, Record | None]:
        data, record = load_document(self._path(key), "Your account's record")
        if data is None:  # no record: a stat (two when the marker is gone too), nothing more
            if os.path.exists(self._guard(key)):
                raise RecordDamaged(detail="the record file is missing")
            witness = self._witness(username)
            if witness is not None and os.path.exists(witness):
                raise RecordDamaged(detail="the record file and its enrolment marker are missing")
        return data, record

    def read(self, username: str) -> Record | None:
        return self._load_user(user_key(username), username)[1]

    @contextlib.contextmanager
    def transaction(self, username: str, *, repair: bool = False) -> Iterator[Transaction]:
        key = user_key(username)
        with self._locks.hold(key):
            try:
                data, record = self._load_user(key, username)
                damaged = False
            except RecordDamaged:
                if not repair:
                    raise
                data, record, damaged = {}, None, True
            before = summaries.dumps(summaries.summarize(record))
            txn = Transaction(username, record, damaged=damaged)
            yield txn
            if self._commit(txn, self._path(key), data, self._guard(key), self._witness(username)):
                self._summary_changed(key, username, before, txn.record)

    def _keyed_path(self, hashed: str) -> str:
        return os.path.join(self._sources_root, hashed[:2], hashed + ".json")

    def read_keyed(self, key: str) -> Record | None:
        return load_document(self._keyed_path(user_key(key)), "A keyed record")[1]

    def holding_keyed(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        return self._source_locks.hold_all([user_key(k) for k in keys])

    @contextlib.contextmanager
    def keyed_transaction(self, key: str, *, repair: bool = False) -> Iterator[Transaction]:
        hashed = user_key(key)
        path = self._keyed_path(hashed)
        with self._source_locks.hold(hashed):
            try:
                data, record = load_document(path, "A keyed record")
                txn = Transaction(key, record)
            except RecordDamaged:
                if not repair:
                    raise
                data, txn = {}, Transaction(key, None, damaged=True)
            yield txn
            self._commit(txn, path, data, None)

    def sweep_keyed(self, expired: Callable[[str, Record], bool]) -> int:
        def still_expired(path: Path) -> bool:
            try:
                record = load_document(str(path), "A keyed record")[1]
            except (RecordDamaged, OSError):
                return False
            key = record.get("username") if record is not None else None
            return isinstance(key, str) and user_key(key) == path.stem and expired(key, record)

        removed = 0
        root = Path(self._sources_root)
        shards = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        # A shard at a time: the names of one shard in memory, never every record's.
        for path in (path for shard in shards for path in sorted(shard.glob("*.json"))):
            if not still_expired(path):  # a look first, then again under the record's lock
                continue
            with self._source_locks.hold(path.stem):
                if still_expired(path):
                    os.unlink(path)
                    removed += 1
        return removed

    def _commit(self, txn: Transaction, path: str, data: dict[str, Any] | None,
                guard: str | None, witness: str | None = None) -> bool:
        guarded = guard is not None and bool(txn.record.get(GUARD))
        witnesses = [p for p in (guard, witness) if p is not None]

        def write() -> None:
            if guard is not None and not guarded:
                for each in witnesses:  # before the record: a crash between leaves no stale marker
                    # Absent either way: no file, or a parent that is not a directory.
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        os.unlink(each)
            if txn.damaged:
                self._keep_damaged(path)
            table = TinyDB(path, storage=AtomicJSONStorage, preloaded=data).table(TABLE)
            _replace(table, 1, txn.record, exists=txn.existed)

        if not commit_after_audit(txn, self.audit, write):
            return False
        if not guarded:
            return True
        # Committed: nothing below may report a failure.
        for each in witnesses:
            if not os.path.exists(each):
                try:
                    make_dirs(os.path.dirname(each))
                    write_atomic(each, b"")
                except OSError as exc:
                    log.warning("enrolment marker not written: %s", type(exc).__name__)
        return True

    # -- coverage summaries (mfa_core.summary): one index file per shard ----------------

    def _summary_path(self, shard: str) -> str:
        return os.path.join(self._summary_root, shard + ".json")

    def _summary_lock(self, shard: str):
        # The stripe of a shard is the shard's own number (StripedLocks.stripe reads 8 hex digits).
        return self._summary_locks.hold("000000" + shard)

    def _read_summary_shard(self, shard: str) -> dict[str, Any]:
        """The shard's columnar index (``mfa_core.summary``); empty when absent or torn."""
        try:
            with open(self._summary_path(shard), "rb") as fh:
                raw = json.loads(fh.read())
        except FileNotFoundError:
            return summaries.new_index()
        except ValueError:
            return summaries.new_index()  # torn: a rebuild puts it right
        return summaries.checked_index(raw)

    def _summary_changed(self, key: str, username: str, before: str | None, record: Record) -> None:
        """After a commit (under the user's lock): the shard's index gets the record's new summary.

        Committed already, so a failure here is never reported to the caller: the
        index is marked unbuilt instead, and the next ``summaries()`` rebuilds it.
        """
        after = summaries.summarize(record)
        if summaries.dumps(after) == before:
            return
        try:
            self._put_summary(key[:2], username, after)
        except (OSError, StorageError) as exc:
            log.warning("coverage index not updated: %s", type(exc).__name__)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._summary_root, BUILT))

    def _put_summary(self, shard: str, username: str, summary: dict[str, Any] | None) -> None:
        with self._summary_lock(shard):
            index = self._read_summary_shard(shard)
            summaries.index_put(index, username, summary)
            self._write_summary_shard(shard, index)

    def _write_summary_shard(self, shard: str, index: dict[str, Any]) -> None:
        """Write a shard's index (the caller holds the shard's index lock). Each write's mtime
        is after the previous one's, so ``coverage_stamp`` changes with every write even when
        an inode number comes back with the same size within one clock tick."""
        body = json.dumps(index, separators=(",", ":")).encode("utf-8")
        path = self._summary_path(shard)
        try:
            before = os.stat(path).st_mtime_ns
        except OSError:
            before = 0
        mtime = max(time.time_ns(), before + 1)
        try:
            write_atomic(path, body, mtime_ns=mtime)
        except FileNotFoundError:
            os.makedirs(self._summary_root, exist_ok=True)
            write_atomic(path, body, mtime_ns=mtime)

    def coverage_shard_stamps(self) -> tuple[str, list[str]] | None:
        """(the BUILT marker's stamp, each of the 256 shard indexes' stamps: inode, mtime and size,
        "-" for none): what a cache derived from the shards is stamped with, taken before
        reading them. None while the index is not built (``coverage_columns`` builds it).
        257 stats, no file read."""
        stat, join, root = os.stat, os.path.join, self._summary_root
        try:
            st = stat(join(root, BUILT))
        except FileNotFoundError:
            return None
        built = f"{st.st_ino}:{st.st_mtime_ns}"
        shards = []
        for n in range(256):
            try:
                st = stat(join(root, f"{n:02x}.json"))
            except FileNotFoundError:
                shards.append("-")
                continue
            shards.append(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
        return built, shards

    def coverage_stamp(self) -> str | None:
        """One text for ``coverage_shard_stamps()`` (None while the index is not built)."""
        stamps = self.coverage_shard_stamps()
        if stamps is None:
            return None
        return hashlib.sha256(",".join([stamps[0], *stamps[1]]).encode("ascii")).hexdigest()

    def coverage_shard(self, n: int) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
        """``coverage_columns()`` of shard number ``n`` (0-255) alone."""
        index = self._read_summary_shard(f"{n:02x}")
        return index["k"], index["s"]

    def rebuild_summaries(self) -> int:
        """Build every shard's index from the records themselves; returns how many users have
        a summary. Each shard is read and written under its index lock, so a transaction
        committing meanwhile lands after (its change is applied to the rebuilt shard)."""
        count = 0
        for n in range(256):
            shard = f"{n:02x}"
            with self._summary_lock(shard):
                index = summaries.new_index()
                found_here = 0
                folder = os.path.join(self._users_root, shard)
                names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
                for name in names:
                    if not name.endswith(".json"):
                        continue
                    try:
                        record = load_document(os.path.join(folder, name), "A record")[1]
                    except (RecordDamaged, OSError):
                        continue
                    if record is None or not isinstance(record.get("username"), str):
                        continue
                    found = summaries.summarize(record)
                    if found is not None:
                        summaries.index_put(index, record["username"], found, fresh=True)
                        found_here += 1
                if found_here or os.path.exists(self._summary_path(shard)):
                    self._write_summary_shard(shard, index)
                count += found_here
        os.makedirs(self._summary_root, exist_ok=True)
        write_atomic(os.path.join(self._summary_root, BUILT), b"coverage index built\n")
        return count

    def _summary_index(self) -> dict[str, Any]:
        """The 256 shards' columnar indexes merged (built first when never built or an
        update failed). Reads no record."""
        if not os.path.exists(os.path.join(self._summary_root, BUILT)):
            self.rebuild_summaries()
        merged = summaries.new_index()
        kinds, since, reminded = merged["k"], merged["s"], merged["r"]
        for n in range(256):
            index = self._read_summary_shard(f"{n:02x}")
            for key, names in index["k"].items():
                kinds.setdefault(key, []).extend(names)
            for target, starts in index["s"].items():
                since.setdefault(target, {}).update(starts)
            reminded.update(index["r"])
        return merged

    def summaries(self) -> dict[str, dict[str, Any]]:
        """username -> coverage summary of every user who has one (see ``mfa_core.summary``)."""
        return summaries.index_summaries(self._summary_index())

    def coverage_columns(self) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
        """(kinds key -> usernames with an authenticator, target -> {username: grace start} of
        the users without one): what coverage counts, from the index alone."""
        index = self._summary_index()
        return index["k"], index["s"]

    def enrollments_per_day(self, since: float, until: float) -> dict[str, int]:
        return self.audit.count_by_day(ENROLLMENT_EVENTS, since, until)

    @staticmethod
    def _keep_damaged(path: str) -> None:
        """Move a damaged record aside (``<name>.damaged-<time>``) for whoever investigates."""
        if os.path.exists(path):
            os.replace(path, f"{path}.damaged-{int(time.time())}")

    def put(self, username: str, record: Record, *, index: bool = True) -> None:
        """Write a record without reading it (building large stores); ``index=False`` leaves the
        coverage index to one ``rebuild_summaries()`` afterwards."""
        key = user_key(username)
        table = TinyDB(self._path(key), storage=AtomicJSONStorage, preloaded={}).table(TABLE)
        _replace(table, 1, record, exists=False)
        if index:
            self._put_summary(key[:2], username, summaries.summarize(record))

    def usernames(self) -> Iterator[str]:
        for shard in sorted(self.users_dir.iterdir()):
            if not shard.is_dir():
                continue
            for path in sorted(shard.glob("*.json")):
                try:
                    record = load_document(str(path), "A record")[1]
                except RecordDamaged:
                    continue  # its name cannot be read; the engine reports it per user
                if record is not None and isinstance(record.get("username"), str):
                    yield record["username"]

    def append_audit(self, events: Sequence[Event]) -> None:
        self.audit.append(events)

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        return self.audit.query(username, since, until)


def _replace(table, doc_id: int, record: Record, exists: bool | None = None) -> None:
    """Put ``record`` as document ``doc_id``, dropping keys it no longer has, in one write.

    (TinyDB's upsert merges fields, so a key removed from the record would survive.)
    ``exists`` spares a look-up when the caller just read the document.
    """
    if exists if exists is not None else table.contains(doc_id=doc_id):
        def swap(doc: dict) -> None:
            doc.clear()
            doc.update(record)
        table.update(swap, doc_ids=[doc_id])
    else:
        table.insert(Document(record, doc_id=doc_id))
