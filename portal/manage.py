"""The Manage MFA page's actions: each an on_click callback behind reverification."""

from __future__ import annotations

import streamlit as st

from . import backup_view, config, enrollment, passkey_view, session, sessions_view
from .navigation import ADD_TOTP_PAGE

CONFIRM_REMOVE = "manage_confirm_remove"
GOTO_ADD = "manage_goto_add"
ACTIVITY_LIMIT = 10


def request_add() -> None:
    session.sensitive("add", "add an authentication app", _start_add)


def _start_add() -> None:
    enrollment.start()
    st.session_state[GOTO_ADD] = True


def request_remove() -> None:
    """Remove: asked once, either here or by the Verify it's you dialog.

    Inside the verification window nothing else would stand between a stray
    click and an account without its second factor, so the page asks first.
    """
    if session.verification_remaining() > 0:
        st.session_state[CONFIRM_REMOVE] = True
    else:
        confirm_remove()


def confirm_remove() -> None:
    st.session_state.pop(CONFIRM_REMOVE, None)
    session.sensitive("remove", "remove your authentication app", remove)


def keep_authenticator() -> None:
    st.session_state.pop(CONFIRM_REMOVE, None)


def remove() -> None:
    config.service().disable_totp(session.callback_user(), keep_session=session.token())
    session.note_mfa_changed()
    backup_view.forget()
    session.flash("success", "Your authentication app was removed, and your backup codes with it.")


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


def render(user) -> None:
    """The Manage MFA page, for a user the guard let in."""
    if take_goto_add():
        st.switch_page(ADD_TOTP_PAGE)
    enrollment.forget_if_finished()
    status = session.status()

    st.title("User MFA Settings")

    st.header("Authentication app")
    if status.totp_enabled:
        st.write("TOTP via authentication app enabled")
        if st.session_state.get(CONFIRM_REMOVE):
            st.warning("Remove your authentication app? Signing in will then need only your "
                       "password, and your backup codes stop working.")
            row = st.container(horizontal=True)
            row.button("Yes, remove it", key="manage_remove_confirm", type="primary",
                       on_click=confirm_remove)
            row.button("Keep it", key="manage_remove_keep", on_click=keep_authenticator)
        else:
            st.button("Remove", key="manage_remove", on_click=request_remove)
    else:
        st.write("Add TOTP via authentication app")
        st.button("Add", key="manage_add", type="primary", on_click=request_add)
    passkey_view.render_add()

    if status.two_factor_enabled:
        st.header("Backup codes")
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

    session.verification_caption()

    sessions_view.render(user.username)

    st.header("Recent security activity")
    table = activity_table(user.username)
    if table:
        st.markdown(table)
    else:
        st.caption("No security events yet.")
