"""The Helpdesk page (admins only): users' MFA status, one user's audit trail, reset MFA, clear a lockout.

The page calls ``require_admin`` and then ``render(admin)``. The user list is
searched in the portal's cached index of ``users.yaml`` (``portal.users.index``:
built once per version of the file), so a run only filters it and reads the
MFA status of the rows drawn (``SHOWN`` at most).
"""

from __future__ import annotations

import pyarrow as pa
import streamlit as st

import mfa_core
from mfa_core.users import User

from . import config, session, users
from .signin import MANAGE_PAGE

SHOWN = 25  # rows drawn at most: a search narrows a large directory
TRAIL = 100  # audit events shown for one user, newest first
PERIODS = {"Last 30 days": 30 * 86400, "Last year": 365 * 86400, "Everything": None}
REASON = "helpdesk_reason"
ERROR = "helpdesk_error"
NOT_ADMIN = "Only helpdesk admins can do this."
DAMAGED = "Record damaged"


def lock_state(status: mfa_core.MFAStatus) -> str:
    """The second factor's and the password's lockout, in words."""
    text = "; ".join(status.lockout_words())
    return text[:1].upper() + text[1:] if text else "—"


def has_failures(status: mfa_core.MFAStatus) -> bool:
    return bool(status.locked or status.failed_attempts or status.password_blocked
                or status.password_failures)


def factor(status: mfa_core.MFAStatus) -> str:
    if status.damaged:
        return DAMAGED
    if status.totp_enabled:
        return "On"
    return "Setting up" if status.pending_enrollment else "Off"


def _when(timestamp: float | None) -> str:
    return session.format_time(timestamp) if timestamp is not None else "—"


def _table(rows: list[dict[str, object]]) -> pa.Table:
    """Rows (at least one) for ``st.dataframe`` as an Arrow table of text columns.

    Streamlit serialises an Arrow table as is: no pandas round trip (~0.1 ms
    instead of ~1.3 ms for 25 rows). Values are shown as text (a name that
    ``users.yaml`` holds as a number too); None stays empty.
    """
    columns = {key: [None if r[key] is None else str(r[key]) for r in rows] for key in rows[0]}
    return pa.table({key: pa.array(values, pa.string()) for key, values in columns.items()})


def _reason() -> str:
    return (st.session_state.get(REASON) or "").strip()


def _still_admin(actor: str) -> bool:
    """Callbacks run before the page's guard: check again who clicks, and their role now."""
    if session.current_username() != actor or not session.second_factor_passed():
        return False
    user = users.lookup(config.portal(), actor)
    return user is not None and user.is_admin


def request_reset(actor: str, target: str) -> None:
    """**Reset MFA**: checks here, then the reset behind reverification (10 minutes)."""
    st.session_state.pop(ERROR, None)
    reason = _reason()
    if not _still_admin(actor):
        st.session_state[ERROR] = NOT_ADMIN
        return
    if target == actor:
        st.session_state[ERROR] = "You cannot reset your own MFA from the helpdesk."
        return
    if not reason:
        st.session_state[ERROR] = "A reason is required to reset MFA."
        return

    def reset() -> None:
        if not _still_admin(actor):
            session.flash("error", NOT_ADMIN)
            return
        try:
            config.service().reset_mfa(target, actor=actor, reason=reason)
        except ValueError as err:  # a reason the engine refuses (too long, control characters)
            session.flash("error", str(err))
            return
        st.session_state[REASON] = ""
        session.flash("success", f"Two-step verification of {target} was reset: their "
                                 "authentication app and backup codes are removed and their other "
                                 "sessions must verify again.")

    session.sensitive("helpdesk_reset", f"reset the two-step verification of {target}", reset)


def clear_lockout(actor: str, target: str) -> None:
    st.session_state.pop(ERROR, None)
    if not _still_admin(actor):
        st.session_state[ERROR] = NOT_ADMIN
        return
    try:
        config.service().unlock(target, actor=actor, reason=_reason() or "lockout cleared by the helpdesk")
    except (mfa_core.MFAError, ValueError) as err:
        st.session_state[ERROR] = str(err)
        return
    st.session_state[REASON] = ""
    session.flash("success", f"Failed attempts and lockout of {target} were cleared.")


