"""The two-step policy: who must use two-step verification, by when, and with which factors.

Pure logic and (de)serialisation; the engine (``MFAService``) keeps the policy
in its store and enforces it. A policy is a set of rules, at most one per
target:

    everyone        every user
    role:NAME       users with that role (``users.yaml`` roles; the company
                    directory's admin group gives the role ``admin``)
    group:DN        members of that company-directory group (DN compared
                    case- and space-insensitively; ``users.yaml`` has no groups)

Each rule requires two-step either by a **deadline** (a date: due at 00:00 UTC
that day) or after a **grace period** (days from when the rule first applied to
that user, recorded per user in ``policy_since``), and names the factor kinds it
**allows** (``totp`` apps, ``passkey``, ``backup_code``; default all three).
Several rules applying to one user: the earliest due date and the intersection
of the allowed kinds.

A user's :class:`Requirement` state:

    none        no rule applies
    met         the user has an authenticator of an allowed kind
    disallowed  the user has authenticators, none of an allowed kind
    grace       no authenticator, before the due date
    overdue     no authenticator, the due date passed
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .directory.base import normalize_dn
from .errors import PolicyDamaged, PolicyRefused

FACTORS = ("totp", "passkey", "backup_code")
AUTHENTICATOR_KINDS = ("totp", "passkey")  # what meets a rule (backup codes come with one)
FACTOR_WORDS = {"totp": "an authentication app", "passkey": "a passkey", "backup_code": "backup codes"}
STORE_KEY = "policy"   # the keyed record every replica and the CLI read
FORMAT_VERSION = 1
DAY = 86400
MAX_GRACE_DAYS = 3650
MAX_RULES = 100
MAX_DN = 512
# Ends the audit detail of an authenticator added past the deadline (the user's mail says so).
LATE_SETUP = " (set up after the two-step deadline)"
SNOOZE = DAY          # "Remind me later": asked again a day later at the earliest
EVERYONE = "everyone"
ENV_CACHE = "MFA_PORTAL_POLICY_CACHE"  # seconds a process may answer from its last read (default 5)
DEFAULT_CACHE = 5.0
MAX_CACHE = 300.0
_ROLE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

__all__ = ["FACTORS", "Policy", "Requirement", "Rule", "parse_allow", "parse_deadline",
           "parse_target", "evaluate", "make_rule"]


# -- parsing ------------------------------------------------------------------------

def parse_target(text: Any) -> str:
    """``everyone``, ``role:NAME`` or ``group:DN`` in their normal form; PolicyRefused if not one."""
    if not isinstance(text, str):
        raise PolicyRefused("The rule's target must be text: everyone, role:NAME or group:DN.")
    value = text.strip()
    if value.lower() == EVERYONE:
        return EVERYONE
    kind, sep, rest = value.partition(":")
    kind, rest = kind.strip().lower(), rest.strip()
    if sep and kind == "role":
        if not _ROLE.fullmatch(rest):
            raise PolicyRefused(f"{rest!r} is not a role name: lower-case letters, digits, '_' or '-', "
                                "at most 32.")
        return f"role:{rest}"
    if sep and kind == "group":
        if (not rest or len(rest) > MAX_DN or not rest.isprintable() or "=" not in rest):
            raise PolicyRefused(f"{rest[:60]!r} is not a group DN (like cn=helpdesk,ou=groups,dc=example,dc=com).")
        return f"group:{normalize_dn(rest)}"
    raise PolicyRefused(f"{value[:60]!r} is not a target: use everyone, role:NAME or group:DN.")


def parse_deadline(text: Any) -> str:
    """A date ``YYYY-MM-DD`` (checked: a real day, year 2000-9999); PolicyRefused if not one."""
    if not isinstance(text, str) or not _DATE.fullmatch(text.strip()):
        raise PolicyRefused(f"{str(text)[:40]!r} is not a date: use YYYY-MM-DD (like 2027-03-01).")
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise PolicyRefused(f"{text.strip()!r} is not a day of the calendar.") from None
    if not 2000 <= day.year <= 9999:
        raise PolicyRefused("The deadline's year must be between 2000 and 9999.")
    return day.isoformat()


def deadline_epoch(deadline: str) -> float:
    """00:00 UTC of the deadline's day, in epoch seconds."""
    day = dt.date.fromisoformat(deadline)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()


