"""Manage MFA: the user's authenticator and backup codes, behind reverification."""

import streamlit as st

import portal
from portal import enrollment, manage
from portal.signin import ADD_TOTP_PAGE

user = portal.require_user("Manage MFA")
if manage.take_goto_add():
    st.switch_page(ADD_TOTP_PAGE)
enrollment.forget_if_finished()
status = portal.service().status(user.username)

st.title("User MFA Settings")

st.subheader("Authentication app")
if status.totp_enabled:
    st.write("TOTP via authentication app enabled")
    st.button("Remove", key="manage_remove", on_click=manage.request_remove)
else:
    st.write("Add TOTP via authentication app")
    st.button("Add", key="manage_add", type="primary", on_click=manage.request_add)

if status.two_factor_enabled:
    st.subheader("Backup codes")
    left = status.backup_codes_remaining
    text = f"You have {left} backup code{'s' if left != 1 else ''} left."
    if left <= 3:
        st.warning(f"{text} Generate new ones so you are not locked out.")
    else:
        st.write(text)
    new_codes = st.session_state.get(manage.NEW_CODES)
    if new_codes:
        st.write("Your new backup codes. They are shown only once: save them now. "
                 "Your old codes no longer work.")
        st.code("\n".join(new_codes), language=None)
        st.download_button("Download backup codes", manage.codes_text(new_codes, user.username),
                           file_name="mfa-portal-backup-codes.txt", mime="text/plain",
                           key="manage_download", on_click="ignore", icon=":material/download:")
        st.button("Done", key="manage_done", type="primary", on_click=manage.done)
    else:
        st.write("Generate new backup codes?")
        st.button("Generate", key="manage_generate", on_click=manage.request_generate)

portal.verification_caption()

st.subheader("Recent security activity")
table = manage.activity_table(user.username)
if table:
    st.markdown(table)
else:
    st.caption("No security events yet.")
