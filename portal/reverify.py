"""Reverification: **Verify it's you** before a sensitive action, unless the session verified in the last 10 minutes.

``sensitive(action, label, run)`` runs ``run`` at once inside the window, or
keeps it pending and opens the dialog (on the next run: Streamlit cannot open
a dialog from a callback), which asks for the strongest factor the user has
(authentication code or backup code, else the password) through the engine,
then runs the action. The session's state keys are ``portal.session``'s.
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

import mfa_core

from . import config, focus, passkey_ceremony
from .code_field import code_form
from .session import (DIALOG_OPEN, PENDING, PENDING_RUN, REVERIFY_BACKUP, REVERIFY_DONE,
                      REVERIFY_ERROR, REVERIFY_WINDOW, VERIFIED_AT, client_source, current_username,
                      PASS_REFUSED, RESTRICTED, backup_codes_left_message, flash, now, record_verification,
                      still_trusted)

# What a session that passed with a temporary pass may do: add a factor (S40).
UNDER_PASS = ("add", "add_passkey")


def verification_remaining() -> int:
    """Whole seconds the last verification still covers sensitive actions (0: none)."""
    at = st.session_state.get(VERIFIED_AT)
    if at is None:
        return 0
    return max(0, int(at + REVERIFY_WINDOW - now()))


def verification_caption() -> None:
    left = verification_remaining()
    if left:
        minutes = -(-left // 60)
        st.caption(f"You verified it's you recently: changes need no code for another "
                   f"{minutes} min ({left} s).")
    else:
        st.caption("Changes to your two-step verification will ask you to verify it's you.")


def sensitive(action: str, label: str, run: Callable[[], Any]) -> None:
    """Run ``run()`` now if verified within 10 minutes, else after the dialog succeeds.

    ``label`` completes "To …, enter …" in the dialog, as markdown: people's
    text in it (a name) goes through ``display.plain`` first.

    Meant for ``on_click`` callbacks: the dialog itself opens on the next run
    (the guard opens it; Streamlit cannot open a dialog from a callback).
    Callbacks run before the page's guard, so a session that has not passed
    the second factor, or whose user's MFA changed elsewhere, is ignored here
    (the guard then asks it to verify again).
    """
    if not still_trusted():
        return
    if st.session_state.get(RESTRICTED):
        # A temporary pass: it counts as the verification for adding a factor, for nothing else.
        if action in UNDER_PASS:
            _run_action(run)
        else:
            flash("error", PASS_REFUSED)
        return
    if verification_remaining() > 0:
        _run_action(run)
        return
    st.session_state[PENDING] = {"action": action, "label": label}
    st.session_state[PENDING_RUN] = run
    st.session_state.pop(REVERIFY_ERROR, None)
    st.session_state.pop(REVERIFY_BACKUP, None)


def pending_action() -> str | None:
    pending = st.session_state.get(PENDING)
    return pending["action"] if pending else None


def _run_action(run: Callable[[], Any]) -> None:
    try:
        run()
    except mfa_core.MFAError as err:
        flash("error", str(err))


def drop_pending() -> None:
    for key in (PENDING, PENDING_RUN, REVERIFY_ERROR, REVERIFY_BACKUP, REVERIFY_APP):
        st.session_state.pop(key, None)
    passkey_ceremony.clear(passkey_ceremony.REVERIFY)


def dismiss_pending() -> None:
    drop_pending()


def open_pending_dialog() -> None:
    """Open the **Verify it's you** dialog if an action waits (once per run)."""
    if st.session_state.get(PENDING) and not st.session_state.get(DIALOG_OPEN):
        st.session_state[DIALOG_OPEN] = True
        _reverify_dialog()


REVERIFY_APP = "portal_reverify_app"  # the user chose a code from the app over their passkey


def _status() -> mfa_core.MFAStatus | None:
    user = current_username()
    return config.service().status(user) if user else None


def _reverify_code_key(mode: str) -> str:
    return f"portal_reverify_{mode}"


def _reverify_mode(status: mfa_core.MFAStatus | None = None) -> str:
    """The factor the dialog asks for: a passkey first, then the app, a backup code, the password."""
    status = status or _status()
    if status is None or not status.two_factor_enabled:
        return "password"
    if st.session_state.get(REVERIFY_BACKUP):
        return "backup_code"
    if (passkey_ceremony.has_passkey(status) and not st.session_state.get(REVERIFY_APP)
            and passkey_ceremony.available()):
        return "passkey"
    return "totp" if status.totp_enabled else "backup_code"


