"""Downloads that never leave through a URL: a ``data:`` link of text already on the page.

``st.download_button`` puts the file in Streamlit's media store at
``/media/<hash>``, where any client holding the URL can fetch it until the
store forgets it. A ``data:`` URL makes the browser build the file itself:
the bytes travel once, on the owning session's websocket, inside the page.
Used for backup codes (``backup_view``) and the Helpdesk's coverage lists.
"""

from __future__ import annotations

import base64
import html

import streamlit as st

_LINK_STYLE = ("display: inline-flex; align-items: center; gap: 0.4rem; padding: 0.35rem 0.8rem; "
               "border: 1px solid rgba(49, 51, 63, 0.3); border-radius: 0.5rem; "
               "color: inherit; text-decoration: none; font-weight: 400")


def data_link(text: str, file_name: str, label: str, mime: str = "text/plain") -> str:
    """The HTML of a link the browser saves as ``file_name`` holding ``text`` (UTF-8)."""
    body = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return (f'<a href="data:{mime};charset=utf-8;base64,{body}" '
            f'download="{html.escape(file_name)}" style="{_LINK_STYLE}">{html.escape(label)}</a>')


def show(text: str, file_name: str, label: str, mime: str = "text/plain") -> None:
    st.markdown(data_link(text, file_name, label, mime), unsafe_allow_html=True)
