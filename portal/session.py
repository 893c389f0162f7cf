"""The session layer: who is signed in here, whether the second factor passed, reverification.

The sign-in session itself lives in the engine's store (``svc.sessions``):
this page session holds its token and a copy of what it knows, under
``portal_`` keys in ``st.session_state``, and agrees with the store at the
start of every run (``sync_with_store``), so every tab of a browser shares
one sign-in, one second factor and one last verification, and a session
ended anywhere ends here too. The store's "second factor passed" decides:
when a factor is added elsewhere the engine clears it, and this page asks for
the second factor again. Callbacks run before that check, so every one that
changes anything goes through ``guarded`` (``session_holds``). Throttling and
the MFA epoch live in the store as well.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Callable

import streamlit as st

import mfa_core

from . import config

REVERIFY_WINDOW = 600  # seconds a verification covers sensitive actions

USER = "portal_user"              # username whose password (or cookie) was accepted
TOKEN = "portal_session_token"    # the server-side session's token (never sent to the page)
PASSED = "portal_second_factor"   # True once the second factor passed (or none exists)
VERIFIED_AT = "portal_verified_at"  # time of the last verification (None: none)
EPOCH = "portal_epoch"            # the user's mfa_epoch this session last agreed with
FLASH = "portal_flash"
PENDING = "portal_pending"        # {"action", "label"} of the sensitive action waiting
PENDING_RUN = "portal_pending_run"
REVERIFY_ERROR = "portal_reverify_error"
REVERIFY_BACKUP = "portal_reverify_backup"
REVERIFY_DONE = "portal_reverify_done"
DIALOG_OPEN = "portal_dialog_open"
STATUS = "portal_status"          # the user's MFAStatus as the guard read it in this run
RESTRICTED = "portal_restricted"  # passed with a temporary pass: only adding a factor (S40)
PASS_ENDS = "portal_pass_ends"    # ... and the session ends then (the pass's expiry)
FACTOR_ADDED_UNDER_PASS = "portal_factor_added_under_pass"  # offer to remove the lost one

# Keys that survive a sign-out (they describe the browser, not the user).
_KEEP_ON_SIGN_OUT = ("portal_signed_out", "portal_delete_cookie", "portal_cookie_checked", FLASH)
_SESSION_PREFIXES = ("portal_", "manage_", "addtotp_", "helpdesk_")


def now() -> float:
    return config.service().clock()


# -- who is signed in ----------------------------------------------------------

def client_source() -> str | None:
    """This session's client address, as the engine's throttle keys attempts by it."""
    try:
        return config.client_address(st.context.ip_address, st.context.headers)
    except Exception:  # no request context (a bare script run): an unknown source
        return None


def session_source() -> str | None:
    """Where this client's sign-in session is listed as coming from (``config.session_address``)."""
    try:
        return config.session_address(st.context.ip_address, st.context.headers)
    except Exception:  # no request context (a bare script run): unknown
        return None


def current_username() -> str | None:
    return st.session_state.get(USER)


def second_factor_passed() -> bool:
    return bool(st.session_state.get(USER)) and bool(st.session_state.get(PASSED))


def callback_user() -> str:
    """The signed-in user, for a callback; raises NotEnabled (shown as a flash) otherwise.

    Callbacks run before the guard, so they check the store's session themselves
    (``session_holds``).
    """
    user = current_username()
    if not user or not session_holds():
        raise mfa_core.NotEnabled("You are not signed in.")
    return user


def session_holds() -> bool:
    """The one check of every callback that changes anything (they run before the guard).

    This page's sign-in session is still live in the store (not signed out here or
    elsewhere, by **Sign out of all other sessions**, a password change, a reset or
    expiry), still its user's, past the second factor there (adding a factor
    elsewhere makes it pass again), and the user's MFA has not changed since this
    page agreed with it. Any doubt (no token, the store unreadable) is a no.
    """
    user = current_username()
    held = token()
    if not user or not held or not st.session_state.get(PASSED):
        return False
    svc = config.service()
    try:
        found = svc.sessions.find(held)
        if found is None or found.username != user or not found.second_factor_passed:
            return False
        seen = st.session_state.get(EPOCH)
        return seen is None or svc.status(user).mfa_epoch == seen
    except (mfa_core.MFAError, TypeError, ValueError):
        return False


