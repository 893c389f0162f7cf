"""Engine benchmark (issue 2): the same MFAService on three storage backends, side by side.

The parent builds one store per backend and size (untimed, straight through
the storage layer), then runs rounds; each round times every operation on
every size and backend in turn, so that noise from the shared machine falls
on all of them alike. Each build and each timed round runs in its own
process, which reports its own peak RSS (VmHWM).

Password checks (``attempt_password``) need ``users.yaml`` beside each store:
every user gets the same real bcrypt hash (the portal's cost, hashed once per
run), so 100,000 entries cost one hash, not 100,000. Each round times them
after the other operations, round-robin among themselves and beside
``bcrypt.checkpw`` alone, once the directory's first (slow, untimed) parse is
done; the peak RSS of the other operations is taken before that parse.

**postgres**: the same operations on ``PostgresStore``, one database per
size in a throwaway cluster that is durable like a real server (fsync and
``synchronous_commit`` on; tests/pg.py, started by the parent), populated
with ``put_many`` (one multi-row statement pipeline, not one transaction a
user) and its user directory imported into the database; its reference row
is the database's durable-write floor, one ``UPDATE`` + ``COMMIT`` of a
2 kB row.

Children: ``python -m bench.core directory …``, ``python -m bench.core build …``
and ``python -m bench.core run …``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import (TMP_ROOT, machine_note, ms, note_target, p50, peak_rss_mb, percentile, ratio,
               run_child, table)

OURS = "tinydb"
PG = "postgres"
BACKENDS = ("tinydb", "tinydb-single-file", "sqlite", PG)
LABELS = {"tinydb": "tinydb (ours)", "tinydb-single-file": "single file", "sqlite": "sqlite",
          PG: "postgres"}
ENV_PG = "MFA_BENCH_POSTGRES"  # the bench cluster's base URL, for the children (never MFA_PORTAL_*)
SIZES = (100, 1_000, 10_000, 100_000)
ENGINE_OPS = ("status", "create_totp", "verify_totp", "second_factor_totp", "second_factor_totp_5",
              "second_factor_backup", "disk_fsync", "pg_commit")
# Timed after ENGINE_OPS in each round (bcrypt: ~0.25 s a call), once users.yaml is parsed.
PASSWORD_OPS = ("password_right", "password_wrong", "password_unknown", "bcrypt_alone")
OPS = ENGINE_OPS + PASSWORD_OPS
# Timed as adjacent pairs, the order within a pair alternating every cycle: under a
# load that changes by the second, a pair's two calls see about the same machine.
PASSWORD_PAIRS = (("password_right", "bcrypt_alone"), ("password_unknown", "password_wrong"))
OP_LABELS = {
    "disk_fsync": "reference: write 2 kB + fsync (no engine)",
    "pg_commit": "reference: UPDATE 2 kB row + COMMIT, synchronous_commit=on (postgres only)",
    "status": "status",
    "create_totp": "create_totp",
    "verify_totp": "verify_totp",
    "second_factor_totp": "attempt_second_factor (TOTP)",
    "second_factor_totp_5": "attempt_second_factor (TOTP, the 5th of 5 apps)",
    "second_factor_backup": "attempt_second_factor (backup code)",
    "password_right": "attempt_password",
    "password_wrong": "attempt_password (wrong password)",
    "password_unknown": "attempt_password (unknown user)",
    "bcrypt_alone": "reference: bcrypt.checkpw alone (no engine)",
}
BUILD_CLOCK = 1_700_000_000.0
BENCH_CLOCK = 1_800_000_000.0
CLOCK_SPAN = 10_000_000.0  # seconds of fake time each child may use up
BACKUP_CODES = 10
HARD_BUDGET = 10.0  # seconds an operation may take a round, however few calls that allows
# The single-file baseline rewrites its whole file (~190 MB at 100,000 users) on
# every write: one call takes seconds to a minute here. From that size it gets one call of
# the read and of the two targets' operations only (the other writes cost the same).
LIGHT_FROM = {"tinydb-single-file": 100_000}
LIGHT_OPS = ("status", "verify_totp", "second_factor_backup", "disk_fsync", "pg_commit") + PASSWORD_OPS
PASSWORD_CALLS = 6  # timed calls per password operation a round (default of --password-ops)
BENCH_PASSWORD = "bench-correct-horse"  # every user's password (one shared bcrypt hash)
WRONG_PASSWORD = "bench-wrong-battery"

# Targets (issue 2).
VERIFY_P50_MAX_MS = 3.0
VERIFY_GROWTH_MAX = 1.5
BACKUP_P50_MAX_MS = 250.0
PEAK_RSS_MAX_MB = 200.0
PG_VERIFY_OVER_COMMIT_MAX = 3.0  # postgres: verify_totp p50 ÷ one durable UPDATE + COMMIT p50
PASSWORD_OVER_BCRYPT_MAX = 1.2  # attempt_password p50 ÷ bcrypt.checkpw alone p50
UNKNOWN_VS_WRONG_TOLERANCE = 0.40  # unknown-user p50 within ±40 % of a wrong password's p50


def pg_url(size: int) -> str | None:
    """The database of the postgres store of ``size`` users (None outside the bench's cluster)."""
    base = os.environ.get(ENV_PG)
    return f"{base}_{size}" if base else None


def open_engine(backend: str, data_dir: str, size: int, clock):
    import mfa_core
    return mfa_core.open_service(data_dir, clock=clock, backend=backend,
                                 database_url=pg_url(size) if backend == PG else None)


def username(i: int) -> str:
    return f"user{i:06d}"


def user_secret(name: str) -> str:
    """Each user's TOTP secret, derivable by the benchmark (160 bits, base32, no padding)."""
    raw = hashlib.sha1(b"bench-totp:" + name.encode()).digest()
    return base64.b32encode(raw).decode("ascii").rstrip("=")


_CODE_CHARS: bytes | None = None


def user_backup_code(name: str, k: int) -> str:
    """The user's k-th backup code in its normalized form."""
    global _CODE_CHARS
    from mfa_core import backup_codes as bc
    if _CODE_CHARS is None:
        _CODE_CHARS = bytes(ord(bc.ALPHABET[b % len(bc.ALPHABET)]) for b in range(256))
    raw = hashlib.sha256(f"bench-backup:{name}:{k}".encode()).digest()
    return raw[:bc.LENGTH].translate(_CODE_CHARS).decode("ascii")


def source_address(n: int) -> str:
    """The n-th fresh client address (10.0.0.0/8): no throttle applies to a source's first try."""
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def bcrypt_cost(hashed: str) -> int:
    return int(hashed.split("$")[2])


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- building a store (untimed) -------------------------------------------------

def template_record() -> dict[str, Any]:
    """A real enrolled user's record, made through the service in a scratch dir.

    Enrolled, 10 backup codes, a few sign-ins: the record a typical user has
    after a while (encrypted secret, code hashes, recent activity).
    """
    import mfa_core
    from mfa_core import totp
    scratch = tempfile.mkdtemp(prefix="mfa-bench-template-", dir=TMP_ROOT)
    try:
        clock = FakeClock(BUILD_CLOCK)
        svc = mfa_core.open_service(scratch, clock=clock)
        res = svc.create_totp("template")
        svc.verify_totp("template", totp.code_at(res.secret, clock.t))
        svc.create_backup_codes("template")
        for _ in range(3):
            clock.t += 3600
            svc.attempt_second_factor("template", totp.code_at(res.secret, clock.t))
        record = svc.store.read("template")
        svc.store.close()
        return record
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def make_record(template: dict[str, Any] | str, name: str, keyring) -> dict[str, Any]:
    """The template re-owned by ``name``: its own encrypted secret, salt and 10 code hashes."""
    from mfa_core import backup_codes as bc
    rec = json.loads(template if isinstance(template, str) else json.dumps(template))
    rec["username"] = name
    rec["authenticators"][0]["secret"] = keyring.encrypt(user_secret(name))
    salt = secrets.token_bytes(16)
    rec["backup"]["salt"] = salt.hex()
    rec["backup"]["hashes"] = [bc.digest(keyring.pepper, salt, user_backup_code(name, k))
                               for k in range(BACKUP_CODES)]
    for event in rec.get("activity", []):
        event["user"] = name
        event["actor"] = name
    return rec


def build(backend: str, data_dir: str, start: int, stop: int) -> dict[str, Any]:
    """Add users ``start``…``stop-1`` to the store (straight through the storage layer).

    Runs in a process of its own and is not timed. It writes through the
    store's own ``put``/``put_many`` (so files have the engine's layout) with
    per-file fsync turned off in this process, and flushes everything with
    one ``os.sync()`` at the end: 100,000 pairs of fsyncs would make the
    build, not the benchmark, the slow part. The timed processes keep fsync.
    """
    t0 = time.perf_counter()
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        return _build(backend, data_dir, start, stop, t0)
    finally:
        os.fsync = real_fsync
        os.sync()


def _build(backend: str, data_dir: str, start: int, stop: int, t0: float) -> dict[str, Any]:
    svc = open_engine(backend, data_dir, stop, FakeClock(BUILD_CLOCK))
    template = json.dumps(template_record())  # copied per user by json.loads (fast)
    store = svc.store
    if hasattr(store, "put_many"):
        chunk = 50_000
        for lo in range(start, stop, chunk):
            store.put_many({username(i): make_record(template, username(i), svc.keyring)
                            for i in range(lo, min(stop, lo + chunk))})
    else:
        # One small file a user: file creation waits on the disk, so a few threads help.
        def put(i: int) -> None:
            name = username(i)
            store.put(name, make_record(template, name, svc.keyring))
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for _ in pool.map(put, range(start, stop), chunksize=256):
                pass
    store.close()
    sample = make_record(template, username(0), svc.keyring)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
            "record_bytes": len(json.dumps(sample)), "events": len(sample.get("activity", []))}


