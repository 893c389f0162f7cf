"""MFA records follow the directory entry's stable id (entryUUID / objectGUID), not its name."""

from __future__ import annotations

import pytest

import mfa_core

from ..support import code_for, enable_totp


def test_a_renamed_entry_keeps_its_authenticators(ldap_svc, running_slapd, new_user, clock):
    old, dn = new_user("rename-pass-1")
    ldap_svc.attempt_password(old, "rename-pass-1", source="10.5.0.1")
    secret = enable_totp(ldap_svc, clock, old)
    new = old + "r"
    running_slapd.rename(dn, f"uid={new}")
    clock.advance(61)
    result = ldap_svc.attempt_password(new, "rename-pass-1", source="10.5.0.1")
    assert result.two_factor_enabled
    ldap_svc.attempt_second_factor(new, code_for(secret, clock()), source="10.5.0.1")
    assert not ldap_svc.status(old).two_factor_enabled
    events = [e.event for e in ldap_svc.audit(new)]
    assert "mfa_record_moved" in events


def test_a_new_account_reusing_a_name_does_not_inherit(ldap_svc, running_slapd, new_user, clock):
    name, dn = new_user("reuse-pass-1")
    ldap_svc.attempt_password(name, "reuse-pass-1", source="10.5.0.2")
    enable_totp(ldap_svc, clock, name)
    running_slapd.delete(dn)
    running_slapd.add_user(name, "reuse-pass-2")  # a new person, a new entryUUID
    clock.advance(61)
    result = ldap_svc.attempt_password(name, "reuse-pass-2", source="10.5.0.2")
    assert not result.two_factor_enabled
    assert not ldap_svc.status(name).two_factor_enabled


def test_the_api_refuses_the_old_code_after_the_name_was_reused(ldap_svc, running_slapd, new_user, clock):
    name, dn = new_user("reuse-api-1")
    ldap_svc.attempt_password(name, "reuse-api-1", source="10.5.0.3")
    secret = enable_totp(ldap_svc, clock, name)
    running_slapd.delete(dn)
    running_slapd.add_user(name, "reuse-api-2")
    clock.advance(61)
    with pytest.raises(mfa_core.NotEnabled):
        ldap_svc.attempt_second_factor(name, code_for(secret, clock()), source="vpn")


def test_a_parked_record_follows_its_person_back(ldap_svc, running_slapd, new_user, clock):
    """A leaver's name reused, then the leaver's entry comes back renamed: their factors follow."""
    name, dn = new_user("back-pass-1")
    ldap_svc.attempt_password(name, "back-pass-1", source="10.5.0.4")
    enable_totp(ldap_svc, clock, name)
    moved_dn = running_slapd.rename(dn, f"uid={name}-old")  # the old entry moves aside...
    running_slapd.add_user(name, "back-pass-2")            # ...and a new one takes the name
    clock.advance(61)
    assert not ldap_svc.attempt_password(name, "back-pass-2", source="10.5.0.4").two_factor_enabled
    result = ldap_svc.attempt_password(f"{name}-old", "back-pass-1", source="10.5.0.4")
    assert result.two_factor_enabled
    assert moved_dn.startswith(f"uid={name}-old,")