def guarded(callback: Callable[..., Any], *, under_pass: bool = True) -> Callable[..., Any]:
    """Decorate a state-changing ``on_click`` callback: it does nothing unless ``session_holds()``
    (the guard's next run then signs the page out or asks for the second factor).

    ``under_pass=False`` (``unrestricted``): also refused, with a flash, to a session that
    passed with a temporary pass (S40)."""
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not session_holds():
            return None
        if not under_pass and restricted_in_store():
            flash("error", PASS_REFUSED)
            return None
        return callback(*args, **kwargs)
    return run


def restricted() -> bool:
    """This session passed with the helpdesk's temporary pass: it may only add a factor."""
    return bool(st.session_state.get(RESTRICTED))


def restricted_in_store() -> bool:
    """The store's word on ``restricted()`` (a callback's check; any doubt is a yes)."""
    held = token()
    if not held:
        return bool(st.session_state.get(RESTRICTED))
    try:
        found = config.service().sessions.find(held)
    except (mfa_core.MFAError, TypeError, ValueError):
        return True
    return found is None or found.restricted


PASS_REFUSED = ("You signed in with a temporary pass: it only lets you add an authenticator. "
                "Sign in with your new authenticator to do this.")


def unrestricted(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a callback a temporary pass's session must never run (remove an authenticator,
    new backup codes, the Helpdesk): ``guarded``, and refused (a flash) under a pass."""
    return guarded(callback, under_pass=False)


def pass_with_temporary_pass(epoch: int, ends_at: float) -> None:
    """The helpdesk's pass was right: the session passes, restricted to adding a factor, and
    ends at ``ends_at``. Recorded in the store first (every tab, every replica)."""
    at = now()
    held = token()
    if held:
        config.service().sessions.update(held, second_factor_passed=True, verified_at=at,
                                        via="temporary_pass", ends_at=ends_at)
    st.session_state[RESTRICTED] = True
    st.session_state[PASS_ENDS] = ends_at
    st.session_state[PASSED] = True
    st.session_state[EPOCH] = epoch
    st.session_state[VERIFIED_AT] = at


def still_trusted() -> bool:
    """``session_holds()``: for the reverification layer, which may run an action long after
    its click."""
    return session_holds()


def start(username: str, *, token: str | None, passed: bool = False,
          verified_at: float | None = None) -> None:
    """A password was accepted (or the browser's session continues): this page session joins it."""
    clear()
    st.session_state.pop(FLASH, None)
    st.session_state[USER] = username
    st.session_state[TOKEN] = token
    st.session_state[PASSED] = bool(passed)
    st.session_state[VERIFIED_AT] = verified_at
    st.session_state[EPOCH] = None
    st.session_state.pop("portal_signed_out", None)


def token() -> str | None:
    return st.session_state.get(TOKEN)


def sync_with_store() -> bool:
    """Agree with the store's session; False when it has ended (this page must sign out).

    Another tab of the browser may have passed the second factor or verified
    since: both count here too. Raises MFAError when the store cannot be read.
    """
    held = token()
    if not held:
        return True
    found = config.service().sessions.find(held)
    if found is None or found.username != current_username():
        return False
    # The store decides: a factor added elsewhere makes this session pass it again.
    st.session_state[PASSED] = found.second_factor_passed
    if st.session_state.get(RESTRICTED) and not found.restricted and found.second_factor_passed:
        st.session_state[FACTOR_ADDED_UNDER_PASS] = True  # Manage MFA offers to remove the lost one
    st.session_state[RESTRICTED] = found.restricted
    st.session_state[PASS_ENDS] = found.ends_at
    if not found.second_factor_passed:
        st.session_state[VERIFIED_AT] = None
        return True
    mine = st.session_state.get(VERIFIED_AT)
    if found.verified_at is not None and (mine is None or found.verified_at > mine):
        st.session_state[VERIFIED_AT] = found.verified_at
    return True


def pass_second_factor(epoch: int, *, verified: bool) -> None:
    """The session may see the portal; ``verified`` when a factor was checked just now
    (else the user has no second factor, which the store checks again: when one was added
    meanwhile, or the session ended, it stays not passed). Raises MFAError when the store
    cannot be written (the session stays not passed)."""
    st.session_state[PASSED] = True
    st.session_state[EPOCH] = epoch
    if verified:
        record_verification()
        return
    held = token()
    if held:
        st.session_state[PASSED] = False
        if config.service().sessions.pass_without_second_factor(held):
            st.session_state[PASSED] = True


def clear() -> None:
    """Forget everything this session knew about its user (sign-out)."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(_SESSION_PREFIXES) and key not in _KEEP_ON_SIGN_OUT:
            del st.session_state[key]


def check_epoch(status: mfa_core.MFAStatus, drop_pending: Callable[[], None]) -> bool:
    """False (and the session must verify again) when the user's MFA changed elsewhere.

    ``drop_pending`` (``reverify.drop_pending``, given by the guard: the dialog's module
    imports this one) then forgets the action waiting for reverification."""
    seen = st.session_state.get(EPOCH)
    if seen is None or seen == status.mfa_epoch:
        if seen is None and st.session_state.get(PASSED):
            st.session_state[EPOCH] = status.mfa_epoch
        return True
    st.session_state[EPOCH] = status.mfa_epoch
    st.session_state[VERIFIED_AT] = None
    drop_pending()
    if status.two_factor_enabled:
        st.session_state[PASSED] = False
        flash("info", "Your two-step verification settings changed. Verify it's you again.")
    else:
        flash("info", "Two-step verification was turned off for your account. "
                      "Contact the helpdesk if you did not expect this.")
    return False


def status() -> mfa_core.MFAStatus:
    """The signed-in user's MFA status, read once per run by the guard."""
    found = st.session_state.get(STATUS)
    user = current_username()
    if found is None or found.username != user:
        found = config.service().status(user)
        st.session_state[STATUS] = found
    return found


def note_mfa_changed() -> None:
    """This session changed its user's MFA itself: agree with the new epoch."""
    user = current_username()
    if user:
        fresh = config.service().status(user)
        st.session_state[EPOCH] = fresh.mfa_epoch
        st.session_state[STATUS] = fresh


# -- one-off messages ----------------------------------------------------------

def flash(kind: str, text: str) -> None:
    """A message shown once, at the top of the next page the guard draws."""
    if kind not in ("success", "info", "warning", "error"):
        raise ValueError(f"unknown flash kind {kind!r}")
    st.session_state.setdefault(FLASH, [])
    st.session_state[FLASH] = [*st.session_state[FLASH], (kind, text)]


def backup_codes_left_message(remaining: int) -> tuple[str, str]:
    """What to tell someone who just used a backup code."""
    plural = "code" if remaining == 1 else "codes"
    if remaining <= 3:
        return ("warning", f"You used a backup code. Only {remaining} backup {plural} left: "
                           "generate new ones on Manage MFA.")
    return ("info", f"You used a backup code. {remaining} backup {plural} left.")


def show_flashes(*, keep: bool = False) -> None:
    """Draw the one-off messages; ``keep`` leaves them for the next run too.

    The password screen keeps them: the cookie component it mounts reruns the
    page once, which would otherwise wipe a message such as "You have signed
    out." a moment after it appeared. ``start`` drops them at the next sign-in.
    """
    messages = st.session_state.get(FLASH) if keep else st.session_state.pop(FLASH, None)
    for kind, text in messages or []:
        getattr(st, kind)(text)


# -- verification and the start of a run -----------------------------------------

def record_verification() -> None:
    """A factor was checked just now: every tab of this browser's session may act for 10 minutes."""
    at = now()
    st.session_state[VERIFIED_AT] = at
    held = token()
    if held:
        try:
            config.service().sessions.update(held, second_factor_passed=bool(st.session_state.get(PASSED)),
                                            verified_at=at)
        except mfa_core.MFAError:  # this tab still knows; other tabs will ask again
            pass



def begin_run() -> None:
    """Called first on every full run by the guard."""
    st.session_state.pop(DIALOG_OPEN, None)
    st.session_state.pop(REVERIFY_DONE, None)



def format_time(epoch_seconds: float) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
