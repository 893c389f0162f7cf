"""The two-step policy (issue 23): rules, deadlines and grace with the injected clock, and the
engine enforcing them wherever a factor is checked, removed or set up. Every store backend runs."""

from __future__ import annotations

import datetime as dt

import pytest

import mfa_core
from mfa_core import policy as pol
from mfa_core.errors import InvalidCode, PasskeyRefused, PolicyDamaged, PolicyRefused

from ..webauthn_authenticator import PAGE, SoftAuthenticator
from .conftest import code_for, enable_totp

DAY = 86400
HERE = "10.0.0.7"   # alice's usual place
ELSEWHERE = "203.0.113.9"


@pytest.fixture
def people(svc):
    """alice and bob (role user), root (an admin) in the engine's user directory."""
    svc.directory.add("alice", "alice-password-1", email="alice@example.com", roles=["user"])
    svc.directory.add("bob", "bob-password-1", email="bob@example.com", roles=["user"])
    svc.directory.add("root", "root-password-1", email="root@example.com", roles=["user", "admin"])
    return svc


def token_for(svc, user="alice", **kw):
    return svc.sessions.start(user, second_factor_passed=True, **kw)


def add_passkey(svc, user, authenticator=None, **kw):
    authenticator = authenticator or SoftAuthenticator()
    token = token_for(svc, user)
    options = svc.begin_passkey_registration(user, session=token, origin=PAGE, **kw)
    svc.finish_passkey_registration(user, authenticator.create(options), session=token)
    return authenticator, token


# -- the model -----------------------------------------------------------------------------

def test_targets_dates_and_factor_lists_are_parsed_or_refused_in_one_line():
    assert pol.parse_target(" Everyone ") == "everyone"
    assert pol.parse_target("role:admin") == "role:admin"
    assert pol.parse_target("group:CN=Helpdesk, OU=Groups,DC=Example,DC=com") == \
        "group:cn=helpdesk,ou=groups,dc=example,dc=com"
    for bad in ("admins", "role:", "role:Admin Team", "group:", "group:helpdesk", 7):
        with pytest.raises(PolicyRefused):
            pol.parse_target(bad)
    assert pol.parse_deadline("2027-03-01") == "2027-03-01"
    for bad in ("2027-02-30", "1 March 2027", "27-03-01", "1999-12-31", None):
        with pytest.raises(PolicyRefused):
            pol.parse_deadline(bad)
    assert pol.parse_allow(None) == pol.FACTORS
    assert pol.parse_allow("passkey, totp") == ("totp", "passkey")
    for bad in ("", [], "sms", "backup_code"):
        with pytest.raises(PolicyRefused) as refused:
            pol.parse_allow(bad)
        assert "\n" not in str(refused.value)
    with pytest.raises(PolicyRefused):
        pol.make_rule("everyone", grace_days=3, deadline="2027-03-01")
    with pytest.raises(PolicyRefused):
        pol.make_rule("everyone")
    with pytest.raises(PolicyRefused):
        pol.make_rule("everyone", grace_days=-1)


def test_a_rule_for_a_target_replaces_its_earlier_one_and_keeps_when_it_was_first_set():
    first = pol.make_rule("role:admin", grace_days=30, created_at=100.0)
    policy = pol.Policy().with_rule(first).with_rule(pol.make_rule("everyone", deadline="2027-03-01"))
    changed = policy.with_rule(pol.make_rule("role:admin", grace_days=5, allow="passkey", created_at=999.0))
    assert [r.target for r in changed.rules] == ["everyone", "role:admin"]
    assert changed.rule("role:admin") == pol.Rule("role:admin", 5, None, ("passkey",), 100.0)
    assert pol.Policy.from_record(changed.to_record()) == changed


def test_rules_apply_by_role_and_by_group_dn_in_any_case():
    policy = pol.Policy((pol.make_rule("role:admin", grace_days=1),
                         pol.make_rule("group:cn=VPN,dc=example,dc=com", grace_days=2)))
    assert policy.rules_for(["user"], []) == ()
    assert [r.target for r in policy.rules_for(["admin"], ["CN=vpn, DC=Example,DC=com"])] == \
        ["role:admin", "group:cn=vpn,dc=example,dc=com"]


def test_a_stored_policy_that_is_not_one_fails_closed():
    for doc in ({"username": "policy", "version": 9, "rules": []},
                {"username": "policy", "version": 1, "rules": [{"target": "everyone"}]},
                {"username": "policy", "version": 1, "rules": "everyone"}):
        with pytest.raises(PolicyDamaged):
            pol.Policy.from_record(doc)
    assert pol.Policy.from_record({"username": "policy"}) == pol.Policy()


