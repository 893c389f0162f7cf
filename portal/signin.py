"""The sign-in gate: password, then the second factor, then the page.

The password is checked by the engine (``attempt_password``: throttle,
bcrypt, outcome and audit in one transaction) in the Login button's callback
(callbacks run before the script, so a rerun forced by a component cannot
drop the click). A right password starts a server-side session
(``svc.sessions``); the browser gets its token as an ``HttpOnly`` cookie from
a server route (``portal.cookies``), so a reload or a new tab continues the
session: its second factor and its last verification included. A session
whose second factor was not passed yet still asks for it. Every run checks
the session against the store: signed out elsewhere, expired, password
changed or MFA reset, it ends here too.
"""

from __future__ import annotations

import streamlit as st

import mfa_core
import mfa_core.service
from mfa_core.users import DEMO_USERS, User

from . import config, cookies, passkey_ceremony, policy_gate, reverify, session, startup, users
from .code_field import code_form
from .navigation import (ADD_TOTP_PAGE, HELPDESK_PAGE, HOME_PAGE,  # noqa: F401 (re-exported)
                         MANAGE_PAGE, page_link, sidebar)

WRONG_PASSWORD = mfa_core.service.WRONG_PASSWORD
LOGIN_ERROR = "portal_login_error"
CHALLENGE_ERROR = "portal_challenge_error"
CHALLENGE_BACKUP = "portal_challenge_backup"
CHALLENGE_PASS = "portal_challenge_pass"    # the challenge asks for the helpdesk's temporary pass
PASS_KEY = "portal_challenge_temporary_pass"
PASS_PAGES = ("Manage MFA", "Add TOTP")     # all a temporary pass's session reaches (S40)
SIGNED_OUT = "portal_signed_out"
SIGNED_OUT_NOW = "portal_signed_out_now"  # Sign out was pressed (until the next sign-in)
DELETE_COOKIE = "portal_delete_cookie"
COOKIE_DUE = "portal_cookie_due"       # a password was just accepted: set the cookie once
LOGIN_FORM = "portal_login"
LOGIN_USERNAME = "portal_login_username"
LOGIN_PASSWORD = "portal_login_password"
LOGIN_CODE = "portal_login_code"            # the code typed with the password (issue 20, F8)
LOGIN_WITH_CODE = "portal_login_with_code"  # the password from here is checked only with a code
LOGIN_WITH_PASS = "portal_login_with_pass"  # ... and that "code" is the helpdesk's temporary pass
COOKIE_CHECKED = "portal_cookie_checked"
_NO_SIDEBAR = ('<style>[data-testid="stSidebar"], [data-testid="stExpandSidebarButton"] '
               '{ display: none; }</style>')
ENDED = "Your session has ended (signed out, timed out or changed elsewhere). Sign in again."


# -- the guard -----------------------------------------------------------------

