"""The two-step policy through the verification API: a factor the user's rule does not allow is
refused with the same ``{"ok": false}`` as a wrong code (issue 23)."""

from __future__ import annotations

import pytest

from mfa_core import backup_codes as bc

from .conftest import fresh_code


@pytest.fixture
def policy_cleared(portal):
    """The portal; whatever two-step policy the test sets is cleared after it (one server for all)."""
    try:
        yield portal
    finally:
        portal.svc.clear_policy(actor="api-tests")


def test_a_backup_code_the_rule_forbids_gets_the_answer_of_a_wrong_code(policy_cleared):
    portal = policy_cleared
    secret, codes = portal.enroll("admin", backup_codes=True)
    # Admins may use an app or a passkey, not backup codes.
    portal.svc.set_policy_rule(target="role:admin", grace_days=30, allow="totp,passkey",
                               actor="api-tests")
    refused = portal.post({"username": "admin", "code": codes[0], "strategy": "backup_code"})
    wrong = portal.post({"username": "admin", "code": bc.generate(1)[0], "strategy": "backup_code"})
    assert refused.status_code == wrong.status_code == 200
    assert refused.json() == wrong.json() == {"ok": False}
    assert portal.svc.status("admin").backup_codes_remaining == 10  # not used up
    ok = portal.post({"username": "admin", "code": fresh_code(secret)})
    assert ok.json() == {"ok": True, "strategy": "totp"}
    portal.svc.clear_policy(actor="api-tests")
    allowed = portal.post({"username": "admin", "code": codes[0], "strategy": "backup_code"})
    assert allowed.json() == {"ok": True, "strategy": "backup_code"}
