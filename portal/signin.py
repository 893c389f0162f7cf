"""The sign-in gate: password, then the second factor, then the page.

The password is checked by the engine (``attempt_password``: throttle,
bcrypt, outcome and audit in one transaction) in the Login button's callback
(callbacks run before the script, so a rerun forced by a component cannot
drop the click). streamlit-authenticator's cookie component is mounted only
to set or delete the remember-me cookie (each mount reruns the page once). Cookies are read by us, not the library: forged
ones are refused, expiry follows the portal's clock, cookies revoked at
sign-out are refused, and a cookie never skips the second factor.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import jwt
import streamlit as st
import streamlit_authenticator as stauth

import mfa_core
import mfa_core.service
from mfa_core.users import DEMO_USERS, User

from . import config, session, users
from .navigation import (ADD_TOTP_PAGE, HELPDESK_PAGE, HOME_PAGE,  # noqa: F401 (re-exported)
                         MANAGE_PAGE, page_link, sidebar)

WRONG_PASSWORD = mfa_core.service.WRONG_PASSWORD
LOGIN_ERROR = "portal_login_error"
CHALLENGE_ERROR = "portal_challenge_error"
CHALLENGE_BACKUP = "portal_challenge_backup"
SIGNED_OUT = "portal_signed_out"
DELETE_COOKIE = "portal_delete_cookie"
COOKIE_DUE = "portal_cookie_due"       # a password was just accepted: set the cookie once
LOGIN_FORM = "portal_login"
LOGIN_USERNAME = "portal_login_username"
LOGIN_PASSWORD = "portal_login_password"
COOKIE_CHECKED = "portal_cookie_checked"
PASSWORD_AT = "portal_password_at"
_HIDE_COOKIE_FRAMES = ("<style>.st-key-init, .st-key-set, .st-key-delete "
                       "{position: absolute; width: 0; height: 0; overflow: hidden;}</style>")
_LIBRARY_KEYS = ("name", "username", "authentication_status", "email", "roles")


# -- the guard -----------------------------------------------------------------

def require_user(page_title: str | None = None, *, home: bool = False) -> User:
    """The signed-in user past the second factor, or the sign-in screen and ``st.stop()``."""
    if page_title:
        st.set_page_config(page_title=f"{page_title} · MFA Portal", page_icon=":material/lock:")
    session.begin_run()
    try:
        portal = config.portal()
    except mfa_core.MFAError as err:
        st.error(str(err))
        st.stop()
    if session.current_username() is None:
        _restore_from_cookie(portal)
    username = session.current_username()
    user = users.lookup(portal, username) if username else None
    if username and user is None:  # removed from the directory meanwhile
        session.clear()
        _reset_library_state()
    if user is None:
        _password_screen(portal, home=home)  # stops the script
    if st.session_state.pop(COOKIE_DUE, None):
        _set_cookie(portal, user.username)  # once, the run after the password
    try:
        status = portal.service.status(user.username)
        if (st.session_state.get(session.VIA) == "cookie" and st.session_state.get(session.COOKIE)
                and portal.service.is_token_revoked(user.username,
                                                    st.session_state[session.COOKIE]["fp"])):
            _end_session(portal, revoke=False)
            session.flash("info", "You were signed out on another device. Sign in again.")
            st.rerun()
    except mfa_core.MFAError as err:
        st.error(str(err))
        st.stop()
    st.session_state[session.STATUS] = status
    session.check_epoch(status)
    if not session.second_factor_passed():
        if status.two_factor_enabled:
            _challenge_screen(portal, user)
            st.stop()
        # No second factor exists: the password (if typed, not a cookie) was the
        # strongest factor, and it counts as a verification from when it was typed.
        session.pass_second_factor(status.mfa_epoch, verified=False)
        password_at = st.session_state.pop(PASSWORD_AT, None)
        if password_at is not None:
            st.session_state[session.VERIFIED_AT] = password_at
    sidebar(user, sign_out)
    session.show_flashes()
    session.open_pending_dialog()
    return user


def require_admin(page_title: str | None = None) -> User:
    """``require_user``, then only helpdesk admins get further."""
    user = require_user(page_title)
    if not user.is_admin:
        st.error("This page is for helpdesk admins.")
        page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
        st.stop()
    return user


# -- the password screen ---------------------------------------------------------

def _password_screen(portal: config.Portal, *, home: bool) -> None:
    """The sign-in form; never returns (the Login button's callback signs in)."""
    _reset_library_state()
    st.title("MFA Portal")
    if not home:
        st.warning("You must be logged in to access this page")
    session.show_flashes(keep=True)
    if not users.entries(portal):
        st.info("No users exist yet. An administrator adds them with "
                "`mfa-portal users add USERNAME` (or `python -m mfa_core.cli users add`).")
    elif portal.demo:
        creds = ", ".join(f"`{u}` / `{p}`" for u, p, *_ in DEMO_USERS)
        st.info(f"**Demo mode.** These demo users were created for you: {creds} "
                "(`admin` is a helpdesk admin).", icon=":material/info:")
    # Our own form, so that the password is checked in the button's
    # callback: a callback runs before the script, so a rerun that a
    # component's report forces mid-run can no longer drop the click.
    with st.form(LOGIN_FORM):
        st.subheader("Sign in")
        st.text_input("Username", key=LOGIN_USERNAME, autocomplete="username")
        st.text_input("Password", key=LOGIN_PASSWORD, type="password",
                      autocomplete="current-password")
        st.form_submit_button("Login", on_click=_submit_password)
    error = st.session_state.pop(LOGIN_ERROR, None)
    if error:
        st.error(error)
    if st.session_state.pop(DELETE_COOKIE, None):
        _cookie_command(portal, "delete")
    st.stop()


def _submit_password() -> None:
    """**Login**: the engine checks the password, its throttle and audit in one transaction."""
    # As streamlit-authenticator's form did: usernames are lower case, blanks around ignored.
    username = (st.session_state.get(LOGIN_USERNAME) or "").strip().lower()
    password = st.session_state.get(LOGIN_PASSWORD) or ""
    st.session_state[LOGIN_PASSWORD] = ""  # never kept in the session
    if not username or not password.strip():
        st.session_state[LOGIN_ERROR] = "Enter your username and password."
        return
    portal = config.portal()
    try:
        portal.service.attempt_password(username, password, source=session.client_source())
    except mfa_core.MFAError as err:
        st.session_state[LOGIN_ERROR] = str(err)
        return
    except (TypeError, ValueError):  # a name no user can have: the same answer as a wrong password
        st.session_state[LOGIN_ERROR] = WRONG_PASSWORD
        return
    # Start the portal's session here, in the callback, before the script
    # runs: a component reporting back can interrupt the run at its next
    # st.* call, and the rerun must find the accepted password.
    session.start(username, "password")
    st.session_state[PASSWORD_AT] = portal.service.clock()
    st.session_state[COOKIE_DUE] = True
    _reset_library_state()


def _cookie_command(portal: config.Portal, command: str, token: str | None = None,
                    expires: float | None = None) -> None:
    """Set or delete the remember-me cookie in the browser (a component; reruns once).

    Drawn only on sign-in screens and after the form, so its report cannot
    interrupt anything a person clicked.
    """
    st.html(_HIDE_COOKIE_FRAMES)  # invisible iframes: keep them out of the layout
    try:
        auth = stauth.Authenticate({"usernames": {}}, config.COOKIE_NAME, portal.cookie_key,
                                   config.COOKIE_EXPIRY_DAYS, auto_hash=False, login_sleep_time=0)
        manager = auth.cookie_controller.cookie_model.cookie_manager
        if command == "set":
            manager.set(config.COOKIE_NAME, token, expires_at=dt.datetime.fromtimestamp(expires))
        else:
            manager.delete(config.COOKIE_NAME)
    except Exception:  # the browser may not hold the cookie; no cookie is only a missed convenience
        pass


def _reset_library_state() -> None:
    for key in _LIBRARY_KEYS:
        st.session_state[key] = None


# -- the remember-me cookie ------------------------------------------------------

def read_cookie() -> str | None:
    """The raw remember-me cookie of this browser session (tests patch this one read)."""
    try:
        value = st.context.cookies.get(config.COOKIE_NAME)
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def decode_cookie(portal: config.Portal, token: str) -> tuple[str, float] | None:
    """(username, expiry) of a genuine, unexpired, unrevoked cookie; None for anything else."""
    try:
        data = jwt.decode(token, portal.cookie_key, algorithms=["HS256"])
        username, expires = data["username"], float(data["exp_date"])
    except Exception:  # forged, tampered, alg=none, malformed, expired 'exp' claim …
        return None
    if not isinstance(username, str) or not expires > portal.service.clock():
        return None
    if users.lookup(portal, username) is None:
        return None
    try:
        if portal.service.is_token_revoked(username, fingerprint(token)):
            return None
    except (mfa_core.MFAError, ValueError, TypeError):
        return None
    return username, expires


def _restore_from_cookie(portal: config.Portal) -> None:
    """Sign in from the cookie at most once per session; never past the second factor."""
    if st.session_state.get(SIGNED_OUT) or st.session_state.get(COOKIE_CHECKED):
        return
    st.session_state[COOKIE_CHECKED] = True
    token = read_cookie()
    if not token:
        return
    found = decode_cookie(portal, token)
    if found is None:
        st.session_state[DELETE_COOKIE] = True  # a refused cookie is removed from the browser
        return
    username, expires = found
    session.start(username, "cookie", cookie={"fp": fingerprint(token), "exp": expires})


def _set_cookie(portal: config.Portal, username: str) -> None:
    expires = portal.service.clock() + config.COOKIE_EXPIRY_DAYS * 86400
    token = jwt.encode({"username": username, "exp_date": expires}, portal.cookie_key,
                       algorithm="HS256")
    st.session_state[session.COOKIE] = {"fp": fingerprint(token), "exp": expires}
    _cookie_command(portal, "set", token, expires)


# -- the second factor -----------------------------------------------------------

def _challenge_key() -> str:
    return "portal_challenge_backup_code" if st.session_state.get(CHALLENGE_BACKUP) else \
        "portal_challenge_code"


def _challenge_screen(portal: config.Portal, user: User) -> None:
    backup = bool(st.session_state.get(CHALLENGE_BACKUP))
    st.title("Two-step verification")
    session.show_flashes()
    if backup:
        st.write("Enter one of the backup codes you saved when you set up two-step verification.")
    else:
        st.write(f"Open your authentication app and enter the 6-digit code for "
                 f"**{portal.service.issuer}** ({user.username}).")
    with st.form("portal_challenge_form", border=False):
        st.text_input("Backup code" if backup else "Authentication code", key=_challenge_key(),
                      autocomplete="off" if backup else "one-time-code",
                      max_chars=40 if backup else 12)
        st.form_submit_button("Continue", type="primary", on_click=_submit_challenge)
    error = st.session_state.get(CHALLENGE_ERROR)
    if error:
        st.error(error)
    row = st.container(horizontal=True)
    row.button("Use your authentication app" if backup else "Use a backup code",
                key="portal_challenge_toggle", on_click=_toggle_challenge)
    row.button("Sign out", key="portal_challenge_sign_out", on_click=sign_out)


def _toggle_challenge() -> None:
    st.session_state[CHALLENGE_BACKUP] = not st.session_state.get(CHALLENGE_BACKUP)
    st.session_state.pop(CHALLENGE_ERROR, None)


def _submit_challenge() -> None:
    user = session.current_username()
    if not user:
        return
    key = _challenge_key()
    strategy = "backup_code" if st.session_state.get(CHALLENGE_BACKUP) else "totp"
    typed = st.session_state.get(key) or ""
    st.session_state[key] = ""
    svc = config.service()
    try:
        result = svc.attempt_second_factor(user, typed, strategy, source=session.client_source())
        epoch = svc.status(user).mfa_epoch
    except mfa_core.MFAError as err:
        st.session_state[CHALLENGE_ERROR] = str(err)
        return
    except (TypeError, ValueError):
        st.session_state[CHALLENGE_ERROR] = "That code cannot be checked. Try again."
        return
    for stale in (CHALLENGE_ERROR, CHALLENGE_BACKUP, PASSWORD_AT):
        st.session_state.pop(stale, None)
    session.pass_second_factor(epoch, verified=True)
    if strategy == "backup_code":
        session.flash(*session.backup_codes_left_message(result.backup_codes_remaining))


# -- sign-out --------------------------------------------------------------------

def sign_out() -> None:
    """Sidebar / challenge **Sign out**: revoke this session's cookie, forget the user."""
    _end_session(config.portal(), revoke=True)
    session.flash("success", "You have signed out.")


def _end_session(portal: config.Portal, *, revoke: bool) -> None:
    user = session.current_username()
    if user and revoke:
        cookies = [st.session_state.get(session.COOKIE)]
        token = read_cookie()
        if token:
            found = decode_cookie(portal, token)
            if found and found[0] == user:
                cookies.append({"fp": fingerprint(token), "exp": found[1]})
        for cookie in cookies:
            if cookie:
                try:
                    portal.service.revoke_token(user, cookie["fp"], cookie["exp"])
                except (mfa_core.MFAError, ValueError, TypeError):
                    pass
    session.clear()
    _reset_library_state()
    st.session_state["logout"] = True
    st.session_state[SIGNED_OUT] = True
    st.session_state[DELETE_COOKIE] = True
