"""Issue 20's left-open item: deleting a user's record file AND its ``enrolled/`` marker must
not let the password alone in. A second witness (``witness/``, named by an HMAC of the name
under the pepper, so it cannot be found without the keys) says the user had two-step; with the
record and the marker gone it still reads as damage (S25).
"""

from __future__ import annotations

import pytest

import mfa_core
from mfa_core.storage import user_key

from ..support import enable_totp, write_users
from .test_damaged_records import DAMAGED, assert_fails_closed, user_file


def marker(data_dir, username):
    key = user_key(username)
    return data_dir / "enrolled" / key[:2] / key


def witnesses(data_dir):
    root = data_dir / "witness"
    return sorted(p for p in root.glob("*/*")) if root.is_dir() else []


@pytest.fixture
def users(data_dir):
    write_users(data_dir, {"alice": "alice-pass-1", "bob": "bob-pass-1"})


def test_record_and_marker_deleted_still_fail_closed(tinydb_svc, data_dir, clock, users):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    user_file(data_dir, "alice").unlink()
    marker(data_dir, "alice").unlink()
    assert_fails_closed(svc, clock)
    # The right password learns the damage, never "signed in without a second factor".
    with pytest.raises(mfa_core.RecordDamaged) as err:
        svc.attempt_password("alice", "alice-pass-1", source="10.0.0.9")
    assert str(err.value) == DAMAGED


def test_the_witness_cannot_be_found_from_the_name_alone(tinydb_svc, data_dir, clock, users):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    [witness] = witnesses(data_dir)
    assert user_key("alice") not in str(witness) and "alice" not in str(witness)
    assert witness.read_bytes() == b""


def test_another_process_sees_the_same_witness(tinydb_svc, data_dir, clock, users):
    enable_totp(tinydb_svc, clock, "alice")
    user_file(data_dir, "alice").unlink()
    marker(data_dir, "alice").unlink()
    other = mfa_core.open_service(data_dir, clock=clock, environ={}, backend="tinydb")
    with pytest.raises(mfa_core.RecordDamaged):
        other.status("alice")


def test_the_helpdesk_reset_clears_the_witness_and_the_user_enrolls_again(tinydb_svc, data_dir,
                                                                           clock, users):
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    user_file(data_dir, "alice").unlink()
    marker(data_dir, "alice").unlink()
    status = svc.reset_mfa("alice", actor="admin", reason="record gone, ticket 9")
    assert not status.damaged and not status.two_factor_enabled
    assert witnesses(data_dir) == []
    svc.attempt_password("alice", "alice-pass-1", source="10.0.0.9")  # not stuck
    enable_totp(svc, clock, "alice")
    assert len(witnesses(data_dir)) == 1


def test_removing_the_last_factor_clears_the_witness(tinydb_svc, data_dir, clock, users):
    svc = tinydb_svc
    enable_totp(svc, clock, "bob")
    svc.disable_totp("bob")
    assert witnesses(data_dir) == [] and not marker(data_dir, "bob").exists()
    user_file(data_dir, "bob").unlink()  # nothing to protect any more
    assert not svc.status("bob").two_factor_enabled


def test_a_user_who_never_enrolled_has_no_witness(tinydb_svc, data_dir, clock, users):
    svc = tinydb_svc
    svc.attempt_password("bob", "bob-pass-1", source="10.0.0.9")
    assert witnesses(data_dir) == []
    assert not svc.status("carol").two_factor_enabled


def test_a_lost_witness_is_written_again_on_the_users_next_change(tinydb_svc, data_dir, clock, users):
    """Data from before the witness (or a write that crashed after the record): the user's next
    committed change while enrolled writes it."""
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    [witness] = witnesses(data_dir)
    witness.unlink()
    svc.create_backup_codes("alice")
    assert witnesses(data_dir) == [witness]


def test_db_copy_refuses_a_data_dir_whose_record_and_marker_are_gone(tinydb_svc, data_dir, clock,
                                                                      users):
    from mfa_core import dbcopy
    svc = tinydb_svc
    enable_totp(svc, clock, "alice")
    enable_totp(svc, clock, "bob")
    pepper = svc.keyring.pepper
    assert set(dbcopy.read_data_dir(data_dir, pepper).records) == {"alice", "bob"}
    user_file(data_dir, "alice").unlink()
    marker(data_dir, "alice").unlink()
    # Copied as it is, alice would have no second factor in the database: refused.
    with pytest.raises(dbcopy.CopyRefused) as err:
        dbcopy.read_data_dir(data_dir, pepper)
    assert "witness/" in str(err.value) and "reset their MFA" in str(err.value)
