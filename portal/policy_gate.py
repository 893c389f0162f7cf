"""The sign-in's policy step (issue 23): what the organization's two-step rule lets a signed-in user reach.

The guard (``signin.require_user``) calls ``hold()`` on every run of every
page, once the second factor passed: the rule is read from the engine each
time (``svc.requirement``), so a reload, a new tab or a page opened by its URL
is held the same way. What it does by the user's state:

- ``grace`` (no allowed factor yet, before the date): once per sign-in, while
  the engine says the prompt is due (``policy_prompt_due``), a screen "Your
  organization requires two-step verification by <date> (N days left)" with
  **Set it up now** and **Remind me later** (``snooze_policy``).
- ``overdue`` (no factor, past the date): only Manage MFA and Add TOTP, to set
  one up, when the engine allows it from here (``may_set_up_overdue``: a
  familiar source or a temporary pass); otherwise a page saying to contact the
  helpdesk, with no set-up controls at all.
- ``disallowed`` (factors, none of them allowed): only Manage MFA, with the
  reason, until an allowed one is added.

A session sent to set up (``SETUP``) lands on the home page once it is done.
Nothing here decides the rule: the engine does; this module only draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

import mfa_core

from . import config, passkey_ceremony, session
from .navigation import ADD_TOTP_PAGE, HOME_PAGE, MANAGE_PAGE

REQUIREMENT = "portal_policy_requirement"  # the user's Requirement as the guard read it this run
RECORDED = "portal_policy_recorded"        # token of the session whose sign-in recorded the rule
PROMPTED = "portal_policy_prompted"        # the grace screen was answered in this page session
SETUP = "portal_policy_setup"              # sent to set up by the rule: home once it is done
GOTO = "portal_policy_goto"                # the page to switch to on the next run (after a button)
SETUP_PAGES = ("Manage MFA", "Add TOTP")    # all an overdue session reaches
HELD_PAGES = {"overdue": SETUP_PAGES, "disallowed": ("Manage MFA", "Add TOTP")}

# The authenticator kinds a user adds (backup codes come with the first one).
KIND_WORDS = {"totp": "an authentication app", "passkey": "a passkey", "backup_code": "backup codes"}
HAVE_WORDS = {"totp": "authentication app", "passkey": "passkey"}


@dataclass(frozen=True)
class Hold:
    """The user may reach only the pages of ``pages`` (set-up pages), for ``state``'s reason."""

    state: str
    requirement: object
    pages: tuple[str, ...]


# -- what the rule says ------------------------------------------------------------

def read(username: str) -> object:
    """The user's requirement now; the first run of a sign-in session records it (the grace
    period starts then for a user the rule never met before)."""
    svc = config.service()
    held = session.token()
    record = bool(held) and st.session_state.get(RECORDED) != held
    found = svc.requirement(username, record=record)
    if record:
        st.session_state[RECORDED] = held
    st.session_state[REQUIREMENT] = found
    return found


def current() -> object | None:
    """The signed-in user's requirement as the guard read it in this run (None: not read)."""
    found = st.session_state.get(REQUIREMENT)
    user = session.current_username()
    return found if found is not None and getattr(found, "username", None) == user else None


def needs(kind: str) -> bool:
    """Whether adding ``kind`` is what the rule asks of the user now (its button comes first)."""
    found = current()
    return (found is not None and found.state in ("grace", "overdue", "disallowed")
            and kind in addable(found) and len(addable(found)) == 1)


def required() -> bool:
    """Whether a rule requires two-step verification of the user (as the guard read it)."""
    found = current()
    return found is not None and bool(found.required)


def allows(kind: str) -> bool:
    """Whether the user's rule lets them use ``kind`` ("totp", "passkey") — all when no rule."""
    found = current()
    return found is None or not found.required or kind in found.allowed


def addable(requirement: object) -> list[str]:
    """The kinds of authenticator the user can add here that their rule allows."""
    kinds = [k for k in ("totp", "passkey") if not requirement.required or k in requirement.allowed]
    if "passkey" in kinds and not passkey_ceremony.available():
        kinds.remove("passkey")
    return kinds


