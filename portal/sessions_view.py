"""Manage MFA's "Where you are signed in": the user's sessions, sign out one or all others."""

from __future__ import annotations

import functools

import streamlit as st
from ua_parser import parse

import mfa_core

from . import config, dom, session
from .display import plain

SIGNED_OUT_OTHERS = "You signed out of every other session."
PASSWORD_ONLY = "password only — not verified"
LOCALHOST = "this computer (localhost)"


@functools.lru_cache(maxsize=512)
def describe(user_agent: str) -> str:
    """"Firefox 128 on Windows" from a User-Agent header (ua-parser); "Unknown browser" if none."""
    if not user_agent:
        return "Unknown browser"
    found = parse(user_agent)
    browser = found.user_agent.family if found.user_agent else "Unknown browser"
    if found.user_agent and found.user_agent.major:
        browser += f" {found.user_agent.major}"
    system = found.os.family if found.os else None
    return f"{browser} on {system}" if system and system != "Other" else browser


MOBILE_SYSTEMS = ("iOS", "iPadOS", "Android")


@functools.lru_cache(maxsize=512)
def is_phone(user_agent: str) -> bool:
    """Whether a User-Agent is a phone's or a tablet's browser (ua-parser)."""
    if not user_agent:
        return False
    found = parse(user_agent)
    return bool(found.os and found.os.family in MOBILE_SYSTEMS)


@functools.lru_cache(maxsize=512)
def phone_name(user_agent: str) -> str | None:
    """"iPhone", "Pixel 8": the phone or tablet a User-Agent names (ua-parser), else None.

    Only phones and tablets: an authentication app does not live on the
    desktop browser someone manages their account from.
    """
    if not user_agent:
        return None
    found = parse(user_agent)
    if not (found.os and found.os.family in MOBILE_SYSTEMS and found.device):
        return None
    family = found.device.family
    return None if not family or family in ("Other", "Generic Smartphone", "K") else family


@session.guarded
def sign_out_one(session_id: str) -> None:
    user = session.callback_user()
    if config.service().sessions.end_by_id(user, session_id):
        session.flash("success", "That session was signed out.")


@session.guarded
def sign_out_others() -> None:
    user = session.callback_user()
    ended = config.service().sessions.end_others(user, session.token())
    session.flash("success", SIGNED_OUT_OTHERS if ended else "There were no other sessions.")


def render(username: str) -> None:
    st.header("Where you are signed in", anchor=False)
    svc = config.service()
    try:
        live = svc.sessions.of(username)
        mine = svc.sessions.id_of(session.token()) if session.token() else None
    except (mfa_core.MFAError, ValueError):
        st.error("Your sessions cannot be listed right now.")
        return
    names: dict[str, str] = {}
    for each in live:
        row = st.container(horizontal=True, vertical_alignment="center")
        here = " (this browser)" if each.id == mine else ""
        # A session past the password only: someone who knows it, or a sign-in not finished.
        unverified = "" if each.second_factor_passed else f" · :orange[**{PASSWORD_ONLY}**]"
        where = LOCALHOST if each.source == config.LOCALHOST else (each.source or "unknown address")
        row.markdown(f"**{plain(describe(each.user_agent))}**{here}{unverified}  \n"
                     f"{plain(where)} · signed in "
                     f"{session.format_time(each.created_at)} · last active "
                     f"{session.format_time(each.last_seen)}")
        if each.id != mine:
            key = f"manage_session_{each.id[:12]}"
            row.button("Sign out", key=key, on_click=sign_out_one, args=(each.id,))
            # Not the same name as the page's own Sign out: which session it ends.
            names[key] = (f"Sign out {describe(each.user_agent)} "
                          f"({each.source or 'unknown address'})")
    dom.button_names(names, "manage_sessions")
    if len([s for s in live if s.id != mine]):
        st.button("Sign out of all other sessions", key="manage_sign_out_others",
                  on_click=sign_out_others)
    else:
        st.caption("You are signed in here only.")
