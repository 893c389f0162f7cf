"""Helpdesk (admins only): users' MFA status, one user's audit trail, reset MFA, clear a lockout."""

import streamlit as st

import mfa_core
import portal
from mfa_core.users import UserDirectory
from portal import session
from portal.config import portal as current_portal
from portal.signin import MANAGE_PAGE
from portal.users import _entries as directory_entries
from portal.users import lookup

SHOWN = 25  # rows drawn at most: a search narrows a large directory
TRAIL = 100  # audit events shown for one user, newest first
PERIODS = {"Last 30 days": 30 * 86400, "Last year": 365 * 86400, "Everything": None}
REASON = "helpdesk_reason"
ERROR = "helpdesk_error"


def _lock_state(status: mfa_core.MFAStatus) -> str:
    if status.locked:
        return "Locked"
    if status.retry_after:
        return f"Waiting {status.retry_after} s ({status.failed_attempts} failed)"
    return f"{status.failed_attempts} failed" if status.failed_attempts else "—"


def _factor(status: mfa_core.MFAStatus) -> str:
    if status.totp_enabled:
        return "On"
    return "Setting up" if status.pending_enrollment else "Off"


def _when(timestamp: float | None) -> str:
    return session.format_time(timestamp) if timestamp is not None else "—"


def _haystack(username: str, entry: dict) -> str:
    """What the search looks in: username, name and e-mail, lower case."""
    parts = (username, entry.get("name"), entry.get("first_name"), entry.get("last_name"),
             entry.get("email"))
    return " ".join(str(p) for p in parts if p).lower()


def _reason() -> str:
    return (st.session_state.get(REASON) or "").strip()


def _still_admin(actor: str) -> bool:
    """Callbacks run before the page's guard: check again who clicks, and their role now."""
    if session.current_username() != actor or not session.second_factor_passed():
        return False
    user = lookup(current_portal(), actor)
    return user is not None and user.is_admin


NOT_ADMIN = "Only helpdesk admins can do this."


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
            portal.flash("error", NOT_ADMIN)
            return
        try:
            portal.service().reset_mfa(target, actor=actor, reason=reason)
        except ValueError as err:  # a reason the engine refuses (too long, control characters)
            portal.flash("error", str(err))
            return
        st.session_state[REASON] = ""
        portal.flash("success", f"Two-step verification of {target} was reset: their "
                                "authentication app and backup codes are removed and their other "
                                "sessions must verify again.")

    portal.sensitive("helpdesk_reset", f"reset the two-step verification of {target}", reset)


def clear_lockout(actor: str, target: str) -> None:
    st.session_state.pop(ERROR, None)
    if not _still_admin(actor):
        st.session_state[ERROR] = NOT_ADMIN
        return
    try:
        portal.service().unlock(target, actor=actor, reason=_reason() or "lockout cleared by the helpdesk")
    except (mfa_core.MFAError, ValueError) as err:
        st.session_state[ERROR] = str(err)
        return
    st.session_state[REASON] = ""
    portal.flash("success", f"Failed attempts and lockout of {target} were cleared.")


admin = portal.require_admin("Helpdesk")
svc = portal.service()
cfg = current_portal()

st.title("Helpdesk")
if not svc.status(admin.username).two_factor_enabled:
    st.warning("You have no second factor yourself: add an authentication app on Manage MFA.")
    st.page_link(MANAGE_PAGE, label="Manage MFA", icon=":material/security:")

query = st.text_input("Search users", key="helpdesk_search",
                      placeholder="Username, name or e-mail").strip().lower()
# The portal's shared, parsed snapshot of users.yaml (read only here: no re-parse or
# copy per run); a User is built only for the rows drawn, so a run stays cheap at
# 10,000 users.
entries = {name: entry for name, entry in directory_entries(cfg).items() if isinstance(entry, dict)}
found = [name for name in sorted(entries) if not query or query in _haystack(name, entries[name])]
shown = [UserDirectory._user(name, entries[name]) for name in found[:SHOWN]]
statuses = dict(zip((u.username for u in shown), svc.statuses(u.username for u in shown)))

if not found:
    st.info("No users match the search.")
else:
    note = f"{len(found)} of {len(entries)} users"
    if len(found) > SHOWN:
        note += f"; the first {SHOWN} are shown: refine the search"
    st.caption(note)
    st.dataframe([{"User": u.username, "Name": u.name, "E-mail": u.email or "—",
                   "Role": "Admin" if u.is_admin else "User",
                   "Authenticator": _factor(statuses[u.username]),
                   "Backup codes": (str(statuses[u.username].backup_codes_remaining)
                                    if statuses[u.username].totp_enabled else "—"),
                   "Lockout": _lock_state(statuses[u.username]),
                   "Last activity": _when(statuses[u.username].last_activity)} for u in shown],
                 hide_index=True, key="helpdesk_users")

names = {u.username: u for u in shown}
selected = st.selectbox("User", list(names), index=None, key="helpdesk_user",
                        placeholder="Choose a user to see their audit trail and act",
                        format_func=lambda n: f"{n} — {names[n].name}" if n in names else n)

if selected in names:
    user, status = names[selected], statuses[selected]
    st.header(f"{user.name} ({user.username})")
    codes = f", {status.backup_codes_remaining} backup codes left" if status.totp_enabled else ""
    st.write(f"Authenticator app: **{_factor(status)}**{codes}. "
             f"Lockout: **{_lock_state(status)}**. Last activity: {_when(status.last_activity)}.")

    st.subheader("Audit trail")
    period = st.radio("Period", list(PERIODS), horizontal=True, key="helpdesk_period")
    span = PERIODS.get(period)
    # The trail is kept a file a day: a period reads only its days.
    trail = svc.audit(user.username, since=svc.clock() - span if span else None)[::-1][:TRAIL]
    if trail:
        st.dataframe([{"Time": _when(e.time), "Event": e.label, "Outcome": e.outcome.capitalize(),
                       "By": e.actor or "—", "Detail": e.detail} for e in trail],
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
        left = portal.verification_remaining()
        st.caption(f"You verified it's you recently: no code needed for another {-(-left // 60)} min."
                   if left else "A reset asks you to verify it's you first.")
    if status.locked or status.failed_attempts:
        st.button("Clear lockout", key="helpdesk_unlock", on_click=clear_lockout,
                  args=(admin.username, user.username))
    else:
        st.caption("No failed attempts to clear.")
    if st.session_state.get(ERROR):
        st.error(st.session_state.pop(ERROR))
