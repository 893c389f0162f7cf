"""The two-step policy's ``group:DN`` and ``role:admin`` rules against a real company directory (issue 23)."""

from __future__ import annotations

import pytest

from mfa_core import PolicyRefused

from ..ldap_server import HELPDESK_DN
from ..support import enable_totp


def test_a_group_rule_applies_to_its_members_by_dn_in_any_case(ldap_svc, running_slapd, new_user):
    member, dn = new_user()
    running_slapd.add_member(HELPDESK_DN, dn)
    outsider, _ = new_user()
    ldap_svc.set_policy_rule(target="group:" + HELPDESK_DN.upper().replace(",", ", "), grace_days=5,
                             actor="ops")
    ldap_svc.set_policy_rule(target="role:admin", grace_days=2, actor="ops")
    req = ldap_svc.requirement(member)
    assert [r.target for r in req.rules] == ["role:admin", "group:" + HELPDESK_DN.lower()]
    assert (req.state, req.days_left) == ("grace", 2)
    assert ldap_svc.requirement(outsider).state == "none"


def test_the_admin_groups_members_count_when_a_rule_would_lock_them_out(
        ldap_svc, running_slapd, new_user, clock):
    admin, dn = new_user()
    running_slapd.add_member(HELPDESK_DN, dn)
    assert admin in [u.username for u in ldap_svc.directory.admins()]  # asked of the server
    enable_totp(ldap_svc, clock, admin)  # an app, no passkey (the data dir is this test's own)
    with pytest.raises(PolicyRefused, match="no admin has a passkey"):
        ldap_svc.set_policy_rule(target="role:admin", grace_days=0, allow="passkey", actor="ops")
    ldap_svc.set_policy_rule(target="role:admin", grace_days=0, allow="totp,passkey", actor="ops")
    assert ldap_svc.requirement(admin).state == "met"
