"""Two keys can hash onto one lock stripe; nesting their transactions must not wait on itself."""

from __future__ import annotations

import itertools
import threading

import pytest

from mfa_core.errors import StorageError
from mfa_core.storage import ShardedTinyDBStore, StripedLocks, user_key
from mfa_core.storage import sharded


def _colliding_keys(locks: StripedLocks) -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in itertools.count():
        key = f"key-{i}"
        n = locks.stripe(user_key(key))
        if n in seen:
            return seen[n], key
        seen[n] = key
    raise AssertionError("unreachable")


def test_nested_keyed_transactions_on_one_stripe_both_commit(tmp_path, monkeypatch):
    # Short enough that a self-wait would fail the test quickly rather than hang it.
    monkeypatch.setattr(sharded, "LOCK_TIMEOUT", 2.0)
    store = ShardedTinyDBStore(tmp_path)
    first, second = _colliding_keys(store._source_locks)
    with store.keyed_transaction(first) as outer:
        outer.record["n"] = 1
        with store.keyed_transaction(second) as inner:
            inner.record["n"] = 2
    assert store.read_keyed(first)["n"] == 1
    assert store.read_keyed(second)["n"] == 2


def test_a_held_stripe_still_shuts_out_other_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(sharded, "LOCK_TIMEOUT", 0.3)
    locks = StripedLocks(tmp_path / "locks", stripes=4)
    a, b = _colliding_keys(locks)
    outcome: list[str] = []

    def other() -> None:
        try:
            with locks.hold(user_key(b)):
                outcome.append("entered")
        except StorageError:
            outcome.append("busy")

    with locks.hold(user_key(a)):
        with locks.hold(user_key(b)):  # re-entered by this thread
            t = threading.Thread(target=other)
            t.start()
            t.join()
    assert outcome == ["busy"]
    with locks.hold(user_key(b)):  # released for good after the outer block
        pass


def test_the_stripe_is_released_when_the_body_raises(tmp_path):
    locks = StripedLocks(tmp_path / "locks", stripes=2)
    a, b = _colliding_keys(locks)
    with pytest.raises(RuntimeError):
        with locks.hold(user_key(a)):
            with locks.hold(user_key(b)):
                raise RuntimeError("boom")
    done = threading.Event()

    def other() -> None:
        with locks.hold(user_key(a)):
            done.set()

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert done.is_set()
