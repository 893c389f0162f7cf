"""A record written into a folder the store makes for it (a shard's first record, an enrolment
marker's first folder) survives a power cut with its folder: each new folder's entry is fsynced
into its parent, as write_atomic fsyncs the file's entry into its folder."""

from __future__ import annotations

import os

import pytest

from mfa_core import open_service
from mfa_core.storage import files


@pytest.fixture
def synced(monkeypatch):
    """The paths fsync was called on (read from /proc: what the descriptor is)."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_a_new_folder_is_synced_into_its_parent(tmp_path, synced):
    target = tmp_path / "a" / "b" / "c"
    files.make_dirs(target)
    assert target.is_dir()
    assert synced == [str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    synced.clear()
    files.make_dirs(target)  # there already: nothing to do
    assert synced == []


def test_a_folder_made_meanwhile_is_synced_all_the_same(tmp_path, synced, monkeypatch):
    real_mkdir = os.mkdir

    def raced(path, *args, **kwargs):  # another writer makes it first
        real_mkdir(path, *args, **kwargs)
        raise FileExistsError(path)

    monkeypatch.setattr(os, "mkdir", raced)
    files.make_dirs(tmp_path / "shard")
    assert synced == [str(tmp_path)]


def test_a_file_where_a_folder_belongs_is_refused(tmp_path):
    (tmp_path / "shard").write_text("not a folder")
    with pytest.raises(OSError):
        files.make_dirs(tmp_path / "shard" / "x")


def test_a_shards_first_record_syncs_its_new_folder(tmp_path, synced):
    svc = open_service(tmp_path, clock=lambda: 1_800_000_000.0)
    synced.clear()
    svc.create_totp("alice")
    record = next((tmp_path / "users").glob("*/*.json"))
    assert str(tmp_path / "users") in synced  # the shard folder's entry
    assert str(record.parent) in synced  # the record's entry


def test_a_new_data_folder_is_synced_into_its_parent(tmp_path, synced):
    data = tmp_path / "srv" / "mfa"
    svc = open_service(data, clock=lambda: 1_800_000_000.0)
    assert str(tmp_path) in synced and str(tmp_path / "srv") in synced  # the data folder's own entry
    assert str(data) in synced  # the users folder's entry
    svc.create_totp("alice")
    assert next((data / "users").glob("*/*.json")).is_file()
