"""The Add TOTP step machine (add → verify → backupcodes → success) in ``addtotp_`` keys.

The pending enrollment lives in the engine (``create_totp`` / ``pending_totp``):
a rerun, a page switch or a widget click shows the same secret; only Add and
Reset make a new one, and both need a recent verification.

An enrollment belongs to the session that started it. The engine keeps one
pending enrollment per user, so this session remembers which one it made
(``MINE``: a hash of its secret) and never shows or verifies another: a
pending enrollment started in another tab or browser counts as none here
(arriving, the page starts its own), and one replaced elsewhere while this
page showed it says so and offers Reset.
"""

from __future__ import annotations

import hashlib

import streamlit as st

import mfa_core
from mfa_core.authenticators import DEFAULT_LABEL, MAX_LABEL, clean_label, unique_label
from mfa_core.backup_codes import same_code

from . import backup_view, config, cookies, policy_gate, reverify, session
from .code_field import code_form
from .display import plain
from .navigation import MANAGE_PAGE, page_link
from .sessions_view import is_phone, phone_name
from .qr import img_tag, qr_png

STEP = "addtotp_step"
SHOW_URI = "addtotp_show_uri"
CODE = "addtotp_code"
ERROR = "addtotp_error"
CONFIRM = "addtotp_confirm"
CONFIRM_ERROR = "addtotp_confirm_error"
QR = "addtotp_qr"
NAME = "addtotp_name"        # the name field of step add
FIRST = "addtotp_first"      # this app turned two-step on (its backup codes come next)
ASKED = "addtotp_asked"
MINE = "addtotp_mine"        # sha256 of the secret of the enrollment this session started
MINE_AT = "addtotp_mine_at"  # and its created_at: the engine verifies only that enrollment

STEPS = ("add", "verify", "backupcodes", "success")
# What the page shows besides the four steps.
FULL = "full"                # the most authentication apps an account may have are set up
EXPIRED = "expired"          # the pending enrollment expired (or was removed elsewhere)
REPLACED = "replaced"        # another session started a new enrollment meanwhile
VERIFY_FIRST = "verify_first"  # a new set-up waits for reverification
CODES_SHOWN = "codes_shown"  # step backupcodes, come back to later: the codes are not shown again

SUCCESS_TEXT = "You have successfully added TOTP MFA via an authentication application."
REPLACED_TEXT = ("This set-up was restarted in another window or browser, so this QR code no "
                 "longer works. Press Reset to get a new QR code here.")


def _fingerprint(resource: mfa_core.TOTPResource) -> str:
    return hashlib.sha256(resource.secret.encode("ascii")).hexdigest()


def _own(resource: mfa_core.TOTPResource) -> mfa_core.TOTPResource:
    st.session_state[MINE] = _fingerprint(resource)
    st.session_state[MINE_AT] = resource.created_at
    return resource


def owned(resource: mfa_core.TOTPResource | None) -> bool:
    """Whether ``resource`` is the enrollment this session started."""
    return resource is not None and st.session_state.get(MINE) == _fingerprint(resource)


def _forget() -> None:
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith("addtotp_"):
            del st.session_state[key]


def suggested_label(user_agent: str | None, taken: list[str]) -> str:
    """A name for the new app: "Authentication app on iPhone" when the browser is on a phone (the app
    is likely there), else "Authentication app"; numbered if the user has one of that name."""
    phone = phone_name(user_agent or "")
    base = f"Authentication app on {phone}"[:MAX_LABEL].rstrip() if phone else DEFAULT_LABEL
    try:
        clean_label(base)
    except mfa_core.InvalidLabel:  # a device name no label may have (a browser's odd header)
        base = DEFAULT_LABEL
    return unique_label(taken, base)


def _where() -> dict[str, str | None]:
    """Where this set-up comes from: the engine lets a user past their rule's deadline set up
    only from a familiar place or in a temporary pass's session (issue 23)."""
    return {"source": session.client_source(), "session_id": session.token()}


