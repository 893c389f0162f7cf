"""Add TOTP: the step machine add → verify → backupcodes → success."""

import streamlit as st

import portal
from portal import enrollment, manage
from portal.signin import MANAGE_PAGE

user = portal.require_user("Add TOTP")
state = enrollment.page_state(user.username)


def manage_link() -> None:
    portal.page_link(MANAGE_PAGE, "Manage MFA", ":material/arrow_back:")


if state == enrollment.VERIFY_FIRST:
    st.title("Add TOTP MFA")
    st.write("Verify it's you before you set up an authentication app.")
    st.button("Verify it's you", key="addtotp_start", type="primary",
              on_click=enrollment.request_start)
elif state == enrollment.ENABLED:
    st.title("Add TOTP MFA")
    st.info("TOTP via authentication app enabled. To set up a different app, remove this one "
            "on Manage MFA first.")
elif state == enrollment.EXPIRED:
    st.title("Add TOTP MFA")
    st.error("This set-up took too long and has expired. Press Reset to get a new QR code.")
    st.button("Reset", key="addtotp_reset", on_click=enrollment.request_reset)
elif state in ("add", "verify"):
    resource = enrollment.pending(user.username)
    if state == "add":
        st.title("Add TOTP MFA")
        st.write("Scan this QR code with your authentication app (Google Authenticator, "
                 "Microsoft Authenticator, 1Password, …).")
        if st.session_state.get(enrollment.SHOW_URI):
            st.code(resource.uri, language=None, wrap_lines=True)
            st.button("Use QR Code instead", key="addtotp_toggle", on_click=enrollment.toggle_uri)
        else:
            st.image(enrollment.qr_for(resource), width=200, output_format="PNG")
            st.button("Use URI instead", key="addtotp_toggle", on_click=enrollment.toggle_uri)
        st.write("Can't scan it? Enter this key in your app by hand:")
        st.code(resource.grouped_secret, language=None)
        st.write("Once you have set up your authentication app, verify your code")
        row = st.container(horizontal=True)
        row.button("Verify", key="addtotp_verify", type="primary", on_click=enrollment.go_verify)
        row.button("Reset", key="addtotp_reset", on_click=enrollment.request_reset)
    else:
        st.title("Verify TOTP")
        with st.form("addtotp_verify_form", border=False):
            st.text_input("Enter the code from your authentication app", key=enrollment.CODE,
                          autocomplete="one-time-code", max_chars=12)
            st.form_submit_button("Verify code", type="primary", on_click=enrollment.submit_code)
        error = st.session_state.get(enrollment.ERROR)
        if error:
            st.error(error)
        row = st.container(horizontal=True)
        row.button("Show the QR code again", key="addtotp_back", on_click=enrollment.back_to_code)
        row.button("Reset", key="addtotp_reset", on_click=enrollment.request_reset)
    minutes = max(0, int(resource.expires_at - portal.service().clock()) // 60)
    st.caption(f"This set-up expires in about {minutes} min; Reset starts a new one.")
elif state == "backupcodes":
    codes = enrollment.codes()
    st.title("Verification was a success!")
    st.write("Save this list of backup codes somewhere safe in case you need to access your "
             "account in an emergency")
    st.code("\n".join(codes), language=None)
    st.download_button("Download backup codes", manage.codes_text(codes, user.username),
                       file_name="mfa-portal-backup-codes.txt", mime="text/plain",
                       key="addtotp_download", on_click="ignore", icon=":material/download:")
    with st.form("addtotp_finish_form", border=False):
        st.text_input("To show you saved them, type one of the backup codes",
                      key=enrollment.CONFIRM, autocomplete="off", max_chars=40)
        st.form_submit_button("Finish", type="primary", on_click=enrollment.finish)
    error = st.session_state.get(enrollment.CONFIRM_ERROR)
    if error:
        st.error(error)
else:  # success
    st.title("Success!")
    st.write("You have successfully added TOTP MFA via an authentication application.")

manage_link()