def parse_grace(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyRefused("The grace period is a whole number of days.")
    if not 0 <= value <= MAX_GRACE_DAYS:
        raise PolicyRefused(f"The grace period is from 0 to {MAX_GRACE_DAYS} days.")
    return value


def parse_allow(value: Any) -> tuple[str, ...]:
    """The allowed factor kinds (a list or ``"totp,passkey"``), in FACTORS order.

    None means all three. PolicyRefused for an unknown kind, an empty list, or
    backup codes alone (they only come with an authenticator).
    """
    if value is None:
        return FACTORS
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        items = [v for v in items if v]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise PolicyRefused("The allowed factors are a list: totp, passkey, backup_code.")
    for item in items:
        if item not in FACTORS:
            raise PolicyRefused(f"{str(item)[:40]!r} is not a factor: use totp, passkey, backup_code.")
    if not items:
        raise PolicyRefused("The allow list is empty: nobody could sign in. Allow at least one of "
                            "totp, passkey.")
    if not set(items) & set(AUTHENTICATOR_KINDS):
        raise PolicyRefused("Backup codes alone cannot be the second factor (they come with an app "
                            "or a passkey): allow totp or passkey too.")
    return tuple(f for f in FACTORS if f in items)


def cache_seconds(environ: Mapping[str, str]) -> float:
    """How long a process keeps the policy it read (``MFA_PORTAL_POLICY_CACHE``; 0: read it at
    every use). ValueError when the setting is not a number from 0 to 300."""
    raw = (environ.get(ENV_CACHE) or "").strip()
    if not raw:
        return DEFAULT_CACHE
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_CACHE} must be a number of seconds.") from None
    if not 0 <= value <= MAX_CACHE:
        raise ValueError(f"{ENV_CACHE} must be from 0 to {MAX_CACHE:g} seconds.")
    return value


# -- the model ----------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    target: str                  # "everyone" | "role:NAME" | "group:DN" (DN in normal form)
    grace_days: int | None       # exactly one of grace_days / deadline
    deadline: str | None         # "YYYY-MM-DD"; due at 00:00 UTC that day
    allow: tuple[str, ...] = FACTORS
    created_at: float = 0.0      # when this target's rule was first set (engine clock)

    def __post_init__(self) -> None:
        if (self.grace_days is None) == (self.deadline is None):
            raise PolicyRefused("A rule needs either a grace period (days) or a deadline (a date), "
                                "not both.")

    def due_for(self, start: float) -> float:
        """When two-step is due for a user whose grace started at ``start``."""
        if self.deadline is not None:
            return deadline_epoch(self.deadline)
        return start + self.grace_days * DAY

    def describe(self) -> str:
        """One line, for the audit trail and ``policy show``: "deadline 2027-03-01, allow passkey"."""
        when = (f"deadline {self.deadline}" if self.deadline is not None
                else f"grace {self.grace_days} day{'s' if self.grace_days != 1 else ''}")
        return f"{when}, allow {', '.join(self.allow)}"

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "grace_days": self.grace_days, "deadline": self.deadline,
                "allow": list(self.allow), "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Rule":
        created = data.get("created_at")
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise PolicyRefused("created_at is wrong")
        grace, deadline = data.get("grace_days"), data.get("deadline")
        target = parse_target(data.get("target"))  # (in today's normal form: a rule stored
        # before a change of the DN comparison still applies; two rules that now fall together
        # are refused by Policy.from_record as two rules for one target)
        return cls(target=target,
                   grace_days=parse_grace(grace) if grace is not None else None,
                   deadline=parse_deadline(deadline) if deadline is not None else None,
                   allow=parse_allow(data.get("allow")), created_at=float(created))

    def applies(self, roles: frozenset[str], groups: frozenset[str]) -> bool:
        if self.target == EVERYONE:
            return True
        kind, _, name = self.target.partition(":")
        return name in (roles if kind == "role" else groups)