def kinds_words(kinds) -> str:
    """"an authentication app or a passkey"."""
    words = [KIND_WORDS[k] for k in ("totp", "passkey", "backup_code") if k in kinds]
    return " or ".join(words) if words else "an authenticator"


def days_words(requirement: object) -> str:
    left = requirement.days_left
    if left is None:
        return ""
    if left <= 0:
        return "due today"
    return f"{left} day{'s' if left != 1 else ''} left"


def due_line(requirement: object) -> str:
    """"Your organization requires two-step verification by 1 March 2027 (12 days left)."."""
    return (f"Your organization requires two-step verification by {requirement.due_date} "
            f"({days_words(requirement)}).")


def disallowed_reason(requirement: object, status: mfa_core.MFAStatus) -> str:
    """Why a user with factors is held: which kinds their rule allows, which they have."""
    have = sorted({a.kind for a in status.authenticators}, key=("totp", "passkey").index)
    mine = " and ".join(f"your {HAVE_WORDS.get(k, k)}" for k in have) or "your authenticator"
    verb = "does" if len(have) <= 1 else "do"
    return (f"Your organization requires {kinds_words(requirement.allowed & {'totp', 'passkey'})} "
            f"for your account, and {mine} {verb} not count for it. Until you add one, only "
            "Manage MFA is open.")


# -- the guard's step ---------------------------------------------------------------

def hold(page_title: str | None, *, layout: Callable[[str], None],
         sign_out: Callable[[], None]) -> Hold | None:
    """Called by the guard once the session passed the second factor. Returns None (the page
    runs), a ``Hold`` (a set-up page runs, limited), or draws a screen and stops."""
    username = session.current_username()
    try:
        requirement = read(username)
    except mfa_core.MFAError as err:  # fail closed: the rule cannot be read
        layout("centered")
        st.error(str(err))
        st.stop()
    state = requirement.state
    goto = st.session_state.pop(GOTO, None)
    if goto == MANAGE_PAGE and state in ("grace", "overdue", "disallowed"):
        st.switch_page(_setup_page(requirement))
    elif goto == HOME_PAGE and page_title != "Home":
        st.switch_page(HOME_PAGE)
    if state not in ("grace", "overdue", "disallowed"):
        st.session_state.pop(PROMPTED, None)
        return None
    if state == "grace":
        if st.session_state.get(PROMPTED) or not _prompt_due(username):
            return None
        layout("centered")
        _grace_screen(requirement, sign_out)
        st.stop()
    if state == "overdue" and not _may_set_up(username):
        layout("centered")
        _helpdesk_screen(requirement, sign_out)
        st.stop()
    st.session_state[SETUP] = True
    found = Hold(state, requirement, HELD_PAGES[state])
    if page_title not in found.pages:
        layout("centered")
        _held_screen(found, sign_out)
        st.stop()
    return found


def _prompt_due(username: str) -> bool:
    try:
        return config.service().policy_prompt_due(username)
    except mfa_core.MFAError:
        return True  # ask rather than skip


def _may_set_up(username: str) -> bool:
    try:
        return config.service().may_set_up_overdue(username, source=session.client_source(),
                                                   session_id=session.token())
    except mfa_core.MFAError:
        return False


def _setup_page(requirement: object) -> str:
    """Where **Set it up now** leads: Add TOTP when an app is all the user can add, else Manage
    MFA (Add and Add a passkey)."""
    return ADD_TOTP_PAGE if addable(requirement) == ["totp"] else MANAGE_PAGE


@session.guarded
def set_up_now() -> None:
    """**Set it up now**: to the set-up page (the switch happens in the next run's guard)."""
    st.session_state[PROMPTED] = True
    st.session_state[SETUP] = True
    st.session_state[GOTO] = MANAGE_PAGE  # or Add TOTP: the guard chooses with the rule read then


@session.guarded
def remind_later() -> None:
    """**Remind me later**: the engine notes it (not asked again for a day), then home."""
    username = session.callback_user()
    try:
        config.service().snooze_policy(username)
    except mfa_core.MFAError as err:
        session.flash("error", str(err))
        return
    st.session_state[PROMPTED] = True
    st.session_state.pop(SETUP, None)
    st.session_state[GOTO] = HOME_PAGE
    session.flash("info", "We will remind you at a later sign-in. You can set up two-step "
                          "verification any time on Manage MFA.")


