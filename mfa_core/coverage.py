"""Two-step coverage: how far a rollout is, from the directory, the policy and the stores' summaries.

``report_columns()`` answers for every user of the directory at once without
reading a single user record: the stores keep each user's coverage summary
(``mfa_core.summary``: authenticator kinds, backup codes, grace starts) as the
records change, as a columnar index (kinds -> users; rule target -> grace
starts of the users without an authenticator). The users of each group that
shares roles are split by set operations, so the policy
(``mfa_core.policy.evaluate``: one rule, one place) is evaluated once per
(roles, kinds). Only users without an authenticator whose grace start is
recorded get a due date of their own (as ``grace_start`` and ``Rule.due_for``
make it; a test holds it equal to ``requirement()``).

The reminder run (``coverage_service``) takes the users as groups of
(roles, summary) instead (``groups_of``): it needs each candidate's reminders.

Where the users come from:

- ``users.yaml``: its roles, grouped once per version of the file and kept in
  ``.users-roles.json`` beside it (stamped with the file's inode, time and
  size), so a new process (the command line) does not parse 100,000 entries
  of YAML to count them; joined with the embedded store's index shard by
  shard and kept in ``.coverage-index.json`` (``_joined``: each shard's part
  stamped with its inputs' stamps), so a new process reads one file while
  nothing changed, and only the shards that changed after a change;
- the database's directory: counted by roles and kinds in the database, joined
  with the summaries (``PostgresStore.coverage_counts``: only the names of
  users without an authenticator leave it), and their grace starts;
- the company directory (LDAP / AD): never listed whole. The people counted
  are those the portal holds a summary for (who enrolled, or to whom a grace
  rule was applied at sign-in); each is counted under ``everyone`` and under
  the role and group rules whose grace start is recorded for them. People
  who never signed in are not counted (see docs/rollout.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import math
import os
import weakref
from typing import Any, Iterable, Iterator

from . import policy as pol
from . import summary as summaries
from .storage.base import user_key
from .storage.files import write_atomic

DAY = 86400
SERIES_DAYS = 30     # enrollments per day: the last 30 days (UTC), today included
GRACE_LIST_MAX = 200  # users listed in "grace" (soonest due first); the count is in "in_grace"
ROLES_CACHE = ".users-roles.json"

# (roles, groups, summary or None, usernames)
Group = tuple[tuple[str, ...], tuple[str, ...], "dict[str, Any] | None", list[str]]


def _kinds_key(summary: dict[str, Any] | None) -> tuple[tuple[str, ...], int]:
    if not summary:
        return (), 0
    return tuple(summary.get("k") or ()), int(bool(summary.get("b")))


def series_window(now: float) -> tuple[float, float]:
    """[since, until) of the per-day series: 00:00 UTC 29 days ago up to the end of today."""
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    start = dt.datetime(today.year, today.month, today.day, tzinfo=dt.timezone.utc).timestamp()
    return start - (SERIES_DAYS - 1) * DAY, start + DAY


# (roles, groups, how many users, {(authenticator kinds, backup codes): users}, users without one)
Counted = tuple[tuple[str, ...], tuple[str, ...], int, "dict[tuple[tuple[str, ...], int], int]",
                "set[str] | frozenset[str]"]


def report_columns(policy: pol.Policy, groups: Iterable[Counted], since: dict[str, dict[str, float]],
                   now: float, enrollments: dict[str, int],
                   grace_limit: int | None = GRACE_LIST_MAX) -> dict[str, Any]:
    """The coverage object from the users counted by roles and kinds (``counted``).

    ``pol.evaluate`` runs once per (roles, kinds). Only users without an
    authenticator whose grace start is recorded get a due date of their own,
    computed as ``pol.grace_start`` and ``Rule.due_for`` do (a test holds the
    result equal to ``requirement()`` user by user).
    """
    counts = {"covered": 0, "enrolled": 0, "in_grace": 0, "overdue": 0, "disallowed": 0,
              "not_covered": 0, "users": 0}
    by_factor = {f: 0 for f in pol.FACTORS}
    state_key = {"met": "enrolled", "grace": "in_grace", "overdue": "overdue",
                 "disallowed": "disallowed"}
    overdue: list[str] = []
    grace_plain: list[tuple[int, list[str]]] = []   # (days left, names) of users with no start
    grace_own: list[tuple[int, str]] = []           # users with a start of their own
    for roles, member_of, total, by_kinds, rest in groups:
        if not total:
            continue
        counts["users"] += total
        base = pol.evaluate(policy, "", roles=roles, groups=member_of, kinds=(), since=None, now=now)
        for (kk, backup), inside in by_kinds.items():
            if not inside:
                continue
            for kind in kk:
                by_factor[kind] += inside
            if backup:
                by_factor["backup_code"] += inside
            if base.required:
                req = pol.evaluate(policy, "", roles=roles, groups=member_of, kinds=kk, since=None,
                                   now=now)
                counts[state_key[req.state]] += inside
        if not base.required:
            counts["not_covered"] += total
            continue
        counts["covered"] += total
        grace_rules = [r for r in base.rules if r.grace_days is not None]
        if grace_rules:
            started: set[str] = set()
            for r in grace_rules:
                started |= rest & (since.get(r.target) or {}).keys()
            rest = rest - started
            _own_due_dates(base.rules, grace_rules, since, started, now, grace_own, overdue)
        # Users without a start of their own: the group's due date (evaluate's).
        if rest:
            if base.state == "overdue":
                overdue.extend(rest)
            else:
                grace_plain.append((base.days_left, sorted(rest)))

    counts["overdue"] = len(overdue)
    counts["in_grace"] = len(grace_own) + sum(len(names) for _, names in grace_plain)
    if grace_limit is None:
        grace = sorted(grace_own + [(d, n) for d, names in grace_plain for n in names])
    else:
        grace = heapq.nsmallest(grace_limit, grace_own + [
            (d, n) for d, names in grace_plain for n in names[:grace_limit]])
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    series = [{"date": (today - dt.timedelta(days=back)).isoformat(),
               "count": int(enrollments.get((today - dt.timedelta(days=back)).isoformat(), 0))}
              for back in range(SERIES_DAYS - 1, -1, -1)]
    return {
        **counts,
        "overdue_users": sorted(overdue),
        "by_factor": by_factor,
        "grace": [{"username": name, "days_left": days} for days, name in grace],
        "enrollments_per_day": series,
        "generated_at": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _own_due_dates(rules: tuple[pol.Rule, ...], grace_rules: list[pol.Rule],
                   since: dict[str, dict[str, float]], names: Iterable[str], now: float,
                   grace: list[tuple[int, str]], overdue: list[str]) -> None:
    """Each user's due date as ``pol.evaluate`` computes it (the earliest of the rules' dues; a
    grace rule's start as ``pol.grace_start`` takes it: the recorded one unless it is older than
    the rule, else ``max(created_at, now)``), written out for speed; appends (days left, name)
    to ``grace`` or the name to ``overdue``."""
    deadline_due = min((r.due_for(0.0) for r in rules if r.grace_days is None), default=math.inf)
    ceil, add_grace, add_overdue = math.ceil, grace.append, overdue.append
    if len(grace_rules) == 1:  # the usual case: one grace rule (and perhaps deadlines)
        rule = grace_rules[0]
        starts, created, seconds = since.get(rule.target) or {}, rule.created_at, rule.grace_days * DAY
        floor = max(created, now)
        for name in names:
            t = starts[name]
            due = (t if t >= created else floor) + seconds
            if deadline_due < due:
                due = deadline_due
            if now < due:
                add_grace((ceil((due - now) / DAY), name))
            else:
                add_overdue(name)
        return
    graces = [(since.get(r.target) or {}, r.created_at, r.grace_days * DAY) for r in grace_rules]
    for name in names:
        due = deadline_due
        for starts, created, seconds in graces:
            t = starts.get(name)
            start = t if t is not None and t >= created else max(created, now)
            if start + seconds < due:
                due = start + seconds
        if now < due:
            add_grace((ceil((due - now) / DAY), name))
        else:
            add_overdue(name)


def counted(store: Any, directory: Any, targets: Iterable[str] | None = None
            ) -> tuple[list[Counted], dict[str, dict[str, float]]]:
    """(the directory's users counted by roles and kinds, target -> {user: grace start} of the
    users without an authenticator). ``targets``: the grace rules' targets, the only starts
    ``report_columns`` reads (a database fetches only those; None: all)."""
    if directory is not None and getattr(directory, "company", False):
        found = store.summaries()
        by_key: dict[tuple, set[str]] = {}
        for name, summary in found.items():
            targets = (summary.get("s") or {}).keys()
            key = (tuple(sorted(t[5:] for t in targets if t.startswith("role:"))),
                   tuple(sorted(t[6:] for t in targets if t.startswith("group:"))))
            by_key.setdefault(key, set()).add(name)
        index = summaries.new_index()
        for name, summary in found.items():
            summaries.index_put(index, name, summary, fresh=True)
        return _split([(r, g, names) for (r, g), names in by_key.items()], index["k"]), index["s"]
    if getattr(store, "database", False) and hasattr(store, "coverage_counts"):
        rows, since = store.coverage_counts(None if targets is None else sorted(set(targets)))
        merged: dict[tuple[str, ...], list] = {}
        parsed: dict[str, tuple[str, ...]] = {}
        for roles_text, kinds_key, n, bare in rows:
            roles = parsed.get(roles_text)
            if roles is None:
                raw = json.loads(roles_text)
                roles = parsed[roles_text] = tuple(sorted(
                    r for r in (raw if isinstance(raw, list) else []) if isinstance(r, str)))
            entry = merged.setdefault(roles, [0, {}, set()])
            entry[0] += n
            if kinds_key:
                kk = summaries.parse_kinds_key(kinds_key)
                entry[1][kk] = entry[1].get(kk, 0) + n
            else:
                entry[2].update(bare or ())
        return [(roles, (), n, by_kinds, bare) for roles, (n, by_kinds, bare) in merged.items()], since
    if directory is None:
        return [], store.coverage_columns()[1]
    return _joined(store, directory)


def _join(store: Any, directory: Any) -> tuple[list[Counted], dict[str, dict[str, float]]]:
    """The directory's role groups joined with the store's coverage index (by set operations);
    the grace starts kept are those of users of the directory without an authenticator."""
    kinds, since = store.coverage_columns()
    role_groups = [(roles, (), names) for roles, names in _role_sets(directory).items()]
    groups = _split(role_groups, kinds)
    bare: set[str] = set().union(*(g[4] for g in groups))
    kept = {target: {n: t for n, t in starts.items() if n in bare} for target, starts in since.items()}
    return groups, {target: starts for target, starts in kept.items() if starts}


# -- the joined index: users.yaml's roles x the store's coverage index, kept between processes --
#
# ``.coverage-index.json`` beside users.yaml: what ``_join`` finds, shard by shard (the store's
# 256 index shards), each section stamped with its shard's stamp, the whole with users.yaml's
# stamp (inode, mtime, size) and the store's BUILT marker's. Stamps are taken BEFORE reading
# what they stamp, so a change made meanwhile leaves a stamp that no longer matches: the next
# reader joins that shard again. A call after a change re-reads only the shards that changed
# (and ``.coverage-members.json``: the directory's users by shard and roles, made once per
# version of users.yaml). The policy and the clock are applied afresh on every call (this is
# not the report). Layout: a line with the SHA-256 of the rest, then
# {"v": 2, "head": [users.yaml stamp, BUILT stamp], "shards": [[shard stamp,
#  [[roles, {kinds key: users}, [names without an authenticator]]...],
#  [[target, [names], [grace starts]]...]] or null, x 256]}
# (lists, not {name: start} objects: a JSON object of 15,000 keys parses ~5x slower). A file
# that is missing, torn, fails its checksum or is not of that shape is joined again and
# rewritten (best effort), never used.

JOINED_CACHE = ".coverage-index.json"
JOINED_VERSION = 2
MEMBERS_CACHE = ".coverage-members.json"
SHARDS = 256
# Per directory object (a warm engine's): (head, shard stamps, sections, members, the result).
_JOINED_MEMO: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()
_STR, _INT, _NUMBER = frozenset({str}), frozenset({int}), frozenset({int, float})

Found = tuple[list[Counted], dict[str, dict[str, float]]]


def _joined(store: Any, directory: Any) -> Found:
    stamps_of = getattr(store, "coverage_shard_stamps", None)
    path = getattr(directory, "path", None)
    if stamps_of is None or path is None:
        return _join(store, directory)
    dir_stamp = directory._current_stamp()
    stamps = stamps_of()
    if dir_stamp is None or stamps is None:
        return _join(store, directory)  # (coverage_columns builds an index never built)
    head, shard_stamps = [list(dir_stamp), stamps[0]], stamps[1]
    folder = os.path.dirname(os.fspath(path))
    cache = os.path.join(folder, JOINED_CACHE)
    memo = _JOINED_MEMO.get(directory)
    if memo is not None and memo[0] == head:
        if memo[1] == shard_stamps:
            return memo[4]
        sections, members = list(memo[2]), memo[3]
    else:
        sections, members = _read_sections(cache, head), None
    stale = [n for n in range(SHARDS) if sections[n] is None or sections[n][0] != shard_stamps[n]]
    if stale:
        if members is None:
            members = _members(directory, os.path.join(folder, MEMBERS_CACHE), head[0])
        for n in stale:
            kinds, since = store.coverage_shard(n)
            sections[n] = _section(shard_stamps[n], members[n], kinds, since)
        try:
            write_atomic(cache, _checked(json.dumps({"v": JOINED_VERSION, "head": head,
                                                     "shards": sections}, separators=(",", ":"))))
        except OSError:
            pass  # best effort: the next call joins those shards again
    found = _gathered(sections)
    _JOINED_MEMO[directory] = (head, shard_stamps, sections, members, found)
    return found


def _checked(text: str) -> bytes:
    body = text.encode("utf-8")
    return hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body


def _unchecked(path: str) -> Any:
    """The JSON of a file written by ``_checked``; None when missing, torn or damaged."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    digest, _, body = raw.partition(b"\n")
    if digest != hashlib.sha256(body).hexdigest().encode("ascii"):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _section(stamp: str, members: list, kinds: dict[str, list[str]],
             since: dict[str, dict[str, float]]) -> list:
    """One shard's part of the join: its directory users (``members``: [[roles, names]]) by
    roles, counted by kinds, the names of those without an authenticator, their grace starts."""
    kind_sets = [(key, set(names)) for key, names in kinds.items()]
    with_kinds: set[str] = set().union(*(names for _, names in kind_sets))
    parts, bare = [], set()
    for roles, names in members:
        names = set(names)
        rest = names - with_kinds
        bare |= rest
        parts.append([roles, {key: n for key, inside in kind_sets if (n := len(inside & names))},
                      list(rest)])
    starts = []
    for target, found in since.items():
        kept = {name: t for name, t in found.items() if name in bare}
        if kept:
            starts.append([target, list(kept), list(kept.values())])
    return [stamp, parts, starts]


