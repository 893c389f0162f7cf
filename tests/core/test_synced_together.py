"""store.synced_together(): commits in one block fsync their directories once, at its end."""

from __future__ import annotations

import os
import threading

import pytest

from mfa_core.errors import RecordDamaged
from mfa_core.storage import ShardedTinyDBStore, user_key
from mfa_core.storage.files import write_atomic


def test_write_atomic_can_leave_the_directory_fsync_to_its_caller(tmp_path):
    dirs: set[str] = set()
    write_atomic(tmp_path / "a.json", b'{"a": 1}', defer_dir=dirs)
    assert (tmp_path / "a.json").read_bytes() == b'{"a": 1}'  # whole and in place at once
    assert dirs == {str(tmp_path)}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_commits_in_a_block_are_seen_at_once_by_everyone(tmp_path):
    store = ShardedTinyDBStore(tmp_path)
    seen = []
    with store.synced_together():
        with store.keyed_transaction("place") as txn:
            txn.record["failures"] = [["s", 1.0]]
        with store.transaction("alice") as txn:
            txn.record["n"] = 1
        with store.synced_together():  # a nested block joins this one
            with store.keyed_transaction("other") as txn:
                txn.record["n"] = 2
        reader = threading.Thread(target=lambda: seen.append(
            (store.read_keyed("place"), store.read("alice"), store.read_keyed("other"))))
        reader.start()
        reader.join()
    assert seen == [({"username": "place", "failures": [["s", 1.0]]}, {"username": "alice", "n": 1},
                     {"username": "other", "n": 2})]


def test_a_failing_block_keeps_what_it_committed(tmp_path):
    store = ShardedTinyDBStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.synced_together():
            with store.keyed_transaction("place") as txn:
                txn.record["n"] = 1
            raise RuntimeError("after the commit")
    assert store.read_keyed("place")["n"] == 1
    with store.keyed_transaction("place") as txn:  # outside any block: as always
        txn.record["n"] = 2
    assert store.read_keyed("place")["n"] == 2


def test_an_enrolment_marker_is_still_written_after_its_record(tmp_path):
    store = ShardedTinyDBStore(tmp_path)
    with store.synced_together():
        with store.transaction("bob") as txn:
            txn.record["two_step"] = True
    os.unlink(store._path(user_key("bob")))
    with pytest.raises(RecordDamaged):
        store.read("bob")  # the marker says the record must exist: damage, never "no record"
