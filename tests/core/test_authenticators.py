"""Several named authenticators per user: each signs in, each is renamed or removed on its own."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import mfa_core
from mfa_core import totp
from mfa_core.authenticators import MAX_TOTP_APPS, unique_label

from ..support import FakeClock, code_for

FIXTURE = Path(__file__).parents[1] / "fixtures" / "data-v1"


def add_app(svc, clock, username="alice", label="Authentication app") -> str:
    """Enroll one more app called ``label``; returns its secret (the clock moves one step on)."""
    secret = svc.create_totp(username, label=label).secret
    svc.verify_totp(username, code_for(secret, clock()))
    clock.advance(30)
    return secret


def app_id(svc, label, username="alice") -> str:
    [found] = [a.id for a in svc.status(username).authenticators if a.label == label]
    return found


# -- several apps ---------------------------------------------------------------

def test_each_of_two_apps_signs_in(svc, clock):
    phone = add_app(svc, clock, label="Phone")
    tablet = add_app(svc, clock, label="Tablet")
    status = svc.status("alice")
    assert [a.label for a in status.authenticators] == ["Phone", "Tablet"]
    assert status.totp_enabled and status.two_factor_enabled and status.backup_code_enabled
    assert [a.kind for a in status.authenticators] == ["totp", "totp"]
    svc.attempt_second_factor("alice", code_for(phone, clock()))
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(tablet, clock()))


def test_a_new_enrollment_leaves_the_enabled_apps_alone(svc, clock):
    phone = add_app(svc, clock, label="Phone")
    before = svc.status("alice").authenticators
    pending = svc.create_totp("alice", label="Tablet").secret
    assert svc.status("alice").authenticators == before and svc.status("alice").pending_enrollment
    with pytest.raises(mfa_core.InvalidCode):  # not an app of hers until verified
        svc.attempt_second_factor("alice", code_for(pending, clock()))
    svc.attempt_second_factor("alice", code_for(phone, clock()))
    clock.advance(601)  # the enrollment expires; nothing else changes
    assert [(a.id, a.label) for a in svc.status("alice").authenticators] == [(before[0].id, "Phone")]


def test_replay_is_refused_per_app(svc, clock):
    phone = add_app(svc, clock, label="Phone")
    tablet = add_app(svc, clock, label="Tablet")
    code = code_for(phone, clock())
    svc.attempt_second_factor("alice", code)
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", code)
    # The other app's code of the very same step is its own first use.
    svc.attempt_second_factor("alice", code_for(tablet, clock()))
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", code_for(tablet, clock()))


def test_a_code_named_as_a_clock_ahead_never_signs_in_later(svc, clock):
    # "Your clock looks 210 s ahead" tells whoever typed it that the code is right
    # for later: with several apps that would hint at five times more future codes.
    phone = add_app(svc, clock, label="Phone")
    tablet = add_app(svc, clock, label="Tablet")
    later = clock() + 7 * 30
    guessed = totp.code_at(tablet, later)
    with pytest.raises(mfa_core.ClockDrift, match="210 s ahead"):
        svc.attempt_second_factor("alice", guessed)
    clock.advance(7 * 30)
    svc.unlock("alice", actor="helpdesk")  # no wait in the way: only the code is refused
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", guessed)
    svc.attempt_second_factor("alice", code_for(phone, clock()))  # the apps still work
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(tablet, clock()))
    clock.advance(3600)
    svc.attempt_second_factor("alice", code_for(phone, clock()))
    assert "disclosed" not in svc.store.read("alice")["authenticators"][1]  # forgotten once past


def test_wrong_codes_count_once_per_attempt_however_many_apps(svc, clock):
    secrets = [add_app(svc, clock, label=f"App {n}") for n in range(3)]
    near = {totp.code_at(s, clock() + 30 * k) for s in secrets for k in range(-25, 26)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1000)) if c not in near)
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", wrong)
    assert svc.status("alice").failed_attempts == 1
    events = [e.event for e in svc.audit("alice")]
    assert events.count("second_factor_failed") == 1


def test_last_used_is_none_until_an_app_signs_in(svc, clock):
    start = clock()
    phone = add_app(svc, clock, label="Phone")
    add_app(svc, clock, label="Tablet")
    phone_entry, tablet_entry = svc.status("alice").authenticators
    assert phone_entry.created_at == start and phone_entry.last_used_at is None
    assert tablet_entry.created_at == start + 30
    clock.advance(3600)
    svc.attempt_second_factor("alice", code_for(phone, clock()))
    phone_entry, tablet_entry = svc.status("alice").authenticators
    assert phone_entry.last_used_at == clock() and tablet_entry.last_used_at is None


def test_ids_are_opaque_distinct_and_stable(svc, clock):
    add_app(svc, clock, label="Phone")
    add_app(svc, clock, label="Tablet")
    ids = [a.id for a in svc.status("alice").authenticators]
    assert len(set(ids)) == 2 and all(len(i) >= 16 for i in ids)
    svc.rename_authenticator("alice", ids[0], "Old phone")
    assert [a.id for a in svc.status("alice").authenticators] == ids


def test_the_sign_in_names_the_app_in_the_audit_trail(svc, clock):
    add_app(svc, clock, label="Phone")
    tablet = add_app(svc, clock, label="Tablet")
    svc.attempt_second_factor("alice", code_for(tablet, clock()))
    [passed] = [e for e in svc.audit("alice") if e.event == "second_factor_passed"]
    assert "Tablet" in passed.detail and tablet not in passed.detail
    added = [e.detail for e in svc.audit("alice") if e.event == "totp_enabled"]
    assert added == ["Phone", "Tablet"]


# -- removing ---------------------------------------------------------------------

def test_removing_one_of_two_keeps_two_step_and_the_backup_codes(svc, clock):
    phone = add_app(svc, clock, label="Phone")
    tablet = add_app(svc, clock, label="Tablet")
    codes = svc.create_backup_codes("alice").codes
    status = svc.remove_authenticator("alice", app_id(svc, "Phone"))
    assert [a.label for a in status.authenticators] == ["Tablet"]
    assert status.two_factor_enabled and status.backup_codes_remaining == 10
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", code_for(phone, clock()))
    svc.attempt_second_factor("alice", code_for(tablet, clock()))
    svc.attempt_second_factor("alice", codes[0], "backup_code")
    [removed] = [e for e in svc.audit("alice") if e.event == "authenticator_removed"]
    assert removed.detail == "Phone" and removed.actor == "alice"


def test_removing_the_last_turns_two_step_and_the_backup_codes_off(svc, clock):
    phone = add_app(svc, clock, label="Phone")
    codes = svc.create_backup_codes("alice").codes
    status = svc.remove_authenticator("alice", app_id(svc, "Phone"))
    assert not status.two_factor_enabled and not status.totp_enabled
    assert not status.backup_code_enabled and status.backup_codes_remaining == 0
    assert status.authenticators == []
    for code, strategy in ((code_for(phone, clock()), "totp"), (codes[0], "backup_code")):
        with pytest.raises(mfa_core.NotEnabled):
            svc.attempt_second_factor("alice", code, strategy)
    assert "totp_removed" in [e.event for e in svc.audit("alice")]
    add_app(svc, clock, label="Phone")  # and she can start again
    assert svc.status("alice").backup_codes_remaining == 0  # the old codes did not come back


def test_disable_totp_removes_every_authenticator(svc, clock):
    add_app(svc, clock, label="Phone")
    add_app(svc, clock, label="Tablet")
    svc.create_backup_codes("alice")
    status = svc.disable_totp("alice")
    assert status.authenticators == [] and not status.two_factor_enabled
    assert status.backup_codes_remaining == 0
    [removed] = [e for e in svc.audit("alice") if e.event == "totp_removed"]
    assert removed.detail == "Phone, Tablet"


def test_removing_one_ends_the_other_sessions_but_not_the_asking_one(svc, clock):
    add_app(svc, clock, label="Phone")
    add_app(svc, clock, label="Tablet")
    mine = svc.sessions.start("alice", second_factor_passed=True)
    other = svc.sessions.start("alice", second_factor_passed=True)
    svc.remove_authenticator("alice", app_id(svc, "Phone"), keep_session=mine)
    assert svc.sessions.find(mine) is not None and svc.sessions.find(other) is None


def test_an_unknown_or_already_removed_id_changes_nothing(svc, clock):
    add_app(svc, clock, label="Phone")
    phone = app_id(svc, "Phone")
    svc.remove_authenticator("alice", phone)
    add_app(svc, clock, label="Tablet")
    before = svc.status("alice")
    for call in (lambda: svc.remove_authenticator("alice", phone),
                 lambda: svc.rename_authenticator("alice", phone, "Mine"),
                 lambda: svc.remove_authenticator("bob", phone)):
        with pytest.raises(mfa_core.UnknownAuthenticator, match="no longer on this account"):
            call()
    assert svc.status("alice") == before


def test_the_helpdesk_removes_one_with_a_reason_and_is_named_for_it(svc, clock):
    add_app(svc, clock, label="Phone")
    add_app(svc, clock, label="Tablet")
    with pytest.raises(ValueError, match="reason"):
        svc.remove_authenticator("alice", app_id(svc, "Phone"), actor="admin")
    with pytest.raises(ValueError):
        svc.remove_authenticator("alice", app_id(svc, "Phone"), actor="admin", reason="  ")
    assert len(svc.status("alice").authenticators) == 2
    svc.remove_authenticator("alice", app_id(svc, "Phone"), actor="admin", reason="phone stolen")
    [removed] = [e for e in svc.audit("alice") if e.event == "authenticator_removed"]
    assert (removed.actor, removed.detail) == ("admin", "Phone (reason: phone stolen)")


# -- the cap ------------------------------------------------------------------------

def test_at_most_five_apps_and_the_refusal_says_so(svc, clock):
    for n in range(MAX_TOTP_APPS):
        add_app(svc, clock, label=f"App {n + 1}")
    with pytest.raises(mfa_core.TooManyAuthenticators, match="5 authentication apps"):
        svc.create_totp("alice")
    assert not svc.status("alice").pending_enrollment
    svc.remove_authenticator("alice", app_id(svc, "App 3"))
    add_app(svc, clock, label="App 6")
    assert len(svc.status("alice").authenticators) == MAX_TOTP_APPS


# -- labels ---------------------------------------------------------------------------

def test_the_default_label_is_made_unique(svc, clock):
    add_app(svc, clock)  # as the seed's createTOTP calls it: no name
    add_app(svc, clock)
    add_app(svc, clock, label="authentication APP 3")
    add_app(svc, clock)
    assert [a.label for a in svc.status("alice").authenticators] == [
        "Authentication app", "Authentication app 2", "authentication APP 3", "Authentication app 4"]


def test_an_explicit_duplicate_is_refused_in_any_case(svc, clock):
    add_app(svc, clock, label="Phone")
    for label in ("Phone", "phone", "  PHONE  "):
        with pytest.raises(mfa_core.InvalidLabel, match="already have an authenticator named"):
            svc.create_totp("alice", label=label)
    assert not svc.status("alice").pending_enrollment
    add_app(svc, clock, label="Tablet")
    with pytest.raises(mfa_core.InvalidLabel):
        svc.rename_authenticator("alice", app_id(svc, "Tablet"), "pHONE")
    # Renaming to itself, or to another case of itself, is fine.
    svc.rename_authenticator("alice", app_id(svc, "Tablet"), "TABLET")
    assert [a.label for a in svc.status("alice").authenticators] == ["Phone", "TABLET"]


@pytest.mark.parametrize("label, message", [
    ("", "Give the authenticator a name"),
    ("   ", "Give the authenticator a name"),
    ("x" * 41, "at most 40 characters"),
    ("tab\there", "printable"),
    ("line\nbreak", "printable"),
    ("Phone (Reason: approved by IT)", "may not contain"),
])
def test_blank_long_or_unprintable_labels_are_refused_and_change_nothing(svc, clock, label, message):
    add_app(svc, clock, label="Phone")
    before = svc.status("alice")
    with pytest.raises(mfa_core.InvalidLabel, match=message):
        svc.create_totp("alice", label=label)
    with pytest.raises(ValueError, match=message):  # an InvalidLabel is a ValueError too
        svc.rename_authenticator("alice", app_id(svc, "Phone"), label)
    assert svc.status("alice") == before


def test_labels_are_trimmed_and_kept_as_typed(svc, clock):
    markdown = "**[Phone](http://ev.il)** <b>x</b>"
    add_app(svc, clock, label=f"  {markdown}  ")
    assert [a.label for a in svc.status("alice").authenticators] == [markdown]
    add_app(svc, clock, label="x" * 40)


def test_a_label_that_is_not_text_is_a_type_error(svc, clock):
    with pytest.raises(TypeError):
        svc.create_totp("alice", label=None)
    with pytest.raises(TypeError):
        svc.rename_authenticator("alice", "abc", 7)


def test_a_name_taken_during_an_enrollment_gets_a_number(svc, clock):
    add_app(svc, clock, label="Phone")
    pending = svc.create_totp("alice", label="Tablet").secret
    svc.rename_authenticator("alice", app_id(svc, "Phone"), "tablet")
    svc.verify_totp("alice", code_for(pending, clock()))
    assert [a.label for a in svc.status("alice").authenticators] == ["tablet", "Tablet 2"]


def test_unique_label_keeps_within_forty_characters():
    base = "y" * 40
    assert unique_label([base], base) == "y" * 38 + " 2"
    assert unique_label([], "Phone") == "Phone"


# -- keys -----------------------------------------------------------------------------

def test_rotating_keys_reencrypts_every_app(svc, clock):
    phone = add_app(svc, clock, label="Phone")
    tablet = add_app(svc, clock, label="Tablet")
    assert svc.rotate_keys() == 2
    svc.attempt_second_factor("alice", code_for(phone, clock()))
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(tablet, clock()))


# -- records written by the release before several authenticators ---------------------

@pytest.fixture
def old_data_dir(tmp_path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns("README.md", "expected.json"))
    os.chmod(target / "keys.json", 0o600)
    return target


EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def test_a_data_dir_of_the_previous_release_reads_with_nothing_lost(old_data_dir):
    alice = EXPECTED["alice"]
    clock = FakeClock(EXPECTED["clock"] + 7200)
    svc = mfa_core.open_service(old_data_dir, clock=clock, environ={})
    status = svc.status("alice")
    [app] = status.authenticators
    assert (app.kind, app.label, app.created_at) == ("totp", "Authentication app", alice["enabled_at"])
    # It signed in an hour after its enrollment: that is its last use.
    assert app.last_used_at == alice["last_step"] * totp.PERIOD
    assert status.two_factor_enabled and status.backup_codes_remaining == len(alice["backup_codes"])
    assert svc.status("alice").authenticators[0].id == app.id  # stable from read to read
    # The last step accepted still holds: the code of that step is a replay.
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", totp.code_at_step(alice["secret"], alice["last_step"]))
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(alice["secret"], clock()))
    # Written back in the current format, keeping the same authenticator.
    record = svc.store.read("alice")
    assert record["v"] == 2 and "totp" not in record and len(record["authenticators"]) == 1
    assert svc.status("alice").authenticators[0].id == app.id
    assert svc.status("alice").authenticators[0].last_used_at == clock()
    # The backup codes: the used one stays used, the others work once each.
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", alice["used_backup_code"], "backup_code")
    clock.advance(60)
    left = svc.attempt_second_factor("alice", alice["backup_codes"][0], "backup_code")
    assert left.backup_codes_remaining == len(alice["backup_codes"]) - 1
    # The password, the audit trail and the pending enrollment of another user are there too.
    assert svc.directory.password_hash("alice")
    assert [e.event for e in svc.audit("alice")][:3] == ["totp_enrollment_started", "totp_enabled",
                                                         "backup_codes_generated"]
    assert svc.status("bob").authenticators == []


def test_the_old_pending_enrollment_verifies_into_a_named_app(old_data_dir):
    clock = FakeClock(EXPECTED["bob"]["pending_since"] + 60)
    svc = mfa_core.open_service(old_data_dir, clock=clock, environ={})
    pending = svc.pending_totp("bob")
    assert pending is not None
    svc.verify_totp("bob", code_for(pending.secret, clock()))
    [app] = svc.status("bob").authenticators
    assert app.label == "Authentication app"


def test_an_old_app_gets_a_second_one_beside_it(old_data_dir):
    alice = EXPECTED["alice"]
    clock = FakeClock(EXPECTED["clock"] + 7200)
    svc = mfa_core.open_service(old_data_dir, clock=clock, environ={})
    tablet = add_app(svc, clock, label="Tablet")
    assert [a.label for a in svc.status("alice").authenticators] == ["Authentication app", "Tablet"]
    svc.attempt_second_factor("alice", code_for(alice["secret"], clock()))
    svc.attempt_second_factor("alice", code_for(tablet, clock()))
    assert svc.status("alice").backup_codes_remaining == len(alice["backup_codes"])


# -- naming the app being set up ----------------------------------------------------------

def test_the_app_being_set_up_can_be_renamed_before_its_first_code(svc, clock):
    add_app(svc, clock, label="Phone")
    resource = svc.create_totp("alice", label="Authenticator on iPhone")
    assert resource.label == "Authenticator on iPhone"
    with pytest.raises(mfa_core.InvalidLabel):
        svc.name_pending_totp("alice", "PHONE", enrollment=resource.created_at)
    named = svc.name_pending_totp("alice", " Work iPhone ", enrollment=resource.created_at)
    assert named.label == "Work iPhone" and named.secret == resource.secret
    svc.verify_totp("alice", code_for(resource.secret, clock()), enrollment=resource.created_at)
    assert [a.label for a in svc.status("alice").authenticators] == ["Phone", "Work iPhone"]


def test_naming_needs_the_enrollment_the_page_showed(svc, clock):
    first = svc.create_totp("alice", label="Phone")
    with pytest.raises(mfa_core.NoPendingEnrollment):
        svc.name_pending_totp("bob", "Phone")
    clock.advance(1)
    svc.create_totp("alice", label="Tablet")  # restarted elsewhere
    with pytest.raises(mfa_core.MFAError):
        svc.name_pending_totp("alice", "Mine", enrollment=first.created_at)
    clock.advance(600)
    with pytest.raises(mfa_core.EnrollmentExpired):
        svc.name_pending_totp("alice", "Mine")


def test_without_diagnosis_a_far_code_is_plainly_wrong_and_a_replay_still_audited(svc, clock):
    # The verification API never says why: it skips the drift search (and its cost).
    phone = add_app(svc, clock, label="Phone")
    ahead = totp.code_at(phone, clock() + 7 * 30)
    with pytest.raises(mfa_core.InvalidCode) as refused:
        svc.attempt_second_factor("alice", ahead, diagnose=False)
    assert type(refused.value) is mfa_core.InvalidCode
    clock.advance(60)
    code = code_for(phone, clock())
    svc.attempt_second_factor("alice", code, diagnose=False)
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", code, diagnose=False)
    reasons = [e.detail for e in svc.audit("alice") if e.event == "second_factor_failed"]
    assert reasons == ["wrong code", "code already used"]
    with pytest.raises(TypeError):
        svc.attempt_second_factor("alice", code, diagnose="no")
