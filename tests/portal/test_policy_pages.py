"""The organization's two-step rule at the portal (issue 23, AppTest): the grace screen, the
overdue hold (set up from a familiar place, else the helpdesk), the admin held on Manage MFA
until an allowed authenticator is added, and the Helpdesk's Policy and Coverage tabs.

The rule is set through the engine (as ``python -m mfa_core policy set`` would); the client's
address is the one read the portal makes (``portal.session.client_source``).
"""

from __future__ import annotations

import pytest

import mfa_core
import portal.passkey_component
import portal.backup_view
import portal.config
import portal.helpdesk
import portal.passkey_view
import portal.session
from mfa_core.users import UserDirectory
from portal import policy_gate

from ..webauthn_authenticator import PAGE, SoftAuthenticator
from .conftest import (app, click, code, enroll, errors, labels, page_links, run, sign_in, texts,
                       type_into)
from .inline import downloads

MANAGE = "pages/1_Manage_MFA.py"
ADD_TOTP = "pages/2_Add_TOTP.py"
HELPDESK = "pages/3_Helpdesk.py"
DAY = 86400
HOME_ADDRESS = "203.0.113.7"     # where bob signed in before the deadline
NEW_ADDRESS = "198.51.100.9"     # where he never did


@pytest.fixture(autouse=True)
def page_origin(monkeypatch):
    """AppTest has no websocket: the page's origin is the one a browser at PAGE would send."""
    monkeypatch.setattr(portal.passkey_component, "page_origin", lambda: PAGE)


@pytest.fixture
def address(monkeypatch):
    """Make the browser's requests come from this address."""
    def come_from(source: str | None) -> None:
        monkeypatch.setattr(portal.session, "client_source", lambda: source)
    return come_from


def fresh(data_dir, clock) -> mfa_core.MFAService:
    """The engine as another process sees it now (a service caches the policy for seconds)."""
    return mfa_core.open_service(data_dir, clock=clock)


def titles(at) -> list[str]:
    return [t.value for t in at.title]


def add_passkey(svc, username: str, token: str | None = None) -> None:
    """A passkey through the engine, as Save passkey does from the session ``token``."""
    authenticator = SoftAuthenticator()
    token = token or svc.sessions.start(username, second_factor_passed=True)
    options = svc.begin_passkey_registration(username, session=token, origin=PAGE)
    svc.finish_passkey_registration(username, authenticator.create(options), session=token,
                                    label="Security key")


def set_up_app(at, svc, clock, username: str):
    """On Add TOTP: Verify, the app's code, then type back a backup code and Finish."""
    at = click(at, "Verify")
    secret = svc.pending_totp(username).secret
    type_into(at, "Enter the code from your authentication app", code(secret, clock))
    at = click(at, "Verify code")
    assert "Verification was a success!" in titles(at), texts(at)
    shown = at.session_state[portal.backup_view.CODES]["codes"]
    type_into(at, "To show you saved them, type one of the backup codes", shown[0])
    return click(at, "Finish")


def to_add_totp(at):
    """From Set it up now: Manage MFA (an app or a passkey) and its Add, or Add TOTP itself."""
    if "User MFA Settings" in titles(at):
        at = click(at, "Add")
    assert "Add TOTP MFA" in titles(at), texts(at)
    return at


# -- grace ------------------------------------------------------------------------------

def test_in_grace_remind_me_later_then_set_it_up_now_and_home(data_dir, svc, clock):
    svc.set_policy_rule(target="everyone", grace_days=14, actor="admin")
    at = sign_in(app(), "alice")
    assert titles(at) == ["Set up two-step verification"], texts(at)
    assert ("Your organization requires two-step verification by 29 January 2027 (14 days left)."
            in texts(at))
    assert {"Set it up now", "Remind me later"} <= set(labels(at))
    assert "Welcome" not in texts(at)

    at = click(at, "Remind me later")
    assert "Welcome, Alice Example" in texts(at), texts(at)
    assert not svc.policy_prompt_due("alice")
    # Another sign-in the same day goes straight in; the date stays in view.
    at = sign_in(app(), "alice")
    assert "Welcome, Alice Example" in texts(at)
    assert "by 29 January 2027 (14 days left)" in texts(at)

    clock.advance(DAY + 1)
    at = sign_in(app(), "alice")
    assert titles(at) == ["Set up two-step verification"]
    assert "(13 days left)" in texts(at)
    at = to_add_totp(click(at, "Set it up now"))
    at = set_up_app(at, svc, clock, "alice")
    assert "Welcome, Alice Example" in texts(at), texts(at)
    assert "You have successfully added TOTP MFA" in texts(at)
    assert svc.requirement("alice").state == "met"