def require_user(page_title: str | None = None, *, home: bool = False, wide: bool = False) -> User:
    """The signed-in user past the second factor, or the sign-in screen and ``st.stop()``.

    ``wide``: the page uses the whole window (the Helpdesk's tables), once signed in.
    """
    if page_title:
        st.set_page_config(page_title=f"{page_title} · MFA Portal", page_icon=":material/lock:")
    session.begin_run()
    try:  # demo mode for another machine (a server without app.py's guard): nothing of the portal
        refusal = startup.page_refusal(st.context.ip_address, st.context.headers)
    except Exception:  # noqa: BLE001 (no request context: a bare script run)
        refusal = None
    if refusal:
        st.error(refusal)
        st.stop()
    try:
        portal = config.portal()
    except mfa_core.MFAError as err:
        st.error(str(err))
        st.stop()
    try:
        if session.current_username() is None:
            _restore_from_cookie(portal)
        elif not session.sync_with_store():
            _end_session(portal, revoke=False)
            session.flash("info", ENDED)
            st.rerun()
    except mfa_core.MFAError as err:
        st.error(str(err))
        st.stop()
    username = session.current_username()
    user = users.lookup(portal, username) if username else None
    if username and user is None:  # removed from the directory meanwhile
        _end_session(portal, revoke=True)
    if user is None:
        _layout("centered")
        _password_screen(portal, home=home)  # stops the script
    if st.session_state.pop(COOKIE_DUE, None):
        _set_cookie(portal)  # once, the run after the password
    try:
        status = portal.service.status(user.username)
    except mfa_core.MFAError as err:
        st.error(str(err))
        st.stop()
    st.session_state[session.STATUS] = status
    session.check_epoch(status, reverify.drop_pending)
    if not session.second_factor_passed():
        if status.two_factor_enabled or status.temporary_pass_active:
            _layout("centered")
            _challenge_screen(portal, user)
            st.stop()
        # No second factor exists: the password was the strongest factor (its
        # time, if it was typed in this session, is already the verification).
        try:
            session.pass_second_factor(status.mfa_epoch, verified=False)
        except mfa_core.MFAError as err:
            st.error(str(err))
            st.stop()
        if not session.second_factor_passed():  # a factor was added meanwhile: ask for it
            st.rerun()
    # The organization's two-step rule (issue 23): a screen of its own, or only the set-up pages.
    held = policy_gate.hold(page_title, layout=_layout, sign_out=sign_out)
    _layout("wide" if wide else "centered")
    sidebar(user, sign_out, held=held is not None)
    session.show_flashes()
    if session.restricted():
        _pass_banner(page_title)
    policy_gate.banner(held)
    reverify.open_pending_dialog()
    return user


def _pass_banner(page_title: str | None) -> None:
    """A session that passed with a temporary pass: what it may do; other pages stop here."""
    ends = st.session_state.get(session.PASS_ENDS)
    until = f" until {session.format_time(ends)}" if ends else ""
    st.info("You signed in with a temporary pass from the helpdesk. It lets you add an "
            f"authentication app or a passkey{until}. Removing authenticators, new backup codes "
            "and the other pages open once you have added one.",
            icon=":material/key:")
    if page_title not in PASS_PAGES:
        page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
        st.stop()


def _layout(layout: str) -> None:
    """The page's layout, set once per run: the browser applies only the first of two
    different layouts sent in one run when the second one matches what it showed before."""
    st.set_page_config(layout=layout)


def require_admin(page_title: str | None = None, *, wide: bool = False) -> User:
    """``require_user``, then only helpdesk admins get further."""
    user = require_user(page_title, wide=wide)
    if not user.is_admin or session.restricted():
        st.error("This page is for helpdesk admins.")
        page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
        st.stop()
    return user


# -- the password screen ---------------------------------------------------------

def _password_screen(portal: config.Portal, *, home: bool) -> None:
    """The sign-in form; never returns (the Login button's callback signs in)."""
    st.title("MFA Portal", anchor=False)
    if st.session_state.get(SIGNED_OUT_NOW):
        # Streamlit keeps the signed-in pages' sidebar, emptied, until another page is
        # opened: nothing in it is for a signed-out visitor.
        st.html(_NO_SIDEBAR)
    if not home and not st.session_state.get(SIGNED_OUT_NOW):
        # Not after Sign out: "You have signed out" says it all there.
        st.warning("You must be logged in to access this page")
    session.show_flashes(keep=True)
    if not users.entries(portal) and not getattr(portal.directory, "company", False):
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
        st.header("Sign in", anchor=False)
        st.caption("Your company username and password, then **Login**.")
        st.text_input("Username", key=LOGIN_USERNAME, autocomplete="username")
        st.text_input("Password", key=LOGIN_PASSWORD, type="password",
                      autocomplete="current-password")
        blocked = st.session_state.get(LOGIN_WITH_CODE)  # the password is blocked from new places
        if blocked and st.session_state.get(LOGIN_WITH_PASS):
            st.text_input("Temporary pass", key=LOGIN_CODE, autocomplete="off",
                          help="The temporary pass the helpdesk gave you (like `kq7m-3xzp-w9df-4hnr`).")
        elif blocked:
            st.text_input("Authentication code", key=LOGIN_CODE, autocomplete="one-time-code",
                          help="The code from your authentication app, or a backup code.")
        st.form_submit_button("Login", on_click=_submit_password)
    if blocked:
        # Offered whether or not the name has a pass: the form says nothing about the account.
        st.button("Use your authenticator" if st.session_state.get(LOGIN_WITH_PASS)
                  else "Use a temporary pass", key="portal_login_pass_toggle", on_click=_toggle_login_pass)
    error = st.session_state.pop(LOGIN_ERROR, None)
    if error:
        st.error(error)
    if st.session_state.pop(DELETE_COOKIE, None):
        cookies.clear()
    st.stop()


