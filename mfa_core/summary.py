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


# -- the columnar index (what the stores keep, what coverage reads) ---------------------
#
# {"k": {kinds key: [usernames]}, "s": {rule target: {username: epoch}}, "r": {username: reminded}}
# "k" groups the users with an authenticator by kinds and backup codes ("passkey,totp|b"); "s"
# holds the grace starts of the users WITHOUT one (the only ones whose due date matters); "r"
# the reminders sent. Parsing it costs one string per user, not one object per user.

def kinds_key(summary: dict[str, Any] | None) -> str | None:
    """"totp", "passkey,totp|b" ...: the kinds group of a summary; None without an authenticator."""
    if not summary or not summary.get("k"):
        return None
    return ",".join(summary["k"]) + ("|b" if summary.get("b") else "")


def parse_kinds_key(key: str) -> tuple[tuple[str, ...], int]:
    kinds, _, backup = key.partition("|")
    return tuple(k for k in kinds.split(",") if k), int(backup == "b")


def new_index() -> dict[str, Any]:
    return {"k": {}, "s": {}, "r": {}}


def index_put(index: dict[str, Any], username: str, summary: dict[str, Any] | None, *,
              fresh: bool = False) -> None:
    """Put ``username``'s summary in a columnar index (removing what it held before, unless
    ``fresh``: the index is being built and does not hold the user)."""
    if fresh:
        _index_add(index, username, summary)
        return
    for key, names in list(index["k"].items()):
        if username in names:
            names.remove(username)
            if not names:
                del index["k"][key]
    for target, starts in list(index["s"].items()):
        if starts.pop(username, None) is not None and not starts:
            del index["s"][target]
    index["r"].pop(username, None)
    _index_add(index, username, summary)


def _index_add(index: dict[str, Any], username: str, summary: dict[str, Any] | None) -> None:
    if summary is None:
        return
    key = kinds_key(summary)
    if key is not None:
        index["k"].setdefault(key, []).append(username)
    else:
        for target, start in (summary.get("s") or {}).items():
            index["s"].setdefault(target, {})[username] = start
    if summary.get("r"):
        index["r"][username] = summary["r"]


def index_summaries(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """username -> summary, from a columnar index (an authenticator's user: without grace starts)."""
    found: dict[str, dict[str, Any]] = {}
    for key, names in index["k"].items():
        kinds, backup = parse_kinds_key(key)
        for name in names:
            found[name] = {"k": list(kinds), **({"b": 1} if backup else {})}
    for target, starts in index["s"].items():
        for name, start in starts.items():
            found.setdefault(name, {}).setdefault("s", {})[target] = start
    for name, reminded in index["r"].items():
        found.setdefault(name, {})["r"] = reminded
    return found


def checked_index(raw: Any) -> dict[str, Any]:
    """A parsed index file as a columnar index (anything else: empty)."""
    if not (isinstance(raw, dict) and isinstance(raw.get("k"), dict) and isinstance(raw.get("s"), dict)
            and isinstance(raw.get("r"), dict)):
        return new_index()
    return raw