def write_directory(path: str, size: int, hashed: str) -> dict[str, Any]:
    """``users.yaml`` for users 0…size-1, every entry with the same bcrypt hash ``hashed``.

    The fields are those the portal writes for a new user; entries differ only
    in the user's name (and e-mail). Written with libyaml where PyYAML has it,
    as the portal writes it. Runs in a process of its own, untimed.
    """
    import yaml
    t0 = time.perf_counter()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    users = {username(i): {"email": f"{username(i)}@example.com", "first_name": "Bench",
                           "last_name": username(i), "password": hashed, "roles": ["user"],
                           "failed_login_attempts": 0, "logged_in": False}
             for i in range(size)}
    text = yaml.dump({"credentials": {"usernames": users}}, Dumper=dumper, sort_keys=True)
    Path(path).write_text(text, encoding="utf-8")
    return {"seconds": time.perf_counter() - t0, "bytes": len(text.encode("utf-8")),
            "peak_rss_mb": peak_rss_mb()}


def import_directory(data_dir: str, size: int) -> dict[str, Any]:
    """The data dir's users.yaml into the postgres store's directory (untimed, as `users import`)."""
    from mfa_core.users import load_yaml_file
    t0 = time.perf_counter()
    svc = open_engine(PG, data_dir, size, FakeClock(BUILD_CLOCK))
    count = svc.directory.import_entries(load_yaml_file(Path(data_dir) / "users.yaml"))
    svc.store.close()
    return {"seconds": time.perf_counter() - t0, "users": count}


