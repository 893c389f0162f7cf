"""An unknown name's answer lasts as long as a wrong password's (issue 22: "the same answer in
the same time"). A wrong password for a real entry costs the directory a write (ppolicy's
pwdFailureTime, AD's badPwdCount); a bind as no entry does not: the unknown name's check waits
out the difference, the median of the last wrong passwords' binds. No timing is measured here:
the wait asked for is."""

from __future__ import annotations

import pytest

import mfa_core


def test_wrong_passwords_set_the_unknown_names_wait(ldap_svc, new_user):
    backend = ldap_svc.directory.backend
    waits: list[float] = []
    backend._sleep = waits.append
    backend._refusals.clear()
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password("nobody-padded", "guess-1", source="198.19.0.1")
    assert waits == [0.0]  # no wrong password seen yet: nothing to match
    uid, _dn = new_user("padded-pass-1")
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "guess-1", source="198.19.0.2")
    assert len(backend._refusals) == 1  # the wrong bind's time, kept
    backend._refusals.extend([4.0] * 4)  # a directory slow to refuse (its failure writes)
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password("nobody-padded-2", "guess-1", source="198.19.0.3")
    assert 0.0 < waits[-1] <= 4.0  # the median, less what the bind took
    assert backend.refusal_pad(0.0) == 4.0 and backend.refusal_pad(1.5) == 2.5


def test_the_wait_never_exceeds_the_timeout(ldap_svc):
    backend = ldap_svc.directory.backend
    backend._refusals.clear()
    backend._refusals.extend([600.0] * 3)
    assert backend.refusal_pad(0.0) == float(ldap_svc.directory.settings.timeout)
    assert backend.refusal_pad(700.0) == 0.0


def test_a_first_wrong_guess_at_a_real_name_binds_nothing(ldap_svc, new_user):
    """Binding a name to its entry (mfa_core.directory.identity) costs two writes: done once the
    password was right, never for a wrong guess, which then costs what one at an unknown name does."""
    from mfa_core.directory.identity import _key
    uid, _dn = new_user("first-sight-1")
    name_key = _key(ldap_svc.keyring.pepper, "dir-name", uid)
    with pytest.raises(mfa_core.InvalidCode):
        ldap_svc.attempt_password(uid, "guess-1", source="198.19.1.1")
    assert ldap_svc.store.read_keyed(name_key) is None
    ldap_svc.attempt_password(uid, "first-sight-1", source="198.19.1.1")
    assert ldap_svc.store.read_keyed(name_key)["id"] == ldap_svc.directory.find(uid).stable_id
