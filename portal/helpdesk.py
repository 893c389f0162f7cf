"""The Helpdesk page (admins only): users' MFA status, one user's audit trail, reset MFA, clear a lockout.

The page calls ``require_admin`` and then ``render(admin)``. Its rules:
only an admin whose own two-step verification is on gets the list and the
actions (otherwise the page says so and links to Manage MFA); **Reset MFA**
asks "Reset MFA for <name>?" with the consequences on the page, then the
reset runs behind reverification (``reverify.sensitive``), as **Clear
lockout** does; neither acts on the admin's own account. Every callback
checks these again (callbacks run before the page's guard). Names and
reasons are people's text: shown through ``display.plain`` or as table
cells, never as markdown. The user list is
searched in the portal's cached index of ``users.yaml`` (``portal.users.index``:
built once per version of the file), so a run only filters it and reads the
MFA status of the rows drawn (``SHOWN`` at most).
"""

from __future__ import annotations

import re
from typing import Callable

import streamlit as st

import mfa_core
from mfa_core.users import User

from . import config, coverage_view, policy_admin, reverify, session, users
from .display import plain
from .helpdesk_rules import NEEDS_MFA, admin_refusal, text_table as _table
from .navigation import MANAGE_PAGE, page_link

SHOWN = 25  # rows drawn at most: a search narrows a large directory
TRAIL = 100  # audit events shown for one user, newest first
PERIODS = {"Last 30 days": 30 * 86400, "Last year": 365 * 86400, "Everything": None}
REASON = "helpdesk_reason"
ERROR = "helpdesk_error"
CONFIRM = "helpdesk_confirm_reset"  # {"target", "reason"}: Reset MFA asked, not yet confirmed
CONFIRM_ONE = "helpdesk_confirm_remove"  # {"target", "reason", "id", "label"}: one authenticator
CHOSEN = "helpdesk_authenticator"
CONFIRM_PASS = "helpdesk_confirm_pass"  # {"target", "reason", "valid", "uses"}: a pass asked for
PASS_SHOWN = "helpdesk_pass_shown"      # {"target", "pass", "until"}: shown to the admin once
PASS_VALID = "helpdesk_pass_valid"
PASS_USES = "helpdesk_pass_uses"
VALIDITIES = {"10 minutes": 600, "30 minutes": 1800, "1 hour": 3600, "2 hours": 7200,
              "4 hours": 4 * 3600, "8 hours": 8 * 3600, "24 hours": 24 * 3600}
NOT_YOURSELF = ("You cannot reset your own MFA or clear your own lockout here: use Manage MFA, "
                "or ask another admin.")
DAMAGED = "Record damaged"


# Column widths in px that fit the wide page at 1280 px beside the sidebar (820 px) and show
# every header and the usual values whole ("Waiting 30 s (5 failed)", a date and time).
TABLE_WIDTH = 820
USER_COLUMNS = {"User": st.column_config.TextColumn(width=80),
                "Name": st.column_config.TextColumn(width=120),
                "E-mail": st.column_config.TextColumn(width=140),
                "Role": st.column_config.TextColumn(width=60),
                "Two-step": st.column_config.TextColumn(width=80),
                "Backup codes": st.column_config.TextColumn("Codes", width=60,
                                                            help="Backup codes left"),
                "Lockout": st.column_config.TextColumn(width=140),
                "Last activity": st.column_config.TextColumn(width=140)}
TRAIL_COLUMNS = {"Time": st.column_config.TextColumn(width=130),
                 "Event": st.column_config.TextColumn(width=190),
                 "Outcome": st.column_config.TextColumn(width=80),
                 "By": st.column_config.TextColumn(width=150),
                 "Detail": st.column_config.TextColumn(width=270)}


def lock_state(status: mfa_core.MFAStatus) -> str:
    """The second factor's and the password's lockout, in words."""
    text = "; ".join(status.lockout_words())
    return text[:1].upper() + text[1:] if text else "—"


