"""A bare page for the passkey component's journey: register, then sign in, through mfa_core.passkeys.

Not the portal: the component and the engine's ceremony checks alone, so
the browser's side is tested without the sign-in or Manage MFA pages.
Passkeys registered here are kept in this process (any browser session may
try them), challenges in the store of ``MFA_PORTAL_DATA_DIR``.
"""

from __future__ import annotations

import os
import secrets

import streamlit as st

import mfa_core
from mfa_core import passkeys
from portal import passkey_component as pc

RP = passkeys.RelyingParty.from_settings(os.environ)
KEY = "passkey_app_ceremony"


@st.cache_resource
def _shared():
    svc = mfa_core.open_service(os.environ["MFA_PORTAL_DATA_DIR"], environ={})
    return svc, passkeys.ChallengeBook(svc.store, svc.clock), []


svc, book, registered = _shared()
state = st.session_state
state.setdefault("session", secrets.token_hex(16))


def start(mode: str) -> None:
    ceremony = passkeys.REGISTER if mode == pc.CREATE else passkeys.AUTHENTICATE
    challenge = book.issue(state.session, ceremony, "alice", pc.page_origin())
    if mode == pc.CREATE:
        options = passkeys.registration_options(RP, user_id=passkeys.user_handle(b"k" * 32, "alice"),
                                                username="alice", display_name="Alice",
                                                challenge=challenge, existing=registered)
    else:
        options = passkeys.authentication_options(RP, challenge=challenge, passkeys=registered)
    state.ceremony = {"mode": mode, "options": options, "nonce": pc.new_nonce()}
    state.pop("message", None)


def answered() -> None:
    ceremony = state.get("ceremony")
    found = pc.result(KEY, ceremony["nonce"]) if ceremony else None
    if found is None:
        return
    state.ceremony = None
    if "error" in found:
        state.message = ("error", pc.error_message(found["error"]))
        return
    try:
        if ceremony["mode"] == pc.CREATE:
            challenge, origin = book.take_bound(state.session, passkeys.REGISTER, "alice")
            new = passkeys.verify_registration(RP, found["response"], challenge=challenge,
                                               origin=origin)
            registered.append(new.fields())
            state.message = ("success", f"Registered: {new.suggested_label}")
        else:
            cid = passkeys.credential_id_of(found["response"])
            match = next((p for p in registered if p["credential_id"] == cid), None)
            challenge, origin = book.take_bound(state.session, passkeys.AUTHENTICATE, "alice")
            if match is None:
                raise mfa_core.PasskeyRefused(reason="unknown credential")
            result = passkeys.verify_authentication(RP, found["response"], challenge=challenge,
                                                    passkey=match, origin=origin)
            match["sign_count"] = result.sign_count
            state.message = ("success", f"Signed in with a passkey (count {result.sign_count})")
    except mfa_core.MFAError as err:
        state.message = ("error", str(err))


st.title("Passkey component")
st.button("Register a passkey", on_click=start, args=(pc.CREATE,))
st.button("Sign in with a passkey", on_click=start, args=(pc.GET,))
if state.get("ceremony"):
    c = state.ceremony
    pc.mount(c["mode"], c["options"], nonce=c["nonce"], key=KEY, on_result=answered,
             prompt="Follow your browser's prompt to use your passkey.")
if state.get("message"):
    kind, text = state.message
    getattr(st, kind)(text)
