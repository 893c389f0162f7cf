"""The engine's rollout operations (mixed into ``MFAService``): coverage and the policy reminders.

``coverage()`` counts the whole directory from the stores' coverage summaries
(``mfa_core.coverage``), never a user's record. ``send_policy_reminders()`` is
the cron / systemd-timer run (``python -m mfa_core policy remind``): it mails
each user who still has no allowed authenticator 7 days and 1 day before their
due date and once when it passes. Whether a reminder went out is recorded in
the user's record (``policy_reminded``) inside the user's transaction, so two
runs at once (two replicas, a timer and an operator) never send one twice.
"""

from __future__ import annotations

import math
from typing import Any

from . import coverage as cov
from . import policy as pol
from .errors import StorageError
from .storage import IO_ERRORS

REMINDER_EVENT = "policy_reminder"
REMINDERS = (("7d", 7 * pol.DAY), ("1d", pol.DAY))  # sent when the due date is this close


def reminder_due(req: pol.Requirement, now: float) -> str | None:
    """Which reminder a requirement calls for now: "due" once it passed, else "1d" within a day,
    "7d" within a week; None (met, disallowed, no rule, or more than a week ahead)."""
    if req.state == "overdue":
        return "due"
    if req.state != "grace" or req.due_at is None:
        return None
    left = req.due_at - now
    for kind, before in reversed(REMINDERS):
        if left <= before:
            return kind
    return None


def reminder_detail(kind: str, req: pol.Requirement, now: float) -> str:
    """The audit detail (what the mail is made from):
    "7 days left, due 1 March 2027; set up an authentication app or a passkey"."""
    how = f"; set up {req.allowed_words}"
    if kind == "due":
        return f"deadline passed, due {req.due_date}{how}"
    days = max(1, math.ceil((req.due_at - now) / pol.DAY))
    return f"{days} day{'s' if days != 1 else ''} left, due {req.due_date}{how}"


class CoverageOperations:
    """Mixed into MFAService: uses its store, clock, directory, policy and transaction helpers."""

    def coverage(self, *, grace_limit: int | None = cov.GRACE_LIST_MAX) -> dict[str, Any]:
        """How far the two-step rollout is (what ``mfa coverage --json`` prints).

        {"covered", "enrolled", "in_grace", "overdue", "disallowed", "not_covered",
        "users": counts; "overdue_users": names (sorted); "by_factor": {"totp",
        "passkey", "backup_code": users with one}; "grace": [{"username",
        "days_left"}] soonest due first (at most ``coverage.GRACE_LIST_MAX``);
        "enrollments_per_day": [{"date", "count"}] for the last 30 days (UTC) from
        the audit trail; "generated_at": ISO time}. ``grace_limit``: None lists
        everyone in grace (the CSV). covered = enrolled + in_grace +
        overdue + disallowed; users = covered + not_covered. Reads no user's
        record. Raises PolicyDamaged, StorageError, UserDirectoryError.
        """
        now = self.clock()
        policy = self.two_step_policy()
        since, until = cov.series_window(now)
        try:
            groups, starts = cov.counted(self.store, self.directory,
                                         [r.target for r in policy.rules if r.grace_days is not None])
            per_day = self.store.enrollments_per_day(since, until)
        except IO_ERRORS as exc:
            raise StorageError() from exc
        return cov.report_columns(policy, groups, starts, now, per_day, grace_limit)

    def send_policy_reminders(self) -> int:
        """Mail every user whose due date is 7 days or 1 day away, or has just passed; returns
        how many reminders were sent (recorded and audited as ``policy_reminder``).

        Each reminder goes once per user and due date: the record's
        ``policy_reminded`` ({"for": due, "7d"|"1d"|"due": when}) is checked and
        written in the user's transaction. A user first seen past a reminder's time
        gets only the latest one (never "7 days left" the day before). Grace starts
        not yet recorded are recorded (a writing path of the policy). Candidates
        come from the coverage summaries, so users more than a week from their due
        date are not opened. Raises PolicyDamaged, StorageError, UserDirectoryError.
        """
        policy = self.two_step_policy()
        if not policy.rules:
            return 0
        now = self.clock()
        try:
            groups = list(cov.groups_of(self.store, self.directory))
        except IO_ERRORS as exc:
            raise StorageError() from exc
        sent = 0
        for roles, member_of, summary, names in groups:
            kinds = tuple((summary or {}).get("k") or ())
            req = pol.evaluate(policy, names[0], roles=roles, groups=member_of, kinds=kinds,
                               since=(summary or {}).get("s"), now=now)
            if not req.required or req.state not in ("grace", "overdue"):
                continue
            unrecorded = any(r.grace_days is not None and r.target not in ((summary or {}).get("s") or {})
                             for r in req.rules)
            kind = reminder_due(req, now)
            if kind is None and not unrecorded:
                continue
            reminded = (summary or {}).get("r") or {}
            if not unrecorded and reminded.get("for") == req.due_at and kind in reminded:
                continue
            for name in names:
                sent += self._remind(name, policy, roles, member_of)
        return sent

    def _remind(self, username: str, policy: pol.Policy, roles: tuple[str, ...],
                groups: tuple[str, ...]) -> int:
        """One user's reminder, decided and recorded under their lock; 1 if one was sent."""
        with self._transaction(username) as txn:
            rec = txn.record
            now = self.clock()
            req = self._requirement_in(username, rec, now, policy, roles, groups, record=True)
            kind = reminder_due(req, now)
            done = rec.get("policy_reminded")
            if not isinstance(done, dict) or done.get("for") != req.due_at:
                done = {"for": req.due_at}
            if kind is None or kind in done:
                return 0  # nothing due, or another run sent it (the grace start may be recorded)
            done[kind] = now
            rec["policy_reminded"] = done
            self._log(txn, now, "system", REMINDER_EVENT, "success", reminder_detail(kind, req, now))
        self._raise_or_notify(txn, None)
        return 1
