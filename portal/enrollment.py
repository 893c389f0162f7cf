"""The Add TOTP step machine (add → verify → backupcodes → success) in ``addtotp_`` keys.

The pending enrollment lives in the engine (``create_totp`` / ``pending_totp``):
a rerun, a page switch or a widget click shows the same secret; only Add and
Reset make a new one, and both need a recent verification.
"""

from __future__ import annotations

import streamlit as st

import mfa_core
from mfa_core.backup_codes import same_code

from . import config, session
from .qr import qr_png

STEP = "addtotp_step"
SHOW_URI = "addtotp_show_uri"
CODE = "addtotp_code"
ERROR = "addtotp_error"
CODES = "addtotp_codes"
CONFIRM = "addtotp_confirm"
CONFIRM_ERROR = "addtotp_confirm_error"
QR = "addtotp_qr"
ASKED = "addtotp_asked"

STEPS = ("add", "verify", "backupcodes", "success")
# What the page shows besides the four steps.
ENABLED = "enabled"          # an authenticator is already set up
EXPIRED = "expired"          # the pending enrollment expired (or was removed elsewhere)
VERIFY_FIRST = "verify_first"  # a new set-up waits for reverification


def _user() -> str:
    user = session.current_username()
    if not user:
        raise mfa_core.NotEnabled("You are not signed in.")
    return user


def _forget() -> None:
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith("addtotp_"):
            del st.session_state[key]


def start() -> None:
    """Add (a sensitive action): a new pending enrollment, step ``add``."""
    config.service().create_totp(_user())
    _forget()
    st.session_state[STEP] = "add"


def request_start() -> None:
    session.sensitive("add", "add an authentication app", start)


def request_reset() -> None:
    session.sensitive("add", "set up your authentication app with a new QR code", reset)


def reset() -> None:
    config.service().create_totp(_user())
    for key in (ERROR, QR, SHOW_URI):
        st.session_state.pop(key, None)
    st.session_state[STEP] = "add"


def forget_if_finished() -> None:
    """Leaving a finished set-up: the next visit starts afresh."""
    if st.session_state.get(STEP) == "success":
        _forget()


def page_state(username: str) -> str:
    """Which screen the Add TOTP page draws now; starts a set-up when a visit needs one."""
    step = st.session_state.get(STEP)
    if step in ("backupcodes", "success"):
        return step
    svc = config.service()
    if svc.pending_totp(username) is not None:
        if step not in ("add", "verify"):
            st.session_state[STEP] = "add"
        return st.session_state[STEP]
    if step in ("add", "verify"):
        return EXPIRED
    if svc.status(username).totp_enabled:
        return ENABLED
    if session.verification_remaining() > 0:
        start()
        return "add"
    if not st.session_state.get(ASKED):
        # Ask once per visit; after a dismissal the page offers a button instead.
        st.session_state[ASKED] = True
        request_start()
        session.open_pending_dialog()
    return VERIFY_FIRST


def pending(username: str) -> mfa_core.TOTPResource | None:
    return config.service().pending_totp(username)


def qr_for(resource: mfa_core.TOTPResource) -> bytes:
    """The QR PNG of the pending URI, drawn once per secret (kept in this session only)."""
    cached = st.session_state.get(QR)
    if cached and cached[0] == resource.uri:
        return cached[1]
    png = qr_png(resource.uri)
    st.session_state[QR] = (resource.uri, png)
    return png


def toggle_uri() -> None:
    st.session_state[SHOW_URI] = not st.session_state.get(SHOW_URI)


def go_verify() -> None:
    st.session_state[STEP] = "verify"
    st.session_state.pop(ERROR, None)


def back_to_code() -> None:
    st.session_state[STEP] = "add"
    st.session_state.pop(ERROR, None)


def submit_code() -> None:
    """Verify code: enable the authenticator, then make the first backup codes."""
    typed = st.session_state.get(CODE) or ""
    st.session_state[CODE] = ""
    svc = config.service()
    user = _user()
    try:
        svc.verify_totp(user, typed)
    except mfa_core.MFAError as err:
        st.session_state[ERROR] = str(err)
        return
    session.note_mfa_changed()
    session.record_verification()  # a code from the new authenticator proves it's them
    st.session_state.pop(ERROR, None)
    st.session_state.pop(QR, None)
    try:
        st.session_state[CODES] = svc.create_backup_codes(user).codes
    except mfa_core.MFAError as err:
        session.flash("error", f"Your authentication app is set up, but backup codes could not be "
                               f"made: {err} Generate them on Manage MFA.")
        st.session_state[STEP] = "success"
        return
    st.session_state[STEP] = "backupcodes"


def finish() -> None:
    """Finish: the user types one saved code back (nothing is used up)."""
    typed = st.session_state.get(CONFIRM) or ""
    codes = st.session_state.get(CODES) or []
    if any(same_code(typed, code) for code in codes):
        st.session_state[STEP] = "success"
        for key in (CODES, CONFIRM, CONFIRM_ERROR):
            st.session_state.pop(key, None)
        return
    st.session_state[CONFIRM_ERROR] = ("That is not one of the codes above. Type one of them "
                                       "to show you saved them.")


def codes() -> list[str]:
    return list(st.session_state.get(CODES) or [])
