"""Browser benchmark reference: the sign-in form's Streamlit widgets alone (no portal code)."""

import streamlit as st

st.title("MFA Portal")
with st.form("login"):
    st.subheader("Sign in")
    st.text_input("Username")
    st.text_input("Password", type="password")
    st.form_submit_button("Login")
