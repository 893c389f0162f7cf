"""The two-step policy (issue 23) under attack: a password thief on an overdue account, a user
escaping their rule, races between removals and between a rule and a removal, a damaged policy
record. Each test was a failing reproduction first; every store backend runs."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from mfa_core import policy as pol
from mfa_core.errors import InvalidCode, PolicyDamaged, PolicyRefused

from ..webauthn_authenticator import PAGE, SoftAuthenticator
from .conftest import code_for, enable_totp
from . import test_policy as base
from .test_policy import DAY, ELSEWHERE, HERE, add_passkey, token_for

people, overdue = base.people, base.overdue  # the fixtures of the policy's own tests


def _day(clock, days: int) -> str:
    return dt.datetime.fromtimestamp(clock() + days * DAY, dt.timezone.utc).date().isoformat()


def _tomorrow_midnight_minus(clock, seconds: float) -> None:
    """Move the clock to ``seconds`` before the next 00:00 UTC."""
    now = clock()
    clock.advance(DAY - now % DAY - seconds)


# -- a set-up started before the deadline, finished after it ----------------------------------

def test_an_app_set_up_started_in_grace_cannot_be_confirmed_once_overdue(people, clock):
    # A thief with the password starts a set-up from their own place one minute before the
    # deadline and types the code after it: the deadline's rule must hold for the confirmation.
    _tomorrow_midnight_minus(clock, 60)
    people.set_policy_rule(target="everyone", deadline=_day(clock, 1), actor="ops")
    people.attempt_password("alice", "alice-password-1", source=ELSEWHERE)
    resource = people.create_totp("alice", source=ELSEWHERE)  # in grace: from anywhere
    clock.advance(120)
    assert people.requirement("alice").state == "overdue"
    with pytest.raises(PolicyRefused, match="deadline for two-step verification has passed"):
        people.verify_totp("alice", code_for(resource.secret, clock()))
    assert not people.status("alice").two_factor_enabled
    assert people.pending_totp("alice") is None  # that set-up is gone


def test_an_app_set_up_started_before_a_rule_forbade_apps_cannot_be_confirmed(people, clock):
    add_passkey(people, "root")
    resource = people.create_totp("alice")
    people.set_policy_rule(target="everyone", grace_days=30, allow="passkey", actor="ops")
    with pytest.raises(PolicyRefused, match="does not allow an authentication app"):
        people.verify_totp("alice", code_for(resource.secret, clock()))
    assert not people.status("alice").two_factor_enabled


def test_an_overdue_set_up_from_a_familiar_place_is_still_confirmed(people, clock, overdue):
    resource = people.create_totp("alice", source=HERE)
    clock.advance(30)
    people.verify_totp("alice", code_for(resource.secret, clock()))
    assert people.requirement("alice").state == "met"


def test_a_passkey_begun_in_grace_cannot_be_added_once_overdue(people, clock):
    _tomorrow_midnight_minus(clock, 30)
    people.set_policy_rule(target="everyone", deadline=_day(clock, 1), actor="ops")
    token = token_for(people)
    options = people.begin_passkey_registration("alice", session=token, origin=PAGE, source=ELSEWHERE)
    clock.advance(60)
    with pytest.raises(PolicyRefused, match="deadline for two-step verification has passed"):
        people.finish_passkey_registration("alice", SoftAuthenticator().create(options), session=token)
    assert not people.status("alice").two_factor_enabled


def test_a_passkey_begun_before_a_rule_forbade_passkeys_cannot_be_added(people, clock):
    enable_totp(people, clock, "root")
    token = token_for(people)
    options = people.begin_passkey_registration("alice", session=token, origin=PAGE)
    people.set_policy_rule(target="everyone", grace_days=30, allow="totp", actor="ops")
    with pytest.raises(PolicyRefused, match="does not allow a passkey"):
        people.finish_passkey_registration("alice", SoftAuthenticator().create(options), session=token)
    assert not people.status("alice").two_factor_enabled


# -- removing the last allowed factor in racing calls ------------------------------------------

def test_racing_removals_of_the_two_last_allowed_factors_leave_one(people, clock):
    add_passkey(people, "root")
    add_passkey(people, "alice")
    add_passkey(people, "alice")
    a, b = people.status("alice").authenticators
    people.set_policy_rule(target="everyone", grace_days=30, allow="passkey", actor="ops")
    outcomes: list[str] = []
    barrier = threading.Barrier(40)

    def remove(i: int) -> None:
        barrier.wait()
        try:
            people.remove_authenticator("alice", (a, b)[i % 2].id)
            outcomes.append("removed")
        except PolicyRefused:
            outcomes.append("refused")
        except Exception as exc:  # UnknownAuthenticator: the same one removed already
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=remove, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("removed") == 1
    assert len(people.status("alice").authenticators) == 1
    assert people.requirement("alice").state == "met"


# -- a rule racing a removal ----------------------------------------------------------------------

def test_a_removal_checks_the_policy_in_the_store_not_a_stale_copy(people, open_svc, clock):
    # Another replica set the rule a moment ago: this process's copy is up to 5 s old.
    enable_totp(people, clock, "alice")
    (app,) = people.status("alice").authenticators
    assert people.two_step_policy().rules == ()  # cached here
    other = open_svc()
    other.set_policy_rule(target="everyone", grace_days=30, actor="ops")
    assert people.two_step_policy().rules == ()  # still the cached copy
    with pytest.raises(PolicyRefused, match="cannot remove your last authenticator"):
        people.remove_authenticator("alice", app.id)
    with pytest.raises(PolicyRefused):
        people.disable_totp("alice")


def test_a_passkey_only_rule_racing_the_last_admin_passkey_removal_never_locks_out(people, clock):
    # root has an app and the only admin passkey; ops sets admins passkey-only while root removes
    # the passkey: one of the two must lose, never both win (the helpdesk locked out).
    for _ in range(10):
        people.reset_mfa("root", actor="ops", reason="test round")
        people.clear_policy(actor="ops")
        enable_totp(people, clock, "root")
        add_passkey(people, "root")
        key = next(a for a in people.status("root").authenticators if a.kind == "passkey")
        barrier = threading.Barrier(2)

        def set_rule() -> None:
            barrier.wait()
            try:
                people.set_policy_rule(target="role:admin", grace_days=0, allow="passkey", actor="ops")
            except PolicyRefused:
                pass

        def remove() -> None:
            barrier.wait()
            try:
                people.remove_authenticator("root", key.id)
            except PolicyRefused:
                pass

        threads = [threading.Thread(target=set_rule), threading.Thread(target=remove)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        people.policy_max_age = 0
        assert people.requirement("root").state in ("met", "none")
        people.policy_max_age = pol.DEFAULT_CACHE
        clock.advance(60)


# -- a damaged policy record ----------------------------------------------------------------------

def test_a_policy_record_that_is_not_json_fails_closed_and_policy_clear_repairs_it(tinydb_svc):
    svc = tinydb_svc
    svc.directory.add("alice", "alice-password-1", email="alice@example.com", roles=["user"])
    svc.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    (path,) = [p for p in (svc.store.root / "sources").rglob("*.json")
               if "policy" in p.read_text()]
    path.write_text("{not json")
    svc.policy_max_age = 0
    with pytest.raises(PolicyDamaged):
        svc.requirement("alice")
    with pytest.raises(PolicyDamaged):
        svc.attempt_password("alice", "alice-password-1", source=HERE)
    policy = svc.clear_policy(actor="ops")
    assert policy.rules == ()
    assert svc.requirement("alice").state == "none"
    (event,) = [e for e in svc.audit() if e.event == "policy_changed"][-1:]
    assert event.detail == "damaged policy record replaced: no rules"


# -- a user whose authenticators are not allowed ---------------------------------------------------

def test_backup_codes_of_a_disallowed_app_do_not_pass_a_service(people, clock):
    # Admins "passkey,backup_code": backup codes as the passkey's companion. A user with only an
    # app (not allowed) keeps its backup codes: they must not be the way in through the API.
    add_passkey(people, "root")
    enable_totp(people, clock, "alice")
    codes = people.create_backup_codes("alice").codes
    people.set_policy_rule(target="everyone", grace_days=30, allow="passkey,backup_code", actor="ops")
    assert people.requirement("alice").state == "disallowed"
    with pytest.raises(InvalidCode):
        people.attempt_second_factor("alice", codes[0], "backup_code", actor="api/vpn", diagnose=False)
    assert people.status("alice").backup_codes_remaining == 10
    with pytest.raises(PolicyRefused):  # nor new ones while they have no allowed authenticator
        people.create_backup_codes("alice")
    # At the portal they pass with what they have, to be held on Manage MFA.
    people.attempt_second_factor("alice", codes[1], "backup_code")


# -- the mail of a set-up past the deadline -------------------------------------------------------

def test_the_mail_of_a_set_up_past_the_deadline_says_so(people, clock, overdue):
    from mfa_core import notify
    from mfa_core.audit import AuditEvent
    resource = people.create_totp("alice", source=HERE)
    people.verify_totp("alice", code_for(resource.secret, clock()))
    (event,) = overdue
    assert event.detail == "Authentication app" + pol.LATE_SETUP
    subject, body = notify._compose(event, "Alice", "MFA Portal")
    assert "\u201cAuthentication app\u201d was added" in body
    assert "after your organization's deadline for two-step verification" in body
    assert "call IT security" in body
    usual = AuditEvent(event.time, "alice", "alice", "totp_enabled", "success", "Authentication app")
    assert "deadline" not in notify._compose(usual, "Alice", "MFA Portal")[1]


# -- a careless admin's typing ----------------------------------------------------------------------

def test_a_group_rule_typed_with_other_spacing_or_case_still_applies():
    # A rule that silently matches nobody is a rule not enforced: DNs compare as LDAP does
    # (case, spaces around the separators, runs of spaces inside a value), non-ASCII included.
    policy = pol.Policy((pol.make_rule("group:CN=VPN  Users , OU=Groups,DC=example,DC=com", grace_days=1),
                         pol.make_rule("group:cn=Équipe Sécurité,dc=example,dc=com", grace_days=2)))
    assert policy.rules[0].target == "group:cn=vpn users,ou=groups,dc=example,dc=com"
    assert len(policy.rules_for([], ["cn=VPN Users,ou=groups,dc=Example,dc=com"])) == 1
    assert len(policy.rules_for([], ["CN=ÉQUIPE  SÉCURITÉ, DC=example,DC=com"])) == 1
    assert pol.Policy.from_record(policy.to_record()) == policy


def test_a_set_up_checks_the_policy_in_the_store_not_a_stale_copy(people, open_svc, clock):
    # A deadline already past, set a moment ago on another replica: this process's copy (up to
    # 5 s old) has no rule, but setting up reads the store.
    people.attempt_password("alice", "alice-password-1", source=HERE)
    assert people.two_step_policy().rules == ()  # cached here
    open_svc().set_policy_rule(target="everyone", deadline=_day(clock, -1), actor="ops")
    with pytest.raises(PolicyRefused, match="deadline for two-step verification has passed"):
        people.create_totp("alice", source=ELSEWHERE)
    with pytest.raises(PolicyRefused):
        people.begin_passkey_registration("alice", session=token_for(people), origin=PAGE,
                                          source=ELSEWHERE)


def test_a_damaged_policy_tells_nobody_which_names_exist(people):
    # With the policy record damaged, a sign-in must not answer a real name differently from
    # an unknown one before the password is known to be right.
    people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    with people.store.keyed_transaction(pol.STORE_KEY) as txn:
        txn.record["rules"] = "damaged"
    people.policy_max_age = 0
    answers = []
    for name, password in (("alice", "wrong-password-1"), ("nobody", "wrong-password-1")):
        with pytest.raises(InvalidCode) as refused:
            people.attempt_password(name, password, source=ELSEWHERE)
        answers.append(str(refused.value))
    assert answers[0] == answers[1]
    assert people.status("alice").password_failures == 1  # counted as any wrong password
    with pytest.raises(PolicyDamaged):  # the right password learns it
        people.attempt_password("alice", "alice-password-1", source=HERE)


def test_backup_codes_the_rule_forbids_cannot_be_made(people, clock):
    enable_totp(people, clock, "alice")
    enable_totp(people, clock, "root")
    people.set_policy_rule(target="everyone", grace_days=3, allow="totp,passkey", actor="ops")
    with pytest.raises(PolicyRefused, match="does not allow backup codes"):
        people.create_backup_codes("alice")