def render(admin: User) -> None:
    """The whole page below the guard, for the signed-in helpdesk admin ``admin``."""
    svc = config.service()
    st.title("Helpdesk")
    if not session.status().two_factor_enabled:
        st.warning("You have no second factor yourself: add an authentication app on Manage MFA.")
        st.page_link(MANAGE_PAGE, label="Manage MFA", icon=":material/security:")

    query = st.text_input("Search users", key="helpdesk_search",
                          placeholder="Username, name or e-mail")
    directory = users.index(config.portal())
    found = directory.search(query)
    shown = [u for u in map(directory.user, found[:SHOWN]) if u is not None]
    statuses = dict(zip((u.username for u in shown), svc.statuses(u.username for u in shown)))

    if not found:
        st.info("No users match the search.")
    else:
        note = f"{len(found)} of {len(directory)} users"
        if len(found) > SHOWN:
            note += f"; the first {SHOWN} are shown: refine the search"
        st.caption(note)
        st.dataframe(_table([{"User": u.username, "Name": u.name, "E-mail": u.email or "—",
                       "Role": "Admin" if u.is_admin else "User",
                       "Authenticator": factor(statuses[u.username]),
                       "Backup codes": (str(statuses[u.username].backup_codes_remaining)
                                        if statuses[u.username].totp_enabled else "—"),
                       "Lockout": lock_state(statuses[u.username]),
                       "Last activity": _when(statuses[u.username].last_activity)} for u in shown]),
                     hide_index=True, key="helpdesk_users")

    names = {u.username: u for u in shown}
    selected = st.selectbox("User", list(names), index=None, key="helpdesk_user",
                            placeholder="Choose a user to see their audit trail and act",
                            format_func=lambda n: f"{n} — {names[n].name}" if n in names else n)
    if selected in names:
        _user_panel(admin, names[selected], statuses[selected])


def _user_panel(admin: User, user: User, status: mfa_core.MFAStatus) -> None:
    """One user: status line, audit trail for a period, the helpdesk actions."""
    svc = config.service()
    st.header(f"{user.name} ({user.username})")
    codes = f", {status.backup_codes_remaining} backup codes left" if status.totp_enabled else ""
    st.write(f"Authenticator app: **{factor(status)}**{codes}. "
             f"Lockout: **{lock_state(status)}**. Last activity: {_when(status.last_activity)}.")

    st.subheader("Audit trail")
    period = st.radio("Period", list(PERIODS), horizontal=True, key="helpdesk_period")
    span = PERIODS.get(period)
    # The trail is kept a file a day: a period reads only its days.
    trail = svc.audit(user.username, since=svc.clock() - span if span else None)[::-1][:TRAIL]
    if trail:
        st.dataframe(_table([{"Time": _when(e.time), "Event": e.label,
                              "Outcome": e.outcome.capitalize(), "By": e.actor or "—",
                              "Detail": e.detail} for e in trail]),
                     hide_index=True, key="helpdesk_trail")
    else:
        st.caption("No events for this user in this period.")

    st.subheader("Helpdesk actions")
    st.text_input("Reason", key=REASON, max_chars=500,
                  help="Recorded in the audit trail with your name. Required for a reset.")
    if user.username == admin.username:
        st.info("You cannot reset your own MFA here: use Manage MFA, or ask another admin.")
    else:
        st.write("**Reset MFA** removes the user's authentication app and backup codes and "
                 "clears their lockout; their signed-in sessions must verify again.")
        st.button("Reset MFA", key="helpdesk_reset", type="primary", on_click=request_reset,
                  args=(admin.username, user.username))
        left = session.verification_remaining()
        st.caption(f"You verified it's you recently: no code needed for another {-(-left // 60)} min."
                   if left else "A reset asks you to verify it's you first.")
    if status.damaged:
        st.error("This user's security record cannot be read: they cannot sign in. **Reset MFA** "
                 "replaces it (the damaged copy is kept aside) and they set up two-step "
                 "verification again.")
    if has_failures(status):
        st.button("Clear lockout", key="helpdesk_unlock", on_click=clear_lockout,
                  args=(admin.username, user.username))
    else:
        st.caption("No failed attempts to clear.")
    if st.session_state.get(ERROR):
        st.error(st.session_state.pop(ERROR))
