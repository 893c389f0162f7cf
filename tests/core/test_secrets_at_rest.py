"""No TOTP secret and no backup code in clear text: not on disk, not in the audit trail, not in logs."""

from __future__ import annotations

import logging

import pytest

import mfa_core

from .conftest import code_for, data_files, database_dump, record_files


def spellings(secret: str, codes: list[str]) -> list[bytes]:
    forms = {secret, secret.lower(), " ".join(secret[i:i + 4] for i in range(0, 32, 4))}
    for code in codes:
        compact = code.replace("-", "")
        forms |= {code, compact, code.upper(), compact.upper()}
    return [f.encode("utf-8") for f in forms]


@pytest.fixture
def exercised(open_svc, clock, caplog):
    """A data dir after a full life: enrollment, sign-ins, failures, codes used, regenerated, rotated."""
    caplog.set_level(logging.DEBUG)
    def failing_mailer(event):
        raise ConnectionRefusedError(f"smtp down while sending {event!r}")

    # A failing notifier makes the engine log a warning for every event.
    svc = open_svc(notifier=failing_mailer)
    pending = svc.create_totp("alice").secret  # replaced by the Reset below
    secret = svc.create_totp("alice").secret
    enrollment = code_for(secret, clock())
    svc.verify_totp("alice", enrollment)
    first = svc.create_backup_codes("alice").codes
    svc.attempt_second_factor("alice", first[0], "backup_code")
    with pytest.raises(mfa_core.InvalidCode):
        svc.attempt_second_factor("alice", first[0], "backup_code")
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        svc.attempt_second_factor("alice", enrollment)
    second = svc.create_backup_codes("alice").codes
    clock.advance(30)
    svc.attempt_second_factor("alice", code_for(secret, clock()))
    svc.rotate_keys(actor="ops")
    bob = svc.create_totp("bob").secret  # left pending
    typed_codes = [enrollment, code_for(secret, clock())]
    return svc, [(secret, first + second), (pending, []), (bob, [])], typed_codes


def test_no_secret_or_backup_code_in_any_file_under_the_data_dir(data_dir, backend, exercised):
    _, owned, _ = exercised
    files = data_files(data_dir)
    records = record_files(data_dir, backend)
    assert backend == "postgres" or (records and set(records) <= set(files))
    contents = {path: path.read_bytes() for path in files}
    if backend == "postgres":  # the records are in the database
        contents["the database"] = database_dump()
        assert b"alice" in contents["the database"]
    for path, content in contents.items():
        for secret, codes in owned:
            for form in spellings(secret, codes):
                assert form not in content, f"{form!r} in clear text in {path}"


def test_no_secret_or_code_in_the_audit_trail(exercised):
    svc, owned, typed = exercised
    # Times are left out: a 6-digit code could match digits of an epoch by chance.
    fields = lambda e: repr((e.user, e.actor, e.event, e.outcome, e.detail))  # noqa: E731
    text = "\n".join(map(fields, svc.audit()))
    text += "\n".join(map(fields, svc.recent_activity("alice", limit=100)))
    assert "backup_code_used" in text and "totp_enabled" in text
    for secret, codes in owned:
        for form in spellings(secret, codes):
            assert form.decode() not in text
    for code in typed:
        assert code not in text


def test_no_secret_or_code_in_the_logs(exercised, caplog):
    _, owned, typed = exercised
    records = caplog.get_records("setup") + caplog.records
    assert records, "the failing notifier should have been logged"
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text}" for r in records)
    for secret, codes in owned:
        for form in spellings(secret, codes):
            assert form.decode() not in text
    for code in typed:
        assert code not in text


def test_resources_do_not_show_their_secret_in_repr(svc):
    resource = svc.create_totp("alice")
    assert resource.secret not in repr(resource)


def test_error_messages_never_carry_a_code(svc, clock):
    secret = svc.create_totp("alice").secret
    code = code_for(secret, clock() + 120)
    with pytest.raises(mfa_core.InvalidCode) as err:
        svc.verify_totp("alice", code)
    assert code not in str(err.value) and secret not in str(err.value)
