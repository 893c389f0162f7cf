"""The home page behind the sign-in gate: a summary and the way to Manage MFA."""

from __future__ import annotations

import streamlit as st

from mfa_core.users import User

from . import session
from .display import plain
from .navigation import MANAGE_PAGE, page_link


def render(user: User) -> None:
    status = session.status()
    st.title(f"Welcome, {plain(user.name)}", anchor=False)
    if status.two_factor_enabled:
        st.success("Two-step verification is on: your account asks for a code from your "
                   "authentication app after your password.", icon=":material/verified_user:")
        st.write(f"Backup codes left: **{status.backup_codes_remaining}**")
    else:
        st.warning("Two-step verification is off. Add an authentication app to protect your "
                   "account if your password leaks.", icon=":material/gpp_maybe:")
    page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
    if status.last_activity is not None:
        st.caption(f"Last security event: {session.format_time(status.last_activity)}")