def start() -> mfa_core.TOTPResource:
    """Add (a sensitive action): a new pending enrollment, step ``add``."""
    svc = config.service()
    user = session.callback_user()
    taken = [a.label for a in svc.status(user).authenticators]
    resource = svc.create_totp(user, label=suggested_label(cookies.user_agent(), taken),
                               **_where())
    _forget()
    st.session_state[STEP] = "add"
    return _own(resource)


@session.guarded
def request_start() -> None:
    reverify.sensitive("add", "add an authentication app", start)


@session.guarded
def request_reset() -> None:
    reverify.sensitive("add", "set up your authentication app with a new QR code", reset)


def reset() -> None:
    svc = config.service()
    user = session.callback_user()
    label = (st.session_state.get(NAME) or "").strip() or DEFAULT_LABEL
    try:
        resource = svc.create_totp(user, label=label, **_where())
    except mfa_core.InvalidLabel:
        resource = svc.create_totp(user, **_where())
    _own(resource)
    for key in (ERROR, QR, SHOW_URI, NAME):
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
    if step == "backupcodes":
        return (step if backup_view.new_codes() else CODES_SHOWN), None
    if step == "success":
        return step, None
    pending = config.service().pending_totp(username)
    if owned(pending):
        if step not in ("add", "verify"):
            st.session_state[STEP] = "add"
        return st.session_state[STEP], pending
    if step in ("add", "verify"):
        return (REPLACED if pending is not None else EXPIRED), None
    # Nothing of this session's is pending (another session's enrollment is not ours).
    if sum(1 for a in session.status().authenticators if a.kind == "totp") >= \
            mfa_core.authenticators.MAX_TOTP_APPS:
        return FULL, None
    if reverify.verification_remaining() > 0:
        try:
            return "add", start()
        except mfa_core.MFAError as err:  # the store, or the cap reached in another tab
            session.flash("error", str(err))
            return FULL if isinstance(err, mfa_core.TooManyAuthenticators) else EXPIRED, None
    if not st.session_state.get(ASKED):
        # Ask once per visit; after a dismissal the page offers a button instead.
        st.session_state[ASKED] = True
        request_start()
        reverify.open_pending_dialog()
    return VERIFY_FIRST, None


def qr_for(resource: mfa_core.TOTPResource) -> bytes:
    """The QR PNG of the pending URI, drawn once per secret (kept in this session only)."""
    cached = st.session_state.get(QR)
    if cached and cached[0] == resource.uri:
        return cached[1]
    png = qr_png(resource.uri)
    st.session_state[QR] = (resource.uri, png)
    return png


def show_link_first() -> bool:
    """The link and address instead of the QR code: chosen with the toggle, or on a phone (the
    browser's User-Agent, ua-parser), where the app is on the screen that would show the code."""
    if SHOW_URI not in st.session_state:
        st.session_state[SHOW_URI] = is_phone(cookies.user_agent() or "")
    return bool(st.session_state[SHOW_URI])


def toggle_uri() -> None:
    st.session_state[SHOW_URI] = not show_link_first()


@session.guarded
def go_verify() -> None:
    """Verify (step add): the name typed is given to the app being set up, then its code."""
    if not session.second_factor_passed():
        return
    try:
        config.service().name_pending_totp(session.callback_user(), st.session_state.get(NAME) or "",
                                           enrollment=st.session_state.get(MINE_AT))
    except mfa_core.MFAError as err:
        st.session_state[ERROR] = label_error(err, st.session_state.get(NAME) or "")
        return
    st.session_state[STEP] = "verify"
    st.session_state.pop(ERROR, None)


def label_limit() -> str:
    return f"Up to {MAX_LABEL} characters."