def test_the_due_date_reads_as_a_day_and_days_left_round_up():
    req = pol.evaluate(pol.Policy((pol.make_rule("everyone", deadline="2027-03-01"),)), "a",
                       now=dt.datetime(2027, 2, 27, 23, 0, tzinfo=dt.timezone.utc).timestamp())
    assert (req.state, req.days_left, req.due_date) == ("grace", 2, "1 March 2027")
    assert req.due_at == dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc).timestamp()


# -- deadlines and grace on the engine's clock ------------------------------------------------

def test_without_a_policy_nothing_is_required(people):
    req = people.requirement("alice")
    assert (req.state, req.required, req.due_at, req.days_left) == ("none", False, None, None)
    assert req.allowed == frozenset(pol.FACTORS)
    assert not people.policy_prompt_due("alice")


def test_a_new_hire_gets_the_full_grace_from_when_the_rule_first_applies_to_them(people, clock):
    people.set_policy_rule(target="everyone", grace_days=10, actor="ops")
    clock.advance(20 * DAY)  # long after the rule: a new hire's first sign-in
    req = people.requirement("alice", record=True)
    assert (req.state, req.days_left) == ("grace", 10)
    clock.advance(3 * DAY)
    assert people.requirement("alice", record=True).days_left == 7  # recorded once, not reset
    clock.advance(7 * DAY - 1)
    assert people.requirement("alice").state == "grace"
    clock.advance(1)
    req = people.requirement("alice")
    assert (req.state, req.days_left) == ("overdue", 0)


def test_a_user_never_evaluated_counts_from_now_and_nothing_is_written_without_record(people, clock):
    people.set_policy_rule(target="everyone", grace_days=10, actor="ops")
    clock.advance(30 * DAY)
    assert people.requirement("bob").days_left == 10
    assert "policy_since" not in people._read("bob")
    people.requirement("bob", record=True)
    assert people._read("bob")["policy_since"] == {"everyone": clock()}


def test_a_right_password_starts_the_grace_in_the_sign_in_transaction(people, clock):
    people.set_policy_rule(target="everyone", grace_days=10, actor="ops")
    clock.advance(DAY)
    people.attempt_password("alice", "alice-password-1", source=HERE)
    assert people._read("alice")["policy_since"] == {"everyone": clock()}


def test_a_rule_changed_mid_grace_keeps_the_recorded_start(people, clock):
    people.set_policy_rule(target="everyone", grace_days=30, actor="ops")
    people.requirement("alice", record=True)
    clock.advance(5 * DAY)
    people.set_policy_rule(target="everyone", grace_days=10, actor="ops")
    assert people.requirement("alice", record=True).days_left == 5
    people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    assert people.requirement("alice").state == "overdue"
    deadline = dt.datetime.fromtimestamp(clock() + 20 * DAY, dt.timezone.utc).date()
    people.set_policy_rule(target="everyone", deadline=deadline.isoformat(), actor="ops")
    req = people.requirement("alice")
    assert req.state == "grace" and req.due_at == pol.deadline_epoch(deadline.isoformat())


def test_a_rule_removed_and_set_again_starts_a_new_grace(people, clock):
    people.set_policy_rule(target="everyone", grace_days=10, actor="ops")
    people.requirement("alice", record=True)
    clock.advance(30 * DAY)
    people.clear_policy(actor="ops")
    assert people.requirement("alice", record=True).state == "none"
    clock.advance(DAY)
    people.set_policy_rule(target="everyone", grace_days=10, actor="ops")
    assert people.requirement("alice", record=True).days_left == 10  # the old start is ignored


def test_rules_by_role_take_the_earliest_due_and_the_common_factors(people, clock):
    add_passkey(people, "root")
    people.set_policy_rule(target="everyone", grace_days=30, allow="totp,passkey,backup_code", actor="ops")
    people.set_policy_rule(target="role:admin", grace_days=2, allow="passkey,backup_code", actor="ops")
    root, alice = people.requirement("root"), people.requirement("alice")
    assert (root.days_left, root.allowed) == (2, frozenset({"passkey", "backup_code"}))
    assert (alice.days_left, alice.allowed) == (30, frozenset(pol.FACTORS))