# -- one timed round ------------------------------------------------------------

def run_round(backend: str, data_dir: str, size: int, t0: float, seed: int, max_ops: int,
              budget: float, min_ops: int, ops: tuple[str, ...] = OPS,
              password_calls: int = PASSWORD_CALLS) -> dict[str, Any]:
    """Time each operation on random users of a store of ``size`` users.

    Per operation of ``ops`` other than the password ones: up to ``max_ops``
    calls, stopping early once ``budget`` seconds went by and ``min_ops``
    were timed, or once ``HARD_BUDGET`` seconds went by at all. Then, after
    an untimed first parse of ``users.yaml``, ``password_calls`` calls of
    each password operation (fewer once ``HARD_BUDGET`` seconds went by).
    The state the benchmark needs across rounds (secrets replaced by
    verify_totp, backup codes already used, fresh sources handed out) lives
    in a JSON file beside the store.
    """
    import bcrypt

    import mfa_core
    from mfa_core import backup_codes as bc
    from mfa_core import totp
    from mfa_core.authenticators import MAX_TOTP_APPS

    wall0 = time.perf_counter()
    state_path = Path(data_dir).with_suffix(".state.json")
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    secrets_override: dict[str, str] = state.setdefault("secrets", {})
    codes_used: dict[str, int] = state.setdefault("codes_used", {})
    fifth_app: dict[str, str] = state.setdefault("fifth_app", {})  # user -> their 5th app's secret
    state.setdefault("fresh", 0)  # sources (and unknown names) handed out so far
    rng = random.Random(seed)
    clock = FakeClock(t0)
    svc = open_engine(backend, data_dir, size, clock)

    def pick() -> str:
        return username(rng.randrange(size))

    def secret_of(name: str) -> str:
        return secrets_override.get(name) or user_secret(name)

    def pick_backup() -> tuple[str, int]:
        for _ in range(1000):
            name = pick()
            if codes_used.get(name, 0) < BACKUP_CODES:
                break
        else:
            raise RuntimeError("every sampled user has used all their backup codes")
        k = codes_used.get(name, 0)
        codes_used[name] = k + 1
        return name, k

    # Warm-up (untimed): first calls pay for lazy set-up, not for the store.
    # Skipped where one read already takes seconds (the single file at 100k).
    t = time.perf_counter()
    svc.status(pick())
    if time.perf_counter() - t < 1.0:
        svc.status(pick())
        clock.t += 30
        warm = pick()
        if len(svc.status(warm).authenticators) < MAX_TOTP_APPS:  # (a user at the cap refuses)
            svc.create_totp(warm)

    results: dict[str, list[float]] = {op: [] for op in ops}
    spent: dict[str, float] = {op: 0.0 for op in ops}

    def done(op: str) -> bool:
        n = len(results[op])
        if op in PASSWORD_OPS:
            return n >= password_calls or (n >= 1 and spent[op] >= HARD_BUDGET)
        return (n >= max_ops or (n >= min_ops and spent[op] >= budget)
                or (n >= 1 and spent[op] >= HARD_BUDGET))

    def prep_status():
        name = pick()
        return lambda: svc.status(name)

    def make_room(name: str) -> None:
        """Untimed: a user at the most apps loses one (neither the first nor the newest)."""
        apps = svc.status(name).authenticators
        if len(apps) >= MAX_TOTP_APPS:
            svc.remove_authenticator(name, apps[1].id)
        fifth_app.pop(name, None)

    def prep_create():
        name = pick()
        make_room(name)
        clock.t += 30
        return lambda: svc.create_totp(name)

    def prep_verify():
        name = pick()
        make_room(name)  # each verify adds an app
        clock.t += 30
        resource = svc.create_totp(name)  # untimed: verify needs a pending enrollment
        clock.t += 30
        code = totp.code_at(resource.secret, clock.t)
        secrets_override[name] = resource.secret  # verify_totp makes it the user's secret
        return lambda: svc.verify_totp(name, code)

    def prep_totp():
        name = pick()
        clock.t += 30  # the replay guard refuses a step already used
        code = totp.code_at(secret_of(name), clock.t)
        return lambda: svc.attempt_second_factor(name, code, strategy="totp")

    def prep_totp_5():
        # Untimed: the user gets five apps; the code is the fifth's, the worst case (four
        # apps checked first).
        name = pick()
        have = len(svc.status(name).authenticators)
        for _ in range(MAX_TOTP_APPS - have):
            clock.t += 30
            resource = svc.create_totp(name)
            clock.t += 30
            svc.verify_totp(name, totp.code_at(resource.secret, clock.t))
            fifth_app[name] = secrets_override[name] = resource.secret
        clock.t += 30
        code = totp.code_at(fifth_app.get(name) or secret_of(name), clock.t)
        return lambda: svc.attempt_second_factor(name, code, strategy="totp")

    def prep_backup():
        name, k = pick_backup()
        code = bc.display(user_backup_code(name, k)).upper()  # typed as a person might
        expected = BACKUP_CODES - k - 1

        def call():
            result = svc.attempt_second_factor(name, code, strategy="backup_code")
            if result.backup_codes_remaining != expected:
                raise RuntimeError(f"{name}: {result.backup_codes_remaining} codes left, "
                                   f"expected {expected}")
        return call

    scratch = Path(data_dir).with_suffix(".fsync-probe")

    def prep_fsync():
        def call():
            fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"x" * 2048)
                os.fsync(fd)
            finally:
                os.close(fd)
        return call

    floor = None  # the postgres reference row's own connection (autocommit off)
    if backend == PG and "pg_commit" in ops:
        import psycopg
        floor = psycopg.connect(pg_url(size))
        floor.execute("CREATE TABLE IF NOT EXISTS bench_floor (id integer PRIMARY KEY, doc text)")
        floor.execute("INSERT INTO bench_floor VALUES (1, '') ON CONFLICT (id) DO NOTHING")
        floor.execute("SET synchronous_commit = on")
        floor.commit()

    def prep_commit():
        payload = secrets.token_hex(1024)  # 2 kB, new each call

        def call():
            floor.execute("UPDATE bench_floor SET doc = %s WHERE id = 1", (payload,))
            floor.commit()
        return call

    def fresh() -> int:
        state["fresh"] += 1
        return state["fresh"]

    def prep_password_right():
        name, source = pick(), source_address(fresh())
        clock.t += 1

        def call():
            result = svc.attempt_password(name, BENCH_PASSWORD, source=source)
            if result.username != name:
                raise RuntimeError(f"{name}: attempt_password answered for {result.username}")
        return call

    def refused(name: str, password: str, source: str) -> Callable[[], None]:
        def call():
            try:
                svc.attempt_password(name, password, source=source)
            except mfa_core.InvalidCode:
                return
            except mfa_core.TooManyAttempts as exc:
                raise RuntimeError(f"{name} from {source}: throttled ({exc}); the benchmark "
                                   "must time password checks, not refusals") from exc
            raise RuntimeError(f"{name}: a wrong password or unknown name was accepted")
        return call

    def prep_password_wrong():
        clock.t += 1
        return refused(pick(), WRONG_PASSWORD, source_address(fresh()))

    def prep_password_unknown():
        n = fresh()
        clock.t += 1
        # Looks like a user's name, but the directory holds users 0…size-1 only.
        return refused(username(size + n), BENCH_PASSWORD, source_address(n))

    hashed = b""

    def prep_bcrypt():
        password = BENCH_PASSWORD.encode("utf-8")

        def call():
            if not bcrypt.checkpw(password, hashed):
                raise RuntimeError("bcrypt.checkpw refused the benchmark password")
        return call

    prepare = {"disk_fsync": prep_fsync, "pg_commit": prep_commit, "status": prep_status, "create_totp": prep_create, "verify_totp": prep_verify,
               "second_factor_totp": prep_totp, "second_factor_totp_5": prep_totp_5,
               "second_factor_backup": prep_backup,
               "password_right": prep_password_right, "password_wrong": prep_password_wrong,
               "password_unknown": prep_password_unknown, "bcrypt_alone": prep_bcrypt}

    def timed(active: list[str], order: Callable[[int], list[str]] | None = None) -> None:
        # Round robin over the operations, so that a burst of load on the shared
        # machine falls on all of them rather than on whichever block ran then.
        cycle = 0
        while active:
            for op in (order(cycle) if order else list(active)):
                if op not in active:
                    continue
                if done(op):
                    active.remove(op)
                    continue
                started = time.perf_counter()
                call = prepare[op]()
                t = time.perf_counter_ns()
                call()
                results[op].append((time.perf_counter_ns() - t) / 1e6)
                spent[op] += time.perf_counter() - started
            cycle += 1

    def pair_order(cycle: int) -> list[str]:
        return [op for pair in PASSWORD_PAIRS for op in (pair if cycle % 2 == 0 else pair[::-1])]

    timed([op for op in ops if op not in PASSWORD_OPS and (op != "pg_commit" or floor is not None)])
    # What the engine operations above used; users.yaml is not parsed yet.
    engine_rss, engine_seconds = peak_rss_mb(), time.perf_counter() - wall0
    extra: dict[str, Any] = {}
    password_ops = [op for op in ops if op in PASSWORD_OPS]
    if password_ops:
        t = time.perf_counter()
        stored = svc.directory.password_hash(username(0))  # the first parse: seconds at 100k
        extra["directory_parse_s"] = time.perf_counter() - t
        if stored is None:
            raise RuntimeError(f"{data_dir}: users.yaml has no usable hash for {username(0)}")
        hashed = stored.encode("ascii")
        # Warm-up (untimed): the first unknown name makes the engine's dummy hash
        # (one bcrypt hashpw a process), and bcrypt's first call sets up. No
        # right-password warm-up: a user's write was warmed up above, and one
        # costs seconds in the single file at 100k.
        prep_password_unknown()()
        prep_bcrypt()()
        timed(password_ops, pair_order)
        # The i-th calls of a pair ran side by side: the ratio of each pair.
        pairs = {f"{a}/{b}": [x / y for x, y in zip(results[a], results[b])]
                 for a, b in PASSWORD_PAIRS if a in results and b in results}
        extra.update(peak_rss_directory_mb=peak_rss_mb(), bcrypt_cost=bcrypt_cost(stored),
                     password_seconds=time.perf_counter() - wall0 - engine_seconds, pairs=pairs)
    svc.store.close()
    if floor is not None:
        floor.close()
    state_path.write_text(json.dumps(state))
    if clock.t - t0 >= CLOCK_SPAN:
        raise RuntimeError("the round used more fake time than it was given")
    return {"samples": results, "peak_rss_mb": engine_rss, "seconds": engine_seconds, **extra}