def _gathered(sections: list) -> Found:
    """The 256 sections summed into ``counted``'s answer."""
    by_roles: dict[tuple[str, ...], list] = {}
    since: dict[str, dict[str, float]] = {}
    for _stamp, parts, starts in sections:
        for roles, by_key, rest in parts:
            entry = by_roles.get(tuple(roles))
            if entry is None:
                entry = by_roles[tuple(roles)] = [0, {}, []]
            entry[0] += sum(by_key.values()) + len(rest)
            counts = entry[1]
            for key, n in by_key.items():
                counts[key] = counts.get(key, 0) + n
            entry[2] += rest
        for target, names, times in starts:
            since.setdefault(target, {}).update(zip(names, times))
    groups: list[Counted] = [
        (roles, (), total, {summaries.parse_kinds_key(k): n for k, n in by_key.items()}, frozenset(rest))
        for roles, (total, by_key, rest) in by_roles.items()]
    return groups, since


def _read_sections(cache: str, head: list) -> list:
    """The sections of ``cache`` when its checksum, head and shape are right; else all None."""
    data = _unchecked(cache)
    none = [None] * SHARDS
    if not (isinstance(data, dict) and data.get("v") == JOINED_VERSION and data.get("head") == head
            and isinstance(data.get("shards"), list) and len(data["shards"]) == SHARDS):
        return none
    for section in data["shards"]:
        if section is None:
            continue
        try:
            stamp, parts, starts = section
            if not (type(stamp) is str and isinstance(parts, list) and isinstance(starts, list)):
                return none
            for roles, by_key, rest in parts:
                if not (isinstance(roles, list) and set(map(type, roles)) <= _STR
                        and isinstance(by_key, dict) and set(map(type, by_key.values())) <= _INT
                        and isinstance(rest, list) and set(map(type, rest)) <= _STR):
                    return none
            for target, names, times in starts:
                if not (type(target) is str and isinstance(names, list) and isinstance(times, list)
                        and len(names) == len(times) and set(map(type, names)) <= _STR
                        and set(map(type, times)) <= _NUMBER):
                    return none
        except (TypeError, ValueError):
            return none
    return data["shards"]