def _toggle_login_pass() -> None:
    st.session_state[LOGIN_WITH_PASS] = not st.session_state.get(LOGIN_WITH_PASS)
    st.session_state[LOGIN_CODE] = ""


def _submit_password() -> None:
    """**Login**: the engine checks the password, its throttle and audit in one transaction."""
    # As streamlit-authenticator's form did: usernames are lower case, blanks around ignored.
    username = (st.session_state.get(LOGIN_USERNAME) or "").strip().lower()
    password = st.session_state.get(LOGIN_PASSWORD) or ""
    st.session_state[LOGIN_PASSWORD] = ""  # never kept in the session
    typed = "".join((st.session_state.get(LOGIN_CODE) or "").split())
    st.session_state[LOGIN_CODE] = ""
    if not username or not password.strip():
        st.session_state[LOGIN_ERROR] = "Enter your username and password."
        return
    svc = config.service()
    source = session.client_source()
    with_code = {}
    if typed and st.session_state.get(LOGIN_WITH_CODE):
        strategy = "temporary_pass" if st.session_state.get(LOGIN_WITH_PASS) else \
            "totp" if typed.isdigit() and len(typed) == 6 else "backup_code"
        with_code = {"code": typed, "strategy": strategy}
    try:
        result = svc.attempt_password(username, password, source=source, **with_code)
        # Without a second factor the password was the strongest factor: a
        # verification now. With one, the session waits for it (unless its
        # code came with the password: both passed). A temporary pass's session
        # starts not passed and is then marked as the pass's (restricted, S40),
        # so it is never, even for a moment, an unrestricted one.
        via_pass = result.pass_expires_at is not None
        done = (result.second_factor_passed or not result.two_factor_enabled) and not via_pass
        now = svc.clock()
        token = svc.sessions.start(username, second_factor_passed=done,
                                   verified_at=now if done else None,
                                   source=session.session_source(), user_agent=cookies.user_agent())
    except mfa_core.MFAError as err:
        if isinstance(err, mfa_core.PasswordBlocked) and err.second_factor:
            st.session_state[LOGIN_WITH_CODE] = True
        st.session_state[LOGIN_ERROR] = str(err)
        return
    except (TypeError, ValueError):  # a name no user can have: the same answer as a wrong password
        st.session_state[LOGIN_ERROR] = WRONG_PASSWORD
        return
    # Start the portal's session here, in the callback, before the script
    # runs: a component reporting back can interrupt the run at its next
    # st.* call, and the rerun must find the accepted password.
    st.session_state.pop(LOGIN_WITH_CODE, None)
    st.session_state.pop(LOGIN_WITH_PASS, None)
    session.start(username, token=token, passed=done, verified_at=now if done else None)
    if via_pass:
        try:
            session.pass_with_temporary_pass(result.mfa_epoch, result.pass_expires_at)
        except mfa_core.MFAError as err:  # not recorded: the session stays before the second factor
            st.session_state[LOGIN_ERROR] = str(err)
    st.session_state[COOKIE_DUE] = True
    st.session_state.pop(SIGNED_OUT_NOW, None)


# -- the session cookie ------------------------------------------------------------

