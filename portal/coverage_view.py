"""The Helpdesk's **Coverage** tab: how far the two-step rollout is, from ``svc.coverage()``.

The counts, enrollments per day (a bar chart, with its numbers in words for
those who do not see it), the overdue list, who is in grace, and the CSV of
both (``mfa coverage --csv``'s format), made when asked for. The engine computes the report in one pass over its counts (fast at
100,000 users); this tab only draws it, and runs only while it is open. The
CSV leaves as a ``data:`` link (``portal.download``), never through the media
store's URLs; a cell that a spreadsheet would run as a formula is quoted.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pyarrow as pa
import streamlit as st

import mfa_core
from mfa_core.users import User

from mfa_core import coverage

from . import config, download, session, users
from .helpdesk_rules import admitted, text_table as _table

SHOWN = 200  # rows of the overdue and grace tables drawn at most (the CSV has every one)
CSV_NAME = "mfa-portal-coverage.csv"
CSV = "helpdesk_coverage_csv"              # Prepare the CSV was pressed: the link, once
CSV_ERROR = "helpdesk_coverage_csv_error"
FACTOR_NAMES = {"totp": "Authentication app", "passkey": "Passkey", "backup_code": "Backup codes"}
COUNTS = (("users", "Users", "Everyone in the directory"),
          ("covered", "Covered", "Users a rule applies to"),
          ("enrolled", "Enrolled", "Covered users with an allowed authenticator"),
          ("in_grace", "In grace", "Covered users without one, before their date"),
          ("overdue", "Overdue", "Covered users without one, past their date"),
          ("disallowed", "Not allowed", "Covered users whose authenticators the rule does not allow"),
          ("not_covered", "Not covered", "Users no rule applies to"))


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text (never runs ``=…``, ``+…``, ``-…``, ``@…``)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def report_csv(report: dict) -> str:
    """The list of who still has to set up, as ``mfa coverage --csv`` writes it (overdue, then
    in grace): one format for the CLI and the page."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(coverage.CSV_HEADER)
    writer.writerows([_cell(v) for v in row] for row in coverage.csv_rows(report))
    return out.getvalue()


@session.unrestricted
def prepare_csv(actor: str) -> None:
    """**Prepare the CSV**: the full list is read once, for the next run only."""
    if admitted(actor, CSV_ERROR):
        st.session_state[CSV] = True


def _per_day_words(days: list[dict]) -> str:
    total = sum(d["count"] for d in days)
    if not total:
        return "No authenticator was set up in the last 30 days."
    best = max(days, key=lambda d: d["count"])
    return (f"{total} authenticator{'s' if total != 1 else ''} set up in the last 30 days; the "
            f"most in one day: {best['count']} on {best['date']}.")


def _as_of(iso: object) -> str:
    try:
        return session.format_time(dt.datetime.fromisoformat(str(iso)).timestamp())
    except ValueError:
        return "now"


def render(admin: User) -> None:
    st.header("Coverage", anchor=False)
    try:
        report = config.service().coverage()
    except mfa_core.MFAError as err:
        st.error(str(err))
        return
    st.caption(f"How far the two-step rollout is, as of {_as_of(report.get('generated_at'))}.")
    row = st.container(horizontal=True, key="helpdesk_coverage_counts")
    for key, label, help_text in COUNTS:
        row.metric(label, report.get(key, 0), help=help_text, border=True, width="content")
    by_factor = report.get("by_factor") or {}
    st.write("By authenticator: " + " · ".join(
        f"{name} **{by_factor.get(kind, 0)}**" for kind, name in FACTOR_NAMES.items()))

    st.subheader("Enrollments per day", anchor=False)
    days = list(report.get("enrollments_per_day") or [])
    if days:
        data = pa.table({"Day": pa.array([d["date"] for d in days], pa.string()),
                         "Enrollments": pa.array([int(d["count"]) for d in days], pa.int64())})
        st.bar_chart(data, x="Day", y="Enrollments", height=240)
    st.caption(_per_day_words(days))

    st.subheader("Overdue", anchor=False)
    overdue = list(report.get("overdue_users") or [])
    if overdue:
        directory = users.index(config.portal())
        rows = []
        for name in overdue[:SHOWN]:
            user = directory.user(name)
            rows.append({"User": name, "Name": user.name if user else "",
                         "E-mail": (user.email if user else None) or "—"})
        st.dataframe(_table(rows), hide_index=True, key="helpdesk_coverage_overdue")
        if len(overdue) > SHOWN:
            st.caption(f"The first {SHOWN} of {len(overdue)} are shown; the CSV has all of them.")
    else:
        st.caption("Nobody is overdue.")

    grace = sorted(report.get("grace") or [], key=lambda g: (g["days_left"], g["username"]))
    st.subheader("In grace", anchor=False)
    if grace:
        st.dataframe(_table([{"User": g["username"], "Days left": g["days_left"]}
                             for g in grace[:SHOWN]]),
                     hide_index=True, key="helpdesk_coverage_grace")
        if report.get("in_grace", 0) > len(grace[:SHOWN]):
            st.caption(f"{len(grace[:SHOWN])} of {report['in_grace']} shown, fewest days left "
                       "first.")
    else:
        st.caption("Nobody is in grace.")

    st.subheader("Download", anchor=False)
    if st.session_state.pop(CSV, None):
        # Built on request, not on every run of the tab: at 100,000 users it is megabytes.
        try:
            full = config.service().coverage(grace_limit=None)
        except mfa_core.MFAError as err:
            st.error(str(err))
        else:
            download.show(report_csv(full), CSV_NAME, "Download the CSV", mime="text/csv")
            st.caption("Ready: the list as it was now (username, state, days left).")
    else:
        st.write("Everyone overdue or in grace, as a CSV for a spreadsheet (username, state, days "
                 "left).")
        st.button("Prepare the CSV", key="helpdesk_coverage_prepare", on_click=prepare_csv,
                  args=(admin.username,))
    if st.session_state.get(CSV_ERROR):
        st.error(st.session_state.pop(CSV_ERROR))
