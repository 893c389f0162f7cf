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


def _forget() -> None:
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith("addtotp_"):
            del st.session_state[key]


def start() -> mfa_core.TOTPResource:
    """Add (a sensitive action): a new pending enrollment, step ``add``."""
    resource = config.service().create_totp(session.callback_user())
    _forget()
    st.session_state[STEP] = "add"
    return resource


def request_start() -> None:
    session.sensitive("add", "add an authentication app", start)


def request_reset() -> None:
    session.sensitive("add", "set up your authentication app with a new QR code", reset)


def reset() -> None:
    config.service().create_totp(session.callback_user())
    for key in (ERROR, QR, SHOW_URI):
        st.session_state.pop(key, None)
    st.session_state[STEP] = "add"


def forget_if_finished() -> None:
    """Leaving a finished set-up: the next visit starts afresh."""
    if st.session_state.get(STEP) == "success":
        _forget()


def page_state(username: str) -> tuple[str, mfa_core.TOTPResource | None]:
    """Which screen the Add TOTP page draws now, with the pending enrollment it shows.

    Starts a set-up when a visit needs one. The enrollment is read once per run.
    """
    step = st.session_state.get(STEP)
    if step in ("backupcodes", "success"):
        return step, None
    resource = config.service().pending_totp(username)
    if resource is not None:
        if step not in ("add", "verify"):
            st.session_state[STEP] = "add"
        return st.session_state[STEP], resource
    if step in ("add", "verify"):
        return EXPIRED, None
    if session.status().totp_enabled:
        return ENABLED, None
    if session.verification_remaining() > 0:
        return "add", start()
    if not st.session_state.get(ASKED):
        # Ask once per visit; after a dismissal the page offers a button instead.
        st.session_state[ASKED] = True
        request_start()
        session.open_pending_dialog()
    return VERIFY_FIRST, None


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
    if not session.second_factor_passed():  # callbacks run before the guard
        return
    typed = st.session_state.get(CODE) or ""
    st.session_state[CODE] = ""
    svc = config.service()
    user = session.callback_user()
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
    if not session.second_factor_passed():
        return
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


def render(user) -> None:
    """The Add TOTP page, for a user the guard let in."""
    from . import manage, signin

    state, resource = page_state(user.username)
    if state == VERIFY_FIRST:
        st.title("Add TOTP MFA")
        st.write("Verify it's you before you set up an authentication app.")
        st.button("Verify it's you", key="addtotp_start", type="primary", on_click=request_start)
    elif state == ENABLED:
        st.title("Add TOTP MFA")
        st.info("TOTP via authentication app enabled. To set up a different app, remove this one "
                "on Manage MFA first.")
    elif state == EXPIRED:
        st.title("Add TOTP MFA")
        st.error("This set-up took too long and has expired. Press Reset to get a new QR code.")
        st.button("Reset", key="addtotp_reset", on_click=request_reset)
    elif state in ("add", "verify"):
        if state == "add":
            _render_add(resource)
        else:
            _render_verify()
        minutes = max(0, int(resource.expires_at - config.service().clock()) // 60)
        st.caption(f"This set-up expires in about {minutes} min; Reset starts a new one.")
    elif state == "backupcodes":
        _render_backup_codes(user, manage.codes_text)
    else:  # success
        st.title("Success!")
        st.write("You have successfully added TOTP MFA via an authentication application.")
    signin.page_link(signin.MANAGE_PAGE, "Manage MFA", ":material/arrow_back:")


def _render_add(resource: mfa_core.TOTPResource) -> None:
    st.title("Add TOTP MFA")
    apps = "(Google Authenticator, Microsoft Authenticator, 1Password, …)"
    if st.session_state.get(SHOW_URI):
        st.write(f"Open this link on the device with your authentication app {apps}, "
                 "or paste it into the app:")
        st.code(resource.uri, language=None, wrap_lines=True)
        st.button("Use QR Code instead", key="addtotp_toggle", on_click=toggle_uri)
    else:
        st.write(f"Scan this QR code with your authentication app {apps}.")
        st.image(qr_for(resource), width=200, output_format="PNG")
        st.button("Use URI instead", key="addtotp_toggle", on_click=toggle_uri)
    st.write("Can't scan it? Enter this key in your app by hand:")
    st.code(resource.grouped_secret, language=None)
    st.write("Once you have set up your authentication app, verify your code")
    row = st.container(horizontal=True)
    row.button("Verify", key="addtotp_verify", type="primary", on_click=go_verify)
    row.button("Reset", key="addtotp_reset", on_click=request_reset)


def _render_verify() -> None:
    st.title("Verify TOTP")
    with st.form("addtotp_verify_form", border=False):
        st.text_input("Enter the code from your authentication app", key=CODE,
                      autocomplete="one-time-code", max_chars=12)
        st.form_submit_button("Verify code", type="primary", on_click=submit_code)
    error = st.session_state.get(ERROR)
    if error:
        st.error(error)
    row = st.container(horizontal=True)
    row.button("Show the QR code again", key="addtotp_back", on_click=back_to_code)
    row.button("Reset", key="addtotp_reset", on_click=request_reset)


def _render_backup_codes(user, codes_text) -> None:
    shown = codes()
    st.title("Verification was a success!")
    st.write("Save this list of backup codes somewhere safe in case you need to access your "
             "account in an emergency")
    st.code("\n".join(shown), language=None)
    st.download_button("Download backup codes", codes_text(shown, user.username),
                       file_name="mfa-portal-backup-codes.txt", mime="text/plain",
                       key="addtotp_download", on_click="ignore", icon=":material/download:")
    with st.form("addtotp_finish_form", border=False):
        st.text_input("To show you saved them, type one of the backup codes", key=CONFIRM,
                      autocomplete="off", max_chars=40)
        st.form_submit_button("Finish", type="primary", on_click=finish)
    error = st.session_state.get(CONFIRM_ERROR)
    if error:
        st.error(error)