def test_rules_leaving_someone_no_authenticator_kind_are_refused(people, clock):
    enable_totp(people, clock, "root")
    people.set_policy_rule(target="everyone", grace_days=30, allow="totp", actor="ops")
    with pytest.raises(PolicyRefused, match="could use no authenticator"):
        people.set_policy_rule(target="role:user", grace_days=3, allow="passkey", actor="ops")


def test_factors_met_or_not_allowed(people, clock):
    enable_totp(people, clock, "alice")
    people.set_policy_rule(target="everyone", grace_days=30, actor="ops")
    assert people.requirement("alice").state == "met"
    add_passkey(people, "root")
    people.set_policy_rule(target="everyone", grace_days=30, allow="passkey", actor="ops")
    assert people.requirement("alice").state == "disallowed"
    assert people.policy_prompt_due("alice")


# -- the policy record: one for every process, audited ---------------------------------------

def test_changes_are_audited_with_the_old_and_new_rule(people):
    people.set_policy_rule(target="role:admin", grace_days=30, actor="ops")
    people.set_policy_rule(target="role:admin", deadline="2027-03-01", allow="totp,passkey", actor="ops")
    people.clear_policy(actor="ops")
    details = [(e.actor, e.detail) for e in people.audit() if e.event == "policy_changed"]
    assert details == [
        ("ops", "role:admin: no rule \u2192 grace 30 days, allow totp, passkey, backup_code"),
        ("ops", "role:admin: grace 30 days, allow totp, passkey, backup_code \u2192 "
                "deadline 2027-03-01, allow totp, passkey"),
        ("ops", "all rules removed (role:admin: deadline 2027-03-01, allow totp, passkey)")]


def test_another_process_sees_the_change_after_its_cache_and_its_own_at_once(people, open_svc):
    other = open_svc()
    other.policy_max_age = 0
    assert other.two_step_policy().rules == ()
    people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    assert people.two_step_policy().rules[0].grace_days == 3  # its own change, at once
    assert other.two_step_policy().rules[0].grace_days == 3
    cached = open_svc()
    assert cached.policy_max_age == pol.DEFAULT_CACHE
    assert cached.two_step_policy().rules[0].grace_days == 3
    other.clear_policy(actor="ops")
    assert cached.two_step_policy().rules  # answered from its read (at most 5 s old)
    assert other.two_step_policy().rules == ()


def test_a_damaged_policy_fails_closed_until_cleared(people):
    people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    with people.store.keyed_transaction(pol.STORE_KEY) as txn:
        txn.record["rules"] = [{"target": "everyone"}]
    people.policy_max_age = 0
    with pytest.raises(PolicyDamaged):
        people.requirement("alice")
    with pytest.raises(PolicyDamaged):
        people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    people.clear_policy(actor="ops")
    assert people.requirement("alice").state == "none"


# -- refusing what would lock out the admins ---------------------------------------------------

def test_admins_passkey_only_while_no_admin_has_a_passkey_is_refused(people, clock):
    enable_totp(people, clock, "root")
    with pytest.raises(PolicyRefused, match="lock out the helpdesk: no admin has a passkey"):
        people.set_policy_rule(target="role:admin", grace_days=0, allow="passkey", actor="ops")
    with pytest.raises(PolicyRefused, match="lock out"):
        people.set_policy_rule(target="everyone", grace_days=0, allow="passkey,backup_code", actor="ops")
    assert people.two_step_policy().rules == ()
    assert not [e for e in people.audit() if e.event == "policy_changed"]
    add_passkey(people, "root")
    people.set_policy_rule(target="role:admin", grace_days=0, allow="passkey", actor="ops")
    assert people.requirement("root").state == "met"


def test_an_empty_allow_list_is_refused(people):
    with pytest.raises(PolicyRefused, match="empty"):
        people.set_policy_rule(target="everyone", grace_days=3, allow=[], actor="ops")


# -- the last factor ---------------------------------------------------------------------------

def test_the_last_factor_cannot_be_removed_by_the_user_while_required(people, clock):
    enable_totp(people, clock, "alice")
    (app,) = people.status("alice").authenticators
    people.set_policy_rule(target="everyone", grace_days=30, actor="ops")
    with pytest.raises(PolicyRefused, match="cannot remove your last authenticator"):
        people.remove_authenticator("alice", app.id)
    with pytest.raises(PolicyRefused, match="cannot remove your last authenticator"):
        people.disable_totp("alice")
    assert people.status("alice").two_factor_enabled
    people.remove_authenticator("alice", app.id, actor="root", reason="lost phone")  # the helpdesk can
    assert not people.status("alice").two_factor_enabled