def confirm_reverification() -> None:
    """The dialog's Confirm: check the strongest factor, then run the pending action."""
    user = current_username()
    pending = st.session_state.get(PENDING)
    if not user or not pending or not still_trusted():
        return
    mode = _reverify_mode()
    if mode == "passkey":
        return
    key = _reverify_code_key(mode)
    typed = st.session_state.get(key) or ""
    st.session_state[key] = ""
    svc = config.service()
    try:
        if mode == "password":
            svc.attempt_password(user, typed, source=client_source())
            remaining = None
        else:
            remaining = svc.attempt_second_factor(user, typed, mode,
                                                  source=client_source()).backup_codes_remaining
    except mfa_core.InvalidCode as err:
        # The user is signed in: no name to hide, so say plainly what was wrong.
        st.session_state[REVERIFY_ERROR] = ("That password is not correct." if mode == "password"
                                            else str(err))
        return
    except mfa_core.MFAError as err:
        st.session_state[REVERIFY_ERROR] = str(err)
        return
    _verified(mode, remaining)


def _passkey_answered(response: str) -> None:
    """The browser answered the dialog's passkey request: the engine checks it, then the action runs."""
    if not current_username() or not st.session_state.get(PENDING) or not still_trusted():
        return
    if passkey_ceremony.attempt(passkey_ceremony.REVERIFY, response) is not None:
        _verified("passkey", None)


def _verified(mode: str, remaining: int | None) -> None:
    """A factor was checked: record the verification, then run the pending action."""
    record_verification()
    if mode == "backup_code" and remaining is not None:
        flash(*backup_codes_left_message(remaining))
    run = st.session_state.get(PENDING_RUN)
    drop_pending()
    st.session_state[REVERIFY_DONE] = True
    if run is not None:
        _run_action(run)


def _toggle_backup() -> None:
    st.session_state[REVERIFY_BACKUP] = not st.session_state.get(REVERIFY_BACKUP)
    st.session_state.pop(REVERIFY_APP, None)
    _switched()


def _use_app() -> None:
    st.session_state[REVERIFY_APP] = True
    st.session_state.pop(REVERIFY_BACKUP, None)
    _switched()


def _use_passkey() -> None:
    st.session_state.pop(REVERIFY_APP, None)
    st.session_state.pop(REVERIFY_BACKUP, None)
    _switched()


def _switched() -> None:
    st.session_state.pop(REVERIFY_ERROR, None)
    passkey_ceremony.clear(passkey_ceremony.REVERIFY)


@st.dialog("Verify it's you", on_dismiss=dismiss_pending)
def _reverify_dialog() -> None:
    if st.session_state.pop(REVERIFY_DONE, None):
        st.rerun()  # the action ran: a full rerun closes the dialog and shows its result
    pending = st.session_state.get(PENDING)
    if not pending:
        st.rerun()
    status = _status()
    mode = _reverify_mode(status)
    if mode == "passkey":
        st.write(f"To {pending['label']}, use your passkey.")
        st.button("Use a passkey", key="portal_reverify_passkey", type="primary",
                  on_click=passkey_ceremony.start, args=(passkey_ceremony.REVERIFY,))
        passkey_ceremony.run(passkey_ceremony.REVERIFY, _passkey_answered)
    else:
        _code_form(pending, mode)
    error = st.session_state.get(REVERIFY_ERROR)
    if error:
        st.error(error)
    if mode != "password":
        passkey = passkey_ceremony.has_passkey(status) and passkey_ceremony.available()
        others = []
        if mode != "passkey" and passkey:
            others.append(("Use a passkey", _use_passkey))
        if mode != "totp" and status.totp_enabled:
            others.append(("Use your authentication app", _use_app))
        if mode != "backup_code":
            others.append(("Use a backup code", _toggle_backup))
        for i, (text, switch) in enumerate(others):
            st.button(text, key=f"portal_reverify_toggle_{i}", on_click=switch)
    st.button("Cancel", key="portal_reverify_cancel", on_click=dismiss_pending)


def _code_form(pending: dict, mode: str) -> None:
    if mode == "password":
        st.write(f"To {pending['label']}, enter your password.")
        label = "Password"
    elif mode == "backup_code":
        st.write(f"To {pending['label']}, enter one of your backup codes.")
        label = "Backup code"
    else:
        st.write(f"To {pending['label']}, enter the code from your authentication app.")
        label = "Authentication code"
    if mode == "password":
        with st.form("portal_reverify_form", border=False):
            st.text_input(label, key=_reverify_code_key(mode), type="password",
                          autocomplete="current-password")
            st.form_submit_button("Confirm", type="primary", on_click=confirm_reverification)
        focus.field(label)
    else:
        code_form("portal_reverify_form", label, _reverify_code_key(mode), button="Confirm",
                  on_click=confirm_reverification, backup=mode == "backup_code")
