"""**Add a passkey** on Manage MFA: behind reverification, the browser's ceremony, then the passkey's name.

The ceremony itself (the component, its errors, the engine's two halves) is
``passkey_ceremony``'s, shared with the sign-in and the reverification dialog;
this module adds what only adding a passkey does: the reverification before
it, the name field, and backup codes when two-step has just turned on. The
state lives under ``portal_passkey_`` keys of the page session.
"""

from __future__ import annotations

import streamlit as st

import mfa_core

from . import backup_view, config, reverify, session
from .display import plain
from .passkey_ceremony import ADD, CANNOT_CHECK, available, clear, run, set_error, start

NEW = "portal_passkey_new"          # {"response": json} of a created passkey waiting for its name
NAME = "portal_passkey_new_name"    # the name field, prefilled from the authenticator


@session.guarded
def request_add() -> None:
    """**Add a passkey**: behind reverification, then the browser creates the passkey."""
    clear(ADD)
    forget_new()
    reverify.sensitive("add_passkey", "add a passkey", lambda: start(ADD))


def _created(response: str) -> None:
    """The browser made a passkey: ask for its name (prefilled) before the engine checks and keeps it."""
    user = session.current_username()
    try:
        label = config.service().suggest_passkey_label(user, response)
    except (mfa_core.MFAError, TypeError, ValueError):
        label = "Passkey"
    st.session_state[NEW] = {"response": response}
    st.session_state[NAME] = label


def naming() -> bool:
    """A created passkey waits for its name (Save passkey not pressed yet)."""
    return bool(st.session_state.get(NEW))


def forget_new() -> None:
    st.session_state.pop(NEW, None)
    st.session_state.pop(NAME, None)


@session.guarded
def save_new() -> None:
    """**Save passkey**: the engine checks the answer and adds the passkey under the name typed."""
    new = st.session_state.get(NEW)
    user = session.current_username()
    if not new or not user or not session.still_trusted():
        return
    svc = config.service()
    try:
        was_on = svc.status(user).two_factor_enabled
        added = svc.finish_passkey_registration(user, new["response"], session=session.token(),
                                                label=st.session_state.get(NAME) or "")
    except mfa_core.InvalidLabel as err:  # the name only: the passkey waits for another one
        set_error(ADD, str(err))
        return
    except mfa_core.MFAError as err:
        forget_new()
        set_error(ADD, str(err))
        return
    except (TypeError, ValueError):
        forget_new()
        set_error(ADD, CANNOT_CHECK)
        return
    forget_new()
    clear(ADD)
    session.note_mfa_changed()
    session.flash("success", f"Passkey \u201c{plain(added.label)}\u201d added.")
    if not was_on:
        # Two-step just turned on: backup codes, as after the first authentication app.
        try:
            backup_view.keep(svc.create_backup_codes(user).codes)
        except mfa_core.MFAError as err:
            session.flash("error", str(err))
        else:
            session.flash("info", "Two-step verification is on. Save your backup codes below: "
                                  "they are shown only once.")


def render_add(*, primary: bool = False) -> None:
    """Manage MFA's passkey section: **Add a passkey**, the ceremony, then the name of the new passkey.
    ``primary``: the button is the page's main action (the organization's rule asks for one)."""
    if not available():
        st.caption("Passkeys are not set up on this portal.")
        return
    new = st.session_state.get(NEW)
    if new:
        st.write("Your browser created the passkey. Give it a name you will recognise, then save it.")
        with st.form("portal_passkey_name_form", border=False):
            st.text_input("Passkey name", key=NAME, max_chars=40)
            st.form_submit_button("Save passkey", type="primary", on_click=save_new)
        st.button("Cancel", key="portal_passkey_cancel", on_click=forget_new)
    else:
        st.button("Add a passkey", key="manage_add_passkey", on_click=request_add,
                  type="primary" if primary else "secondary")
    run(ADD, _created)
