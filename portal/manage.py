"""The Manage MFA page: the user's authenticators (Rename, Remove, Add another), backup codes,
sessions and activity. Each change is an on_click callback behind reverification."""

from __future__ import annotations

import streamlit as st

import mfa_core
from mfa_core.authenticators import MAX_TOTP_APPS
from mfa_core.policy_service import LAST_FACTOR

from . import backup_view, config, dom, enrollment, passkey_view, policy_gate, reverify, session, sessions_view
from .display import plain
from .navigation import ADD_TOTP_PAGE

CONFIRM_REMOVE = "manage_confirm_remove"  # id of the last authenticator, asked before removing
GOTO_ADD = "manage_goto_add"
RENAMING = "manage_renaming"              # id of the authenticator whose name is being edited
RENAME_TEXT = "manage_rename_text"
RENAME_ERROR = "manage_rename_error"
ACTIVITY_LIMIT = 10
APPS_NOT_ALLOWED = ("Your organization does not allow authentication apps for your account: add a "
                    "passkey instead.")


@session.guarded
def request_add() -> None:
    reverify.sensitive("add", "add an authentication app", _start_add)


def _start_add() -> None:
    enrollment.start()
    st.session_state[GOTO_ADD] = True


def _quoted(label: str) -> str:
    """A name in quotes, as markdown that shows it literally."""
    return f"\u201c{plain(label)}\u201d"


def _fresh() -> mfa_core.MFAStatus | None:
    """The user's status now (None, said in a flash, when it cannot be read or the session is
    no longer signed in): a callback may come long after the page was drawn, and another tab
    or the helpdesk may have added or removed an authenticator meanwhile."""
    try:
        return config.service().status(session.callback_user())
    except mfa_core.MFAError as err:
        session.flash("error", str(err))
        return None


def _only_one(status: mfa_core.MFAStatus, authenticator_id: str) -> bool:
    return [a.id for a in status.authenticators] == [authenticator_id]


OTHERS_SIGNED_OUT = "Your other sessions will be signed out."


@session.unrestricted
def request_remove(authenticator_id: str) -> None:
    """Remove: asked on the page first, or by the Verify it's you dialog, which then says what
    it will do (inside the verification window nothing else would stand between a stray click
    and the change)."""
    _stop_renaming()
    status = _fresh()
    if status is None:
        return
    if _only_one(status, authenticator_id) and policy_gate.required():
        # Said before any question or Verify it's you: the engine would refuse it after them.
        session.flash("error", LAST_FACTOR)
        return
    if reverify.verification_remaining() > 0 and status.authenticator(authenticator_id):
        st.session_state[CONFIRM_REMOVE] = authenticator_id
    else:
        confirm_remove(authenticator_id)


@session.unrestricted
def confirm_remove(authenticator_id: str) -> None:
    st.session_state.pop(CONFIRM_REMOVE, None)
    status = _fresh()
    found = status.authenticator(authenticator_id) if status else None
    if found is None:
        if status is not None:
            session.flash("error", str(mfa_core.UnknownAuthenticator()))
        return
    if _only_one(status, authenticator_id):
        what = (f"remove {_quoted(found.label)}, your only authenticator (two-step verification "
                "turns off and your backup codes stop working)")
    else:
        what = f"remove {_quoted(found.label)} (your other sessions will be signed out)"
    reverify.sensitive("remove", what, lambda: remove(authenticator_id, found.kind))


def keep_authenticator() -> None:
    st.session_state.pop(CONFIRM_REMOVE, None)


def remove(authenticator_id: str, kind: str = "totp") -> None:
    status = config.service().remove_authenticator(session.callback_user(), authenticator_id,
                                                   keep_session=session.token())
    session.note_mfa_changed()
    if status.two_factor_enabled:
        session.flash("success", "The authenticator was removed. Your other authenticators and "
                                 "your backup codes still work; your other sessions were signed "
                                 "out.")
    else:
        backup_view.forget()
        what = "authentication app" if kind == "totp" else "passkey"
        session.flash("success", f"Your {what} was removed, and your backup codes with it: "
                                 "two-step verification is off.")


def start_rename(authenticator_id: str) -> None:
    status = _fresh()
    found = status.authenticator(authenticator_id) if status else None
    st.session_state.pop(CONFIRM_REMOVE, None)
    st.session_state.pop(RENAME_ERROR, None)
    if found is not None:
        st.session_state[RENAMING] = authenticator_id
        st.session_state[RENAME_TEXT] = found.label


