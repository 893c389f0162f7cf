"""The Helpdesk's **Policy** tab: the organization's two-step rules, shown and changed.

A rule is for everyone, a role of the directory or a directory group: two-step
verification required within a grace period (days from when the rule first
applies to each person) or by a deadline, with the authenticators it allows.
Saving a rule replaces that target's rule and keeps the others; **Remove all
rules** clears them. Both ask first, then run behind **Verify it's you**, and
check the admin again when they finally run (``helpdesk.admin_refusal``). The
engine decides (``set_policy_rule``, ``clear_policy``) and audits; its
refusal (a rule that would lock out the admins) is shown as it words it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import streamlit as st

import mfa_core
from mfa_core.users import User

from . import config, reverify, session
from .display import plain
from .helpdesk_rules import admin_refusal, admitted, text_table as _table

SCOPE = "helpdesk_policy_scope"
NAME = "helpdesk_policy_name"
DUE = "helpdesk_policy_due"
DAYS = "helpdesk_policy_days"
DEADLINE = "helpdesk_policy_deadline"
ALLOW = "helpdesk_policy_allow"
ASKED = "helpdesk_policy_asked"   # {"rule": {...}, "words": str} or {"clear": True}: asked, not run
ERROR = "helpdesk_policy_error"

SCOPES = {"Everyone": "everyone", "A role": "role", "A directory group": "group"}
DUES = ("A grace period", "A deadline")
FACTOR_NAMES = {"totp": "Authentication app", "passkey": "Passkey", "backup_code": "Backup codes"}
SHORT_NAMES = {"totp": "app", "passkey": "passkey", "backup_code": "backup codes"}
DEFAULT_DAYS = 14
# Widths that show the usual values whole on the wide page beside the sidebar (~640 px).
COLUMNS = {"Applies to": st.column_config.TextColumn(width=170),
           "Due": st.column_config.TextColumn(width=160),
           "Allowed": st.column_config.TextColumn(width=200),
           "Set": st.column_config.TextColumn(width=100, help="When this target's rule was first set")}


def date_words(day: str | dt.date) -> str:
    """"1 March 2027" (the pages' way of writing a date)."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return f"{day.day} {day.strftime('%B')} {day.year}"


def target_words(target: str) -> str:
    """"Everyone", "Role admin", "Group cn=staff,…" (a name from the directory: as text)."""
    if target == "everyone":
        return "Everyone"
    kind, _, name = target.partition(":")
    return f"{'Role' if kind == 'role' else 'Group'} {name}"


def due_words(grace_days: int | None, deadline: str | None) -> str:
    """"By 1 March 2027", "14 days' grace", "At once (no grace)"."""
    if deadline:
        return f"By {date_words(deadline)}"
    days = grace_days or 0
    if not days:
        return "At once (no grace)"
    return f"{days} day{'s' if days != 1 else ''}' grace" if days != 1 else "1 day's grace"


def due_sentence(grace_days: int | None, deadline: str | None) -> str:
    """The same, as the question says it: "by 1 March 2027", "within 14 days of when it first
    applies to each person"."""
    if deadline:
        return f"by {date_words(deadline)}"
    days = grace_days or 0
    if not days:
        return "at once, with no grace period"
    return f"within {days} day{'s' if days != 1 else ''} of when it first applies to each person"


def allow_words(allow) -> str:
    """"App, passkey, backup codes"."""
    text = ", ".join(SHORT_NAMES[k] for k in SHORT_NAMES if k in allow) or "—"
    return text[:1].upper() + text[1:]


def _today() -> dt.date:
    return dt.datetime.fromtimestamp(config.service().clock(), dt.timezone.utc).date()


# -- the callbacks --------------------------------------------------------------------

def _typed_rule() -> dict[str, Any] | None:
    """The rule the fields describe (engine keywords), or None with what is missing said."""
    scope = SCOPES.get(st.session_state.get(SCOPE) or "Everyone", "everyone")
    target = "everyone"
    if scope != "everyone":
        name = (st.session_state.get(NAME) or "").strip()
        if not name:
            st.session_state[ERROR] = ("Enter the role's name." if scope == "role" else
                                       "Enter the group's DN.")
            return None
        target = f"{scope}:{name}"
    rule: dict[str, Any] = {"target": target, "grace_days": None, "deadline": None,
                            "allow": tuple(st.session_state.get(ALLOW) or ())}
    if not rule["allow"]:
        st.session_state[ERROR] = "Choose at least one authenticator the rule allows."
        return None
    if (st.session_state.get(DUE) or DUES[0]) == DUES[1]:
        day = st.session_state.get(DEADLINE)
        if not isinstance(day, dt.date):
            st.session_state[ERROR] = "Choose the deadline."
            return None
        rule["deadline"] = day.isoformat()
    else:
        rule["grace_days"] = int(st.session_state.get(DAYS) or 0)
    return rule


@session.unrestricted
def request_save(actor: str) -> None:
    """**Save rule**: checked here, then the tab asks first (nothing runs yet)."""
    st.session_state.pop(ASKED, None)
    if not admitted(actor, ERROR):
        return
    rule = _typed_rule()
    if rule is not None:
        st.session_state[ASKED] = {"rule": rule}


@session.unrestricted
def request_clear(actor: str) -> None:
    """**Remove all rules**: checked here, then the tab asks first."""
    if not admitted(actor, ERROR):
        return
    st.session_state[ASKED] = {"clear": True}


def cancel() -> None:
    st.session_state.pop(ASKED, None)


@session.unrestricted
def confirm(actor: str) -> None:
    """**Yes, …**: the change asked for, behind reverification."""
    asked = st.session_state.pop(ASKED, None)
    st.session_state.pop(ERROR, None)
    if not asked:
        return
    svc = config.service()
    if asked.get("clear"):
        _behind_reverification("policy_clear", "remove every two-step rule", actor,
                               lambda: svc.clear_policy(actor=actor),
                               "Every rule was removed: two-step verification is voluntary again.")
        return
    rule = asked["rule"]
    who = target_words(rule["target"])
    _behind_reverification(
        "policy_set", f"set the two-step rule for {plain(who.lower() if who == 'Everyone' else who)}",
        actor, lambda: svc.set_policy_rule(**rule, actor=actor),
        f"The rule for {plain(who.lower() if who == 'Everyone' else who)} was saved.")


def _behind_reverification(action: str, label: str, actor: str, change: Callable[[], object],
                           done: str) -> None:
    def run() -> None:
        refused = admin_refusal(actor)
        if refused:
            session.flash("error", refused)
            return
        try:
            change()
        except mfa_core.MFAError as err:  # the engine's refusal, worded for the admin
            session.flash("error", plain(err))
            return
        except (TypeError, ValueError) as err:  # a value the engine does not take
            session.flash("error", plain(err))
            return
        for key in (NAME, ERROR):
            st.session_state.pop(key, None)
        session.flash("success", done)

    reverify.sensitive(action, label, run)


# -- the tab ------------------------------------------------------------------------

def render(admin: User) -> None:
    svc = config.service()
    st.header("Two-step rules", anchor=False)
    st.caption("Who must use two-step verification, by when, and with which authenticators. A "
               "rule for a target replaces that target's earlier rule. Someone under several "
               "rules gets the earliest date and only the authenticators all of them allow.")
    try:
        policy = svc.two_step_policy()
    except mfa_core.MFAError as err:
        st.error(str(err))
        return
    if policy.rules:
        st.dataframe(_table([{"Applies to": target_words(r.target),
                              "Due": due_words(r.grace_days, r.deadline),
                              "Allowed": allow_words(r.allow),
                              "Set": session.format_time(r.created_at)[:10]}
                             for r in policy.rules]),
                     hide_index=True, key="helpdesk_policy_rules", column_config=COLUMNS)
    else:
        st.info("No rules: two-step verification is voluntary. Add one below to roll it out.")
    if policy.changed_at is not None:
        st.caption(f"Last changed {session.format_time(policy.changed_at)} by "
                   f"{plain(policy.changed_by or 'unknown')}.")

    asked = st.session_state.get(ASKED)
    if asked:
        _question(admin, asked, policy)
    else:
        _fields(admin, policy)
    if st.session_state.get(ERROR):
        st.error(st.session_state.pop(ERROR))


def _question(admin: User, asked: dict, policy) -> None:
    row_keys = ("helpdesk_policy_confirm", "helpdesk_policy_cancel")
    if asked.get("clear"):
        st.warning("**Remove every rule?** Two-step verification becomes voluntary for everyone; "
                   "nobody is held at sign-in any more. Authenticators already set up keep "
                   "working.")
        yes = "Yes, remove all rules"
    else:
        rule = asked["rule"]
        who = target_words(rule["target"])
        replaces = any(r.target.lower() == rule["target"].lower() for r in policy.rules)
        st.warning(f"**Save this rule?** {plain(who)}: two-step verification required "
                   f"{due_sentence(rule['grace_days'], rule['deadline'])}, with "
                   f"{', '.join(FACTOR_NAMES[k].lower() for k in FACTOR_NAMES if k in rule['allow'])}"
                   "."
                   + (" It replaces the current rule for the same target." if replaces else ""))
        yes = "Yes, save the rule"
    row = st.container(horizontal=True)
    row.button(yes, key=row_keys[0], type="primary", on_click=confirm, args=(admin.username,))
    row.button("Cancel", key=row_keys[1], on_click=cancel)


def _fields(admin: User, policy) -> None:
    st.subheader("Add or replace a rule", anchor=False)
    scope = st.radio("Applies to", list(SCOPES), key=SCOPE, horizontal=True)
    if scope == "A role":
        st.text_input("Role", key=NAME, placeholder="admin",
                      help="A role from the user directory, like admin.")
    elif scope == "A directory group":
        st.text_input("Group DN", key=NAME, placeholder="cn=staff,ou=groups,dc=example,dc=com",
                      help="The group's distinguished name in the company directory.")
    due = st.radio("Due", DUES, key=DUE, horizontal=True)
    if due == DUES[1]:
        today = _today()
        if not isinstance(st.session_state.get(DEADLINE), dt.date):
            st.session_state[DEADLINE] = today + dt.timedelta(days=30)
        st.date_input("Deadline", key=DEADLINE, min_value=today, format="YYYY-MM-DD",
                      help="Due at 00:00 UTC that day.")
    else:
        if DAYS not in st.session_state:
            st.session_state[DAYS] = DEFAULT_DAYS
        st.number_input("Grace period in days", key=DAYS, min_value=0, max_value=3650, step=1,
                        help="Counted for each person from when the rule first applies to them "
                             "(their next sign-in), so a new hire gets the same days.")
    if ALLOW not in st.session_state:
        st.session_state[ALLOW] = list(FACTOR_NAMES)
    st.multiselect("Allowed authenticators", list(FACTOR_NAMES), key=ALLOW,
                   format_func=FACTOR_NAMES.get,
                   help="For admins, passkeys only resist phishing best. Backup codes are "
                        "made with the first authenticator.")
    row = st.container(horizontal=True)
    row.button("Save rule", key="helpdesk_policy_save", type="primary", on_click=request_save,
               args=(admin.username,))
    if policy.rules:
        row.button("Remove all rules", key="helpdesk_policy_clear", on_click=request_clear,
                   args=(admin.username,))
    left = reverify.verification_remaining()
    st.caption(f"You verified it's you recently: no code needed for another {-(-left // 60)} min."
               if left else "Saving or removing rules asks you to verify it's you first.")