def _buttons(sign_out: Callable[[], None], *, set_up: bool, later: bool = False) -> None:
    row = st.container(horizontal=True)
    if set_up:
        row.button("Set it up now", key="portal_policy_set_up", type="primary", on_click=set_up_now)
    if later:
        row.button("Remind me later", key="portal_policy_later", on_click=remind_later)
    row.button("Sign out", key="portal_policy_sign_out", on_click=sign_out)


def _how() -> str:
    return ("From then on, after your password, the portal asks for a code from the app on your "
            "phone or for your passkey. It takes about two minutes.")


def _grace_screen(requirement: object, sign_out: Callable[[], None]) -> None:
    st.title("Set up two-step verification", anchor=False)
    session.show_flashes()
    st.warning(due_line(requirement), icon=":material/schedule:")
    kinds = addable(requirement)
    if kinds:
        st.write(f"Add {kinds_words(kinds)} to your account. {_how()}")
    st.caption(f"**Remind me later** asks again at a sign-in a day from now. After "
               f"{requirement.due_date} you can only sign in to set it up.")
    _buttons(sign_out, set_up=bool(kinds), later=True)
    if not kinds:
        st.info(NOTHING_TO_ADD)


NOTHING_TO_ADD = ("The authenticator your organization requires cannot be set up on this portal. "
                  "Contact the helpdesk.")


def _helpdesk_screen(requirement: object, sign_out: Callable[[], None]) -> None:
    """Past the date, from somewhere new and without a pass: no set-up controls at all."""
    st.title("Contact the helpdesk", anchor=False)
    session.show_flashes()
    st.error(f"Your organization required two-step verification by {requirement.due_date}, and "
             "that date has passed.", icon=":material/block:")
    st.write("To keep your account safe, two-step verification cannot be set up from a device or "
             "network you have not signed in from before. Contact the helpdesk: they check it is "
             "you and give you a temporary pass to set it up.")
    _buttons(sign_out, set_up=False)


def _held_screen(found: Hold, sign_out: Callable[[], None]) -> None:
    """Any page but the set-up pages while held: why, and the way to set up."""
    requirement = found.requirement
    kinds = addable(requirement)
    if found.state == "overdue" or not kinds:
        st.title("Set up two-step verification", anchor=False)
    else:
        st.title(f"Add {kinds_words(kinds)}", anchor=False)
    session.show_flashes()
    if found.state == "overdue":
        st.error(f"Your organization required two-step verification by {requirement.due_date}. "
                 "Set it up now to continue: nothing else opens until you do.",
                 icon=":material/block:")
        if kinds:
            st.write(f"Add {kinds_words(kinds)}. {_how()}")
        else:
            st.info(NOTHING_TO_ADD)
    else:
        st.warning(disallowed_reason(requirement, session.status()), icon=":material/block:")
        if not kinds:
            st.info(NOTHING_TO_ADD)
    _buttons(sign_out, set_up=bool(kinds))


def banner(found: Hold | None) -> None:
    """On a set-up page while held (or in grace): what the rule asks, above the page."""
    if found is None:
        requirement = current()
        if requirement is not None and requirement.state == "grace":
            st.info(due_line(requirement), icon=":material/schedule:")
        return
    requirement = found.requirement
    if found.state == "overdue":
        if session.restricted():
            return  # the temporary pass's banner says what this session may do
        st.error(f"Your organization required two-step verification by {requirement.due_date}. "
                 f"Add {kinds_words(addable(requirement))} to continue: nothing else opens until "
                 "you do.", icon=":material/block:")
    else:
        st.warning(disallowed_reason(requirement, session.status()), icon=":material/block:")


# -- after setting up -------------------------------------------------------------------

def set_up_done(done: str = "Two-step verification is set up.") -> bool:
    """A session sent to set up whose rule is met now: home, with ``done`` said there."""
    if not st.session_state.get(SETUP):
        return False
    requirement = current()
    if requirement is None or requirement.state in ("grace", "overdue", "disallowed"):
        return False
    st.session_state.pop(SETUP, None)
    session.flash("success", done)
    st.switch_page(HOME_PAGE)
    return True