# -- the parent -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("core")
    g.add_argument("--sizes", default=",".join(map(str, SIZES)),
                   help="store sizes for the engine part (default %(default)s)")
    g.add_argument("--backends", default=",".join(BACKENDS), help="default %(default)s")
    g.add_argument("--ops", type=int, default=100, help="most timed calls per operation a round")
    g.add_argument("--min-ops", type=int, default=5, help="fewest timed calls per operation a round")
    g.add_argument("--budget", type=float, default=3.0,
                   help="seconds per operation a round after which a slow backend stops early")
    g.add_argument("--rounds", type=int, default=3,
                   help="rounds; each runs every size and backend (a backend and size whose "
                        "round takes > --slow-round s gets one)")
    g.add_argument("--slow-round", type=float, default=20.0,
                   help="seconds (engine operations, password checks not counted) after which a "
                        "backend and size gets no more rounds (default %(default)s)")
    g.add_argument("--password-ops", type=int, default=PASSWORD_CALLS,
                   help="timed calls per password operation (attempt_password right, wrong, "
                        "unknown user; bcrypt alone) a round, ~0.25 s each (default %(default)s)")


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> str:
    sizes = sorted({int(s.replace("_", "")) for s in str(args.sizes).split(",") if s.strip()})
    backends = [b for b in str(args.backends).split(",") if b]
    cluster = None
    if PG in backends:
        cluster = _start_cluster(sizes, out)
        if cluster is None:
            backends.remove(PG)
    try:
        return _main(args, sizes, backends, out)
    finally:
        if cluster is not None:
            os.environ.pop(ENV_PG, None)
            cluster.stop()


