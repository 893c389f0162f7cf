"""New backup codes on screen: shown in the visit that made them, never again.

Manage MFA (**Generate**) and Add TOTP (after the first code) both make a
set and show it with this module. The codes are kept in the session only for
the page visit that generated them (``navigation.visit()``): reruns of that
page (a form, a wrong confirmation) still show them; arriving on any page
later, or a new browser session, shows "Generate new backup codes?" instead.

The download never leaves through a URL (``portal.download``): ``st.download_button``
would put the .txt in Streamlit's media store at ``/media/<hash>``, where any client
holding the URL can fetch it until the store forgets it. The page's own link is a
``data:`` URL of the codes already on screen, so the browser makes the file
itself: the bytes travel once, on the owning session's websocket, inside the
page, and no server response (cacheable or not) ever holds them.
"""

from __future__ import annotations

import streamlit as st

import mfa_core

from . import config, download, navigation, reverify, session

CONFIRM_GENERATE = "portal_confirm_generate"  # Generate pressed, not yet confirmed
CODES = "portal_new_backup_codes"  # {"codes": [...], "visit": navigation.visit()}
FILE_NAME = "mfa-portal-backup-codes.txt"
DOWNLOAD_LABEL = "Download backup codes"


def keep(codes: list[str]) -> None:
    """A set was just generated (in a callback of the page showing it): show it in this visit."""
    st.session_state[CODES] = {"codes": list(codes), "visit": navigation.visit()}


def new_codes() -> list[str]:
    """The codes generated in this visit ([] when none: they were shown already, or never made)."""
    kept = st.session_state.get(CODES)
    if not kept:
        return []
    if kept["visit"] != navigation.visit():
        forget()
        return []
    return list(kept["codes"])


def forget() -> None:
    st.session_state.pop(CODES, None)


def generate() -> None:
    """A new set (the old one stops working), shown in this visit. Run behind reverification."""
    keep(config.service().create_backup_codes(session.callback_user()).codes)


@session.unrestricted
def request_generate() -> None:
    """**Generate**: asked on the page first while unused codes would stop working (inside the
    verification window nothing else asks); the dialog, when it opens, says so too."""
    left = _left()
    if left and reverify.verification_remaining() > 0:
        st.session_state[CONFIRM_GENERATE] = True
        return
    confirm_generate()


@session.unrestricted
def confirm_generate() -> None:
    """**Yes, generate new codes**: a sensitive action (reverification when the last one is stale)."""
    st.session_state.pop(CONFIRM_GENERATE, None)
    left = _left()
    label = "generate new backup codes"
    if left:
        label += f" ({unused_stop_working(left).lower().rstrip('.')})"
    reverify.sensitive("generate", label, generate)


def _left() -> int:
    """Unused codes now (a callback may come long after the page was drawn)."""
    if not session.still_trusted():
        return 0
    try:
        return config.service().status(session.callback_user()).backup_codes_remaining
    except mfa_core.MFAError:
        return 0


def keep_codes() -> None:
    st.session_state.pop(CONFIRM_GENERATE, None)


def unused_stop_working(left: int) -> str:
    return f"Your {left} unused code{'s' if left != 1 else ''} stop{'s' if left == 1 else ''} working."


def codes_text(codes: list[str], username: str) -> str:
    """The .txt a user downloads: the codes, one a line, and what they are."""
    header = (f"MFA Portal backup codes for {username}\n"
              "Each code works once. Keep them somewhere safe.\n\n")
    return header + "\n".join(codes) + "\n"


def download_link(codes: list[str], username: str) -> str:
    """The HTML of the download: a ``data:`` URL the browser saves as a .txt (no server round trip)."""
    return download.data_link(codes_text(codes, username), FILE_NAME, DOWNLOAD_LABEL)


def show(codes: list[str], username: str) -> None:
    """The list, grouped as generated, and the download link."""
    st.code("\n".join(codes), language=None)
    st.markdown(download_link(codes, username), unsafe_allow_html=True)


def offer(key: str) -> None:
    """"Generate new backup codes?" with **Generate** (codes are never shown a second time),
    then "Your 7 unused codes stop working" with **Yes, generate new codes** / **Cancel**."""
    st.write("Generate new backup codes?")
    if st.session_state.get(CONFIRM_GENERATE):
        left = session.status().backup_codes_remaining
        st.warning(f"New codes replace the old ones at once. {unused_stop_working(left)}")
        row = st.container(horizontal=True)
        row.button("Yes, generate new codes", key=f"{key}_confirm", type="primary",
                   on_click=confirm_generate)
        row.button("Cancel", key=f"{key}_cancel", on_click=keep_codes)
        return
    st.button("Generate", key=key, on_click=request_generate)