def test_the_grace_screen_holds_on_every_page_until_answered(data_dir, svc, clock):
    svc.set_policy_rule(target="everyone", grace_days=14, actor="admin")
    at = sign_in(app(), "alice")
    for page in (MANAGE, ADD_TOTP):
        at.switch_page(page)
        at = run(at)
        assert titles(at) == ["Set up two-step verification"], (page, texts(at))
        assert "User MFA Settings" not in texts(at)


def test_a_user_with_an_allowed_factor_sees_nothing_of_the_rule(data_dir, svc, clock):
    svc.set_policy_rule(target="everyone", grace_days=14, actor="admin")
    secret, _ = enroll(svc, clock, "alice")
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    assert "Welcome, Alice Example" in texts(at)
    assert "Your organization requires" not in texts(at)


# -- overdue ----------------------------------------------------------------------------

def overdue_bob(svc, clock) -> None:
    """A deadline bob misses; before it he signed in from HOME_ADDRESS."""
    svc.set_policy_rule(target="everyone", deadline="2027-02-01", actor="admin")
    svc.attempt_password("bob", "bob-demo", source=HOME_ADDRESS)
    clock.advance(20 * DAY)
    assert svc.requirement("bob").state == "overdue"


def test_overdue_from_a_new_place_is_sent_to_the_helpdesk(data_dir, svc, clock, address):
    overdue_bob(svc, clock)
    address(NEW_ADDRESS)
    at = sign_in(app(), "bob")
    assert titles(at) == ["Contact the helpdesk"], texts(at)
    assert "required two-step verification by 1 February 2027" in texts(at)
    assert "temporary pass" in texts(at)
    assert labels(at) == ["Sign out"]  # no set-up control at all
    for page in (MANAGE, ADD_TOTP, HELPDESK):
        at.switch_page(page)
        at = run(at)
        assert titles(at) == ["Contact the helpdesk"], (page, texts(at))
        assert "Add" not in labels(at) and "Add a passkey" not in labels(at)
    assert svc.pending_totp("bob") is None


def test_a_new_tab_of_an_overdue_session_is_held_the_same(data_dir, svc, clock, address, cookie):
    """A session restored from its cookie (a reload, a new tab, a page's URL) meets the rule
    on its first run."""
    overdue_bob(svc, clock)
    address(NEW_ADDRESS)
    token = svc.sessions.start("bob", second_factor_passed=True, verified_at=clock())
    cookie(token)
    for page in ("streamlit_app.py", MANAGE, ADD_TOTP):
        at = app(page)
        assert titles(at) == ["Contact the helpdesk"], (page, texts(at))
    assert svc.pending_totp("bob") is None


def test_overdue_from_a_familiar_place_sets_up_and_lands_on_home(data_dir, svc, clock, address):
    overdue_bob(svc, clock)
    address(HOME_ADDRESS)
    held = sign_in(app(), "bob")  # any other page: held (a tab of its own: AppTest keeps
    held.switch_page(HELPDESK)    # rerunning a page it was told to open)
    held = run(held)
    assert titles(held) == ["Set up two-step verification"], texts(held)
    assert page_links(held) == []  # the held screen's sidebar offers nothing else
    at = sign_in(app(), "bob")
    assert titles(at) == ["Set up two-step verification"], texts(at)
    assert "nothing else opens until you do" in texts(at)
    assert "Remind me later" not in labels(at)
    at = to_add_totp(click(at, "Set it up now"))
    assert page_links(at) == ["Manage MFA"]
    at = set_up_app(at, svc, clock, "bob")
    assert "Welcome, Bob Example" in texts(at), texts(at)
    assert svc.requirement("bob").state == "met"


