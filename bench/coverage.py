"""Two-step coverage at 100,000 users, and the sign-in path's cost with a policy in force (issue 23).

``python -m bench coverage``. For each backend (the embedded sharded TinyDB
store and, when PostgreSQL is installed, a durable throwaway cluster) the
parent builds one store of ``--coverage-users`` users in a child process
(untimed): a rollout in progress, by user number ``i % 100``: 0-54 an
authentication app and backup codes, 55-64 a passkey, 65-69 both, 70-84 no
authenticator with a grace start recorded (signed in once), 85-99 never signed
in; every 50th user is an admin (half of them with an app only: not allowed). The policy: ``role:user`` grace 30 days,
``role:admin`` a deadline with passkeys only. The audit trail holds 30 days of
sign-ins (``--coverage-events`` a day) and enrollments.

Then, in one child process per backend (timed):

- ``svc.coverage()`` in a warm engine: what the Helpdesk's Coverage section
  asks on each view (``--coverage-runs`` calls);
- ``mfa coverage --json`` through ``mfa_core.cli.main`` in that process: each
  call opens the engine and the store afresh, as a command does, and prints
  the JSON (to a buffer); plus the same command as a new ``python -m
  mfa_core`` process (interpreter start and imports included, for information);
- for information, both again as the first call after one user's coverage
  summary changed (a grace start moved through ``store.put``: one shard index
  rewritten), what a busy portal's Helpdesk and operators see;
- the sign-in path, ``attempt_password`` (right password, real cost-12
  bcrypt) and ``requirement(record=True)``, with the policy in force beside
  without it, in alternating blocks of the same process on the same store,
  medians and their ratio (target ≤ 1.1×); and the same with a cost-4 hash,
  where bcrypt no longer hides the policy's own cost (for information).

Targets: coverage p50 ≤ 200 ms on both stores; sign-in with ÷ without ≤ 1.1×.
Children: ``python -m bench.coverage build|measure …``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import REPO, TMP_ROOT, child_env, machine_note, ms, note_target, p50, percentile, run_child, table

DAY = 86400
USERS = 100_000
RUNS = 30
EVENTS_A_DAY = 20_000
SIGNIN_CALLS = 16          # per side (with / without) at cost 12, ~0.25 s each
SIGNIN_CHEAP_CALLS = 200   # per side at cost 4
CHEAP_USERS = 2000
BLOCK = 4                  # calls per block before the policy is switched
COVERAGE_MAX_MS = 200.0
SIGNIN_RATIO_MAX = 1.1
# The benchmark's clock: today 00:00 UTC (what `mfa coverage`, on the real clock, sees the same
# day); the policy set 40 days before.
NOW = float(int(time.time()) // DAY * DAY)
POLICY_AT = NOW - 40 * DAY
PASSWORD = "bench-coverage-password"
PG = "postgres"
LABELS = {"tinydb": "embedded (TinyDB, one file a user)", PG: "PostgreSQL"}


def keys_env(backend: str) -> dict[str, str]:
    """The keys a database's engine needs (never generated with a database): the parent's."""
    return json.loads(os.environ.get("MFA_BENCH_COVERAGE_KEYS", "{}")) if backend == PG else {}


def username(i: int) -> str:
    return f"user{i:06d}"


def roles_of(i: int) -> list[str]:
    return ["user", "admin"] if i % 50 == 5 else ["user"]  # admins: half app only, half passkey


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- building (untimed, a child process) ----------------------------------------------

def _records(i: int, template: dict[str, Any], keyring) -> dict[str, Any] | None:
    from bench.core import make_record
    name, slot = username(i), i % 100
    if slot < 55 or 65 <= slot < 70:
        rec = make_record(template, name, keyring)
        if slot >= 65:
            rec["authenticators"].append(_passkey(name, 1))
        return rec
    if slot < 65:
        return {"username": name, "v": 2, "two_step": True, "mfa_epoch": 1,
                "authenticators": [_passkey(name, 0)]}
    if slot < 85:  # signed in once under the rule, no authenticator yet
        return {"username": name, "v": 2, "two_step": False,
                "policy_since": {"role:user": POLICY_AT + (i * 7919) % (37 * DAY)}}  # all differ
    return None  # never signed in: no record


def _passkey(name: str, n: int) -> dict[str, Any]:
    return {"id": f"pk{n}{abs(hash(name)) % 10**12:012d}", "kind": "passkey", "label": f"Passkey {n + 1}",
            "created_at": POLICY_AT, "last_used_at": None, "credential_id": f"cred-{name}-{n}",
            "public_key": "pQECAyYgASFYIA", "sign_count": 0, "transports": ["internal"],
            "aaguid": "00000000-0000-0000-0000-000000000000", "backup_eligible": True,
            "backed_up": True}


def build(backend: str, data_dir: str, users: int, events: int, cost: int,
          url_variable: str = "MFA_BENCH_COVERAGE_PG") -> dict[str, Any]:
    import bcrypt
    import yaml

    import mfa_core
    from bench.core import template_record
    from mfa_core.storage import sharded
    from mfa_core.summary import summarize
    t0 = time.perf_counter()
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # the build is not timed: one os.sync() at the end
    try:
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(cost)).decode("ascii")
        entries = {username(i): {"email": f"{username(i)}@example.com", "first_name": "Bench",
                                 "last_name": username(i), "password": hashed, "roles": roles_of(i)}
                   for i in range(users)}
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        (Path(data_dir) / "users.yaml").write_text(
            yaml.dump({"credentials": {"usernames": entries}}, Dumper=dumper, sort_keys=True))
        url = os.environ.get(url_variable) if backend == PG else None
        svc = mfa_core.open_service(data_dir, clock=Clock(POLICY_AT), database_url=url,
                                    environ=keys_env(backend))
        template = json.dumps(template_record())
        template_rec = json.loads(template)
        recs = {}
        for i in range(users):
            rec = _records(i, template_rec, svc.keyring)
            if rec is not None:
                recs[username(i)] = rec
        store = svc.store
        if backend == PG:
            names = list(recs)
            for lo in range(0, len(names), 20_000):
                store.put_many({n: recs[n] for n in names[lo:lo + 20_000]})
            svc.directory.import_entries(entries)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda item: store.put(item[0], item[1], index=False), recs.items(),
                              chunksize=512))
            # The coverage index as the store keeps it, written once per shard (rebuild_summaries
            # would read the 100,000 files back).
            shards: dict[str, dict[str, Any]] = {}
            from mfa_core import summary as summaries
            from mfa_core.storage import user_key
            for name, rec in recs.items():
                found = summarize(rec)
                if found is not None:
                    shard = shards.setdefault(user_key(name)[:2], summaries.new_index())
                    summaries.index_put(shard, name, found, fresh=True)
            for shard, index in shards.items():
                store._write_summary_shard(shard, index)
            from mfa_core.storage.files import write_atomic
            write_atomic(os.path.join(store._summary_root, sharded.BUILT), b"built\n")
        _audit(store, users, events)
        svc.clock.t = POLICY_AT
        svc.set_policy_rule(target="role:admin", deadline=_date(POLICY_AT + 20 * DAY),
                            allow="passkey,backup_code", actor="bench")
        svc.set_policy_rule(target="role:user", grace_days=30, actor="bench")
        store.close()
    finally:
        os.fsync = real_fsync
        os.sync()
    return {"seconds": time.perf_counter() - t0, "records": len(recs)}


def _date(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).date().isoformat()


def _audit(store, users: int, events: int) -> None:
    """30 days of sign-ins and ~1 % of the users enrolling a day, as the engine logs them."""
    start = NOW - 30 * DAY
    for day in range(31):
        batch = []
        for n in range(events):
            i = (day * events + n) % users
            t = start + day * DAY + n * (DAY / events)
            if t >= NOW:
                break
            name = username(i)
            batch.append({"time": t, "user": name, "actor": name, "event": "second_factor_passed",
                          "outcome": "success", "detail": "totp", "txn": f"b{day}-{n}"})
            if n % 20 == 0:
                batch.append({"time": t, "user": name, "actor": name,
                              "event": "totp_enabled" if n % 40 else "passkey_added",
                              "outcome": "success", "detail": "Authentication app", "txn": f"b{day}-{n}"})
        for lo in range(0, len(batch), 5000):
            store.append_audit(batch[lo:lo + 5000])


# -- measuring (timed, a child process) ---------------------------------------------------

def measure(backend: str, data_dir: str, runs: int, signin_calls: int, cheap_dir: str | None,
            cheap_calls: int) -> dict[str, Any]:
    import mfa_core
    from mfa_core import cli
    url = os.environ.get("MFA_BENCH_COVERAGE_PG") if backend == PG else None
    env = {"MFA_PORTAL_DATA_DIR": data_dir, **keys_env(backend)}
    if url:
        env["MFA_PORTAL_DATABASE_URL"] = url
    clock = Clock(NOW)
    svc = mfa_core.open_service(data_dir, clock=clock, database_url=url, environ=keys_env(backend))
    t = time.perf_counter()
    first = svc.coverage()
    first_s = time.perf_counter() - t  # untimed: a fresh process's users.yaml index, audit counts
    helpdesk = []
    for _ in range(runs):
        t = time.perf_counter()
        data = svc.coverage()
        helpdesk.append((time.perf_counter() - t) * 1000)
    command = []
    for _ in range(runs):
        out, err = io.StringIO(), io.StringIO()
        t = time.perf_counter()
        status = cli.main(["mfa", "coverage", "--json"], environ=env, stdout=out, stderr=err)
        command.append((time.perf_counter() - t) * 1000)
        assert status == 0, err.getvalue()
    printed = json.loads(out.getvalue())
    # After one user's summary changed (a grace start moved: one shard index rewritten), for
    # information: the first call that sees it, in the warm engine and as a command.
    after_helpdesk, after_command = [], []
    started = range(70, max(data["users"], 71), 100)  # slot 70: a grace start is recorded

    def run_command() -> int:
        return cli.main(["mfa", "coverage", "--json"], environ=env, stdout=io.StringIO(),
                        stderr=io.StringIO())
    for n in range(max(5, runs // 3)):
        for k, (samples, call) in enumerate(((after_helpdesk, svc.coverage), (after_command, run_command))):
            name = username(started[(2 * n + k) % len(started)])
            rec = {"username": name, "v": 2, "two_step": False,
                   "policy_since": {"role:user": POLICY_AT + 1000 + n}}
            if backend == PG:
                svc.store.put_many({name: rec})
            else:
                svc.store.put(name, rec)
            t = time.perf_counter()
            call()
            samples.append((time.perf_counter() - t) * 1000)
    process = []
    for _ in range(max(3, runs // 6)):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mfa_core", "mfa", "coverage", "--json"],
                              cwd=REPO, env=child_env(env), capture_output=True)
        process.append((time.perf_counter() - t) * 1000)
        assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {k: data[k] for k in ("users", "covered", "enrolled", "in_grace", "overdue",
                                   "disallowed", "not_covered")}
    counts["overdue_users"] = len(data["overdue_users"])
    counts["enrollments_30d"] = sum(d["count"] for d in data["enrollments_per_day"])
    counts["json_kb"] = len(json.dumps(printed)) / 1024
    svc.store.close()
    result = {"first_s": first_s, "helpdesk": helpdesk, "command": command, "process": process,
              "after_helpdesk": after_helpdesk, "after_command": after_command,
              "counts": counts, "first_users": first["users"]}
    result["signin"] = _signin(backend, data_dir, url, signin_calls, counts["users"])
    if cheap_dir:
        result["signin_cheap"] = _signin(backend, cheap_dir, os.environ.get("MFA_BENCH_COVERAGE_PG_CHEAP")
                                         if backend == PG else None, cheap_calls, CHEAP_USERS)
    return result


def _signin(backend: str, data_dir: str, url: str | None, calls: int, users: int) -> dict[str, Any]:
    """attempt_password + requirement(record=True), policy in force vs none, alternating blocks.

    The store keeps its policy; the engine is switched between holding it and
    holding none (its cached copy, as a replica has it between reads), so both
    sides see the same records. The users signed in once with the policy before
    timing (their grace starts recorded: the steady state of a rollout).
    """
    import mfa_core
    from mfa_core.policy import Policy
    clock = Clock(NOW)
    svc = mfa_core.open_service(data_dir, clock=clock, database_url=url, environ=keys_env(backend))
    svc.policy_max_age = 1e9
    rules = svc.two_step_policy()
    assert rules.rules
    svc.directory.entries()  # the directory parsed before timing (a running portal has it)
    pool = [username(i) for i in range(min(users, 20_000)) if i % 100 < 55 and i % 50 != 5][:min(200, 2 * calls)]
    for name in pool:
        svc.attempt_password(name, PASSWORD)
        svc.requirement(name, record=True)
    samples: dict[str, list[float]] = {"with": [], "without": []}
    n, side = 0, "without"
    while min(len(v) for v in samples.values()) < calls:
        svc._policy_cache = (time.monotonic(), rules if side == "with" else Policy())
        for _ in range(BLOCK):
            if len(samples[side]) >= calls:
                break
            name = pool[n % len(pool)]
            n += 1
            clock.t += 1
            t = time.perf_counter()
            svc.attempt_password(name, PASSWORD)
            req = svc.requirement(name, record=True)
            samples[side].append((time.perf_counter() - t) * 1000)
            assert req.state == ("met" if side == "with" else "none"), (side, req)
        side = "with" if side == "without" else "without"
    svc.store.close()
    return samples


# -- the parent -------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("coverage")
    g.add_argument("--coverage-users", type=int, default=USERS, help="users (default %(default)s)")
    g.add_argument("--coverage-runs", type=int, default=RUNS,
                   help="timed coverage calls each way (default %(default)s)")
    g.add_argument("--coverage-events", type=int, default=EVENTS_A_DAY,
                   help="audit events a day over 30 days (default %(default)s)")
    g.add_argument("--coverage-backends", default="tinydb,postgres", help="default %(default)s")
    g.add_argument("--signin-calls", type=int, default=SIGNIN_CALLS,
                   help="sign-ins each way at bcrypt cost 12 (default %(default)s)")


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> str:
    backends = [b for b in str(args.coverage_backends).split(",") if b]
    cluster = None
    root = Path(tempfile.mkdtemp(prefix="mfa-bench-coverage-", dir=TMP_ROOT))
    head = machine_note()
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    builds: dict[str, float] = {}
    users = int(args.coverage_users)
    try:
        if PG in backends:
            cluster = _cluster(out)
            if cluster is None:
                backends.remove(PG)
        for b in backends:
            data_dir, cheap = root / b, root / f"{b}-cheap"
            res = run_child("bench.coverage", ["build", b, str(data_dir), str(users),
                                               str(args.coverage_events), "12"], timeout=3600)
            builds[b] = res["seconds"]
            # A small store with cost-4 hashes for the sign-in overhead row.
            run_child("bench.coverage", ["build", b, str(cheap), str(CHEAP_USERS), "100", "4",
                                          "MFA_BENCH_COVERAGE_PG_CHEAP"],
                      timeout=3600)
            out(f"  coverage: {b} built in {res['seconds']:.0f} s "
                f"({time.perf_counter() - started:.0f} s)")
        for b in backends:
            data_dir, cheap = root / b, root / f"{b}-cheap"
            results[b] = run_child("bench.coverage", [
                "measure", b, str(data_dir), str(args.coverage_runs), str(args.signin_calls),
                str(cheap), str(SIGNIN_CHEAP_CALLS // 2 if users < USERS else SIGNIN_CHEAP_CALLS)],
                timeout=3600)
            out(f"  coverage: {b} measured ({time.perf_counter() - started:.0f} s)")
    finally:
        if cluster is not None:
            os.environ.pop("MFA_BENCH_COVERAGE_PG", None)
            os.environ.pop("MFA_BENCH_COVERAGE_PG_CHEAP", None)
            os.environ.pop("MFA_BENCH_COVERAGE_KEYS", None)
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return report(results, builds, users, head, time.perf_counter() - started)


def _cluster(out):
    sys.path.insert(0, str(REPO))
    from tests.pg import INSTALL_HINT, PostgresCluster
    try:
        cluster = PostgresCluster(durable=True)
    except FileNotFoundError:
        out(f"  coverage: postgres left out: {INSTALL_HINT}")
        return None
    cluster.start()
    import psycopg
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE mfa_coverage")
        conn.execute("CREATE DATABASE mfa_coverage_cheap")
    import base64
    import secrets
    from cryptography.fernet import Fernet
    os.environ["MFA_BENCH_COVERAGE_KEYS"] = json.dumps({
        "MFA_PORTAL_FERNET_KEYS": Fernet.generate_key().decode(),
        "MFA_PORTAL_PEPPER": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()})
    os.environ["MFA_BENCH_COVERAGE_PG"] = cluster.url + "_coverage"
    os.environ["MFA_BENCH_COVERAGE_PG_CHEAP"] = cluster.url + "_coverage_cheap"
    return cluster


def report(results: dict[str, dict[str, Any]], builds: dict[str, float], users: int, head: str,
           seconds: float) -> str:
    lines = ["## Coverage (issue 23): 100,000 users, and sign-in with a policy in force", "",
             head + f"; whole part {seconds:.0f} s.", ""]
    rows = []
    for b, r in results.items():
        for what, key in (("`svc.coverage()` (Helpdesk Coverage section), warm engine", "helpdesk"),
                          ("`mfa coverage --json` (cli.main: opens engine + store, prints)", "command")):
            samples = r[key]
            ok = p50(samples) <= COVERAGE_MAX_MS
            verdict = note_target("coverage", f"{what.split(' (')[0]} p50 ≤ {COVERAGE_MAX_MS:.0f} ms, "
                                  f"{LABELS[b]}", f"{ms(p50(samples))} ms", ok)
            rows.append([LABELS[b], what, len(samples), ms(p50(samples)), ms(percentile(samples, 95)),
                         f"≤ {COVERAGE_MAX_MS:.0f}", verdict])
        for what, key in (("`svc.coverage()`, warm engine, first call after one user's summary "
                           "changed (information)", "after_helpdesk"),
                          ("`mfa coverage --json`, first call after one user's summary changed "
                           "(information)", "after_command")):
            if r.get(key):
                rows.append([LABELS[b], what, len(r[key]), ms(p50(r[key])), ms(percentile(r[key], 95)),
                             "", ""])
        rows.append([LABELS[b], "`python -m mfa_core mfa coverage --json`, new process (information)",
                     len(r["process"]), ms(p50(r["process"])), ms(percentile(r["process"], 95)), "", ""])
    lines += [table(["store", "what", "calls", "p50 ms", "p95 ms", "target", ""], rows, "lllrrll"), ""]
    crow = []
    for b, r in results.items():
        c = r["counts"]
        crow.append([LABELS[b], f"{c['users']:,}", f"{c['covered']:,}", f"{c['enrolled']:,}",
                     f"{c['in_grace']:,}", f"{c['overdue']:,}", f"{c['disallowed']:,}",
                     f"{c['enrollments_30d']:,}", f"{c['json_kb']:.0f} kB", f"{r['first_s']:.1f} s",
                     f"{builds.get(b, 0):.0f} s"])
    lines += ["What was counted (the same on both stores), the JSON's size, the first call of a "
              "fresh process (untimed above: builds users.yaml's role index / counts the audit "
              "days once) and the store's build:", "",
              table(["store", "users", "covered", "enrolled", "in grace", "overdue", "disallowed",
                     "enrollments (30 d)", "JSON", "first call", "build"], crow), ""]
    srows = []
    for b, r in results.items():
        for label, key, target in (("bcrypt cost 12 (the portal's)", "signin", True),
                                   ("bcrypt cost 4 (overhead shown; information)", "signin_cheap", False)):
            if key not in r:
                continue
            with_, without = r[key]["with"], r[key]["without"]
            ratio_value = p50(with_) / p50(without)
            verdict = (note_target("coverage", f"sign-in with ÷ without a policy ≤ {SIGNIN_RATIO_MAX}×, "
                                   f"{LABELS[b]}", f"{ratio_value:.2f}×", ratio_value <= SIGNIN_RATIO_MAX)
                       if target else "")
            srows.append([LABELS[b], label, f"{len(with_)} + {len(without)}", ms(p50(without)),
                          ms(p50(with_)), f"{ratio_value:.2f}×",
                          f"≤ {SIGNIN_RATIO_MAX}×" if target else "", verdict])
    lines += ["Sign-in path (`attempt_password` right password + `requirement(record=True)`), "
              "policy in force vs. none, alternating blocks of "
              f"{BLOCK} in one process on one store (enrolled users: state met):", "",
              table(["store", "hashes", "calls with + without", "without p50 ms", "with p50 ms",
                     "with ÷ without", "target", ""], srows, "llrrrrll"), ""]
    return "\n".join(lines)


def _child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "build":
        result = build(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]), *argv[6:7])
    elif kind == "measure":
        result = measure(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5] or None, int(argv[6]))
    else:
        raise SystemExit(f"unknown child command {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _child(sys.argv[1:])