def _members(directory: Any, path: str, dir_stamp: list) -> list:
    """The directory's users by shard (as the store shards them) and roles: [[[roles, names]]]
    x 256, from ``path`` when it is of ``dir_stamp``, else made from ``role_index`` (hashing
    every name once) and written there (best effort)."""
    data = _unchecked(path)
    if (isinstance(data, dict) and data.get("v") == 1 and data.get("dir") == dir_stamp
            and isinstance(data.get("shards"), list) and len(data["shards"]) == SHARDS):
        try:
            if all(isinstance(roles, list) and set(map(type, roles)) <= _STR
                   and isinstance(names, list) and set(map(type, names)) <= _STR
                   for shard in data["shards"] for roles, names in shard):
                return data["shards"]
        except (TypeError, ValueError):
            pass
    shards: list[dict[tuple[str, ...], list[str]]] = [{} for _ in range(SHARDS)]
    for roles, names in role_index(directory).items():
        for name in names:
            shards[int(user_key(name)[:2], 16)].setdefault(roles, []).append(name)  # the store's shard
    members = [[[list(roles), names] for roles, names in shard.items()] for shard in shards]
    try:
        write_atomic(path, _checked(json.dumps({"v": 1, "dir": dir_stamp, "shards": members},
                                               separators=(",", ":"))))
    except OSError:
        pass
    return members