def read_cookie() -> str | None:
    """The session cookie of this browser (tests patch this one read)."""
    return cookies.read()


def _restore_from_cookie(portal: config.Portal) -> None:
    """Continue the browser's session (a reload, a new tab), at most once per page session."""
    if st.session_state.get(SIGNED_OUT) or st.session_state.get(COOKIE_CHECKED):
        return
    st.session_state[COOKIE_CHECKED] = True
    token = read_cookie()
    if not token:
        return
    found = portal.service.sessions.find(token)
    if found is None or users.lookup(portal, found.username) is None:
        st.session_state[DELETE_COOKIE] = True  # an ended session's cookie is removed
        return
    session.start(found.username, token=token, passed=found.second_factor_passed,
                  verified_at=found.verified_at)
    st.session_state[session.RESTRICTED] = found.restricted  # from this very run on
    st.session_state[session.PASS_ENDS] = found.ends_at


def _set_cookie(portal: config.Portal) -> None:
    token = session.token()
    if token:
        try:
            cookies.set_for(portal.service.sessions.ticket(token))
        except mfa_core.MFAError:  # no cookie: a reload signs in again, nothing worse
            pass


# -- the second factor -----------------------------------------------------------

def _challenge_key() -> str:
    return "portal_challenge_backup_code" if st.session_state.get(CHALLENGE_BACKUP) else \
        "portal_challenge_code"


def _challenge_screen(portal: config.Portal, user: User) -> None:
    status = session.status()
    if status.temporary_pass_active and (st.session_state.get(CHALLENGE_PASS)
                                         or not status.two_factor_enabled):
        _pass_screen(status)
        return
    passkey = passkey_ceremony.has_passkey(status) and passkey_ceremony.available()
    backup = bool(st.session_state.get(CHALLENGE_BACKUP)) or not (status.totp_enabled or passkey)
    st.title("Two-step verification", anchor=False)
    session.show_flashes()
    if passkey and not backup:
        # Offered first: nothing to type, and a look-alike site cannot relay it.
        st.write("Use your passkey to finish signing in.")
        st.button("Use a passkey", key="portal_challenge_passkey", type="primary",
                  on_click=passkey_ceremony.start, args=(passkey_ceremony.SIGN_IN,))
        passkey_ceremony.run(passkey_ceremony.SIGN_IN, _passkey_answered)
    if backup or status.totp_enabled:
        _code_form(portal, user, backup=backup, first=not (passkey and not backup))
    error = st.session_state.get(CHALLENGE_ERROR)
    if error:
        st.error(error)
    row = st.container(horizontal=True)
    if backup:
        if status.totp_enabled or passkey:
            row.button("Use your authentication app" if status.totp_enabled else "Use a passkey",
                       key="portal_challenge_toggle", on_click=_toggle_challenge)
    else:
        row.button("Use a backup code", key="portal_challenge_toggle", on_click=_toggle_challenge)
    if status.temporary_pass_active:
        row.button("Use a temporary pass", key="portal_challenge_pass_toggle", on_click=_toggle_pass)
    row.button("Sign out", key="portal_challenge_sign_out", on_click=sign_out)


def _pass_screen(status: mfa_core.MFAStatus) -> None:
    """The helpdesk's temporary pass (issue 24): it opens only Manage MFA, to add a factor."""
    st.title("Two-step verification", anchor=False)
    session.show_flashes()
    st.write("Enter the temporary pass the helpdesk gave you (like `kq7m-3xzp-w9df-4hnr`). "
             "It lets you set up a new authenticator, nothing else.")
    code_form("portal_challenge_pass_form", "Temporary pass", PASS_KEY, button="Continue",
              on_click=_submit_pass, backup=True, primary=True, take_focus=True)
    error = st.session_state.get(CHALLENGE_ERROR)
    if error:
        st.error(error)
    row = st.container(horizontal=True)
    if status.two_factor_enabled:
        row.button("Use your authenticator", key="portal_challenge_pass_toggle", on_click=_toggle_pass)
    row.button("Sign out", key="portal_challenge_sign_out", on_click=sign_out)