def label_error(err: Exception, typed: str) -> str:
    """The engine's refusal of a name, with the length when that was the trouble."""
    length = len(typed.strip())
    if isinstance(err, mfa_core.InvalidLabel) and length > MAX_LABEL:
        return f"{err} This one has {length}: shorten it and press the button again."
    return str(err)


def back_to_code() -> None:
    st.session_state[STEP] = "add"
    st.session_state.pop(ERROR, None)


@session.guarded
def submit_code() -> None:
    """Verify code: enable the authenticator, then make the first backup codes."""
    if not session.second_factor_passed():  # callbacks run before the guard
        return
    typed = st.session_state.get(CODE) or ""
    st.session_state[CODE] = ""
    svc = config.service()
    user = session.callback_user()
    try:
        if not owned(svc.pending_totp(user)):  # replaced or expired since the page was drawn
            st.session_state[ERROR] = REPLACED_TEXT
            return
        status = svc.verify_totp(user, typed, enrollment=st.session_state.get(MINE_AT),
                                 keep_session=session.token())
    except mfa_core.MFAError as err:
        st.session_state[ERROR] = str(err)
        return
    session.note_mfa_changed()
    session.record_verification()  # a code from the new authenticator proves it's them
    for key in (ERROR, QR, MINE, MINE_AT):
        st.session_state.pop(key, None)
    # The new app is not the only authenticator: two-step was on before it, and the
    # backup codes the user has stay as they are.
    if len(status.authenticators) > 1:
        st.session_state[STEP] = "success"
        return
    st.session_state[FIRST] = True
    try:
        backup_view.keep(svc.create_backup_codes(user).codes)
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
    if any(same_code(typed, code) for code in backup_view.new_codes()):
        skip_codes()
        return
    st.session_state[CONFIRM_ERROR] = ("That is not one of the codes above. Type one of them "
                                       "to show you saved them.")


def skip_codes() -> None:
    """Finish without the codes on screen (they were shown in an earlier visit)."""
    st.session_state[STEP] = "success"
    backup_view.forget()
    for key in (CONFIRM, CONFIRM_ERROR):
        st.session_state.pop(key, None)