def _split(role_groups: Iterable[tuple[tuple[str, ...], tuple[str, ...], Any]],
           kinds: dict[str, list[str]]) -> list[Counted]:
    """Users sharing roles counted by kinds, by set operations (in C)."""
    kind_sets = [(summaries.parse_kinds_key(key), set(names)) for key, names in kinds.items()]
    with_kinds: set[str] = set().union(*(names for _, names in kind_sets))
    found = []
    for roles, member_of, names in role_groups:
        by_kinds = {kk: n for kk, members in kind_sets if (n := len(members & names))}
        found.append((roles, member_of, len(names), by_kinds, names - with_kinds))
    return found


_SETS_MEMO: dict[int, tuple[Any, dict[tuple[str, ...], frozenset[str]]]] = {}


def _role_sets(directory: Any) -> dict[tuple[str, ...], frozenset[str]]:
    index = role_index(directory)
    memo = _SETS_MEMO.get(id(directory))
    if memo is not None and memo[0] is index:
        return memo[1]
    sets = {roles: frozenset(names) for roles, names in index.items()}
    _SETS_MEMO[id(directory)] = (index, sets)
    return sets


# -- where the users come from --------------------------------------------------------

def groups_of(store: Any, directory: Any) -> Iterator[Group]:
    """The directory's users grouped by (roles, groups, summary), whichever directory it is."""
    if directory is not None and getattr(directory, "company", False):
        return _company_groups(store.summaries())
    if getattr(store, "database", False) and hasattr(store, "coverage_groups"):
        return _database_groups(store.coverage_groups())
    if directory is None:
        return iter(())
    return _file_groups(role_index(directory), store.summaries())