def _start_cluster(sizes, out):
    """A durable throwaway PostgreSQL cluster with one database per size, or None (not installed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pg import INSTALL_HINT, PostgresCluster  # the tests' throwaway cluster, made durable
    try:
        cluster = PostgresCluster(durable=True)
    except FileNotFoundError:
        out(f"  core: postgres left out: {INSTALL_HINT}")
        return None
    cluster.start()
    import psycopg
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        for size in sizes:
            conn.execute(f"CREATE DATABASE mfa_{size}")
    os.environ[ENV_PG] = cluster.url
    return cluster


def _main(args: argparse.Namespace, sizes, backends, out) -> str:
    root = Path(tempfile.mkdtemp(prefix="mfa-bench-core-", dir=TMP_ROOT))
    started = time.perf_counter()
    head = machine_note()
    # cells[(backend, size, op)] = list of (p50, p95, n) per round
    cells: dict[tuple[str, int, str], list[tuple[float, float, int]]] = {}
    rss: dict[tuple[str, int], float] = {}
    builds: dict[tuple[str, int], tuple[float, float]] = {}
    rounds_run: dict[tuple[str, int], int] = {}
    # directory[(backend, size)] = (first parse s, peak RSS with it) per round
    directory: dict[tuple[str, int], list[tuple[float, float]]] = {}
    pairs: dict[tuple[str, int, str], list[float]] = {}  # per-pair ratios, every round pooled
    files: dict[int, tuple[int, float]] = {}  # size -> (users.yaml bytes, write s)
    shape = (0, 0)
    password_calls = max(1, int(args.password_ops))
    # One real bcrypt hash at the portal's cost, shared by every user of every store.
    from mfa_core.users import hash_password
    hashed = hash_password(BENCH_PASSWORD)
    try:
        # One store per backend and size, all kept until the end, so that the
        # rounds can interleave sizes too: the growth targets compare sizes
        # measured minutes apart on a shared machine otherwise.
        for size in sizes:
            users_file = root / f"users-{size}.yaml"
            res = run_child("bench.core", ["directory", str(users_file), str(size), hashed])
            files[size] = (res["bytes"], res["seconds"])
            for b in backends:
                data_dir = root / b / str(size)
                res = run_child("bench.core", ["build", b, str(data_dir), "0", str(size)])
                builds[(b, size)] = (res["seconds"], res["peak_rss_mb"])
                shape = (res["record_bytes"], res["events"])
                shutil.copyfile(users_file, data_dir / "users.yaml")
                if b == PG:  # the directory lives in the database too
                    run_child("bench.core", ["import", str(data_dir), str(size)])
            users_file.unlink()
            out(f"  core: {size:,}-user stores built ({time.perf_counter() - started:.0f} s)")
        slow: set[tuple[str, int]] = set()
        calls = {(b, size): 0 for b in backends for size in sizes}
        for r in range(args.rounds):
            for size in sizes:
                for b in backends:
                    if (b, size) in slow:
                        continue
                    t0 = BENCH_CLOCK + calls[(b, size)] * CLOCK_SPAN
                    calls[(b, size)] += 1
                    seed = size * 1000 + r
                    light = size >= LIGHT_FROM.get(b, math.inf)
                    # Start each round with the disk's dirty data written back: the
                    # single-file rounds leave up to ~200 MB of it, which would
                    # otherwise slow the fsyncs of whichever round came next.
                    os.sync()
                    res = run_child("bench.core", [
                        "run", b, str(root / b / str(size)), str(size), repr(t0), str(seed),
                        "1" if light else str(args.ops), repr(args.budget),
                        "1" if light else str(args.min_ops), ",".join(LIGHT_OPS if light else OPS),
                        "1" if light else str(password_calls)])
                    for op, samples in res["samples"].items():
                        cells.setdefault((b, size, op), []).append(
                            (p50(samples), percentile(samples, 95), len(samples)))
                    rss[(b, size)] = max(rss.get((b, size), 0.0), res["peak_rss_mb"])
                    for key, values in res.get("pairs", {}).items():
                        pairs.setdefault((b, size, key), []).extend(values)
                    if "directory_parse_s" in res:
                        directory.setdefault((b, size), []).append(
                            (res["directory_parse_s"], res["peak_rss_directory_mb"]))
                    rounds_run[(b, size)] = rounds_run.get((b, size), 0) + 1
                    if light or res["seconds"] > args.slow_round:
                        slow.add((b, size))
            out(f"  core: round {r + 1} of {args.rounds} done ({time.perf_counter() - started:.0f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = render(sizes, backends, cells, rss, builds, rounds_run, args, head,
                    time.perf_counter() - started, shape, directory, files, bcrypt_cost(hashed),
                    password_calls, pairs)
    return report


def _cell(cells, b, size, op) -> tuple[float, float, int, int]:
    """Median over rounds of p50 and of p95, total calls, rounds."""
    rounds = cells.get((b, size, op), [])
    if not rounds:
        return math.nan, math.nan, 0, 0
    return (statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds),
            sum(r[2] for r in rounds), len(rounds))


def _password_ratio(cells, b, size) -> float:
    """attempt_password (right) p50 ÷ bcrypt.checkpw alone p50, same processes."""
    return _cell(cells, b, size, "password_right")[0] / _cell(cells, b, size, "bcrypt_alone")[0]


def _enumeration_ratio(cells, b, size) -> float:
    """Unknown user p50 ÷ a known user's wrong password p50."""
    return _cell(cells, b, size, "password_unknown")[0] / _cell(cells, b, size, "password_wrong")[0]