def what_goes(status: mfa_core.MFAStatus) -> str:
    """What a reset removes, in words: "their 2 authentication apps, their passkey and their
    backup codes are" (the verb agrees)."""
    if status.damaged:
        return "whatever their record held is"
    apps = sum(1 for a in status.authenticators if a.kind == "totp")
    keys = len(status.authenticators) - apps
    parts = []
    if apps:
        parts.append("their authentication app" if apps == 1 else f"their {apps} authentication apps")
    if keys:
        parts.append("their passkey" if keys == 1 else f"their {keys} passkeys")
    if status.backup_codes_remaining or status.two_factor_enabled:
        parts.append("their backup codes")
    if not parts:
        return "any set-up they started is"
    words = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    plural = len(parts) > 1 or parts[0].endswith("s")
    return words + (" are" if plural else " is")


# Events of someone who only typed a name and a password: who it was is not known.
UNAUTHENTICATED = ("password_failed", "password_throttled", "password_blocked")


def by(event: mfa_core.AuditEvent) -> str:
    """The audit's "By": the account that acted, or for a password typed by anyone "unknown
    (from <address>)"."""
    if event.event in UNAUTHENTICATED and event.actor in (None, event.user):
        found = re.search(r"\bfrom (?!an unknown address)(\S+)$", event.detail or "")
        return f"unknown (from {found.group(1)})" if found else "unknown"
    return event.actor or "—"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def has_failures(status: mfa_core.MFAStatus) -> bool:
    return bool(status.locked or status.failed_attempts or status.password_blocked
                or status.password_failures or status.locked_channels)


def factor(status: mfa_core.MFAStatus) -> str:
    if status.damaged:
        return DAMAGED
    if status.two_factor_enabled:
        count = len(status.authenticators)
        return "On" if count == 1 else f"On ({count})"
    return "Setting up" if status.pending_enrollment else "Off"


def _when(timestamp: float | None) -> str:
    return session.format_time(timestamp) if timestamp is not None else "—"


def _reason() -> str:
    return (st.session_state.get(REASON) or "").strip()


def _required_reason(doing: str) -> str | None:
    """The reason typed, or None with "A reason is required to <doing>." shown."""
    reason = _reason()
    if not reason:
        st.session_state[ERROR] = f"A reason is required to {doing}."
    return reason or None


def _refusal(actor: str, target: str) -> str | None:
    """Why ``actor`` may not act on ``target`` now, or None: ``admin_refusal``, and the target
    is someone else."""
    refusal = admin_refusal(actor)
    if refusal is None and target == actor:
        return NOT_YOURSELF
    return refusal


def _may_ask(key: str | None, actor: str, target: str) -> bool:
    """A new question under ``key`` replaces any earlier one; False (a refusal shown) when
    ``actor`` may not act on ``target`` now (the twin of ``_confirmed``). ``key`` None: an
    action the page does not ask about first."""
    st.session_state.pop(ERROR, None)
    if key is not None:
        st.session_state.pop(key, None)
    refusal = _refusal(actor, target)
    if refusal:
        st.session_state[ERROR] = refusal
    return refusal is None


@session.unrestricted
def request_reset(actor: str, target: str) -> None:
    """**Reset MFA**: checks here, then the page asks "Reset MFA for <name>?" (nothing runs yet)."""
    if not _may_ask(CONFIRM, actor, target):
        return
    reason = _required_reason("reset MFA")
    if reason is None:
        return
    try:
        goes = what_goes(config.service().status(target))
    except mfa_core.MFAError:  # a damaged record: what it held cannot be read
        goes = "whatever their record held is"
    st.session_state[CONFIRM] = {"target": target, "reason": reason, "goes": goes}


def forget_question() -> None:
    """Another user chosen: nothing typed or asked for the last one carries over to them."""
    for key in (REASON, CONFIRM, CONFIRM_ONE, CONFIRM_PASS, PASS_SHOWN, CHOSEN, ERROR):
        st.session_state.pop(key, None)


def cancel_reset() -> None:
    asked = (st.session_state.pop(CONFIRM, None) or st.session_state.pop(CONFIRM_ONE, None)
             or st.session_state.pop(CONFIRM_PASS, None))
    if asked:
        st.session_state[REASON] = asked["reason"]  # the field comes back as it was


