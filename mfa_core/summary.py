"""A user's coverage summary: the few facts of a record that two-step coverage needs.

The stores keep it beside each record, written in the same transaction that
changes the record (``ShardedTinyDBStore``: a small index file per shard;
``PostgresStore``: the ``user_summary`` table), so ``svc.coverage()`` never
reads a user's record: it reads the summaries of everyone at once.

A summary is a small dict, canonical so that equal summaries compare equal as
text (the database groups by it)::

    k   sorted authenticator kinds the user has ("passkey", "totp"); absent: none
    b   1 when the user holds unused backup codes (only while two-step is on)
    s   {rule target: epoch}: when each policy rule first applied to the user
        (the record's ``policy_since``, see ``mfa_core.policy``)
    r   the policy reminders sent ({"for": due, "7d"|"1d"|"due": when}; the record's
        ``policy_reminded``), so the reminder run opens only users who need one

A record with none of these has no summary (None): nothing is stored for it.
Pure: no I/O, no imports from the rest of the engine (the storage layer uses it).
"""

from __future__ import annotations

import json
from typing import Any

KINDS = ("passkey", "totp")


def summarize(record: Any) -> dict[str, Any] | None:
    """The coverage summary of a raw record (any known format), or None when it has nothing.

    Never raises: a record that is not a valid one (damage) has no summary.
    """
    if not isinstance(record, dict):
        return None
    kinds: set[str] = set()
    entries = record.get("authenticators")
    if isinstance(entries, list):
        for entry in entries:
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind in KINDS:
                kinds.add(kind)
    elif isinstance(record.get("totp"), dict) and record["totp"].get("secret"):
        kinds.add("totp")  # format 0/1: one authentication app
    summary: dict[str, Any] = {}
    if kinds:
        summary["k"] = sorted(kinds)
        backup = record.get("backup")
        if isinstance(backup, dict) and backup.get("hashes"):
            summary["b"] = 1
    since = record.get("policy_since")
    if isinstance(since, dict):
        kept = {str(t): float(v) for t, v in since.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if kept:
            summary["s"] = kept
    reminded = record.get("policy_reminded")
    if isinstance(reminded, dict) and reminded:
        summary["r"] = reminded
    return summary or None


def dumps(summary: dict[str, Any] | None) -> str | None:
    """The canonical JSON text of a summary (None stays None)."""
    if summary is None:
        return None
    return json.dumps(summary, sort_keys=True, separators=(",", ":"))
