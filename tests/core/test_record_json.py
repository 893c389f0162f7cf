"""Records' JSON (mfa_core.storage.base): orjson on the hot path, the standard library for the rest,
and nothing that is not JSON taken for a record."""

from __future__ import annotations

import json

import pytest

from mfa_core import RecordDamaged, open_service
from mfa_core.storage.base import Transaction, canonical_json, parse_record


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b"", b"[1]",
                                  b'{"a": 1', b"\xff\xfe{}", "{\"a\": 1}x"])
def test_what_is_not_a_json_object_is_damage(text):
    with pytest.raises(RecordDamaged):
        parse_record(text, "A record")


def test_what_the_standard_library_reads_and_orjson_refuses_is_still_read():
    assert parse_record(b'\xef\xbb\xbf{"a": 1}', "A record") == {"a": 1}  # a byte-order mark
    big = 2 ** 70
    assert parse_record(json.dumps({"n": big}), "A record") == {"n": big}


def test_equal_values_encode_to_equal_bytes_whichever_encoder():
    one = {"b": [1, 2.5, "zoë"], "a": {"y": None, "x": True}}
    two = {"a": {"x": True, "y": None}, "b": [1, 2.5, "zoë"]}
    assert canonical_json(one) == canonical_json(two)
    assert json.loads(canonical_json(one)) == one
    # orjson refuses these; the standard library encodes them, still sorted and compact
    assert canonical_json({"n": 2 ** 70, "a": 1}) == b'{"a":1,"n":%d}' % 2 ** 70
    assert canonical_json({2: "x", 1: "y"}) == b'{"1":"y","2":"x"}'


def test_a_record_read_back_unchanged_is_not_written_again(tmp_path):
    svc = open_service(tmp_path, clock=lambda: 1_800_000_000.0)
    svc.create_totp("alice")
    path = next((tmp_path / "users").glob("*/*.json"))
    before = path.stat()
    with svc.store.transaction("alice") as txn:
        assert isinstance(txn, Transaction) and not txn.changed
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert parse_record(path.read_bytes(), "A record")["mfa"]["1"]["username"] == "alice"