def _file_groups(index: dict[tuple[str, ...], list[str]],
                 summaries: dict[str, dict[str, Any]]) -> Iterator[Group]:
    for roles, names in index.items():
        plain: list[str] = []
        enrolled: dict[tuple, tuple[dict[str, Any], list[str]]] = {}
        for name in names:
            summary = summaries.get(name)
            if summary is None:
                plain.append(name)
            elif summary.get("k"):
                enrolled.setdefault(_kinds_key(summary), (summary, []))[1].append(name)
            else:  # no authenticator, a grace start recorded
                yield roles, (), summary, [name]
        if plain:
            yield roles, (), None, plain
        for summary, members in enrolled.values():
            yield roles, (), summary, members


def _database_groups(rows: Iterable[tuple[str, str | None, list[str]]]) -> Iterator[Group]:
    parsed_roles: dict[str, tuple[str, ...]] = {}
    for roles_text, summary_text, names in rows:
        roles = parsed_roles.get(roles_text)
        if roles is None:
            raw = json.loads(roles_text)
            roles = parsed_roles[roles_text] = tuple(
                r for r in (raw if isinstance(raw, list) else []) if isinstance(r, str))
        yield roles, (), json.loads(summary_text) if summary_text else None, list(names)


def _company_groups(summaries: dict[str, dict[str, Any]]) -> Iterator[Group]:
    for name, summary in summaries.items():
        targets = (summary.get("s") or {}).keys()
        roles = tuple(sorted(t[5:] for t in targets if t.startswith("role:")))
        member_of = tuple(sorted(t[6:] for t in targets if t.startswith("group:")))
        yield roles, member_of, summary, [name]