@session.unrestricted
def request_remove_one(actor: str, target: str) -> None:
    """**Remove authenticator**: checks here, then the page asks first (nothing runs yet)."""
    if not _may_ask(CONFIRM_ONE, actor, target):
        return
    try:
        status = config.service().status(target)
    except mfa_core.MFAError as err:
        st.session_state[ERROR] = str(err)
        return
    chosen = status.authenticator(st.session_state.get(CHOSEN) or "")
    if chosen is None:
        st.session_state[ERROR] = "Choose the authenticator to remove."
        return
    reason = _required_reason("remove an authenticator")
    if reason is None:
        return
    st.session_state[CONFIRM_ONE] = {"target": target, "reason": reason, "id": chosen.id,
                                     "label": chosen.label,
                                     "last": len(status.authenticators) == 1}


def _confirmed(key: str, actor: str, target: str) -> dict | None:
    """The question asked under ``key`` (taken off the page) if it was about ``target`` and
    ``actor`` may still act on them; else None (a refusal is shown)."""
    asked = st.session_state.pop(key, None)
    st.session_state.pop(ERROR, None)
    if not asked or asked["target"] != target:
        return None
    refusal = _refusal(actor, target)
    if refusal:
        st.session_state[ERROR] = refusal
        return None
    return asked


@session.unrestricted
def confirm_remove_one(actor: str, target: str) -> None:
    """**Yes, remove it**: the one authenticator asked about, behind reverification."""
    asked = _confirmed(CONFIRM_ONE, actor, target)
    if asked is None:
        return
    def remove() -> None:
        # The question said whether two-step stays on: if that changed since (the user
        # removed or added one meanwhile), nothing is removed and the admin looks again.
        left = config.service().status(target).authenticators
        if (len(left) == 1) != asked["last"] and any(a.id == asked["id"] for a in left):
            raise ValueError("Their authenticators changed meanwhile: nothing was removed. "
                             "Look at the list again and confirm.")
        config.service().remove_authenticator(target, asked["id"], actor=actor,
                                               reason=asked["reason"])

    _act_behind_reverification(
        "helpdesk_remove", f"remove \u201c{plain(asked['label'])}\u201d of {plain(target)}",
        actor, target, remove,
        f"\u201c{plain(asked['label'])}\u201d was removed from {plain(target)}; their sessions "
        "are signed out.")


def _act_behind_reverification(action: str, label: str, actor: str, target: str,
                               change: Callable[[], object], done: str) -> None:
    """Run ``change()`` behind reverification, checking the admin again when it finally runs.

    The dialog may run it minutes later: the role, the admin's own second
    factor and the target are checked then too. ``done`` is the success flash.
    """
    def run() -> None:
        refused = _refusal(actor, target)
        if refused:
            session.flash("error", refused)
            return
        try:
            change()
        except (ValueError, mfa_core.UnknownAuthenticator) as err:
            # a reason the engine refuses (too long, control characters), an authenticator gone
            session.flash("error", plain(err))
            return
        st.session_state[REASON] = ""
        session.flash("success", done)

    reverify.sensitive(action, label, run)


@session.unrestricted
def confirm_reset(actor: str, target: str) -> None:
    """**Yes, reset MFA**: the reset asked for, behind reverification (10 minutes)."""
    asked = _confirmed(CONFIRM, actor, target)
    if asked is None:
        return
    _act_behind_reverification(
        "helpdesk_reset", f"reset the two-step verification of {target}", actor, target,
        lambda: config.service().reset_mfa(target, actor=actor, reason=asked["reason"]),
        f"Two-step verification of {plain(target)} was reset: {asked.get('goes', 'everything')} "
        "removed and their sessions are signed out.")


def validities() -> dict[str, int]:
    """The lifetimes offered: from 10 minutes up to the operator's maximum."""
    longest = config.service().pass_max_valid
    return {label: seconds for label, seconds in VALIDITIES.items() if seconds <= longest}


@session.unrestricted
def request_pass(actor: str, target: str) -> None:
    """**Issue a temporary pass**: checks here, then the page asks first (nothing runs yet)."""
    if not _may_ask(CONFIRM_PASS, actor, target):
        return
    st.session_state.pop(PASS_SHOWN, None)
    reason = _required_reason("issue a temporary pass")
    if reason is None:
        return
    offered = validities()
    label = st.session_state.get(PASS_VALID) or next(iter(offered), None)
    if label not in offered:
        st.session_state[ERROR] = "Choose how long the pass is valid."
        return
    uses = st.session_state.get(PASS_USES) or 1
    st.session_state[CONFIRM_PASS] = {"target": target, "reason": reason, "valid": label,
                                      "uses": int(uses)}


