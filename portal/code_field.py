"""The one field every screen asks a code with: the sign-in challenge, Verify it's you, Add TOTP, the backup codes' check.

An app's code: a text field with a number keypad on phones
(``inputmode="numeric"``), ``autocomplete="one-time-code"`` (a phone offers
the code it just received) and "123456" as its example. Not Streamlit's
``type="phone"``: that draws a telephone and "+1 234 567 8900". A backup
code: letters and digits, its own example, nothing for the browser to fill in.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from . import dom, focus

CODE_PLACEHOLDER = "123456"
BACKUP_PLACEHOLDER = "xxxx-xxxx-xxxx-xxxx"


def code_form(form_key: str, label: str, key: str, *, button: str, on_click: Callable[[], None],
              backup: bool = False, primary: bool = True, take_focus: bool = True) -> None:
    """A borderless form: the code field ``label`` (session key ``key``) and its submit ``button``."""
    with st.form(form_key, border=False):
        if backup:
            st.text_input(label, key=key, placeholder=BACKUP_PLACEHOLDER, autocomplete="off",
                          max_chars=40)
        else:
            st.text_input(label, key=key, placeholder=CODE_PLACEHOLDER,
                          autocomplete="one-time-code", max_chars=12)
        st.form_submit_button(button, type="primary" if primary else "secondary",
                              on_click=on_click)
    if not backup:
        dom.input_attributes(label, {"inputmode": "numeric"})
    if take_focus:
        focus.field(label)
