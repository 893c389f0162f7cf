"""PostgreSQL: the store several portal replicas share (``MFA_PORTAL_DATABASE_URL``).

A row per user (``users``) and per keyed record (``keyed``), each the JSON
text the engine wrote (``json``), and the audit trail (``audit``, ``jsonb``).
A user's transaction is one database transaction holding a
transaction-scoped advisory lock keyed by the user
(``pg_advisory_xact_lock``): parallel transactions on one user serialize
across threads, processes and replicas, and nothing is written for a user
that a transaction only read. The record and its audit events commit in that
one transaction. A keyed transaction opened inside a user's on the same
thread is a savepoint of the same connection (a thread-local "current
connection"), its lock held until the user's commits; ``own_keyed_transaction``
instead commits at once on a connection of its own, from a second small pool
(its transactions hold nothing else and never wait for a user's, so a
sign-in holding a connection of the first pool never deadlocks waiting for one).

psycopg is imported only when this module is (it costs ~0.4 s): its errors
are re-raised as ``DatabaseError`` (an ``OSError``, so in ``IO_ERRORS``) and
the engine reports them as ``StorageError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import threading
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg.types.json import Json, Jsonb
from psycopg_pool import ConnectionPool

from ..errors import RecordDamaged, StorageError
from ..settings import redact
from .. import summary as summaries
from .base import (ENROLLMENT_EVENTS, LOCK_TIMEOUT, DatabaseError, Event, Record, Store, Transaction, audit_filter,
                   check_record, open_transaction)

SCHEMA_VERSION = 5

# Applied in order; entry n brings the schema from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (username text PRIMARY KEY, doc jsonb NOT NULL);
    CREATE TABLE keyed (key text PRIMARY KEY, doc jsonb NOT NULL);
    CREATE TABLE damaged_records (username text NOT NULL, kept_at timestamptz NOT NULL DEFAULT now(),
                                  doc jsonb);
    CREATE TABLE audit (id bigserial PRIMARY KEY, time double precision NOT NULL, username text,
                        doc jsonb NOT NULL);
    CREATE INDEX audit_user_time ON audit (username, time);
    CREATE INDEX audit_time ON audit (time);
    """,
    # 2: the user directory (what users.yaml holds on the embedded store) and the audit
    # events' origin for `db copy` (a second copy of the same event is not inserted again).
    """
    CREATE TABLE directory (username text PRIMARY KEY, entry jsonb NOT NULL);
    CREATE TABLE directory_meta (id integer PRIMARY KEY CHECK (id = 1), version bigint NOT NULL,
                                 demo boolean NOT NULL DEFAULT false);
    ALTER TABLE audit ADD COLUMN copied_from text UNIQUE;
    """,
    # 3: records are stored as the JSON text the engine wrote (``json``: checked, kept as it
    # is), not parsed into ``jsonb`` and printed back on every read: a user's transaction reads
    # and writes its whole record, and nothing queries inside one. Only `db copy` fills
    # copied_from: the index of its origins leaves out the portal's own events (NULL).
    """
    ALTER TABLE users ALTER COLUMN doc TYPE json USING doc::json;
    ALTER TABLE keyed ALTER COLUMN doc TYPE json USING doc::json;
    ALTER TABLE damaged_records ALTER COLUMN doc TYPE json USING doc::json;
    ALTER TABLE audit DROP CONSTRAINT audit_copied_from_key;
    CREATE UNIQUE INDEX audit_copied_from ON audit (copied_from) WHERE copied_from IS NOT NULL;
    """,
    # 4: each user's coverage summary (mfa_core.summary), written in the transaction that changes
    # the record ('{}' once a user has none left), so coverage reads one small table; the
    # enrollments of the audit trail by time, for its per-day series. Records from before are
    # summarized once by the first coverage (summary_meta.built).
    """
    CREATE TABLE IF NOT EXISTS user_summary (username text PRIMARY KEY, summary jsonb NOT NULL);
    CREATE TABLE IF NOT EXISTS summary_meta (id integer PRIMARY KEY CHECK (id = 1),
                                             built boolean NOT NULL);
    TRUNCATE user_summary;
    INSERT INTO summary_meta (id, built) SELECT 1, NOT EXISTS (SELECT 1 FROM users)
        ON CONFLICT (id) DO UPDATE SET built = EXCLUDED.built;
    CREATE INDEX IF NOT EXISTS audit_enrollments ON audit (time)
        WHERE (doc->>'event') IN ('passkey_added', 'totp_enabled');
    """,
    # 5: what coverage groups 100,000 users by, as plain text columns PostgreSQL keeps itself
    # (generated: computed on every insert and update of the row, so never out of step with
    # it, whichever code wrote the row): a directory entry's roles (its JSON text) and a
    # summary's kinds key (mfa_core.summary.kinds_key: "passkey,totp|b"; NULL without an
    # authenticator; the kinds are plain words, so removing the brackets, quotes and spaces
    # of the JSON array leaves them comma-separated). Grouping by them no longer parses a jsonb
    # document per row. Adding them rewrites both tables once (`db upgrade`). Coverage joins
    # the two by username as a merge of two index-only scans of these narrow indexes (the
    # summaries with an authenticator; those without one, for their grace starts).
    """
    ALTER TABLE directory ADD COLUMN IF NOT EXISTS roles text
        GENERATED ALWAYS AS (coalesce(entry->'roles', '[]'::jsonb)::text) STORED;
    ALTER TABLE user_summary ADD COLUMN IF NOT EXISTS kinds text
        GENERATED ALWAYS AS (CASE WHEN summary->'k' <> '[]'::jsonb
                                  THEN translate((summary->'k')::text, '[]" ', '')
                                       || CASE WHEN summary ? 'b' THEN '|b' ELSE '' END END) STORED;
    CREATE INDEX IF NOT EXISTS directory_roles ON directory (username) INCLUDE (roles);
    CREATE INDEX IF NOT EXISTS user_summary_kinds ON user_summary (username) INCLUDE (kinds)
        WHERE kinds IS NOT NULL;
    CREATE INDEX IF NOT EXISTS user_summary_bare ON user_summary (username) WHERE kinds IS NULL;
    ANALYZE directory, user_summary;
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

SWEEP_PAGE = 1000  # keyed rows a query when sweeping
_EPOCH = dt.date(1970, 1, 1)  # day 0 of enrollments_per_day's day numbers

# The advisory lock that serializes schema creation between processes starting at once.
_SCHEMA_LOCK = 0x6D66615F736368  # "mfa_sch"


def _lock_id(kind: str, name: str) -> int:
    """A signed 64-bit advisory lock id for one user or one key."""
    digest = hashlib.sha256(f"{kind}\0{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_DIRECTORY_LOCK = _lock_id("directory", "")


@contextlib.contextmanager
def _database_errors(url: str | None = None) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        # libpq's messages name host, port, user and database, never the password; a malformed
        # URL's may quote a piece of it, so any password is blanked out all the same.
        # "from None": a logged traceback must not print psycopg's own text either.
        raise DatabaseError(redact(" ".join(str(exc).split()), url) or type(exc).__name__) from None


def _summary_upsert(username: str, summary: str | None) -> tuple[str, list[Any]]:
    return ("INSERT INTO user_summary (username, summary) VALUES (%s, %s::jsonb) "
            "ON CONFLICT (username) DO UPDATE SET summary = EXCLUDED.summary",
            [username, summary or "{}"])


def _audit_insert(events: Sequence[Event]) -> tuple[str, list[Any]]:
    """One statement inserting ``events`` in their order (ids follow the VALUES' order)."""
    args: list[Any] = []
    for event in events:
        args += (float(event["time"]), event.get("user"), Jsonb(event))
    rows = ", ".join(["(%s, %s, %s)"] * len(events))
    return f"INSERT INTO audit (time, username, doc) VALUES {rows}", args


class PostgresStore(Store):
    """The ``Store`` on PostgreSQL (psycopg 3, a connection pool).

    An empty database gets the current schema on first use; an older schema
    is refused until ``python -m mfa_core db upgrade`` (``upgrade=True``)
    brings it up to date, a newer one until the portal is upgraded.
    """

    database = True

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10,
                 lock_timeout: float = LOCK_TIMEOUT, upgrade: bool = False) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError("The database URL must be a non-empty string.")
        self.url = url
        self._local = threading.local()
        connect = {"autocommit": True, "options": f"-c lock_timeout={int(lock_timeout * 1000)}"}
        # One direct connection first: a wrong URL or a down server fails now, not after the
        # pool's retries; it also creates or checks the schema.
        with _database_errors(url), psycopg.connect(url, **connect) as conn:
            self.upgraded_from = self._upgrade_schema(conn, upgrade=upgrade)
        with _database_errors(url):
            self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                       kwargs=connect, timeout=lock_timeout, name="mfa-portal")
            self.pool.open(wait=False)
            # Short keyed transactions taken while a user's is open (own_keyed_transaction).
            self._own_pool = ConnectionPool(url, min_size=0, max_size=max(2, max_size // 2),
                                            open=False, kwargs=connect, timeout=lock_timeout,
                                            name="mfa-portal-own")
            self._own_pool.open(wait=False)

    # -- schema ----------------------------------------------------------------------------

    def schema_version(self) -> int:
        with _database_errors(), self.pool.connection() as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: psycopg.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @classmethod
    def _upgrade_schema(cls, conn: psycopg.Connection, *, upgrade: bool) -> int:
        """Create the schema on an empty database, or check it (``upgrade``: bring it up to date).

        Returns the version found. Refuses (StorageError) a schema newer than
        this code knows, and an older one unless ``upgrade``: replicas of two
        versions must not share a database by accident. Every step runs in one
        transaction under a lock, so two processes never apply one twice.
        """
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            version = cls._version(conn)
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"The database's schema is version {version}, newer than this portal "
                    f"knows (version {SCHEMA_VERSION}): upgrade the portal before using it.")
            if 0 < version < SCHEMA_VERSION and not upgrade:
                raise StorageError(
                    f"The database's schema is version {version}; this portal needs version "
                    f"{SCHEMA_VERSION}: run 'python -m mfa_core db upgrade' first.")
            for step in range(version, SCHEMA_VERSION):
                conn.execute(MIGRATIONS[step])
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (step + 1,))
        return version

    # -- connections and transactions ----------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """This thread's connection inside a transaction, else one from the pool."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _holding(self, pool: ConnectionPool) -> Iterator[psycopg.Connection]:
        """A connection of ``pool``, this thread's current one for the block (the enclosing
        transaction's, if any, is current again afterwards)."""
        previous = getattr(self._local, "conn", None)
        with pool.connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = previous

    @contextlib.contextmanager
    def _begin(self, lock: int) -> Iterator[psycopg.Connection]:
        """A database transaction holding advisory lock ``lock`` (a savepoint when nested)."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            with current.transaction():
                current.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                yield current
            return
        with self._holding(self.pool) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            yield conn

    @contextlib.contextmanager
    def atomic(self, name: str) -> Iterator[None]:
        """One database transaction for everything this thread does on the store in the block.

        Holds the advisory lock ``name`` (one such block at a time across replicas);
        the store's own transactions inside it become savepoints. Committed at the
        end; whatever the block raises rolls all of it back (``db copy``: all or nothing).
        """
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("atomic() cannot be nested in another transaction")
        with _database_errors(), self._begin(_lock_id("atomic", name)):
            yield

    @contextlib.contextmanager
    def _row_transaction(self, lock: int, table: str, column: str, name: str,
                         pool: ConnectionPool | None = None
                         ) -> Iterator[tuple[Any, list[tuple[str, Sequence[Any]]]]]:
        """A record's transaction in two round trips: yields (its row or None, writes).

        The first message begins the transaction (a savepoint when nested in
        this thread's, as ``_begin``), takes advisory lock ``lock`` and reads
        the row; the statements the block appends to ``writes`` go in one
        more message with the commit (or the savepoint's release). Each
        statement of a message runs in order with a fresh snapshot (read
        committed), so the read sees every commit made before the lock was
        granted. Arguments are bound by psycopg on the client (a message of
        several statements has no server-side parameters); ``lock`` is an int.
        Whatever goes wrong rolls it all back.
        """
        current = getattr(self._local, "conn", None)
        if current is not None and pool is None:
            depth = getattr(self._local, "depth", 0) + 1
            savepoint = f"mfa_keyed_{depth}"
            self._local.depth = depth
            try:
                yield from self._row_steps(current, lock, table, column, name, f"SAVEPOINT {savepoint}",
                                           f"RELEASE SAVEPOINT {savepoint}",
                                           f"ROLLBACK TO SAVEPOINT {savepoint}; RELEASE SAVEPOINT {savepoint}")
            finally:
                self._local.depth = depth - 1
            return
        with self._holding(pool or self.pool) as conn:
            yield from self._row_steps(conn, lock, table, column, name, "BEGIN", "COMMIT", "ROLLBACK")

    @staticmethod
    def _row_steps(conn: psycopg.Connection, lock: int, table: str, column: str, name: str,
                   begin: str, commit: str, undo: str):
        cur = psycopg.ClientCursor(conn)
        try:
            cur.execute(f"{begin}; SELECT pg_advisory_xact_lock({int(lock)}); "
                        f"SELECT doc FROM {table} WHERE {column} = %s", (name,))
            cur.nextset()
            cur.nextset()
            row = cur.fetchone()
            writes: list[tuple[str, Sequence[Any]]] = []
            yield row, writes
            cur.execute("; ".join([sql for sql, _ in writes] + [commit]),
                        [arg for _, args in writes for arg in args])
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(undo)
            raise
        finally:
            cur.close()

    @staticmethod
    def _doc(row: Any, what: str) -> Record | None:
        return check_record(row[0], what) if row else None

    def read(self, username: str) -> Record | None:
        with _database_errors(), self._connection() as conn:
            row = conn.execute("SELECT doc FROM users WHERE username = %s", (username,)).fetchone()
        return self._doc(row, "Your account's record")

    @contextlib.contextmanager
    def transaction(self, username: str, *, repair: bool = False) -> Iterator[Transaction]:
        with _database_errors(), self._row_transaction(_lock_id("user", username), "users",
                                                       "username", username) as (row, writes):
            txn = open_transaction(username, lambda: self._doc(row, "Your account's record"),
                                   repair=repair)
            before = None if txn.damaged else summaries.dumps(summaries.summarize(row[0] if row else None))
            yield txn
            if txn.damaged:  # keep the damaged copy for whoever investigates
                writes.append(("INSERT INTO damaged_records (username, doc) "
                               "SELECT username, doc FROM users WHERE username = %s", (username,)))
            if self._queue_writes(writes, txn, "users", "username"):
                after = summaries.dumps(summaries.summarize(txn.record))
                if after != before or txn.damaged:
                    writes.append(_summary_upsert(username, after))

    def read_keyed(self, key: str) -> Record | None:
        with _database_errors(), self._connection() as conn:
            row = conn.execute("SELECT doc FROM keyed WHERE key = %s", (key,)).fetchone()
        return self._doc(row, "A keyed record")

    def keyed_transaction(self, key: str, *, repair: bool = False
                          ) -> contextlib.AbstractContextManager[Transaction]:
        return self._keyed(key, None, repair)

    def own_keyed_transaction(self, key: str) -> contextlib.AbstractContextManager[Transaction]:
        return self._keyed(key, self._own_pool)

    @contextlib.contextmanager
    def _keyed(self, key: str, pool: ConnectionPool | None, repair: bool = False
               ) -> Iterator[Transaction]:
        with _database_errors(), self._row_transaction(_lock_id("keyed", key), "keyed", "key", key,
                                                       pool) as (row, writes):
            txn = open_transaction(key, lambda: self._doc(row, "A keyed record"), repair=repair)
            yield txn
            self._queue_writes(writes, txn, "keyed", "key")

    @staticmethod
    def _queue_writes(writes: list[tuple[str, Sequence[Any]]], txn: Transaction, table: str,
                      column: str) -> bool:
        """The record (if it changed) and the transaction's audit events, as statements.

        Returns whether the record is written."""
        text = txn.serialized()
        if text is not None:
            writes.append((f"INSERT INTO {table} ({column}, doc) VALUES (%s, %s::json) "
                           f"ON CONFLICT ({column}) DO UPDATE SET doc = EXCLUDED.doc",
                           (txn.username, text)))
        if txn.events:
            writes.append(_audit_insert(txn.events))
        return text is not None

    def sweep_keyed(self, expired: Callable[[str, Record], bool]) -> int:
        """Page by page (keys in order, ``SWEEP_PAGE`` rows a query, so memory stays small
        whatever the table holds); each candidate removed only if its row still holds the
        text read (a record written again meanwhile stays: keyed records are rewritten
        whole under their advisory lock, so the row's text is the record's state)."""
        removed, after = 0, ""
        while True:
            with _database_errors(), self._connection() as conn:
                rows = conn.execute("SELECT key, doc::text FROM keyed WHERE key > %s ORDER BY key "
                                    "LIMIT %s", (after, SWEEP_PAGE)).fetchall()
            if not rows:
                return removed
            after = rows[-1][0]
            gone = []
            for key, text in rows:
                try:
                    record = check_record(json.loads(text), "A keyed record")
                except (ValueError, RecordDamaged):
                    continue
                if expired(key, record):
                    gone.append((key, text))
            if gone:
                with _database_errors(), self._connection() as conn, conn.transaction():
                    removed += conn.execute(
                        "DELETE FROM keyed k USING unnest(%s::text[], %s::text[]) AS g(key, doc) "
                        "WHERE k.key = g.key AND k.doc::text = g.doc",
                        ([k for k, _ in gone], [t for _, t in gone])).rowcount

    def put_many(self, records: dict[str, Record]) -> None:
        with _database_errors(), self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO users (username, doc) VALUES (%s, %s) "
                            "ON CONFLICT (username) DO UPDATE SET doc = EXCLUDED.doc",
                            [(u, Json(r)) for u, r in records.items()])
            cur.executemany("INSERT INTO user_summary (username, summary) VALUES (%s, %s::jsonb) "
                            "ON CONFLICT (username) DO UPDATE SET summary = EXCLUDED.summary",
                            [(u, summaries.dumps(summaries.summarize(r)) or "{}")
                             for u, r in records.items()])

    # -- coverage (mfa_core.coverage) -------------------------------------------------------

    def _summaries_built(self) -> None:
        """Summarize the records written before the summaries existed (once, after `db upgrade`).

        Page by page; ``ON CONFLICT DO NOTHING``: a summary a transaction wrote
        meanwhile is newer than the one made here from what was read before it.
        """
        with _database_errors(), self._connection() as conn:
            row = conn.execute("SELECT built FROM summary_meta WHERE id = 1").fetchone()
        if row and row[0]:
            return
        after = ""
        while True:
            with _database_errors(), self._connection() as conn:
                rows = conn.execute("SELECT username, doc FROM users WHERE username > %s "
                                    "ORDER BY username LIMIT %s", (after, SWEEP_PAGE)).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            with _database_errors(), self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany("INSERT INTO user_summary (username, summary) VALUES (%s, %s::jsonb) "
                                "ON CONFLICT (username) DO NOTHING",
                                [(name, summaries.dumps(summaries.summarize(doc)) or "{}")
                                 for name, doc in rows])
        with _database_errors(), self._connection() as conn:
            conn.execute("INSERT INTO summary_meta (id, built) VALUES (1, true) "
                         "ON CONFLICT (id) DO UPDATE SET built = true")

    def summaries(self) -> dict[str, dict[str, Any]]:
        self._summaries_built()
        with _database_errors(), self._connection() as conn:
            return {name: doc for name, doc in conn.execute(
                "SELECT username, summary FROM user_summary WHERE summary <> '{}'::jsonb")}

    def coverage_counts(self, targets: Sequence[str] | None = None
                        ) -> tuple[list[tuple[str, str | None, int, list[str] | None]],
                                   dict[str, dict[str, float]]]:
        """What coverage counts, aggregated in the database (no record, no directory entry leaves it):

        ([(roles as JSON text, kinds key or None, users, [usernames] of those without an
        authenticator)], target -> {username: grace start} of the users without one, for
        ``targets`` only (the policy's grace rules; None: every target)). Users with an
        authenticator come as counts only. Groups by the generated ``roles`` and ``kinds``
        columns (schema 5); both answers come from one snapshot, in binary (the names as
        arrays, not text to parse).
        """
        self._summaries_built()
        nested = getattr(self._local, "conn", None) is not None
        with _database_errors(), self._connection() as conn, conn.transaction(), \
                conn.cursor(binary=True) as cur:
            if not nested:
                # Both queries see one snapshot. The join: a merge of the two covering indexes
                # (both in username order; about a third less of the server's CPU than hashing
                # 100,000 rows, which the planner would pick).
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute("SET LOCAL enable_hashjoin = off")
            rows = cur.execute(
                "SELECT d.roles, s.kinds, count(*), "
                "array_agg(d.username) FILTER (WHERE s.kinds IS NULL) "
                "FROM directory d LEFT JOIN user_summary s "
                "ON s.username = d.username AND s.kinds IS NOT NULL "
                "GROUP BY 1, 2").fetchall()
            if targets is None:
                since = cur.execute(
                    "SELECT t.key, array_agg(s.username), array_agg(t.value::float8) "
                    "FROM user_summary s, jsonb_each_text(s.summary->'s') t "
                    "WHERE s.kinds IS NULL AND s.summary ? 's' GROUP BY t.key").fetchall()
            else:  # the starts of the targets asked for (one query each: usually one or two)
                since = []
                for target in sorted(set(targets)):
                    names, starts = cur.execute(
                        "SELECT array_agg(username), array_agg((summary->'s'->>%s)::float8) "
                        "FROM user_summary WHERE kinds IS NULL AND summary->'s' ? %s",
                        (target, target)).fetchone()
                    if names:
                        since.append((target, names, starts))
        found = [(roles, kinds, int(n), bare) for roles, kinds, n, bare in rows]
        return found, {target: dict(zip(names, starts)) for target, names, starts in since}

    def coverage_groups(self) -> list[tuple[str, str | None, list[str]]]:
        """The directory's users grouped by (roles, coverage summary), in one query:
        [(roles as JSON text, summary as JSON text or None, [usernames])] (the reminder run's
        candidates). Users with the same roles and authenticators (their grace starts and
        reminders left out: they only matter without one) or who never signed in come as one row."""
        self._summaries_built()
        with _database_errors(), self._connection() as conn:
            return conn.execute(
                "SELECT d.roles, "
                "nullif(CASE WHEN s.kinds IS NOT NULL THEN s.summary - 's' - 'r' ELSE s.summary END, "
                "'{}'::jsonb)::text, array_agg(d.username) "
                "FROM directory d LEFT JOIN user_summary s ON s.username = d.username "
                "GROUP BY 1, 2").fetchall()

    def enrollments_per_day(self, since: float, until: float) -> dict[str, int]:
        """Enrollments a UTC day ("YYYY-MM-DD" -> count): the database counts by day number,
        the few dates are written here."""
        events = ", ".join(f"'{e}'" for e in sorted(ENROLLMENT_EVENTS))  # the index's predicate
        with _database_errors(), self._connection() as conn:
            rows = conn.execute(
                "SELECT floor(time / 86400)::bigint, count(*) FROM audit "
                f"WHERE (doc->>'event') IN ({events}) AND time >= %s AND time < %s GROUP BY 1",
                (since, until)).fetchall()
        return {(_EPOCH + dt.timedelta(days=int(day))).isoformat(): int(n) for day, n in rows}

    def usernames(self) -> Iterator[str]:
        with _database_errors(), self._connection() as conn:
            names = [name for (name,) in conn.execute("SELECT username FROM users ORDER BY username")]
        yield from names

    # -- audit ---------------------------------------------------------------------------

    def append_audit(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with _database_errors(), self._connection() as conn, conn.transaction():
            conn.execute(*_audit_insert(events))

    def query_audit(self, username=None, since=None, until=None) -> list[Event]:
        where, args = audit_filter(username, since, until, user_column="username", placeholder="%s")
        with _database_errors(), self._connection() as conn:
            return [doc for (doc,) in conn.execute(f"SELECT doc FROM audit{where} ORDER BY time, id",
                                                   args)]

    # -- the user directory (mfa_core.users.DatabaseUserDirectory) ---------------------

    @staticmethod
    def _directory_meta(conn: psycopg.Connection) -> tuple[int, bool]:
        row = conn.execute("SELECT version, demo FROM directory_meta WHERE id = 1").fetchone()
        return (int(row[0]), bool(row[1])) if row else (0, False)

    def directory_state(self) -> tuple[int, bool]:
        """(the directory's version: 0 until its first change, whether the portal made the demo users)."""
        with _database_errors(), self._connection() as conn:
            return self._directory_meta(conn)

    def directory_entries(self) -> tuple[int, dict[str, Any]]:
        """(version, username -> entry), both from one snapshot of the database."""
        with _database_errors(), self._connection() as conn:
            rows = conn.execute(
                "SELECT coalesce((SELECT version FROM directory_meta WHERE id = 1), 0), "
                "d.username, d.entry FROM (SELECT 1) one LEFT JOIN directory d ON true").fetchall()
        version = int(rows[0][0]) if rows else 0
        return version, {name: entry for _, name, entry in rows if name is not None}

    def change_directory(self, change: Callable[[dict[str, Any]], None],
                         cached: tuple[int, dict[str, Any]] | None = None, *,
                         only_if_new: bool = False, demo: bool = False
                         ) -> tuple[int, dict[str, Any]] | None:
        """Apply ``change`` to the directory's entries and write what it changed, under one lock.

        ``cached`` (version, entries) spares reading every row when it is still
        current. Returns the new (version, entries); None when ``only_if_new``
        and the directory was written before. Whatever ``change`` raises rolls
        everything back.
        """
        with _database_errors(), self._begin(_DIRECTORY_LOCK) as conn:
            version, _ = self._directory_meta(conn)
            if only_if_new and version > 0:
                return None
            if cached is not None and cached[0] == version:
                before = cached[1]
            else:
                before = {name: entry for name, entry in
                          conn.execute("SELECT username, entry FROM directory")}
            after = {name: dict(entry) if isinstance(entry, dict) else entry
                     for name, entry in before.items()}
            change(after)
            upserts = [(n, Jsonb(e)) for n, e in after.items() if before.get(n) != e]
            gone = [n for n in before if n not in after]
            with conn.cursor() as cur:
                if upserts:
                    cur.executemany("INSERT INTO directory (username, entry) VALUES (%s, %s) "
                                    "ON CONFLICT (username) DO UPDATE SET entry = EXCLUDED.entry",
                                    upserts)
                if gone:
                    cur.execute("DELETE FROM directory WHERE username = ANY(%s)", (gone,))
                cur.execute("INSERT INTO directory_meta (id, version, demo) VALUES (1, %s, %s) "
                            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, "
                            "demo = directory_meta.demo OR EXCLUDED.demo", (version + 1, demo))
            return version + 1, after

    # -- `db copy` (mfa_core.dbcopy): rows written as they are, read back to verify ------------

    _KEYED_TABLES = {"users": "username", "keyed": "key"}

    def copy_documents(self, table: str, docs: dict[str, Record], *, overwrite: bool = False) -> None:
        """Insert ``docs`` (name -> document) in ``users`` or ``keyed``, in one transaction.

        A row already there is left as it is, unless ``overwrite`` (then replaced).
        """
        column = self._KEYED_TABLES[table]
        action = "DO UPDATE SET doc = EXCLUDED.doc" if overwrite else "DO NOTHING"
        with _database_errors(), self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} ({column}, doc) VALUES (%s, %s) "
                            f"ON CONFLICT ({column}) {action}",
                            [(name, Json(doc)) for name, doc in docs.items()])
            if table == "users":  # the summary of each row as it is now (copied or kept)
                cur.execute("SELECT username, doc FROM users WHERE username = ANY(%s)", (list(docs),))
                rows = cur.fetchall()
                cur.executemany("INSERT INTO user_summary (username, summary) VALUES (%s, %s::jsonb) "
                                "ON CONFLICT (username) DO UPDATE SET summary = EXCLUDED.summary",
                                [(name, summaries.dumps(summaries.summarize(doc)) or "{}")
                                 for name, doc in rows])

    def documents(self, table: str, names: Sequence[str]) -> dict[str, Record]:
        column = self._KEYED_TABLES[table]
        with _database_errors(), self._connection() as conn:
            return {name: doc for name, doc in conn.execute(
                f"SELECT {column}, doc FROM {table} WHERE {column} = ANY(%s)", (list(names),))}

    def copy_audit(self, events: dict[str, Event]) -> None:
        """Insert audit events by their origin id (``copied_from``); an id already there is skipped."""
        with _database_errors(), self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO audit (time, username, doc, copied_from) "
                            "VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT (copied_from) WHERE copied_from IS NOT NULL DO NOTHING",
                            [(e["time"], e.get("user"), Jsonb(e), origin)
                             for origin, e in events.items()])

    def copied_audit(self, origins: Sequence[str]) -> int:
        """How many of these origin ids are in the audit trail."""
        with _database_errors(), self._connection() as conn:
            row = conn.execute("SELECT count(*) FROM audit WHERE copied_from = ANY(%s)",
                               (list(origins),)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.pool.close()
        self._own_pool.close()