def test_one_of_several_factors_may_go_but_not_the_last_allowed_one(people, clock):
    enable_totp(people, clock, "alice")
    add_passkey(people, "alice")
    add_passkey(people, "root")
    app, key = people.status("alice").authenticators
    people.set_policy_rule(target="everyone", grace_days=30, allow="passkey,backup_code", actor="ops")
    with pytest.raises(PolicyRefused):
        people.remove_authenticator("alice", key.id)
    people.remove_authenticator("alice", app.id)
    people.clear_policy(actor="ops")
    people.remove_authenticator("alice", key.id)  # no rule: voluntary again


# -- allowed factors, wherever a factor is checked ------------------------------------------------

def test_a_backup_code_the_rule_forbids_is_refused_as_a_wrong_code_and_kept(people, clock):
    secret = enable_totp(people, clock, "alice")
    codes = people.create_backup_codes("alice").codes
    people.set_policy_rule(target="everyone", grace_days=30, allow="totp,passkey", actor="ops")
    for actor in (None, "api/vpn"):
        with pytest.raises(InvalidCode) as refused:
            people.attempt_second_factor("alice", codes[0], "backup_code", actor=actor)
        assert str(refused.value) == "That backup code is not valid or was already used."
    status = people.status("alice")
    assert status.backup_codes_remaining == 10 and status.failed_attempts == 1
    assert status.channel_failures == 1
    failed = [e.detail for e in people.audit("alice") if e.event == "second_factor_failed"]
    assert failed == ["backup_code not allowed by the two-step policy"] * 2
    assert people.attempt_second_factor("alice", code_for(secret, clock()), "totp").strategy == "totp"


def test_a_user_with_only_a_disallowed_app_passes_at_the_portal_but_never_through_a_service(people, clock):
    add_passkey(people, "root")
    secret = enable_totp(people, clock, "alice")
    people.set_policy_rule(target="everyone", grace_days=30, allow="passkey", actor="ops")
    assert people.requirement("alice").state == "disallowed"
    with pytest.raises(InvalidCode):
        people.attempt_second_factor("alice", code_for(secret, clock()), "totp", actor="api/vpn",
                                     diagnose=False)
    # The portal lets them in, to be held on Manage MFA until they add a passkey.
    people.attempt_second_factor("alice", code_for(secret, clock()), "totp")
    add_passkey(people, "alice")
    clock.advance(30)
    assert people.requirement("alice").state == "met"
    with pytest.raises(InvalidCode):  # now they have an allowed one: the app is refused
        people.attempt_second_factor("alice", code_for(secret, clock()), "totp")


def test_a_passkey_the_rule_forbids_is_refused_as_a_refused_passkey(people, clock):
    enable_totp(people, clock, "alice")
    enable_totp(people, clock, "root")
    authenticator, token = add_passkey(people, "alice")
    people.set_policy_rule(target="everyone", grace_days=30, allow="totp", actor="ops")
    with pytest.raises(PolicyRefused, match="does not allow a passkey for your account"):
        add_passkey(people, "alice")
    options = people.begin_passkey_sign_in("alice", session=token, origin=PAGE)
    with pytest.raises(PasskeyRefused) as refused:
        people.attempt_passkey("alice", authenticator.get(options), session=token)
    assert str(refused.value) == PasskeyRefused.default_message
    assert people.status("alice").failed_attempts == 1
    (failed,) = [e for e in people.audit("alice") if e.event == "second_factor_failed"]
    assert failed.detail == "passkey refused: passkey not allowed by the two-step policy"


# -- past the deadline: setting up only from a familiar place or with a pass --------------------

@pytest.fixture
def overdue(people, clock):
    """alice signed in from HERE before the rule; the rule's deadline is past."""
    people.attempt_password("alice", "alice-password-1", source=HERE)
    yesterday = dt.datetime.fromtimestamp(clock() - DAY, dt.timezone.utc).date().isoformat()
    people.set_policy_rule(target="everyone", deadline=yesterday, actor="ops")
    mails = []
    people.notifier = lambda event: mails.append(event) or True
    assert people.requirement("alice").state == "overdue"
    return mails


def test_overdue_setup_from_a_new_place_is_refused_and_a_password_there_does_not_make_it_familiar(
        people, overdue):
    people.attempt_password("alice", "alice-password-1", source=ELSEWHERE)
    assert not people.may_set_up_overdue("alice", source=ELSEWHERE, session_id=None)
    for source in (ELSEWHERE, None):
        with pytest.raises(PolicyRefused, match="deadline for two-step verification has passed"):
            people.create_totp("alice", source=source)
    with pytest.raises(PolicyRefused):
        people.begin_passkey_registration("alice", session=token_for(people), origin=PAGE,
                                          source=ELSEWHERE)
    assert people.pending_totp("alice") is None