def make_rule(target: Any, *, grace_days: Any = None, deadline: Any = None, allow: Any = None,
              created_at: float = 0.0) -> Rule:
    """A rule from what a person typed; PolicyRefused (one line) when it cannot be one."""
    target = parse_target(target)
    if (grace_days is None) == (deadline is None):
        raise PolicyRefused("Give either a grace period (--grace-days N) or a deadline "
                            "(--deadline YYYY-MM-DD), not both.")
    return Rule(target=target,
                grace_days=parse_grace(grace_days) if grace_days is not None else None,
                deadline=parse_deadline(deadline) if deadline is not None else None,
                allow=parse_allow(allow), created_at=float(created_at))


def _target_order(rule: Rule) -> tuple[int, str]:
    return ({"everyone": 0, "role": 1, "group": 2}[rule.target.partition(":")[0]], rule.target)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    changed_at: float | None = None
    changed_by: str | None = None

    def rule(self, target: str) -> Rule | None:
        return next((r for r in self.rules if r.target == target), None)

    @property
    def needs_directory(self) -> bool:
        """Some rule names a role or a group: the user's roles must be looked up."""
        return any(r.target != EVERYONE for r in self.rules)

    def rules_for(self, roles: Iterable[str] = (), groups: Iterable[str] = ()) -> tuple[Rule, ...]:
        """The rules that apply to a user with these roles and directory groups."""
        if not self.rules:
            return ()
        role_set = frozenset(roles)
        group_set = frozenset(normalize_dn(g) for g in groups)
        return tuple(r for r in self.rules if r.applies(role_set, group_set))

    def with_rule(self, rule: Rule) -> "Policy":
        """This policy with ``rule`` in place of its target's (a changed rule keeps its created_at)."""
        old = self.rule(rule.target)
        if old is not None:
            rule = Rule(rule.target, rule.grace_days, rule.deadline, rule.allow, old.created_at)
        rules = [r for r in self.rules if r.target != rule.target] + [rule]
        if len(rules) > MAX_RULES:
            raise PolicyRefused(f"A policy has at most {MAX_RULES} rules.")
        return Policy(tuple(sorted(rules, key=_target_order)), self.changed_at, self.changed_by)

    def conflict(self) -> str | None:
        """Why two rules cannot both hold for someone under both (no authenticator kind in common)."""
        for i, a in enumerate(self.rules):
            for b in self.rules[i + 1:]:
                if not set(a.allow) & set(b.allow) & set(AUTHENTICATOR_KINDS):
                    return (f"{a.target} allows only {', '.join(a.allow)} and {b.target} only "
                            f"{', '.join(b.allow)}: someone under both could use no authenticator.")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules], "changed_at": self.changed_at,
                "changed_by": self.changed_by}

    def to_record(self) -> dict[str, Any]:
        return {"username": STORE_KEY, "version": FORMAT_VERSION, **self.to_dict()}

    @classmethod
    def from_record(cls, doc: Mapping[str, Any] | None) -> "Policy":
        """The policy of a stored keyed record (None or an empty record: no rules).

        Raises PolicyDamaged when the record is not a policy (fail closed).
        """
        if doc is None or not set(doc) - {"username"}:
            return cls()
        try:
            if doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("rules"), list):
                raise PolicyRefused("wrong version")
            rules = tuple(Rule.from_dict(r) if isinstance(r, dict) else _bad() for r in doc["rules"])
            if len({r.target for r in rules}) != len(rules):
                raise PolicyRefused("two rules for one target")
            changed_at, changed_by = doc.get("changed_at"), doc.get("changed_by")
            if not (changed_at is None or (isinstance(changed_at, (int, float))
                                           and not isinstance(changed_at, bool))):
                raise PolicyRefused("changed_at")
            if not (changed_by is None or isinstance(changed_by, str)):
                raise PolicyRefused("changed_by")
        except (PolicyRefused, TypeError, ValueError, AttributeError) as exc:
            raise PolicyDamaged() from exc
        return cls(tuple(sorted(rules, key=_target_order)),
                   float(changed_at) if changed_at is not None else None, changed_by)