def render(user) -> None:
    """The Add TOTP page, for a user the guard let in."""
    if not policy_gate.allows("totp"):  # the organization's rule: passkeys only, say
        st.title("Add TOTP MFA", anchor=False)
        st.info("Your organization does not allow authentication apps for your account. Add a "
                "passkey on Manage MFA instead.")
        page_link(MANAGE_PAGE, "Manage MFA", ":material/arrow_back:")
        return
    state, resource = page_state(user.username)
    if state == "success" and policy_gate.set_up_done(SUCCESS_TEXT):
        return  # sent here by the rule: home
    if state == VERIFY_FIRST:
        st.title("Add TOTP MFA", anchor=False)
        st.write("Verify it's you before you set up an authentication app.")
        st.button("Verify it's you", key="addtotp_start", type="primary", on_click=request_start)
    elif state == FULL:
        st.title("Add TOTP MFA", anchor=False)
        st.info(str(mfa_core.TooManyAuthenticators()))
    elif state in (EXPIRED, REPLACED):
        st.title("Add TOTP MFA", anchor=False)
        st.error(REPLACED_TEXT if state == REPLACED else
                 "This set-up took too long and has expired. Press Reset to get a new QR code.")
        st.button("Reset", key="addtotp_reset", on_click=request_reset)
    elif state in ("add", "verify"):
        if state == "add":
            _render_add(resource)
        else:
            _render_verify()
        minutes = max(0, int(resource.expires_at - config.service().clock()) // 60)
        st.caption(f"This set-up expires in about {minutes} min; Reset starts a new one.")
    elif state == "backupcodes":
        _render_backup_codes(user)
    elif state == CODES_SHOWN:
        _render_codes_shown()
    else:  # success
        st.title("Success!", anchor=False)
        st.write(SUCCESS_TEXT)
        if not st.session_state.get(FIRST):
            st.write("It signs in beside your other authenticators; your backup codes are "
                     "unchanged.")
    page_link(MANAGE_PAGE, "Manage MFA", ":material/arrow_back:")


def _render_add(resource: mfa_core.TOTPResource) -> None:
    st.title("Add TOTP MFA", anchor=False)
    st.caption("Your authentication app makes a new 6-digit code every 30 seconds; after your "
               "password, the portal asks for it.")
    apps = "(Google Authenticator, Microsoft Authenticator, 1Password, …)"
    link_first = show_link_first()
    if link_first:
        # On a phone the app is on the same screen: a QR code there cannot be scanned.
        st.write(f"Open this link on the device with your authentication app {apps}; it adds "
                 "the account to the app:")
        st.markdown(f"[Add to my authentication app]({resource.uri})")
        st.write("Or copy this address into the app:")
        st.code(resource.uri, language=None, wrap_lines=True)
        st.button("Use QR Code instead", key="addtotp_toggle", on_click=toggle_uri)
    else:
        st.write(f"Scan this QR code with your authentication app {apps}.")
        # Inline (a data: URL), never st.image: the media store would serve the secret by URL.
        st.html(img_tag(qr_for(resource)))
        st.button("Use URI instead", key="addtotp_toggle", on_click=toggle_uri)
    trouble = "Can't open the link?" if link_first else "Can't scan it?"
    st.write(f"{trouble} Enter this key in your app by hand (spaces do not matter):")
    st.code(resource.grouped_secret, language=None)
    if NAME not in st.session_state:
        st.session_state[NAME] = resource.label
    # One form: the name typed travels with the click on Verify (never lost in a rerun).
    with st.form("addtotp_name_form", border=False):
        # No max_chars: the browser would cut a longer paste without a word; the engine's
        # message says what is wrong instead.
        st.text_input("Name for this authenticator", key=NAME,
                      help="How it is listed on Manage MFA and in your notification mails, "
                           "e.g. the device the app is on.")
        st.caption(label_limit())
        st.write("Once you have set up your authentication app, verify your code: **Verify** "
                 "asks for the 6-digit code the app shows now.")
        st.form_submit_button("Verify", type="primary", on_click=go_verify)
    error = st.session_state.get(ERROR)
    if error:
        st.error(plain(error))
    st.button("Reset", key="addtotp_reset", on_click=request_reset)


def _render_verify() -> None:
    st.title("Verify TOTP", anchor=False)
    st.caption("Type the 6-digit code your authentication app shows now: it proves the app is "
               "set up before it can sign you in.")
    code_form("addtotp_verify_form", "Enter the code from your authentication app", CODE,
              button="Verify code", on_click=submit_code)
    error = st.session_state.get(ERROR)
    if error:
        st.error(error)
    row = st.container(horizontal=True)
    row.button("Show the QR code again", key="addtotp_back", on_click=back_to_code)
    row.button("Reset", key="addtotp_reset", on_click=request_reset)


def _render_backup_codes(user) -> None:
    st.title("Verification was a success!", anchor=False)
    st.write("Save this list of backup codes somewhere safe in case you need to access your "
             "account in an emergency")
    backup_view.show(backup_view.new_codes(), user.username)
    code_form("addtotp_finish_form", "To show you saved them, type one of the backup codes",
              CONFIRM, button="Finish", on_click=finish, backup=True, take_focus=False)
    error = st.session_state.get(CONFIRM_ERROR)
    if error:
        st.error(error)


def _render_codes_shown() -> None:
    st.title("Verification was a success!", anchor=False)
    st.write("Your authentication app is set up. Your backup codes were shown once, right after "
             "they were made, and are not shown again. If you did not save them, make a new set: "
             "the old codes stop working.")
    backup_view.offer("addtotp_generate")
    st.button("Finish", key="addtotp_skip", type="primary", on_click=skip_codes)
