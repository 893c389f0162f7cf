"""A passkey ceremony on the pages (the sign-in, Verify it's you, Add a passkey): the browser's half, the engine's.

Every ceremony runs the same way: a button's callback asks the engine for
the browser's options (a challenge bound to this sign-in session); the next
run mounts the component, which calls the browser once; the browser's answer
comes back in the component's callback, which hands it to the engine. The
state lives under ``portal_passkey_`` keys of the page session (gone with
the other ``portal_`` keys at sign-out). Errors are shown as the engine or
the component word them; nothing about the answer itself is ever shown.
Adding a passkey (behind reverification, then its name) is ``passkey_view``'s;
the reverification dialog (``reverify``) and the sign-in use this module only.
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

import mfa_core

from . import config, session
from . import passkey_component as pc
from .display import plain

SIGN_IN = "signin"
REVERIFY = "reverify"
ADD = "add"
PROMPT = "Follow your browser's prompt to use your passkey."
CANNOT_CHECK = "That passkey answer cannot be checked. Try again."


def _ceremony_key(slot: str) -> str:
    return f"portal_passkey_{slot}"


def _component_key(slot: str) -> str:
    return f"portal_passkey_{slot}_component"


def _error_key(slot: str) -> str:
    return f"portal_passkey_{slot}_error"


def has_passkey(status: mfa_core.MFAStatus) -> bool:
    return any(a.kind == "passkey" for a in getattr(status, "authenticators", ()))


def available() -> bool:
    """Whether this portal can offer passkeys (its relying-party settings work)."""
    try:
        return config.service().passkeys_available()
    except mfa_core.MFAError:
        return False


def set_error(slot: str, text: str) -> None:
    st.session_state[_error_key(slot)] = text


def clear(slot: str) -> None:
    for key in (_ceremony_key(slot), _error_key(slot)):
        st.session_state.pop(key, None)


def start(slot: str) -> None:
    """A button's callback: a new ceremony for ``slot`` (its challenge replaces any before it)."""
    user, token = session.current_username(), session.token()
    if not user or not token:
        return
    svc = config.service()
    try:
        # Only an answer from this page's own origin is accepted (not another port of the host).
        origin = pc.page_origin()
        if slot == ADD:
            options, mode = svc.begin_passkey_registration(user, session=token, origin=origin,
                                                           source=session.client_source()), pc.CREATE
        else:
            options, mode = svc.begin_passkey_sign_in(user, session=token, origin=origin), pc.GET
    except mfa_core.MFAError as err:
        clear(slot)
        set_error(slot, str(err))
        return
    st.session_state[_ceremony_key(slot)] = {"mode": mode, "options": options, "nonce": pc.new_nonce()}
    st.session_state.pop(_error_key(slot), None)


def running(slot: str) -> bool:
    return bool(st.session_state.get(_ceremony_key(slot)))


def run(slot: str, on_answer: Callable[[str], None], container: Any = None) -> None:
    """In the page body: the ceremony in progress (if any) and the last error of ``slot``."""
    where = container or st
    ceremony = st.session_state.get(_ceremony_key(slot))
    if ceremony:
        with where.container():
            pc.mount(ceremony["mode"], ceremony["options"], nonce=ceremony["nonce"],
                     key=_component_key(slot), on_result=lambda: _answered(slot, on_answer),
                     prompt=PROMPT)
    error = st.session_state.get(_error_key(slot))
    if error:
        where.error(plain(error))  # an engine message may quote a name the user typed


def _answered(slot: str, on_answer: Callable[[str], None]) -> None:
    """The component's callback: the browser answered (or could not)."""
    ceremony = st.session_state.get(_ceremony_key(slot))
    found = pc.result(_component_key(slot), ceremony["nonce"]) if ceremony else None
    if found is None:
        return
    st.session_state.pop(_ceremony_key(slot), None)
    if "error" in found:
        set_error(slot, pc.error_message(found["error"]))
        return
    on_answer(found["response"])


def attempt(slot: str, response: str) -> mfa_core.SecondFactorResult | None:
    """Hand a sign-in answer to the engine; None (and the error shown) when it is refused."""
    user = session.current_username()
    if not user:
        return None
    try:
        return config.service().attempt_passkey(user, response, session=session.token(),
                                                source=session.client_source())
    except mfa_core.MFAError as err:
        set_error(slot, str(err))
    except (TypeError, ValueError):
        set_error(slot, CANNOT_CHECK)
    return None
