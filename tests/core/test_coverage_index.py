"""The caches that make `mfa coverage` fast on the embedded store (issue 23's speed).

- ``.coverage-index.json``: users.yaml's roles joined with the store's coverage
  index, kept between processes, stamped with users.yaml's stamp and every
  shard index's; used only when the stamp, the checksum and the shape are
  right; joined again after any change, also one made while it was being read.
- the shard indexes' stamps never repeat (each write's mtime after the last);
- the audit trail's enrollments per day: a small per-day index, details per day.
- the command's JSON: the same text as ``json.dumps(indent=2)``.

A "new process" here is a new engine on the same data dir (nothing remembered
in memory is shared with it).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

import bcrypt
import pytest

import mfa_core
from mfa_core import coverage as cov
from mfa_core.cli import _indented_json
from mfa_core.storage import audit_log, sharded
from mfa_core.storage.audit_log import JSONLinesAuditLog
from mfa_core.storage.base import ENROLLMENT_EVENTS

from ..support import T0, enable_totp
from .test_coverage import record

DAY = 86400
_HASH = bcrypt.hashpw(b"coverage-index", bcrypt.gensalt(4)).decode("ascii")
PEOPLE = [f"u{i}" for i in range(8)]


def fresh(data_dir, clock) -> mfa_core.MFAService:
    return mfa_core.open_service(data_dir, clock=clock, environ={}, backend="tinydb")


def counts(data: dict) -> tuple[int, int, int, int]:
    return data["users"], data["enrolled"], data["in_grace"], data["by_factor"]["totp"]


@pytest.fixture
def staff(tinydb_svc, clock):
    svc = tinydb_svc
    svc.directory.import_entries({**{n: {"password": _HASH, "roles": ["user"]} for n in PEOPLE},
                                  "boss": {"password": _HASH, "roles": ["user", "admin"]}})
    enable_totp(svc, clock, "boss")
    enable_totp(svc, clock, "u0")
    svc.set_policy_rule(target="everyone", grace_days=10, actor="admin-cli")
    return svc


def joined_file(data_dir):
    return data_dir / cov.JOINED_CACHE


def test_a_new_process_reads_the_joined_index_alone(staff, data_dir, clock, monkeypatch):
    first = staff.coverage()
    assert counts(first) == (9, 2, 7, 2)
    assert joined_file(data_dir).exists()
    other = fresh(data_dir, clock)

    def not_read(*args, **kwargs):
        raise AssertionError("read although the joined index is current")
    monkeypatch.setattr(type(other.store), "coverage_columns", not_read)
    monkeypatch.setattr(cov, "role_index", not_read)
    assert other.coverage() == first


def test_a_changed_record_or_directory_is_joined_again(staff, data_dir, clock):
    staff.coverage()
    enable_totp(fresh(data_dir, clock), clock, "u1")  # another process enrolls u1
    assert counts(fresh(data_dir, clock).coverage()) == (9, 3, 6, 3)
    assert counts(staff.coverage()) == (9, 3, 6, 3)  # the warm engine's memory is stamped too
    fresh(data_dir, clock).directory.import_entries({"new": {"password": _HASH, "roles": ["user"]}})
    assert counts(fresh(data_dir, clock).coverage()) == (10, 3, 7, 3)
    staff.store.put("u2", record("u2", ("totp",)))  # straight through the store
    assert counts(fresh(data_dir, clock).coverage()) == (10, 4, 6, 4)


def _valid(body: dict) -> bytes:
    text = json.dumps(body, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest().encode() + b"\n" + text


def _with_ghosts(data: dict, only: int | None = None) -> dict:
    """The joined index with a made-up user without an authenticator in every section (or one)."""
    return dict(data, shards=[
        [sec[0], [[roles, by_key, rest + [f"ghost{n}"]] for roles, by_key, rest in sec[1]], sec[2]]
        if sec is not None and (only is None or n == only) else sec
        for n, sec in enumerate(data["shards"])])


@pytest.mark.parametrize("damage", ["empty", "garbage", "torn", "flipped", "shape", "types",
                                    "version", "unchecked"])
def test_a_damaged_joined_index_is_never_used_and_is_rewritten(staff, data_dir, clock, damage):
    expected = staff.coverage()
    path = joined_file(data_dir)
    good = path.read_bytes()
    data = json.loads(good.partition(b"\n")[2])
    lie = _with_ghosts(data)
    path.write_bytes({
        "empty": b"",
        "garbage": b"\x00\xffnot json at all",
        "torn": good[:len(good) // 2],
        "flipped": good.replace(b'"u1"', b'"u9"'),  # the checksum no longer matches
        "shape": _valid({"v": 2, "head": data["head"], "shards": {"a": 1}}),
        "types": _valid(dict(data, shards=[[sec[0], [[r, b, [1, 2]] for r, b, _ in sec[1]], sec[2]]
                                           if sec else sec for sec in data["shards"]])),
        "version": _valid(dict(lie, v=99)),
        "unchecked": json.dumps(lie).encode(),  # no checksum line
    }[damage])
    assert fresh(data_dir, clock).coverage() == expected
    # Joined again and rewritten: a good file of the current stamps.
    assert all(sec is not None for sec in cov._read_sections(str(path), data["head"]))


def test_an_index_of_another_stamp_is_not_used(staff, data_dir, clock):
    expected = staff.coverage()
    path = joined_file(data_dir)
    data = json.loads(path.read_bytes().partition(b"\n")[2])
    path.write_bytes(_valid(dict(_with_ghosts(data), head=[data["head"][0], "1:2"])))
    assert fresh(data_dir, clock).coverage() == expected
    # One shard's section of another stamp: that shard is joined again.
    n = next(n for n, sec in enumerate(data["shards"]) if sec[1])
    lie = _with_ghosts(data, only=n)
    lie["shards"][n][0] = "1:2:3"
    path.write_bytes(_valid(lie))
    assert fresh(data_dir, clock).coverage() == expected


def test_after_a_change_only_its_shard_is_read_again(staff, data_dir, clock, monkeypatch):
    staff.coverage()
    enable_totp(fresh(data_dir, clock), clock, "u1")
    other = fresh(data_dir, clock)
    read = []
    real = type(other.store).coverage_shard
    monkeypatch.setattr(type(other.store), "coverage_shard", lambda self, n: read.append(n) or real(self, n))

    def not_read(*args, **kwargs):
        raise AssertionError("users.yaml's roles read although unchanged")
    monkeypatch.setattr(cov, "role_index", not_read)
    assert counts(other.coverage()) == (9, 3, 6, 3)
    assert read == [int(sharded.user_key("u1")[:2], 16)]
    assert counts(staff.coverage()) == (9, 3, 6, 3)  # the warm engine: the same one shard


def test_a_change_made_while_joining_is_seen_by_the_next_call(staff, data_dir, clock, monkeypatch):
    staff.coverage()
    enable_totp(staff, clock, "u3")  # u3's shard is stale in the joined index
    reader = fresh(data_dir, clock)
    real = type(reader.store).coverage_shard
    writer = fresh(data_dir, clock)
    done = []

    def change_meanwhile(store, n):
        if not done:  # another process enrolls u4 after this reader took its stamps
            done.append(enable_totp(writer, clock, "u4"))
        return real(store, n)
    monkeypatch.setattr(type(reader.store), "coverage_shard", change_meanwhile)
    reader.coverage()
    monkeypatch.undo()
    assert counts(fresh(data_dir, clock).coverage()) == (9, 4, 5, 4)
    assert counts(staff.coverage()) == (9, 4, 5, 4)
    enable_totp(writer, clock, "u5")  # stale again
    done.clear()

    def change_after_reading(store, n):
        found = real(store, n)
        if not done:  # after this shard was read: missing from this join
            done.append(enable_totp(writer, clock, "u6"))
        return found
    monkeypatch.setattr(type(reader.store), "coverage_shard", change_after_reading)
    assert counts(fresh(data_dir, clock).coverage()) == (9, 5, 4, 5)
    monkeypatch.undo()
    assert counts(fresh(data_dir, clock).coverage()) == (9, 6, 3, 6)
    assert counts(staff.coverage()) == (9, 6, 3, 6)


def test_shard_index_stamps_never_repeat_within_a_clock_tick(staff, data_dir, monkeypatch):
    store = staff.store
    monkeypatch.setattr(sharded.time, "time_ns", lambda: 1_000_000_000)  # a frozen clock
    shard = sharded.user_key("u6")[:2]
    path = os.path.join(store._summary_root, shard + ".json")
    stamps, mtimes = [], []
    for kinds in (("totp",), ("passkey",), ("totp",), ("passkey",)):  # same sizes come back
        store.put("u6", record("u6", kinds))
        stamps.append(store.coverage_stamp())
        mtimes.append(os.stat(path).st_mtime_ns)
    assert len(set(stamps)) == 4
    assert mtimes == sorted(set(mtimes))


def test_no_stamp_while_the_index_is_not_built(staff):
    store = staff.store
    assert store.coverage_stamp() is not None
    os.unlink(os.path.join(store._summary_root, sharded.BUILT))
    assert store.coverage_stamp() is None
    assert counts(staff.coverage()) == (9, 2, 7, 2)  # rebuilt from the records
    assert store.coverage_stamp() is not None


def test_counts_stay_right_while_many_threads_enroll(staff, data_dir, clock):
    names = [f"w{i:02d}" for i in range(40)]
    staff.directory.import_entries({n: {"password": _HASH, "roles": ["user"]} for n in names})
    staff.coverage()
    errors: list[BaseException] = []
    start = threading.Barrier(len(names) + 1)

    def enroll(name: str) -> None:
        try:
            start.wait()
            staff.store.put(name, record(name, ("totp",)))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    def read() -> None:
        try:
            start.wait()
            for _ in range(5):
                fresh(data_dir, clock).coverage()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=enroll, args=(n,)) for n in names] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert counts(fresh(data_dir, clock).coverage()) == (49, 42, 7, 42)
    assert counts(staff.coverage()) == (49, 42, 7, 42)


# -- enrollments per day --------------------------------------------------------------------

def _enrolled(t: float, txn: str, event: str = "totp_enabled") -> dict:
    return {"time": t, "user": "x", "actor": "x", "event": event, "outcome": "success", "txn": txn}


def test_enrollments_per_day_are_counted_once_and_follow_growth(tmp_path, monkeypatch):
    log = JSONLinesAuditLog(tmp_path)
    day0 = T0 - T0 % DAY
    log.append([_enrolled(day0 + 10, "a"), _enrolled(day0 + DAY + 10, "b"),
                _enrolled(day0 + DAY + 20, "c", "passkey_added"),
                {"time": day0 + DAY + 30, "event": "signed_in", "txn": "d"}])
    window = (day0, day0 + 3 * DAY)
    assert log.count_by_day(ENROLLMENT_EVENTS, *window) == {
        audit_log._day(day0): 1, audit_log._day(day0 + DAY): 2}
    read = []
    real = audit_log._count_from
    monkeypatch.setattr(audit_log, "_count_from", lambda *a: read.append(a[0].name) or real(*a))
    assert log.count_by_day(ENROLLMENT_EVENTS, *window)[audit_log._day(day0 + DAY)] == 2
    assert read == []  # nothing grew: the small index answered
    log.append([_enrolled(day0 + DAY + 40, "e")])
    log.abort("c", day0 + DAY + 50)  # c's action did not commit
    assert log.count_by_day(ENROLLMENT_EVENTS, *window)[audit_log._day(day0 + DAY)] == 2
    assert read == [audit_log._day(day0 + DAY) + ".jsonl"]  # only the day that grew
    # A partial day counts by the events' own times.
    assert log.count_by_day(ENROLLMENT_EVENTS, day0 + DAY + 15, day0 + 2 * DAY) == {
        audit_log._day(day0 + DAY): 1}


def test_damaged_enrollment_counts_are_counted_again(tmp_path):
    log = JSONLinesAuditLog(tmp_path)
    day0 = T0 - T0 % DAY
    log.append([_enrolled(day0 + n, f"t{n}") for n in range(5)])
    window = (day0, day0 + DAY)
    assert log.count_by_day(ENROLLMENT_EVENTS, *window) == {audit_log._day(day0): 5}
    (index,) = tmp_path.glob(".counts-*.days.json")
    (details,) = tmp_path.glob(".counts-*/*.json")
    for damage in (b"", b"{not json", b'{"v": 2, "days": {"%s": [1, "x"]}}' % audit_log._day(day0).encode()):
        index.write_bytes(damage)
        details.write_bytes(b'{"size": 99999999, "txns": {}}')  # counted further than the file
        assert log.count_by_day(ENROLLMENT_EVENTS, *window) == {audit_log._day(day0): 5}


# -- the command's JSON ------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    {"covered": 1, "overdue_users": ["a", 'q"\\\n\x00é', "z"], "grace": [{"username": "g"}], "e": {}},
    {"covered": 1, "overdue_users": [], "by_factor": {"totp": 2}},
    {"overdue_users": ["only"]},
    {"a": [1], "overdue_users": ["\x00"], "b": "\x00"},
])
def test_the_json_is_json_dumps_indent_2(data):
    assert _indented_json(data, "overdue_users") == json.dumps(data, indent=2)


@pytest.mark.parametrize("damage", [b"", b"{}", "flipped", "ghost"])
def test_a_damaged_members_file_is_made_again(staff, data_dir, clock, damage):
    staff.coverage()
    members = data_dir / cov.MEMBERS_CACHE
    good = members.read_bytes()
    data = json.loads(good.partition(b"\n")[2])
    n = next(n for n, shard in enumerate(data["shards"]) if shard)
    ghosted = dict(data, shards=[[[r, names + ["ghost"]] for r, names in shard] if i == n else shard
                                 for i, shard in enumerate(data["shards"])])
    members.write_bytes({"flipped": good.replace(b'"u1"', b'"u9"'),
                         "ghost": json.dumps(ghosted).encode()}.get(damage, damage))
    joined_file(data_dir).unlink()  # every shard is joined again, from the members file
    assert counts(fresh(data_dir, clock).coverage()) == (9, 2, 7, 2)
    assert cov._unchecked(str(members)) == data  # made again from users.yaml


def test_the_count_file_of_earlier_versions_is_not_read_and_goes(tmp_path):
    log = JSONLinesAuditLog(tmp_path)
    day0 = T0 - T0 % DAY
    log.append([_enrolled(day0 + n, f"t{n}") for n in range(3)])
    name = hashlib.sha256("\0".join(sorted(ENROLLMENT_EVENTS)).encode()).hexdigest()[:12]
    legacy = tmp_path / f".counts-{name}.json"  # one file of every day's details, wrong here
    legacy.write_text(json.dumps({audit_log._day(day0): {"size": 1, "txns": {"x": 99}, "times": []}}))
    assert log.count_by_day(ENROLLMENT_EVENTS, day0, day0 + DAY) == {audit_log._day(day0): 3}
    assert not legacy.exists()
