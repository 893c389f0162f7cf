"""What every Helpdesk tab shares: who may act there now, and tables of text.

``admin_refusal`` is the check every Helpdesk callback makes first (callbacks
run before the page's guard; ``admitted`` keeps its refusal for the tab); ``text_table`` turns rows into the Arrow table
``st.dataframe`` shows.
"""

from __future__ import annotations

import pyarrow as pa
import streamlit as st

import mfa_core

from . import config, session, users

NOT_ADMIN = "Only helpdesk admins can do this."
NEEDS_MFA = ("The Helpdesk needs two-step verification on your own account. Add an "
             "authentication app on Manage MFA, then come back.")
NEEDS_ALLOWED = ("The Helpdesk needs an authenticator your organization's rule allows for your "
                 "own account. Add one on Manage MFA, then come back.")

def text_table(rows: list[dict[str, object]]) -> pa.Table:
    """Rows (at least one) for ``st.dataframe`` as an Arrow table of text columns.

    Streamlit serialises an Arrow table as is: no pandas round trip (~0.1 ms
    instead of ~1.3 ms for 25 rows). Values are shown as text (a name that
    ``users.yaml`` holds as a number too); None stays empty.
    """
    columns = {key: [None if r[key] is None else str(r[key]) for r in rows] for key in rows[0]}
    return pa.table({key: pa.array(values, pa.string()) for key, values in columns.items()})


def admin_refusal(actor: str) -> str | None:
    """Why ``actor`` may not use the Helpdesk now, or None.

    Callbacks run before the page's guard: check again who clicks, their role,
    their own second factor now, and that it is one their organization's rule
    allows (an admin held by the rule is held here too).
    """
    if session.current_username() != actor or not session.second_factor_passed():
        return NOT_ADMIN
    user = users.lookup(config.portal(), actor)
    if user is None or not user.is_admin:
        return NOT_ADMIN
    try:
        svc = config.service()
        if not svc.status(actor).two_factor_enabled:
            return NEEDS_MFA
        if svc.requirement(actor).state in ("grace", "overdue", "disallowed"):
            return NEEDS_ALLOWED
    except mfa_core.MFAError as err:
        return str(err)
    return None


def admitted(actor: str, error_key: str) -> bool:
    """A callback's first step: whether ``admin_refusal`` lets ``actor`` act. The refusal, if
    any, is kept in ``st.session_state[error_key]`` for the tab's next run (cleared otherwise)."""
    st.session_state.pop(error_key, None)
    refusal = admin_refusal(actor)
    if refusal:
        st.session_state[error_key] = refusal
    return refusal is None