@session.unrestricted
def confirm_pass(actor: str, target: str) -> None:
    """**Yes, issue the pass**: behind reverification; the pass is shown to the admin once."""
    asked = _confirmed(CONFIRM_PASS, actor, target)
    if asked is None:
        return
    seconds = validities().get(asked["valid"])
    if seconds is None:
        st.session_state[ERROR] = "Choose how long the pass is valid."
        return

    def issue() -> None:
        svc = config.service()
        shown = svc.issue_temporary_pass(target, valid_for=seconds, actor=actor,
                                         reason=asked["reason"], uses=asked["uses"])
        st.session_state[PASS_SHOWN] = {"target": target, "pass": shown,
                                        "until": svc.status(target).temporary_pass_until}

    _act_behind_reverification(
        "helpdesk_pass", f"issue a temporary pass for {plain(target)}", actor, target, issue,
        f"A temporary pass was issued for {plain(target)}: read it to them now, it is not shown "
        "again.")


@session.unrestricted
def revoke_pass(actor: str, target: str) -> None:
    """**Revoke temporary pass**: behind reverification like every other change."""
    if not _may_ask(None, actor, target):
        return
    reason = _required_reason("revoke a temporary pass")
    if reason is None:
        return
    _act_behind_reverification(
        "helpdesk_revoke_pass", f"revoke the temporary pass of {plain(target)}", actor, target,
        lambda: config.service().revoke_temporary_pass(target, actor=actor, reason=reason),
        f"The temporary pass of {plain(target)} was revoked.")


def pass_seen() -> None:
    st.session_state.pop(PASS_SHOWN, None)


@session.unrestricted
def clear_lockout(actor: str, target: str) -> None:
    """**Clear lockout**: behind reverification like every other change; never one's own."""
    if not _may_ask(None, actor, target):
        return
    reason = _required_reason("clear a lockout")
    if reason is None:
        return
    _act_behind_reverification(
        "helpdesk_unlock", f"clear the lockout of {target}", actor, target,
        lambda: config.service().unlock(target, actor=actor, reason=reason),
        f"Failed attempts and lockout of {plain(target)} were cleared.")


SECTIONS = ("Users", "Policy", "Coverage")
SECTION = "helpdesk_section"


def render(admin: User) -> None:
    """The whole page below the guard, for the signed-in helpdesk admin ``admin``: three tabs,
    of which only the open one runs (Coverage reads the whole store's counts)."""
    st.title("Helpdesk", anchor=False)
    if not session.status().two_factor_enabled:
        st.warning(NEEDS_MFA)
        page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
        return
    users_tab, policy_tab, coverage_tab = st.tabs(SECTIONS, key=SECTION, on_change="rerun")
    if policy_tab.open:
        with policy_tab:
            policy_admin.render(admin)
    elif coverage_tab.open:
        with coverage_tab:
            coverage_view.render(admin)
    else:
        with users_tab:
            _users(admin)


def _users(admin: User) -> None:
    """The Users tab: search, the table, one user's panel."""
    svc = config.service()
    query = st.text_input("Search users", key="helpdesk_search",
                          placeholder="Username, name or e-mail")
    directory = users.index(config.portal())
    found = directory.search(query)
    shown = [u for u in map(directory.user, found[:SHOWN]) if u is not None]
    statuses = dict(zip((u.username for u in shown), svc.statuses(u.username for u in shown)))

    if not found:
        st.info("No users match the search.")
    else:
        note = f"{len(found)} of {len(directory)} users"
        if len(found) > SHOWN:
            note += f"; the first {SHOWN} are shown: refine the search"
        st.caption(note)
        st.dataframe(_table([{"User": u.username, "Name": u.name, "E-mail": u.email or "—",
                       "Role": ("Admin" if u.is_admin else "User") + (
                           "" if getattr(u, "active", True) else " · disabled in the directory"),
                       "Two-step": factor(statuses[u.username]),
                       "Backup codes": (str(statuses[u.username].backup_codes_remaining)
                                        if statuses[u.username].two_factor_enabled else "—"),
                       "Lockout": lock_state(statuses[u.username]),
                       "Last activity": _when(statuses[u.username].last_activity)} for u in shown]),
                     hide_index=True, key="helpdesk_users", column_config=USER_COLUMNS)

    names = {u.username: u for u in shown}
    selected = st.selectbox("User", list(names), index=None, key="helpdesk_user",
                            on_change=forget_question,
                            placeholder="Choose a user to see their audit trail and act",
                            format_func=lambda n: f"{n} — {names[n].name}" if n in names else n)
    if selected in names:
        _user_panel(admin, names[selected], statuses[selected])
    else:
        st.session_state.pop(CONFIRM, None)


