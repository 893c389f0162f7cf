"""Where a signed-in user can go: the page paths, ``page_link`` and the sidebar.

Pages and page bodies import the paths from here; nothing here knows how
sign-in works (the **Sign out** at the top is the callback it is given).

It also tells visits apart (``visit()``): a visit is the runs of one page
in a row, from arriving on it until another page runs. What a page showed
only once (new backup codes) belongs to the visit that made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner import get_script_run_ctx

from mfa_core.users import User

from .display import plain

APP_DIR = Path(__file__).resolve().parent.parent
HOME_PAGE = "streamlit_app.py"
MANAGE_PAGE = "pages/1_Manage_MFA.py"
ADD_TOTP_PAGE = "pages/2_Add_TOTP.py"
HELPDESK_PAGE = "pages/3_Helpdesk.py"
VISIT = "portal_visit"  # (page script hash, visit number) of the last page run


def note_page() -> int:
    """Called once per full run of a signed-in page (by ``sidebar``): the visit number now.

    Another page than the last run's starts a new visit; reruns of the same page
    (a click, a form) stay in it. A new browser session starts at visit 1.
    """
    ctx = get_script_run_ctx()
    page = ctx.page_script_hash if ctx is not None else ""
    last_page, number = st.session_state.get(VISIT) or ("", 0)
    if page != last_page or number == 0:
        number += 1
    st.session_state[VISIT] = (page, number)
    return number


def visit() -> int:
    """The current visit's number (0 before any signed-in page ran in this session)."""
    return (st.session_state.get(VISIT) or ("", 0))[1]


def sidebar(user: User, sign_out: Callable[[], None], *, held: bool = False) -> None:
    """The links they may use in the sidebar; who is signed in (as text: names come from the
    directory) and **Sign out** at the top of the page, where a phone shows them too (its
    sidebar starts collapsed). ``held``: the organization's rule lets them reach only Manage
    MFA until they set up an authenticator (``policy_gate``)."""
    note_page()
    top = st.container(horizontal=True, horizontal_alignment="right", vertical_alignment="center",
                       key="portal_top_bar")
    top.caption(f"Signed in as **{plain(user.name)}** ({plain(user.username)})", width="content")
    top.button("Sign out", key="portal_sign_out", icon=":material/logout:", on_click=sign_out)
    with st.sidebar:
        if held:
            page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
            return
        page_link(HOME_PAGE, "Home", ":material/home:")
        page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
        # A session that passed with a temporary pass never opens the Helpdesk (S40).
        if (user.is_admin and (APP_DIR / HELPDESK_PAGE).exists()
                and not st.session_state.get("portal_restricted")):
            page_link(HELPDESK_PAGE, "Helpdesk", ":material/support_agent:")


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """``st.page_link``, left out when the page is unknown to this run.

    That happens only when a page file runs as its own main script (a test or
    benchmark running it directly); under ``streamlit run streamlit_app.py``
    every page is known.
    """
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        pass