def test_overdue_with_the_helpdesks_temporary_pass_sets_up_from_anywhere(data_dir, svc, clock,
                                                                          address):
    overdue_bob(svc, clock)
    shown = svc.issue_temporary_pass("bob", valid_for=3600, actor="admin", reason="overdue, ticket 7")
    address(NEW_ADDRESS)
    at = sign_in(app(), "bob")
    type_into(at, "Temporary pass", shown)
    at = click(at, "Continue")
    assert "Contact the helpdesk" not in titles(at), texts(at)
    at.switch_page(MANAGE)
    at = click(run(at), "Add")
    at.switch_page(ADD_TOTP)
    at = set_up_app(run(at), svc, clock, "bob")
    assert svc.requirement("bob").state == "met"
    assert "Contact the helpdesk" not in texts(at)


# -- disallowed ---------------------------------------------------------------------------

@pytest.fixture
def admins_passkeys_only(data_dir, svc, clock):
    """Admins: passkeys only. helen (another admin) has one; admin has only an app."""
    UserDirectory(data_dir).add("helen", "helen-demo-pass", name="Helen Admin",
                                roles=["user", "admin"])
    add_passkey(svc, "helen")
    secret, _ = enroll(svc, clock, "admin")
    svc.set_policy_rule(target="role:admin", grace_days=0, allow=["passkey", "backup_code"],
                        actor="helen")
    return secret


def admin_signed_in(secret, clock):
    at = sign_in(app(), "admin")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    clock.advance(30)
    return at


def test_an_admin_with_only_an_app_is_held_on_manage_mfa(data_dir, svc, clock, admins_passkeys_only):
    for page in (HELPDESK, ADD_TOTP):
        at = admin_signed_in(admins_passkeys_only, clock)
        at.switch_page(page)
        at = run(at)
        assert "Search users" not in [t.label for t in at.text_input]
        if page == ADD_TOTP:
            assert "does not allow authentication apps" in texts(at)
        else:
            assert titles(at) == ["Add a passkey"], (page, texts(at))
    assert svc.pending_totp("admin") is None

    at = admin_signed_in(admins_passkeys_only, clock)
    assert titles(at) == ["Add a passkey"], texts(at)
    assert "requires a passkey for your account" in texts(at)
    assert "Welcome" not in texts(at)
    assert "Remind me later" not in labels(at)
    at = click(at, "Set it up now")
    assert "User MFA Settings" in titles(at)
    assert "requires a passkey for your account" in texts(at)
    assert "Add another authentication app" not in labels(at)
    assert page_links(at) == ["Manage MFA"]
    assert [b.proto.type for b in at.button if b.label == "Add a passkey"] == ["primary"]

    # Add a passkey: the page starts the ceremony; the browser's half (here a software
    # authenticator) answers; the page names and saves it.
    at = click(at, "Add a passkey")
    options = at.session_state["portal_passkey_add"]["options"]
    at.session_state[portal.passkey_view.NEW] = {"response": SoftAuthenticator().create(options)}
    at.session_state[portal.passkey_view.NAME] = "Security key"
    at = click(run(at), "Save passkey")
    assert svc.requirement("admin").state == "met"
    assert "Welcome, Helpdesk Admin" in texts(at), texts(at)
    assert "Helpdesk" in page_links(at)


def test_a_helpdesk_button_drawn_before_the_rule_held_the_admin_does_nothing(data_dir, svc, clock):
    """Callbacks run before the guard: the Helpdesk's own check refuses a held admin."""
    from portal import helpdesk_rules, policy_admin
    UserDirectory(data_dir).add("helen", "helen-demo-pass", name="Helen Admin",
                                roles=["user", "admin"])
    add_passkey(svc, "helen")
    at = helpdesk_tab(svc, clock, "Policy")
    assert "Save rule" in labels(at)
    portal.config.service().set_policy_rule(target="role:admin", grace_days=0,
                                            allow=["passkey", "backup_code"], actor="helen")
    at = click(at, "Save rule")
    assert policy_admin.ASKED not in at.session_state
    assert at.session_state[policy_admin.ERROR] == helpdesk_rules.NEEDS_ALLOWED
    assert titles(at) == ["Add a passkey"], texts(at)


