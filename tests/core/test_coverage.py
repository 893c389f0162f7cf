"""Two-step coverage and the policy reminders (issue 23), on the sharded TinyDB store and PostgreSQL.

A directory of 1,000 users with a known mix (covered or not, enrolled by kind,
in grace, overdue, with a factor their rule does not allow) built partly
straight through the store and partly through the engine (enrollments, grace
starts recorded at sign-in), so the summaries the stores keep are checked on
both their paths. Reminders: once per user, also with two processes at once.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import sys
import types

import bcrypt
import pytest

from mfa_core import authenticators as authn
from mfa_core import records
from mfa_core.coverage_service import reminder_due

from ..support import T0, Inbox, enable_totp, smtp_server
from . import _workers

DAY = 86400
BACKENDS = ["tinydb", "postgres"]


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend(request) -> str:
    return request.param


_HASH = bcrypt.hashpw(b"coverage-test", bcrypt.gensalt(4)).decode("ascii")


def name(i: int) -> str:
    return f"user{i:04d}"


ADMINS = range(0, 50)          # roles user + admin: 0-19 passkey, 20-34 app only, 35-49 nothing
PLAIN = range(50, 950)         # role user
CONTRACTORS = range(950, 1000)  # role contractor: no rule applies; 950-959 have an app


def directory_entries() -> dict[str, dict]:
    entries = {}
    for i in range(1000):
        roles = (["user", "admin"] if i in ADMINS else ["contractor"] if i in CONTRACTORS else ["user"])
        entries[name(i)] = {"password": _HASH, "roles": roles, "email": f"{name(i)}@example.com",
                            "first_name": "User", "last_name": str(i)}
    return entries


def record(username: str, kinds: tuple[str, ...], *, backup: bool = False) -> dict:
    """A valid current-format record with authenticators of ``kinds`` (no real secret needed)."""
    rec: dict = {"username": username}
    for n, kind in enumerate(kinds):
        fields = ({"secret": "not-a-real-token", "last_step": None} if kind == "totp" else
                  {"credential_id": f"cred-{username}-{n}", "public_key": "pk", "sign_count": 0})
        authn.add(rec, kind, f"{kind} {n}", T0 - 10 * DAY, **fields)
    if backup:
        rec["backup"] = {"salt": "00" * 16, "hashes": ["ab" * 16] * 10, "generated_at": T0}
    records.seal(rec)
    return records.load(username, rec)


def kinds_of(i: int) -> tuple[str, ...]:
    if i in range(0, 20):
        return ("passkey",)
    if i in range(20, 35) or i in range(50, 550) or i in range(950, 960):
        return ("totp",)
    if i in range(550, 650):
        return ("passkey",)
    if i in range(650, 700):
        return ("totp", "passkey")
    return ()


@pytest.fixture
def rollout(svc, clock):
    """The 1,000-user directory and its records; the policy set at T0, then the clock at T0 + 40 days.

    role:user: grace 30 days, any factor; role:admin: deadline T0 + 10 days, passkeys (and codes) only.
    """
    svc.directory.import_entries(directory_entries())
    for i in range(1000):
        kinds = kinds_of(i)
        if kinds:
            svc.store.put(name(i), record(name(i), kinds, backup=i in range(50, 300)))
    deadline = dt.datetime.fromtimestamp(T0 + 10 * DAY, dt.timezone.utc).date().isoformat()
    svc.set_policy_rule(target="role:user", grace_days=30, actor="admin-cli")
    svc.set_policy_rule(target="role:admin", deadline=deadline, allow="passkey,backup_code",
                        actor="admin-cli")
    clock.advance(3600)
    for i in range(800, 900):  # signed in an hour after the rule: 30 days from then
        assert svc.requirement(name(i), record=True).state == "grace"
    clock.advance(15 * DAY - 3600)
    for i in range(900, 950):  # signed in 15 days after the rule
        svc.requirement(name(i), record=True)
    clock.advance(25 * DAY)  # T0 + 40 days
    # Two contractors enroll through the engine on two days (the per-day series).
    enable_totp(svc, clock, name(960))
    clock.advance(DAY)
    enable_totp(svc, clock, name(961))
    clock.advance(DAY)  # T0 + 42 days
    svc.two_step_policy()
    return svc


def expected_overdue() -> list[str]:
    return sorted([name(i) for i in range(35, 50)] + [name(i) for i in range(800, 900)])


def test_coverage_counts_a_known_mix_of_1000_users(rollout, clock):
    data = rollout.coverage()
    assert data["users"] == 1000
    assert data["not_covered"] == 50
    assert data["covered"] == 950
    assert data["enrolled"] == 20 + 500 + 100 + 50
    assert data["disallowed"] == 15
    assert data["overdue"] == 15 + 100
    assert data["in_grace"] == 100 + 50
    assert data["covered"] == data["enrolled"] + data["in_grace"] + data["overdue"] + data["disallowed"]
    assert data["overdue_users"] == expected_overdue()
    assert data["by_factor"] == {"totp": 15 + 500 + 50 + 12, "passkey": 20 + 100 + 50,
                                 "backup_code": 250}
    # Soonest due first: signed in 15 days after the rule (3 days left at T0 + 42 days), then the
    # never-evaluated users, who get the whole 30 days from now.
    assert data["grace"][:50] == [{"username": name(i), "days_left": 3} for i in range(900, 950)]
    assert data["grace"][50:] == [{"username": name(i), "days_left": 30} for i in range(700, 800)]
    series = data["enrollments_per_day"]
    assert len(series) == 30
    assert series[-1]["date"] == dt.datetime.fromtimestamp(clock(), dt.timezone.utc).date().isoformat()
    assert [d["count"] for d in series[-3:]] == [1, 1, 0]
    assert sum(d["count"] for d in series) == 2
    assert dt.datetime.fromisoformat(data["generated_at"]).timestamp() == int(clock())
    json.dumps(data)  # what the CLI prints
    # The same answer as the policy's own requirement(), user by user (one rule, one place).
    left = {g["username"]: g["days_left"] for g in data["grace"]}
    for i in (0, 20, 35, 49, 50, 600, 700, 800, 899, 900, 949, 950, 960):
        req = rollout.requirement(name(i))
        assert (name(i) in data["overdue_users"]) == (req.state == "overdue"), i
        assert left.get(name(i)) == (req.days_left if req.state == "grace" else None), i


def test_coverage_follows_changes_without_reading_records(rollout, clock, monkeypatch):
    svc = rollout
    enable_totp(svc, clock, name(900))  # in grace -> enrolled
    svc.reset_mfa(name(600), actor="helpdesk", reason="lost phone")  # enrolled -> in grace (new start)
    calls = []
    monkeypatch.setattr(type(svc.store), "read", lambda self, u: calls.append(u))
    data = svc.coverage()
    assert calls == []  # no user's record was read
    assert (data["enrolled"], data["in_grace"], data["overdue"]) == (670, 150, 115)
    assert {"username": name(900), "days_left": 3} not in data["grace"]
    assert {"username": name(600), "days_left": 30} in data["grace"]
    assert data["by_factor"] == {"totp": 577 + 1, "passkey": 169, "backup_code": 250}
    assert sum(d["count"] for d in data["enrollments_per_day"]) == 3


def test_a_rule_change_is_seen_at_once(rollout, clock):
    svc = rollout
    svc.clear_policy(actor="admin-cli")
    data = svc.coverage()
    assert (data["covered"], data["not_covered"], data["overdue_users"]) == (0, 1000, [])
    svc.set_policy_rule(target="everyone", grace_days=5, actor="admin-cli")
    data = svc.coverage()
    assert data["covered"] == 1000
    # Starts recorded under the earlier role:user rule belong to another target: everyone
    # without an authenticator starts now.
    assert data["overdue"] == 0 and data["in_grace"] == 15 + 100 + 100 + 50 + 38


def test_the_grace_list_is_capped_but_the_count_is_not(rollout):
    data = rollout.coverage(grace_limit=10)
    assert len(data["grace"]) == 10 and data["in_grace"] == 150
    assert len(rollout.coverage(grace_limit=None)["grace"]) == 150


def test_a_store_from_before_the_summaries_is_summarized_on_first_use(svc, clock, backend):
    svc.directory.import_entries({name(i): directory_entries()[name(i)] for i in range(60, 70)})
    for i in range(60, 65):
        svc.store.put(name(i), record(name(i), ("totp",)))
    # As a data dir or database written by the portal before this version.
    if backend == "tinydb":
        import shutil
        shutil.rmtree(svc.store.root / "summary")
    else:
        import psycopg
        with psycopg.connect(svc.store.url, autocommit=True) as conn:
            conn.execute("TRUNCATE user_summary")
            conn.execute("UPDATE summary_meta SET built = false")
    svc.set_policy_rule(target="everyone", grace_days=10, actor="admin-cli")
    data = svc.coverage()
    assert (data["users"], data["enrolled"], data["in_grace"]) == (10, 5, 5)


# -- reminders ----------------------------------------------------------------------------

def test_reminders_7_days_1_day_and_when_due_each_once(svc, clock):
    def hire(*names: str) -> None:
        svc.directory.import_entries({n: {"password": _HASH, "roles": ["user"],
                                          "email": f"{n}@example.com"} for n in names})
    hire("ann", "cat")
    sent = []
    enable_totp(svc, clock, "cat")
    svc.notifier = lambda event: sent.append((event.user, event.event, event.detail)) or True
    svc.set_policy_rule(target="everyone", grace_days=10, actor="admin-cli")
    svc.requirement("ann", record=True)  # ann's grace starts now
    assert svc.send_policy_reminders() == 0
    clock.advance(3 * DAY + 60)  # ann: 7 days left (less a minute)
    assert svc.send_policy_reminders() == 1
    hire("ben")  # a new hire: the grace starts at the next run, 10 days from then
    assert svc.send_policy_reminders() == 0
    assert svc.requirement("ben").days_left == 10
    assert [s[:2] for s in sent] == [("ann", "policy_reminder")]
    assert sent[0][2].startswith("7 days left, due ")
    clock.advance(6 * DAY)  # ann: 1 day left; ben (started at the first run): 7 days left
    assert svc.send_policy_reminders() == 2
    assert sorted(s[0] for s in sent[1:]) == ["ann", "ben"]
    clock.advance(DAY)  # ann: due
    assert svc.send_policy_reminders() == 1
    assert sent[-1][0] == "ann" and sent[-1][2].startswith("deadline passed")
    for _ in range(3):
        assert svc.send_policy_reminders() == 0
    assert [e.detail.split(",")[0] for e in svc.audit("ann") if e.event == "policy_reminder"] == [
        "7 days left", "1 day left", "deadline passed"]
    assert "cat" not in {s[0] for s in sent}


def test_a_user_first_seen_late_gets_only_the_latest_reminder(svc, clock):
    svc.directory.import_entries({"dan": {"password": _HASH, "roles": ["user"]}})
    sent = []
    svc.notifier = lambda event: sent.append(event.detail) or True
    day = dt.datetime.fromtimestamp(clock(), dt.timezone.utc).date() + dt.timedelta(days=1)
    svc.set_policy_rule(target="everyone", deadline=day.isoformat(), actor="admin-cli")
    assert svc.send_policy_reminders() == 1  # within a day of the deadline: "1 day", never "7 days"
    assert sent[0].startswith("1 day left")
    assert reminder_due(svc.requirement("dan"), clock()) == "1d"


def test_reminders_go_once_across_two_processes(svc, clock, backend, data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    users = [f"late{i:02d}" for i in range(20)]
    svc.directory.import_entries({n: {"password": _HASH, "roles": ["user"], "email": f"{n}@example.com"}
                                  for n in users})
    svc.set_policy_rule(target="everyone", grace_days=5, actor="admin-cli")
    now = clock() + 5 * DAY - 3600  # everyone: 1 day left at most
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    with smtp_server(Inbox()) as inbox:
        procs = [ctx.Process(target=_workers.remind,
                             args=(str(data_dir), backend, now, barrier, results, inbox.port))
                 for _ in range(2)]
        outcomes = _workers.outcomes_of(procs, results)
        assert not [o["error"] for o in outcomes if "error" in o], outcomes
        assert sum(o["sent"] for o in outcomes) == len(users)
        messages = inbox.wait_for(len(users))
        assert sorted(r[0] for r in inbox.recipients) == sorted(f"{n}@example.com" for n in users)
        assert all("Set up two-step verification by" in m["Subject"] for m in messages)
    clock.now = now
    assert svc.send_policy_reminders() == 0
    events = [e for e in svc.audit() if e.event == "policy_reminder"]
    assert sorted(e.user for e in events) == users


@pytest.mark.parametrize("backend", ["tinydb"], ids=["tinydb"])
def test_coverage_without_a_policy_counts_nobody_covered(svc):
    svc.directory.import_entries({"eve": {"password": _HASH, "roles": ["user"]}})
    data = svc.coverage()
    assert (data["users"], data["covered"], data["not_covered"]) == (1, 0, 1)
    assert svc.send_policy_reminders() == 0



@pytest.mark.parametrize("backend", ["tinydb"], ids=["tinydb"])
def test_a_failed_index_write_never_fails_the_action_and_is_rebuilt(svc, clock, monkeypatch, caplog):
    svc.directory.import_entries({"fay": {"password": _HASH, "roles": ["user"]},
                                  "gus": {"password": _HASH, "roles": ["user"]}})
    store = svc.store

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(type(store), "_put_summary", broken)
    enable_totp(svc, clock, "fay")  # committed: the index's failure is not the action's
    assert svc.status("fay").totp_enabled
    assert not (store.root / "summary" / "BUILT").exists()
    monkeypatch.undo()
    data = svc.coverage()  # rebuilt from the records
    assert (data["users"], data["by_factor"]["totp"]) == (2, 1)
    assert (store.root / "summary" / "BUILT").exists()


def test_coverage_follows_directory_changes(rollout, clock, backend):
    """Users added, removed, given other roles, removed and added again: counted at once (on
    PostgreSQL through the ``roles`` column the database keeps with each directory entry)."""
    svc = rollout
    svc.directory.add("newhire", "newhire-pass-1", roles=["user"])  # no record: 30 days from now
    svc.directory.remove(name(800))                    # overdue, start recorded: gone
    svc.directory.set_roles(name(600), ["contractor"])  # enrolled (passkey): no longer covered
    svc.directory.set_roles(name(700), ["user", "admin"])  # in grace: the admins' deadline passed
    svc.directory.set_roles(name(20), ["user"])          # an admin with an app only: now allowed
    svc.directory.remove(name(0))                        # enrolled admin (passkey), back as a user:
    svc.directory.add(name(0), "user0000-pass-1", roles=["user"])  # the record is still there
    data = svc.coverage()
    assert {k: data[k] for k in ("users", "covered", "not_covered", "enrolled", "in_grace", "overdue",
                                 "disallowed")} == {
        "users": 1000, "covered": 949, "not_covered": 51, "enrolled": 670, "in_grace": 150,
        "overdue": 115, "disallowed": 14}
    assert data["overdue_users"] == sorted(set(expected_overdue()) - {name(800)} | {name(700)})
    assert {"username": "newhire", "days_left": 30} in data["grace"]
    assert data["by_factor"] == {"totp": 577, "passkey": 170, "backup_code": 250}
    enable_totp(svc, clock, "newhire")
    data = svc.coverage()
    assert (data["enrolled"], data["in_grace"]) == (671, 149)
    for i in (0, 20, 600, 700):  # the same answer as requirement(), user by user
        req = svc.requirement(name(i))
        assert (name(i) in data["overdue_users"]) == (req.state == "overdue"), i


def _database_columns(url: str) -> tuple[dict, dict]:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        roles = {n: (entry, text) for n, entry, text in
                 conn.execute("SELECT username, entry, roles FROM directory")}
        kinds = {n: (summary, text) for n, summary, text in
                 conn.execute("SELECT username, summary, kinds FROM user_summary")}
    return roles, kinds


@pytest.mark.parametrize("backend", ["postgres"], ids=["postgres"])
def test_the_database_keeps_roles_and_kinds_columns_equal_to_the_rows(rollout, clock):
    """Schema 5's generated columns say what the engine's own reading of each row says."""
    from mfa_core import summary
    svc = rollout
    svc.directory.set_roles(name(1), ["user"])
    svc.directory.add("nora", "nora-pass-123")  # no roles given
    svc.reset_mfa(name(650), actor="helpdesk", reason="lost phone")  # authenticators gone: '{}'
    enable_totp(svc, clock, name(960))  # a second app: same kinds
    svc.create_backup_codes(name(660))  # an app, a passkey and codes
    roles, kinds = _database_columns(svc.store.url)
    assert len(roles) == 1001 and len(kinds) >= 700
    for entry, text in roles.values():
        assert json.loads(text) == entry.get("roles", [])
    seen = set()
    for found, text in kinds.values():
        assert text == summary.kinds_key(found or None)
        seen.add(text)
    assert seen == {"passkey", "totp", "totp|b", "passkey,totp", "passkey,totp|b", None}
    import psycopg  # and summaries the engine never writes: the same reading all the same
    odd = [{"k": []}, {"k": ["passkey"], "b": 1, "s": {"role:user": 1.0}, "r": {"for": 2.0}}]
    with psycopg.connect(svc.store.url, autocommit=True) as conn:
        for n, found in enumerate(odd):
            text = conn.execute("INSERT INTO user_summary (username, summary) VALUES (%s, %s::jsonb) "
                                "RETURNING kinds", (f"odd{n}", json.dumps(found))).fetchone()[0]
            assert text == summary.kinds_key(found), found


@pytest.mark.parametrize("backend", ["postgres"], ids=["postgres"])
def test_a_schema_4_database_is_upgraded_and_counts_the_same(rollout, clock, data_dir):
    """A database the previous release made (schema 4: no roles / kinds columns) is refused
    until `db upgrade`, which adds them to the rows already there: coverage counts the same."""
    import psycopg
    import mfa_core
    from mfa_core.storage.postgres import SCHEMA_VERSION, PostgresStore
    before = rollout.coverage(grace_limit=None)
    url = rollout.store.url
    rollout.store.close()
    with psycopg.connect(url, autocommit=True) as conn:  # as release 4 left it
        conn.execute("ALTER TABLE directory DROP COLUMN roles")  # and the indexes on them
        conn.execute("ALTER TABLE user_summary DROP COLUMN kinds")
        conn.execute("DELETE FROM schema_version WHERE version > 4")
        assert not conn.execute("SELECT indexname FROM pg_indexes WHERE indexname IN "
                                "('directory_roles', 'user_summary_kinds', 'user_summary_bare')").fetchall()
    try:
        with pytest.raises(mfa_core.StorageError, match="db upgrade"):
            mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=url)
        store = PostgresStore(url, upgrade=True)
        assert (store.upgraded_from, store.schema_version()) == (4, SCHEMA_VERSION)
        store.close()
    finally:
        PostgresStore(url, upgrade=True).close()
    upgraded = mfa_core.open_service(data_dir, clock=clock, environ={}, database_url=url)
    assert upgraded.coverage(grace_limit=None) == before
    enable_totp(upgraded, clock, name(700))  # and it goes on following the records
    assert upgraded.coverage()["enrolled"] == before["enrolled"] + 1