def role_index(directory: Any) -> dict[tuple[str, ...], list[str]]:
    """sorted roles -> usernames of a ``users.yaml`` (or database) directory.

    From memory when this process parsed the current file; else from
    ``.users-roles.json`` when its stamp is the file's; else parsed (and that
    cache written, best effort).
    """
    snapshot = getattr(directory, "_snapshot", None)
    path = getattr(directory, "path", None)
    stamp = directory._current_stamp()
    if snapshot is not None and snapshot[0] == stamp:
        return _index_of(directory, directory.entries())
    cache = os.path.join(os.path.dirname(os.fspath(path)), ROLES_CACHE) if path is not None else None
    wanted = list(stamp) if isinstance(stamp, tuple) else stamp
    remembered = _FILE_MEMO.get(id(directory))
    if remembered is not None and remembered[0] == wanted:
        return remembered[1]
    if cache is not None:
        try:
            with open(cache, "rb") as fh:
                cached = json.loads(fh.read())
            if isinstance(cached, dict) and cached.get("stamp") == wanted:
                index = {tuple(roles): names for roles, names in cached["groups"]}
                _FILE_MEMO[id(directory)] = (wanted, index)
                return index
        except (OSError, ValueError, KeyError, TypeError):
            pass
    index = _index_of(directory, directory.entries())
    if cache is not None and stamp is not None:
        try:
            write_atomic(cache, json.dumps({"stamp": wanted,
                                            "groups": [[list(r), n] for r, n in index.items()]},
                                           separators=(",", ":")).encode("utf-8"))
        except OSError:
            pass
    return index


_INDEX_MEMO: dict[int, tuple[Any, dict[tuple[str, ...], list[str]]]] = {}
_FILE_MEMO: dict[int, tuple[Any, dict[tuple[str, ...], list[str]]]] = {}


def _index_of(directory: Any, entries: dict[str, Any]) -> dict[tuple[str, ...], list[str]]:
    memo = _INDEX_MEMO.get(id(directory))
    if memo is not None and memo[0] is entries:
        return memo[1]
    index: dict[tuple[str, ...], list[str]] = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            continue
        roles = entry.get("roles")
        key = tuple(sorted(r for r in roles if isinstance(r, str))) if isinstance(roles, list) else ()
        index.setdefault(key, []).append(name)
    _INDEX_MEMO[id(directory)] = (entries, index)
    return index


# -- the command line's CSV ------------------------------------------------------------

CSV_HEADER = ("username", "state", "days_left")


def csv_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What ``mfa coverage --csv`` writes: the users who still need to set up two-step,
    overdue first (by name), then those in grace (soonest due first)."""
    rows = [(name, "overdue", "0") for name in data["overdue_users"]]
    rows += [(g["username"], "grace", str(g["days_left"])) for g in data["grace"]]
    return rows
