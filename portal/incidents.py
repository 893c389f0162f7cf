"""Unexpected errors: one friendly line for the user, the whole story in the server log.

``app.py`` hands :func:`on_script_error` to ``st.App``: Streamlit calls it
for every exception that escapes a page run or a widget callback. It logs
the traceback under a short incident id and shows the user only that id,
so support can find the log lines while the page reveals no path, source
line or setting. ``client.showErrorDetails = "none"`` (``.streamlit/
config.toml``) covers anything that reaches Streamlit's own error display
anyway (a page run without ``app.py``).

Imported by ``app.py`` before Streamlit's runtime exists: it declares no
component and imports no page module.
"""

from __future__ import annotations

import secrets

import streamlit as st
from streamlit.logger import get_logger

LOGGER = get_logger("mfa_portal.incidents")  # Streamlit's format, in the server's log
# No 0/O or 1/I/L: ids are read out over the phone.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_incident_id() -> str:
    """A short random id such as ``K7Q-M2XD`` (35 bits: unique enough to find one log entry)."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(7))
    return f"{chars[:3]}-{chars[3:]}"


def message(incident: str) -> str:
    return (f"Something went wrong on our side. Try again; if it keeps happening, tell the "
            f"helpdesk incident {incident}.")


def on_script_error(exc: Exception) -> bool:
    """``st.App(on_script_error=...)``: log with an incident id, show the user one line.

    Returns True: Streamlit then shows nothing of its own.
    """
    incident = new_incident_id()
    LOGGER.error("incident %s: %s in a page run", incident, type(exc).__name__,
                 exc_info=(type(exc), exc, exc.__traceback__))
    try:
        st.error(message(incident), icon=":material/error:")
    except Exception:  # no page to draw on (the session went away): the log has it
        LOGGER.warning("incident %s: the message could not be shown", incident)
    return True