def test_removing_the_last_factor_under_a_rule_says_why(data_dir, svc, clock):
    svc.set_policy_rule(target="everyone", grace_days=14, actor="admin")
    secret, _ = enroll(svc, clock, "alice")
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    at.switch_page(MANAGE)
    at = run(at)
    at = click(at, "Remove")
    assert "Yes, remove it" not in labels(at)  # not asked: it would be refused
    assert any("cannot remove your last authenticator" in e for e in errors(at)), texts(at)
    assert svc.status("alice").totp_enabled


def test_the_engine_refuses_the_last_factor_even_when_the_page_asked_before_the_rule(
        data_dir, svc, clock):
    """The question was asked before the rule was set: the engine's refusal is shown, no
    traceback."""
    secret, _ = enroll(svc, clock, "alice")
    at = sign_in(app(), "alice")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    at.switch_page(MANAGE)
    at = click(run(at), "Remove")
    assert "Yes, remove it" in labels(at)
    # Set in this process (a service answers from its last read of the policy for seconds).
    portal.config.service().set_policy_rule(target="everyone", grace_days=14, actor="admin")
    at = click(at, "Yes, remove it")
    assert any("cannot remove your last authenticator" in e for e in errors(at)), texts(at)
    assert svc.status("alice").totp_enabled


# -- the Helpdesk's Policy and Coverage tabs ----------------------------------------------

def helpdesk_tab(svc, clock, tab: str, secret: str | None = None):
    secret = secret or enroll(svc, clock, "admin")[0]
    at = sign_in(app(), "admin")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    at.session_state[portal.helpdesk.SECTION] = tab
    at.switch_page(HELPDESK)
    return run(at)


def test_the_policy_tab_adds_a_rule_behind_verification_and_shows_it(data_dir, svc, clock):
    at = helpdesk_tab(svc, clock, "Policy")
    assert "No rules: two-step verification is voluntary." in texts(at), texts(at)
    at = click(at, "Save rule")
    assert "Save this rule?" in texts(at)
    assert svc.two_step_policy().rules == ()
    at = click(at, "Yes, save the rule")  # inside the sign-in's 10 minutes: no dialog
    assert "The rule for everyone was saved." in texts(at), texts(at)
    [rule] = fresh(data_dir, clock).two_step_policy().rules
    assert rule.target == "everyone" and rule.grace_days == 14
    assert "Everyone" in at.dataframe[0].value["Applies to"].tolist()


def test_the_policy_tab_shows_the_engines_refusal(data_dir, svc, clock):
    at = helpdesk_tab(svc, clock, "Policy")
    at.radio(key="helpdesk_policy_scope").set_value("A role")
    at = run(at)
    type_into(at, "Role", "admin")
    at.multiselect(key="helpdesk_policy_allow").set_value(["passkey"])
    at = click(at, "Save rule")
    at = click(at, "Yes, save the rule")
    assert any("lock out the helpdesk" in e for e in errors(at)), texts(at)
    assert fresh(data_dir, clock).two_step_policy().rules == ()


def test_the_coverage_tab_counts_and_offers_the_overdue_csv(data_dir, svc, clock):
    secret, _ = enroll(svc, clock, "admin")
    svc.set_policy_rule(target="everyone", deadline="2027-01-10", actor="admin")  # passed
    at = helpdesk_tab(svc, clock, "Coverage", secret)
    assert "Coverage" in [h.value for h in at.header], texts(at)
    counts = {m.label: m.value for m in at.metric}
    assert counts["Overdue"] == "2" and counts["Enrolled"] == "1", counts
    assert "alice" in at.dataframe[0].value["User"].tolist()
    assert downloads(at) == []  # made only when asked for
    at = click(at, "Prepare the CSV")
    [(name, text)] = downloads(at)
    assert name == "mfa-portal-coverage.csv"
    assert text.splitlines() == ["username,state,days_left", "alice,overdue,0", "bob,overdue,0"]


def test_the_gate_reads_the_engines_names():
    """The portal's step holds only the states the engine names (mfa_core.policy)."""
    from mfa_core import policy
    assert set(policy_gate.HELD_PAGES) == {"overdue", "disallowed"}
    assert policy.FACTORS == ("totp", "passkey", "backup_code")
    assert issubclass(mfa_core.PolicyRefused, mfa_core.MFAError)
