"""MFA Portal entrypoint: the sign-in gate (password, then second factor) and the home page."""

import streamlit as st

import portal
from portal import session
from portal.signin import MANAGE_PAGE

user = portal.require_user("Home", home=True)
status = portal.service().status(user.username)

st.title(f"Welcome, {user.name}")
if status.two_factor_enabled:
    st.success("Two-step verification is on: your account asks for a code from your "
               "authentication app after your password.", icon=":material/verified_user:")
    st.write(f"Backup codes left: **{status.backup_codes_remaining}**")
else:
    st.warning("Two-step verification is off. Add an authentication app to protect your "
               "account if your password leaks.", icon=":material/gpp_maybe:")
portal.page_link(MANAGE_PAGE, "Manage MFA", ":material/security:")
if status.last_activity is not None:
    st.caption(f"Last security event: {session.format_time(status.last_activity)}")