def _toggle_pass() -> None:
    st.session_state[CHALLENGE_PASS] = not st.session_state.get(CHALLENGE_PASS)
    st.session_state.pop(CHALLENGE_ERROR, None)
    st.session_state.pop(CHALLENGE_BACKUP, None)


def _submit_pass() -> None:
    user = session.current_username()
    if not user or session.second_factor_passed():
        return
    typed = st.session_state.get(PASS_KEY) or ""
    st.session_state[PASS_KEY] = ""
    svc = config.service()
    try:
        result = svc.attempt_second_factor(user, typed, "temporary_pass", source=session.client_source())
        epoch = svc.status(user).mfa_epoch
        session.pass_with_temporary_pass(epoch, result.pass_expires_at)
    except mfa_core.MFAError as err:
        st.session_state[CHALLENGE_ERROR] = str(err)
        return
    except (TypeError, ValueError):
        st.session_state[CHALLENGE_ERROR] = "That temporary pass cannot be checked. Try again."
        return
    for stale in (CHALLENGE_ERROR, CHALLENGE_BACKUP, CHALLENGE_PASS):
        st.session_state.pop(stale, None)


def _code_form(portal: config.Portal, user: User, *, backup: bool, first: bool) -> None:
    """The code field: a backup code, or the app's code (after the passkey when there is one)."""
    if backup:
        st.write("Enter one of the backup codes you saved when you set up two-step verification.")
    else:
        st.write(f"{'Open' if first else 'Or open'} your authentication app and enter the 6-digit "
                 f"code for **{portal.service.issuer}** ({user.username}).")
    label = "Backup code" if backup else "Authentication code"
    code_form("portal_challenge_form", label, _challenge_key(), button="Continue",
              on_click=_submit_challenge, backup=backup, primary=first, take_focus=first)


def _passkey_answered(response: str) -> None:
    """The browser answered **Use a passkey**: the engine checks it as it checks a code."""
    user = session.current_username()
    if not user or session.second_factor_passed():
        return
    if passkey_ceremony.attempt(passkey_ceremony.SIGN_IN, response) is None:
        return
    try:
        epoch = config.service().status(user).mfa_epoch
    except mfa_core.MFAError as err:
        passkey_ceremony.set_error(passkey_ceremony.SIGN_IN, str(err))
        return
    for stale in (CHALLENGE_ERROR, CHALLENGE_BACKUP):
        st.session_state.pop(stale, None)
    passkey_ceremony.clear(passkey_ceremony.SIGN_IN)
    session.pass_second_factor(epoch, verified=True)


def _toggle_challenge() -> None:
    st.session_state[CHALLENGE_BACKUP] = not st.session_state.get(CHALLENGE_BACKUP)
    st.session_state.pop(CHALLENGE_ERROR, None)
    passkey_ceremony.clear(passkey_ceremony.SIGN_IN)


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
    for stale in (CHALLENGE_ERROR, CHALLENGE_BACKUP):
        st.session_state.pop(stale, None)
    session.pass_second_factor(epoch, verified=True)
    if strategy == "backup_code":
        session.flash(*session.backup_codes_left_message(result.backup_codes_remaining))


# -- sign-out --------------------------------------------------------------------

def sign_out() -> None:
    """Sidebar / challenge **Sign out**: the session ends for every tab of this browser."""
    _end_session(config.portal(), revoke=True)
    session.flash("success", "You have signed out.")
    st.session_state[SIGNED_OUT_NOW] = True


def _end_session(portal: config.Portal, *, revoke: bool) -> None:
    token = session.token()
    if token and revoke:
        try:
            portal.service.sessions.end(token)
        except mfa_core.MFAError:  # the store is down: the cookie still goes
            pass
    session.clear()
    st.session_state[SIGNED_OUT] = True
    st.session_state[DELETE_COOKIE] = True
