"""The two-step policy's ``group:DN`` and ``role:admin`` rules against a real company directory (issue 23)."""

from __future__ import annotations

from ..ldap_server import HELPDESK_DN


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