def _stop_renaming() -> None:
    for key in (RENAMING, RENAME_TEXT, RENAME_ERROR):
        st.session_state.pop(key, None)


@session.unrestricted
def save_rename() -> None:
    authenticator_id = st.session_state.get(RENAMING)
    label = st.session_state.get(RENAME_TEXT) or ""
    status = _fresh() if authenticator_id else None
    found = status.authenticator(authenticator_id) if status else None
    if found is None:
        _stop_renaming()
        return
    reverify.sensitive("rename", f"rename {_quoted(found.label)}",
                      lambda: rename(authenticator_id, label))


def rename(authenticator_id: str, label: str) -> None:
    try:
        config.service().rename_authenticator(session.callback_user(), authenticator_id, label)
    except (mfa_core.InvalidLabel, mfa_core.UnknownAuthenticator) as err:
        st.session_state[RENAMING] = authenticator_id
        st.session_state[RENAME_TEXT] = label
        st.session_state[RENAME_ERROR] = enrollment.label_error(err, label)
        return
    _stop_renaming()
    session.flash("success", "The authenticator was renamed.")


def cancel_rename() -> None:
    _stop_renaming()


def done() -> None:
    backup_view.forget()


def take_goto_add() -> bool:
    return bool(st.session_state.pop(GOTO_ADD, None))