def _bad() -> Rule:
    raise PolicyRefused("a rule is not an object")


@dataclass(frozen=True)
class Requirement:
    username: str
    state: str                   # "none" | "met" | "grace" | "overdue" | "disallowed"
    due_at: float | None = None  # epoch seconds; the earliest due of the matching rules
    days_left: int | None = None  # ceil((due_at - now) / 86400), >= 0; None when no rule
    allowed: frozenset[str] = field(default_factory=lambda: frozenset(FACTORS))
    required: bool = False       # some rule applies
    rules: tuple[Rule, ...] = field(default=(), repr=False)  # the rules that apply

    @property
    def due_date(self) -> str:
        """The due date as pages say it: "1 March 2027" (UTC); "" without one."""
        if self.due_at is None:
            return ""
        day = dt.datetime.fromtimestamp(self.due_at, dt.timezone.utc)
        return f"{day.day} {day.strftime('%B %Y')}"

    def allows(self, kind: str) -> bool:
        return kind in self.allowed

    @property
    def allowed_words(self) -> str:
        """"a passkey", "an authentication app or a passkey" ... (the authenticator kinds allowed)."""
        kinds = [FACTOR_WORDS[k] for k in AUTHENTICATOR_KINDS if k in self.allowed]
        return " or ".join(kinds) if kinds else "no authenticator"


def grace_start(rule: Rule, since: Mapping[str, Any], now: float) -> float:
    """When ``rule``'s grace started for a user whose record has ``policy_since`` = ``since``.

    A start recorded before the rule was set belongs to an earlier rule for the
    same target (removed since): ignored. Not recorded: now (a new hire gets the full grace).
    """
    start = since.get(rule.target) if isinstance(since, Mapping) else None
    if isinstance(start, bool) or not isinstance(start, (int, float)) or start < rule.created_at:
        return max(rule.created_at, now)
    return float(start)


def starts_to_record(rules: Iterable[Rule], since: Mapping[str, Any], now: float,
                     policy: Policy) -> dict[str, float] | None:
    """The user's new ``policy_since`` when it lacks the start of a grace rule that applies
    (starts of targets no longer in the policy are dropped then); None when nothing changes."""
    wanted = {r.target: grace_start(r, since, now) for r in rules if r.grace_days is not None}
    if all(since.get(t) == s for t, s in wanted.items()):
        return None
    kept = {t: s for t, s in since.items() if policy.rule(t) is not None}
    kept.update(wanted)
    return kept


def evaluate(policy: Policy, username: str, *, roles: Iterable[str] = (), groups: Iterable[str] = (),
             kinds: Iterable[str] = (), since: Mapping[str, Any] | None = None,
             now: float) -> Requirement:
    """The user's :class:`Requirement` under ``policy`` at ``now``.

    ``kinds``: the kinds of the user's authenticators; ``since``: their
    record's ``policy_since`` (grace starts by target).
    """
    rules = policy.rules_for(roles, groups)
    if not rules:
        return Requirement(username=username, state="none")
    since = since if isinstance(since, Mapping) else {}
    due = min(r.due_for(grace_start(r, since, now)) for r in rules)
    allowed = frozenset(FACTORS)
    for r in rules:
        allowed &= frozenset(r.allow)
    have = set(kinds) & set(AUTHENTICATOR_KINDS)
    if have & allowed:
        state = "met"
    elif have:
        state = "disallowed"
    else:
        state = "grace" if now < due else "overdue"
    days_left = max(0, math.ceil((due - now) / DAY))
    return Requirement(username=username, state=state, due_at=due, days_left=days_left,
                       allowed=allowed, required=True, rules=rules)