def _user_panel(admin: User, user: User, status: mfa_core.MFAStatus) -> None:
    """One user: status line, audit trail for a period, the helpdesk actions."""
    svc = config.service()
    st.header(f"{plain(user.name)} ({user.username})", anchor=False)
    codes = (f", {status.backup_codes_remaining} backup codes left"
             if status.two_factor_enabled else "")
    st.write(f"Two-step verification: **{factor(status)}**{codes}. "
             f"Lockout: **{lock_state(status)}**. Last activity: {_when(status.last_activity)}.")
    if status.temporary_pass_active:
        uses = status.temporary_pass_uses
        st.write(f"Temporary pass: **active until {_when(status.temporary_pass_until)}** "
                 f"({uses} sign-in{'s' if uses != 1 else ''} left).")

    st.subheader("Audit trail", anchor=False)
    period = st.radio("Period", list(PERIODS), horizontal=True, key="helpdesk_period")
    span = PERIODS.get(period)
    # The trail is kept a file a day: a period reads only its days.
    trail = svc.audit(user.username, since=svc.clock() - span if span else None)[::-1][:TRAIL]
    if trail:
        st.dataframe(_table([{"Time": _when(e.time), "Event": e.label,
                              "Outcome": e.outcome.capitalize(), "By": by(e),
                              "Detail": e.detail} for e in trail]),
                     hide_index=True, key="helpdesk_trail", column_config=TRAIL_COLUMNS)
    else:
        st.caption("No events for this user in this period.")

    if status.authenticators:
        st.subheader("Authenticators", anchor=False)
        st.dataframe(_table([{"Name": a.label, "Kind": a.kind_words, "Added": _when(a.created_at),
                              "Last used": _when(a.last_used_at)} for a in status.authenticators]),
                     hide_index=True, key="helpdesk_authenticators")

    st.subheader("Helpdesk actions", anchor=False)
    if status.damaged:
        st.error("This user's security record cannot be read: they cannot sign in. **Reset MFA** "
                 "replaces it (the damaged copy is kept aside) and they set up two-step "
                 "verification again.")
    if user.username == admin.username:
        st.info(NOT_YOURSELF)
        return
    asked = st.session_state.get(CONFIRM)
    if asked and asked["target"] != user.username:  # another user was chosen meanwhile
        st.session_state.pop(CONFIRM, None)
        asked = None
    one = st.session_state.get(CONFIRM_ONE)
    if one and one["target"] != user.username:
        st.session_state.pop(CONFIRM_ONE, None)
        one = None
    tap = st.session_state.get(CONFIRM_PASS)
    if tap and tap["target"] != user.username:
        st.session_state.pop(CONFIRM_PASS, None)
        tap = None
    shown = st.session_state.get(PASS_SHOWN)
    if shown and shown["target"] != user.username:
        st.session_state.pop(PASS_SHOWN, None)
        shown = None
    if shown:
        st.success(f"Temporary pass for {plain(user.name)} ({user.username}), valid until "
                   f"{_when(shown['until'])}. Read it to them now: it is shown only this once.")
        st.code(shown["pass"], language=None)
        st.button("Done", key="helpdesk_pass_done", type="primary", on_click=pass_seen)
    elif tap:
        uses = tap["uses"]
        st.warning(f"**Issue a temporary pass for {plain(user.name)} ({user.username})?** It is "
                   f"valid for {tap['valid']} and {uses} sign-in{'s' if uses != 1 else ''}, at the "
                   "portal only, to set up a new authenticator; any earlier pass stops working. "
                   "They are mailed about it. Check who is calling first.")
        st.write(f"Reason: {plain(tap['reason'])}")
        row = st.container(horizontal=True)
        row.button("Yes, issue the pass", key="helpdesk_pass_confirm", type="primary",
                   on_click=confirm_pass, args=(admin.username, user.username))
        row.button("Cancel", key="helpdesk_pass_cancel", on_click=cancel_reset)
    elif one:
        after = ("It is their only authenticator: two-step verification turns off and their "
                 "backup codes stop working." if one["last"] else
                 "Their other authenticators and backup codes keep working.")
        st.warning(f"**Remove \u201c{plain(one['label'])}\u201d of {plain(user.name)} "
                   f"({user.username})?** {after} Every session of theirs is signed out.")
        st.write(f"Reason: {plain(one['reason'])}")
        row = st.container(horizontal=True)
        row.button("Yes, remove it", key="helpdesk_remove_confirm", type="primary",
                   on_click=confirm_remove_one, args=(admin.username, user.username))
        row.button("Cancel", key="helpdesk_remove_cancel", on_click=cancel_reset)
    elif asked:
        st.warning(f"**Reset MFA for {plain(user.name)} ({user.username})?** "
                   f"{_sentence(asked.get('goes', 'everything is'))} removed, their lockout "
                   "is cleared and every session of theirs is signed out; they sign in with their "
                   "password alone until they set up two-step verification again. This cannot be "
                   "undone.")
        st.write(f"Reason: {plain(asked['reason'])}")
        row = st.container(horizontal=True)
        row.button("Yes, reset MFA", key="helpdesk_reset_confirm", type="primary",
                   on_click=confirm_reset, args=(admin.username, user.username))
        row.button("Cancel", key="helpdesk_reset_cancel", on_click=cancel_reset)
    else:
        st.text_input("Reason", key=REASON, max_chars=500,
                      help="Recorded in the audit trail with your name. Required for every action.")
        st.write("**Issue a temporary pass** when someone lost or replaced their phone: a "
                 "short-lived pass lets them sign in only to set up a new authenticator, and their "
                 "account is never left with the password alone. **Reset MFA** only when a pass "
                 "cannot help (a damaged record, an account to clear): it removes every "
                 "authenticator and the backup codes and clears the lockout. **Remove "
                 "authenticator** removes the one chosen. Removing signs out the user's sessions.")
        offered = validities()
        cols = st.columns(2)
        cols[0].selectbox("Temporary pass valid for", list(offered), key=PASS_VALID,
                          index=min(2, len(offered) - 1) if offered else None)
        cols[1].number_input("Sign-ins it allows", min_value=1, max_value=20, value=1, step=1,
                             key=PASS_USES)
        if status.authenticators:
            names = {a.id: a.label for a in status.authenticators}
            st.selectbox("Authenticator", list(names), index=None, key=CHOSEN,
                         format_func=lambda i: names.get(i, i),
                         placeholder="Choose one to remove it alone")
        row = st.container(horizontal=True)
        if status.authenticators:
            row.button("Remove authenticator", key="helpdesk_remove_one",
                       on_click=request_remove_one, args=(admin.username, user.username))
        row.button("Issue a temporary pass", key="helpdesk_pass", type="primary",
                   on_click=request_pass, args=(admin.username, user.username))
        if status.temporary_pass_active:
            row.button("Revoke temporary pass", key="helpdesk_revoke_pass", on_click=revoke_pass,
                       args=(admin.username, user.username))
        row.button("Reset MFA", key="helpdesk_reset", on_click=request_reset,
                   args=(admin.username, user.username))
        if has_failures(status):
            row.button("Clear lockout", key="helpdesk_unlock", on_click=clear_lockout,
                       args=(admin.username, user.username))
        else:
            st.caption("No failed attempts to clear.")
        left = reverify.verification_remaining()
        st.caption(f"You verified it's you recently: no code needed for another {-(-left // 60)} min."
                   if left else "Resetting MFA or clearing a lockout asks you to verify it's you "
                                "first.")
    if st.session_state.get(ERROR):
        st.error(st.session_state.pop(ERROR))