def activity_table(username: str, limit: int = ACTIVITY_LIMIT) -> str | None:
    """The user's recent security events as a Markdown table (None: no events yet)."""
    events = config.service().recent_activity(username, limit=limit)
    if not events:
        return None
    rows = ["| Time | Event | Outcome |", "|---|---|---|"]
    for event in events:
        rows.append(f"| {session.format_time(event.time)} | {_cell(event.label)} | "
                    f"{_cell(event.outcome.capitalize())} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def enabled_line(status: mfa_core.MFAStatus) -> str:
    """What signs the user in besides the password, in one line."""
    apps = sum(1 for a in status.authenticators if a.kind == "totp")
    passkeys = len(status.authenticators) - apps
    keys = f"{passkeys} passkey{'s' if passkeys != 1 else ''}"
    if not apps:
        return f"Two-step verification is on with {keys}."
    line = "TOTP via authentication app enabled"
    if apps > 1:
        line += f" ({apps} apps)"
    return line + (f", and {keys}: either one signs you in." if passkeys else ".")


def _authenticators_table(status: mfa_core.MFAStatus) -> None:
    """One row per authenticator: its name, kind, when added and last used; Rename, Remove."""
    if st.session_state.get(RENAMING) and status.authenticator(st.session_state[RENAMING]) is None:
        _stop_renaming()  # removed meanwhile (another tab, the helpdesk)
    names: dict[str, str] = {}
    for each in status.authenticators:
        # A screen reader lists every row's buttons: each says which authenticator it acts on.
        names[f"manage_rename_{each.id}"] = f"Rename \u201c{each.label}\u201d"
        names[f"manage_remove_{each.id}"] = f"Remove \u201c{each.label}\u201d"
        box = st.container(border=True)
        row = box.container(horizontal=True, vertical_alignment="center")
        used = (f"last used {session.format_time(each.last_used_at)}" if each.last_used_at
                else "not used yet")
        if st.session_state.get(RENAMING) == each.id:
            with row.form(f"manage_rename_form_{each.id}", border=False):
                st.text_input(f"New name for {plain(each.label)}", key=RENAME_TEXT,
                              label_visibility="visible")
                st.caption(enrollment.label_limit())
                buttons = st.container(horizontal=True)
                buttons.form_submit_button("Save", type="primary", on_click=save_rename)
                buttons.form_submit_button("Cancel", on_click=cancel_rename)
            if st.session_state.get(RENAME_ERROR):
                box.error(plain(st.session_state[RENAME_ERROR]))
            continue
        # The kind under the name, unless the name says it already ("Authentication app 2").
        kind = "" if each.label.lower().startswith(each.kind_words.lower()) else \
            f"{each.kind_words}  \n"
        row.markdown(f"**{plain(each.label)}**  \n{kind}Added "
                     f"{session.format_time(each.created_at)} · {used}", width="stretch")
        if session.restricted():  # a temporary pass only adds (S40): nothing to rename or remove
            continue
        actions = row.container(horizontal=True, width="content", horizontal_alignment="right")
        actions.button("Rename", key=f"manage_rename_{each.id}", on_click=start_rename,
                       args=(each.id,))
        actions.button("Remove", key=f"manage_remove_{each.id}", on_click=request_remove,
                       args=(each.id,))
        if st.session_state.get(CONFIRM_REMOVE) == each.id:
            _ask_remove(status, each)
    dom.button_names(names, "manage_authenticators")


def _ask_remove(status: mfa_core.MFAStatus, each: mfa_core.Authenticator) -> None:
    """"Remove …?" under its row: what goes, what keeps working, who is signed out."""
    if _only_one(status, each.id):
        what = "your authentication app" if each.kind == "totp" else "your passkey"
        st.warning(f"Remove {what}? {_quoted(each.label)} is your only "
                   "authenticator: signing in will then need only your password, and your "
                   f"backup codes stop working. {OTHERS_SIGNED_OUT}")
    else:
        st.warning(f"Remove {_quoted(each.label)}? It no longer signs you in; your other "
                   f"authenticators and your backup codes keep working. {OTHERS_SIGNED_OUT}")
    asked = st.container(horizontal=True)
    asked.button("Yes, remove it", key="manage_remove_confirm", type="primary",
                 on_click=confirm_remove, args=(each.id,))
    asked.button("Keep it", key="manage_remove_keep", on_click=keep_authenticator)


def render(user) -> None:
    """The Manage MFA page, for a user the guard let in."""
    if take_goto_add():
        st.switch_page(ADD_TOTP_PAGE)
    enrollment.forget_if_finished()
    if not backup_view.new_codes() and not passkey_view.naming():
        policy_gate.set_up_done()  # sent here by the rule and done: home
    status = session.status()

    st.title("User MFA Settings", anchor=False)
    if st.session_state.get(session.FACTOR_ADDED_UNDER_PASS) and status.authenticators:
        st.success("Your new authenticator is set up: the temporary pass is no longer needed. "
                   "If you lost your old phone or security key, remove it below with **Remove**.")

    st.header("Authenticators", anchor=False)
    if status.authenticators:
        st.write(enabled_line(status))
        _authenticators_table(status)
        apps = sum(1 for a in status.authenticators if a.kind == "totp")
        if not policy_gate.allows("totp"):
            st.caption(APPS_NOT_ALLOWED)
        elif apps >= MAX_TOTP_APPS:
            st.caption(f"You have {MAX_TOTP_APPS} authentication apps, the most an account may "
                       "have: remove one to add another.")
        else:
            st.button("Add another authentication app", key="manage_add", on_click=request_add)
    elif not policy_gate.allows("totp"):
        st.caption("Two-step verification is off: your password alone signs you in.")
        st.caption(APPS_NOT_ALLOWED)
    else:
        st.write("Add TOTP via authentication app")
        st.caption("Two-step verification is off: your password alone signs you in. Add an "
                   "authentication app (a 6-digit code that changes every 30 seconds) or a passkey.")
        st.button("Add", key="manage_add", type="primary", on_click=request_add)
    if policy_gate.allows("passkey"):
        passkey_view.render_add(primary=policy_gate.needs("passkey"))
    else:
        st.caption("Your organization does not allow passkeys for your account.")

    if status.two_factor_enabled and not session.restricted():
        st.header("Backup codes", anchor=False)
        left = status.backup_codes_remaining
        text = f"You have {left} backup code{'s' if left != 1 else ''} left."
        if left <= 3:
            st.warning(f"{text} Generate new ones so you are not locked out.")
        else:
            st.write(text)
        new_codes = backup_view.new_codes()
        if new_codes:
            st.write("Your new backup codes. They are shown only once: save them now. "
                     "Your old codes no longer work.")
            backup_view.show(new_codes, user.username)
            st.button("Done", key="manage_done", type="primary", on_click=done)
        else:
            backup_view.offer("manage_generate")

    reverify.verification_caption()

    sessions_view.render(user.username)

    st.header("Recent security activity", anchor=False)
    table = activity_table(user.username)
    if table:
        st.markdown(table)
    else:
        st.caption("No security events yet.")