def _worst(values, key):
    """The value with the largest key, NaN ignored (NaN when there is none)."""
    values = [v for v in values if not math.isnan(v)]
    return max(values, key=key) if values else math.nan


def render(sizes, backends, cells, rss, builds, rounds_run, args, head, seconds, shape,
           directory=None, files=None, cost=None, password_calls=PASSWORD_CALLS,
           pairs=None) -> str:
    directory, files, pairs = directory or {}, files or {}, pairs or {}
    title = ("## Engine (issue 2): `mfa_core` on three storage backends" if PG not in backends else
             "## Engine (issues 2, 14): `mfa_core` on the embedded backends and PostgreSQL")
    lines = [title, "",
             f"{head}. Times in ms: p50 / p95 of each round, median over rounds; "
             f"n = timed calls (rounds). Same `MFAService`, same fake clock, same random users; "
             f"every round runs every size and backend in turn (one process each, operations "
             f"round-robin), so noise on the shared machine falls on all alike. Baselines: **single file** (one TinyDB file "
             f"holding every user) and **sqlite** (indexed table). A backend whose round takes "
             f"over {args.slow_round:.0f} s is capped: one round only, at least {args.min_ops} calls an "
             f"operation once {args.budget:g} s went by, and no more calls once "
             f"{HARD_BUDGET:g} s went by (so as few as 1 where one call takes longer)."]
    light = [f"{LABELS[b]} from {n:,} users" for b, n in LIGHT_FROM.items()
             if b in backends and any(size >= n for size in sizes)]
    if light:
        lines[-1] += (f" **Capped:** {', '.join(light)}: one call each of status, verify_totp, "
                      f"the backup code and the password rows only (every write rewrites the whole ~190 MB file, "
                      f"seconds to a minute a call; the other writes cost the same); "
                      f"\"–\" = not measured.")
    if cost is not None:
        lines[-1] += (f" **Password rows** (`attempt_password`, timed after the other operations "
                      f"in each round, round-robin among themselves and beside `bcrypt.checkpw` "
                      f"alone): every user in `users.yaml` has the same real bcrypt hash (cost "
                      f"{cost}, made once with `mfa_core.users.hash_password`); up to "
                      f"{password_calls} calls each a round (1 where capped), after an untimed "
                      f"first parse of `users.yaml`, an unknown-user call and a bcrypt check, "
                      f"in pairs (right password beside bcrypt alone, wrong password beside "
                      f"unknown user; the order within a pair alternates); each call "
                      f"comes from a fresh client address (an unfamiliar source, default "
                      f"`PasswordPolicy`: no throttle applies, every call runs bcrypt); unknown "
                      f"users are names like the users' that `users.yaml` does not hold.")
    lines.append("")
    others = [b for b in backends if b != OURS]
    header = ["operation", "users"]
    for b in backends:
        header += [f"{LABELS[b]} p50 / p95", "n"]
    if OURS in backends:
        header += [f"ours ÷ {LABELS[b]} (p50)" for b in others]
    rows = []
    for op in OPS:
        for size in sizes:
            row = [OP_LABELS[op], f"{size:,}"]
            mids = {}
            for b in backends:
                m50, m95, n, r = _cell(cells, b, size, op)
                mids[b] = m50
                row += [f"{ms(m50)} / {ms(m95)}", f"{n} ({r})" if n else "–"]
            if OURS in backends:
                row += [ratio(mids[OURS], mids[b]) for b in others]
            rows.append(row)
    lines += [table(header, rows), ""]

    # Targets, for ours and (for comparison) each baseline.
    small, large = sizes[0], sizes[-1]
    lines += ["### Engine targets", ""]
    t_header = ["target"] + [LABELS[b] for b in backends] + \
        ["pass/fail (ours; postgres rows: postgres)" if PG in backends else "pass/fail (ours)"]
    t_rows = []

    def ours_target(part, name, measured, ok):
        # A target of ours goes to the summary only when ours was measured.
        return note_target(part, name, measured, ok) if OURS in backends else "n/a"

    def per_backend(fn):
        vals = {b: fn(b) for b in backends}
        return vals

    v_large = per_backend(lambda b: _cell(cells, b, large, "verify_totp")[0])
    ok = (v_large.get(OURS, math.nan) <= VERIFY_P50_MAX_MS) if OURS in backends else None
    name = f"verify_totp p50 at {large:,} users ≤ {VERIFY_P50_MAX_MS:g} ms"
    t_rows.append([name] + [f"{ms(v)} ms" for v in v_large.values()]
                  + [ours_target("engine", name, f"{ms(v_large.get(OURS))} ms", ok)])
    growth = per_backend(lambda b: _cell(cells, b, large, "verify_totp")[0]
                         / _cell(cells, b, small, "verify_totp")[0])
    ok = (growth.get(OURS, math.nan) <= VERIFY_GROWTH_MAX) if OURS in backends else None
    name = f"verify_totp p50 at {large:,} ÷ at {small:,} users ≤ {VERIFY_GROWTH_MAX:g}×"
    t_rows.append([name] + [f"{g:.2f}×" if not math.isnan(g) else "–" for g in growth.values()]
                  + [ours_target("engine", name, f"{growth.get(OURS, math.nan):.2f}×", ok)])
    backup = per_backend(lambda b: max(_cell(cells, b, s, "second_factor_backup")[0] for s in sizes))
    ok = (backup.get(OURS, math.nan) <= BACKUP_P50_MAX_MS) if OURS in backends else None
    name = f"backup-code redemption p50 ≤ {BACKUP_P50_MAX_MS:g} ms (worst size)"
    t_rows.append([name] + [f"{ms(v)} ms" for v in backup.values()]
                  + [ours_target("engine", name, f"{ms(backup.get(OURS))} ms", ok)])
    peak = per_backend(lambda b: max((rss[(b, s)] for s in sizes if (b, s) in rss), default=math.nan))
    ok = (peak.get(OURS, math.nan) <= PEAK_RSS_MAX_MB) if OURS in backends else None
    name = f"peak memory (RSS of the timed process) ≤ {PEAK_RSS_MAX_MB:g} MB"
    t_rows.append([name] + [f"{v:.0f} MB" for v in peak.values()]
                  + [ours_target("engine", name, f"{peak.get(OURS, math.nan):.0f} MB", ok)])
    if cost is not None:
        over = per_backend(lambda b: _worst((_password_ratio(cells, b, s) for s in sizes),
                                            key=lambda v: v))
        ok = (over.get(OURS, math.nan) <= PASSWORD_OVER_BCRYPT_MAX) if OURS in backends else None
        name = (f"attempt_password p50 ≤ {PASSWORD_OVER_BCRYPT_MAX:g}× bcrypt.checkpw alone p50 "
                f"(worst size)")
        t_rows.append([name] + [_times(v) for v in over.values()]
                      + [ours_target("engine", name, _times(over.get(OURS, math.nan)), ok)])
        enum = per_backend(lambda b: _worst((_enumeration_ratio(cells, b, s) for s in sizes),
                                            key=lambda v: abs(v - 1)))
        ok = (abs(enum.get(OURS, math.nan) - 1) <= UNKNOWN_VS_WRONG_TOLERANCE) \
            if OURS in backends else None
        name = (f"attempt_password p50: unknown user ÷ a user's wrong password within "
                f"1 ± {UNKNOWN_VS_WRONG_TOLERANCE:g} (worst size)")
        t_rows.append([name] + [_times(v) for v in enum.values()]
                      + [ours_target("engine", name, _times(enum.get(OURS, math.nan)), ok)])
        for key, what, pick in (("password_right/bcrypt_alone", "attempt_password ÷ bcrypt alone",
                                 lambda v: v),
                                ("password_unknown/password_wrong",
                                 "unknown user ÷ a user's wrong password", lambda v: abs(v - 1))):
            paired = per_backend(lambda b, key=key, pick=pick: _worst(
                (statistics.median(pairs[(b, s, key)]) for s in sizes if pairs.get((b, s, key))),
                key=pick))
            t_rows.append([f"(context) the same, paired: median of {what} over calls made side "
                           f"by side (worst size)"] + [_times(v) for v in paired.values()] + ["–"])
        peak_dir = per_backend(lambda b: max((max(r[1] for r in directory[(b, s)]) for s in sizes
                                              if (b, s) in directory), default=math.nan))
        t_rows.append(["(context) peak RSS of the timed process once `users.yaml` is parsed "
                       "(password rows)"] + [f"{v:.0f} MB" for v in peak_dir.values()] + ["–"])
    if PG in backends:
        over = _worst((_cell(cells, PG, s, "verify_totp")[0] / _cell(cells, PG, s, "pg_commit")[0]
                       for s in sizes), key=lambda v: v)
        name = (f"postgres: verify_totp p50 ≤ {PG_VERIFY_OVER_COMMIT_MAX:g}× one UPDATE + COMMIT "
                f"of a 2 kB row, synchronous_commit=on (worst size)")
        t_rows.append([name] + [_times(over) if b == PG else "–" for b in backends]
                      + [note_target("engine", name, _times(over),
                                     None if math.isnan(over) else over <= PG_VERIFY_OVER_COMMIT_MAX)])
        flat = growth[PG]
        name = f"postgres: verify_totp p50 at {large:,} ÷ at {small:,} users ≤ {VERIFY_GROWTH_MAX:g}×"
        t_rows.append([name] + [_times(flat) if b == PG else "–" for b in backends]
                      + [note_target("engine", name, _times(flat),
                                     None if math.isnan(flat) else flat <= VERIFY_GROWTH_MAX)])
    per_fsync = per_backend(lambda b: _cell(cells, b, large, "verify_totp")[0]
                            / _cell(cells, b, large, "disk_fsync")[0])
    t_rows.append([f"(context) verify_totp p50 at {large:,} ÷ one 2 kB write + fsync"]
                  + [f"{v:.1f}×" if not math.isnan(v) else "–" for v in per_fsync.values()]
                  + ["–"])
    lines += [table(t_header, t_rows), "",
              "Baseline columns show how the same target fares on the other backends; "
              "pass/fail is for ours. The peak-memory target is the engine operations' "
              "(taken before `users.yaml` is parsed, as measured before password checks "
              "were added); the password rows' peak is beside it as context.", ""]

    if cost is not None:
        lines += [f"### Password checks a second, one process (bcrypt cost {cost})", ""]
        c_header = ["backend", "users", "through attempt_password / s", "bcrypt.checkpw alone / s",
                    "ratio", "attempt_password − bcrypt (p50 ms)"]
        c_rows = []
        for b in backends:
            for size in sizes:
                right = _cell(cells, b, size, "password_right")[0]
                alone = _cell(cells, b, size, "bcrypt_alone")[0]
                c_rows.append([LABELS[b], f"{size:,}", _per_second(right), _per_second(alone),
                               ratio(alone, right), _signed_ms(right - alone)])
        lines += [table(c_header, c_rows, "llrrrr"), "",
                  "From the p50s above (1000 ÷ p50 ms), one thread, right password; ratio = "
                  "checks a second through `attempt_password` ÷ with `bcrypt.checkpw` alone "
                  "(1.00× = the engine costs nothing beside bcrypt).", ""]
        if OURS in backends:
            right = _cell(cells, OURS, large, "password_right")[0]
            alone = _cell(cells, OURS, large, "bcrypt_alone")[0]
            lines += [f"At {large:,} users one process checks {_per_second(right)} passwords a "
                      f"second through `attempt_password` on ours, against {_per_second(alone)} "
                      f"with `bcrypt.checkpw` alone ({ratio(alone, right)}).", ""]

    # Memory and build cost per size.
    lines += ["### Peak RSS (MB) of the timed process, and untimed build of the store", ""]
    m_header = ["users"] + [f"{LABELS[b]} RSS" for b in backends] + \
               [f"{LABELS[b]} build s (build RSS)" for b in backends]
    m_rows = []
    for size in sizes:
        row = [f"{size:,}"] + [f"{rss.get((b, size), math.nan):.0f}" for b in backends]
        row += [f"{builds[(b, size)][0]:.1f} ({builds[(b, size)][1]:.0f} MB)"
                if (b, size) in builds else "–" for b in backends]
        m_rows.append(row)
    lines += [table(m_header, m_rows), "",
              f"One store per backend and size, built untimed through the storage layer "
              f"(stores hold exactly the stated number of users; each record: its own encrypted secret, salt and 10 backup-code "
              f"HMACs, {shape[1]} recent activity events, {shape[0]:,} bytes of JSON). "
              f"Engine part took {seconds:.0f} s.", ""]
    if files:
        lines += ["### `users.yaml` (password rows): size, write and first parse (untimed)", ""]
        y_header = ["users", "users.yaml MB", "write s", "first parse s (median of rounds)"] + \
                   [f"{LABELS[b]} peak RSS with it parsed" for b in backends]
        y_rows = []
        for size in sizes:
            if size not in files:
                continue
            parses = [r[0] for b in backends for r in directory.get((b, size), [])]
            y_rows.append([f"{size:,}", f"{files[size][0] / 1e6:.1f}", f"{files[size][1]:.1f}",
                           f"{statistics.median(parses):.1f}" if parses else "–"]
                          + [f"{max(r[1] for r in directory[(b, size)]):.0f} MB"
                             if (b, size) in directory else "–" for b in backends])
        lines += [table(y_header, y_rows), "",
                  "Every timed process parses `users.yaml` once (PyYAML, libyaml where "
                  "available) before its first password check; `UserDirectory` then keeps the "
                  "parse until the file changes. The parse and its memory are the directory's, "
                  "the same for every storage backend.", ""]
    return "\n".join(lines)


def _times(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}×"


def _signed_ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return ("−" if value < 0 else "+") + ms(abs(value))


def _per_second(p50_ms: float) -> str:
    if p50_ms is None or math.isnan(p50_ms) or p50_ms <= 0:
        return "–"
    return f"{1000 / p50_ms:.2f}"


def _child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "build":
        backend, data_dir, start, stop = argv[1], argv[2], int(argv[3]), int(argv[4])
        result = build(backend, data_dir, start, stop)
    elif kind == "directory":
        result = write_directory(argv[1], int(argv[2]), argv[3])
    elif kind == "import":
        result = import_directory(argv[1], int(argv[2]))
    elif kind == "run":
        backend, data_dir, size, t0, seed, max_ops, budget, min_ops, ops, password_calls = argv[1:11]
        result = run_round(backend, data_dir, int(size), float(t0), int(seed), int(max_ops),
                           float(budget), int(min_ops), tuple(ops.split(",")), int(password_calls))
    else:
        raise SystemExit(f"unknown child command {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    _child(sys.argv[1:])
