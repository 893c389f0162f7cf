"""The Manage MFA page's actions: each an on_click callback behind reverification."""

from __future__ import annotations

import streamlit as st

import mfa_core

from . import config, enrollment, session

NEW_CODES = "manage_new_codes"
GOTO_ADD = "manage_goto_add"
ACTIVITY_LIMIT = 10


def _user() -> str:
    user = session.current_username()
    if not user:
        raise mfa_core.NotEnabled("You are not signed in.")
    return user


def request_add() -> None:
    session.sensitive("add", "add an authentication app", _start_add)


def _start_add() -> None:
    enrollment.start()
    st.session_state[GOTO_ADD] = True


def request_remove() -> None:
    session.sensitive("remove", "remove your authentication app", remove)


def remove() -> None:
    config.service().disable_totp(_user())
    session.note_mfa_changed()
    st.session_state.pop(NEW_CODES, None)
    session.flash("success", "Your authentication app was removed, and your backup codes with it.")


def request_generate() -> None:
    session.sensitive("generate", "generate new backup codes", generate)


def generate() -> None:
    codes = config.service().create_backup_codes(_user()).codes
    st.session_state[NEW_CODES] = codes


def done() -> None:
    st.session_state.pop(NEW_CODES, None)


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


def codes_text(codes: list[str], username: str) -> str:
    """The .txt a user downloads: the codes, one a line, and what they are."""
    header = (f"MFA Portal backup codes for {username}\n"
              "Each code works once. Keep them somewhere safe.\n\n")
    return header + "\n".join(codes) + "\n"