def test_overdue_setup_from_a_familiar_place_works_is_audited_and_mailed(people, clock, overdue):
    assert people.may_set_up_overdue("alice", source=HERE, session_id=None)
    resource = people.create_totp("alice", source=HERE)
    people.verify_totp("alice", code_for(resource.secret, clock()))
    events = [(e.event, e.detail) for e in people.audit("alice") if e.event.startswith(("policy", "totp"))]
    assert ("policy_overdue_setup", f"authentication app, from a familiar place ({HERE})") in events
    assert [e.event for e in overdue] == ["totp_enabled"]
    assert people.requirement("alice").state == "met"


def test_overdue_setup_in_a_temporary_pass_session_works(people, clock, overdue):
    shown = people.issue_temporary_pass("alice", valid_for=3600, actor="root", reason="new phone")
    result = people.attempt_second_factor("alice", shown, "temporary_pass", source=ELSEWHERE)
    token = people.sessions.start("alice", second_factor_passed=False)
    people.sessions.update(token, second_factor_passed=True, via="temporary_pass",
                           ends_at=result.pass_expires_at)
    assert people.may_set_up_overdue("alice", source=ELSEWHERE, session_id=token)
    # (the pass made ELSEWHERE a familiar place too: a passed second factor does)
    assert not people.may_set_up_overdue("alice", source="198.51.100.1", session_id=token_for(people))
    authenticator = SoftAuthenticator()
    options = people.begin_passkey_registration("alice", session=token, origin=PAGE, source=ELSEWHERE)
    people.finish_passkey_registration("alice", authenticator.create(options), session=token)
    assert "passkey_added" in [e.event for e in overdue]
    assert people.requirement("alice").state == "met"


def test_in_grace_setup_works_from_anywhere(people):
    people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    assert people.may_set_up_overdue("alice", source=ELSEWHERE, session_id=None)
    people.create_totp("alice", source=None)


# -- "Remind me later" ---------------------------------------------------------------------------

def test_remind_me_later_waits_a_day_and_is_not_offered_past_the_deadline(people, clock):
    people.set_policy_rule(target="everyone", grace_days=3, actor="ops")
    assert people.policy_prompt_due("alice")
    until = people.snooze_policy("alice")
    assert until == clock() + DAY and not people.policy_prompt_due("alice")
    clock.advance(DAY / 2)
    assert people.snooze_policy("alice") == until  # at most once a day
    clock.advance(DAY / 2)
    assert people.policy_prompt_due("alice")
    clock.advance(2 * DAY)
    assert people.requirement("alice").state == "overdue" and people.policy_prompt_due("alice")
    with pytest.raises(PolicyRefused):
        people.snooze_policy("alice")


def test_policy_names_are_exported():
    assert mfa_core.PolicyRefused is PolicyRefused and mfa_core.Rule is pol.Rule


def test_a_rule_object_is_checked_and_set_now(people, clock):
    rule = pol.Rule("role:user", 14, None, ("totp", "passkey"), created_at=0.0)
    policy = people.set_policy_rule(rule, actor="ops")
    assert policy.rule("role:user").created_at == clock()
    with pytest.raises(TypeError):
        people.set_policy_rule(rule, target="everyone", actor="ops")


def test_rules_set_at_once_from_many_threads_are_all_kept(people):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: people.set_policy_rule(target=f"role:team-{i}", grace_days=i,
                                                       actor="ops"), range(16)))
    people.policy_max_age = 0
    assert sorted(r.grace_days for r in people.two_step_policy().rules) == list(range(16))
    assert len([e for e in people.audit() if e.event == "policy_changed"]) == 16


def test_a_forbidden_backup_code_with_the_password_gets_one_answer_for_both(people, clock):
    enable_totp(people, clock, "alice")
    codes = people.create_backup_codes("alice").codes
    people.set_policy_rule(target="everyone", grace_days=3, allow="totp,passkey", actor="ops")
    with pytest.raises(InvalidCode, match="Username, password or code is incorrect"):
        people.attempt_password("alice", "alice-password-1", source=HERE, code=codes[0],
                                strategy="backup_code")
    assert people.status("alice").backup_codes_remaining == 10
