"""The engine's two-step policy operations (mixed into ``MFAService``): the rules, a user's requirement.

The policy is one keyed record of the store (``policy``): the TinyDB stores
and PostgreSQL alike, so every replica and the command line see one policy.
Each change is a keyed transaction whose ``policy_changed`` audit event (old
and new rule, never a secret) commits with it. A process keeps what it read
for ``policy_max_age`` seconds (5 by default, monotonic clock): a change made
by this process is seen by it at once, by the other replicas within that time.

``requirement(username)`` reads the user's record once and the cached policy
(and, only when a rule names a role or a group, the user directory's entry,
which the directory itself caches). The per-user grace start
(``policy_since: {target: epoch}`` in the user's record) is written the first
time a writing path (``record=True``: sign-in; the reminder run) evaluates a
grace rule for that user.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from . import authenticators as authn
from . import passwords, temp_pass
from . import policy as pol
from . import validate as check
from .audit import AuditEvent
from .errors import MFAError, PolicyRefused, RecordDamaged, StorageError
from .policy import Policy, Requirement, Rule
from .storage import IO_ERRORS

LAST_FACTOR = ("Your organization requires two-step verification for your account, so you cannot "
               "remove your last authenticator. Ask the helpdesk if you must.")
OVERDUE_SETUP = ("Your organization's deadline for two-step verification has passed. Contact the "
                 "helpdesk to set it up.")
NOT_SNOOZABLE = "Two-step verification is due now for your account: set it up now."


class PolicyOperations:
    """Mixed into MFAService: uses its store, clock, directory and transaction helpers."""

    policy_max_age = 5.0  # seconds a process answers from its last read of the policy
    _policy_cache: tuple[float, Policy] | None = None  # (time.monotonic(), the policy read)

    # -- the policy --------------------------------------------------------------------

    def two_step_policy(self, *, fresh: bool = False) -> Policy:
        """The two-step policy in force (at most ``policy_max_age`` s old; this process's own
        changes at once; ``fresh``: read from the store now). Raises PolicyDamaged (fail
        closed), StorageError."""
        cached = self._policy_cache
        now = time.monotonic()
        if not fresh and cached is not None and 0 <= now - cached[0] < self.policy_max_age:
            return cached[1]
        try:
            doc = self.store.read_keyed(pol.STORE_KEY)
        except MFAError as exc:  # RecordDamaged (not JSON)
            raise pol.PolicyDamaged() from exc
        except IO_ERRORS as exc:
            raise StorageError() from exc
        found = Policy.from_record(doc)
        self._policy_cache = (now, found)
        return found

    def set_policy_rule(self, rule: Rule | None = None, *, target: str | None = None,
                        grace_days: int | None = None, deadline: str | None = None,
                        allow: Any = None, actor: str) -> Policy:
        """Set the rule for one target (``everyone``, ``role:NAME``, ``group:DN``), replacing
        that target's rule and keeping the others; returns the new policy.

        Either a :class:`Rule` or the keywords (exactly one of ``grace_days`` /
        ``deadline`` "YYYY-MM-DD"; ``allow`` a list or "totp,passkey", default
        all three). A changed rule keeps its target's first ``created_at`` (grace
        starts already recorded stay). Refused (PolicyRefused, one line: nothing
        changed) when it cannot be a rule, when two rules would leave someone
        no authenticator kind, or when no admin could still pass two-step with an
        allowed authenticator (it would lock out the helpdesk). Audited
        ``policy_changed`` with the old and new rule.
        """
        actor = check.name(actor, "actor")
        now = self.clock()
        if rule is None:
            rule = pol.make_rule(target, grace_days=grace_days, deadline=deadline, allow=allow,
                                 created_at=now)
        elif not isinstance(rule, Rule):
            raise TypeError("rule must be a Rule")
        elif target is not None or grace_days is not None or deadline is not None or allow is not None:
            raise TypeError("give a Rule or the keywords, not both")
        else:  # checked as typed ones are; set now (a target's earlier rule keeps its own time)
            rule = pol.make_rule(rule.target, grace_days=rule.grace_days, deadline=rule.deadline,
                                 allow=rule.allow, created_at=now)

        def change(current: Policy) -> tuple[Policy, str]:
            old = current.rule(rule.target)
            new = current.with_rule(rule)
            reason = new.conflict()
            if reason:
                raise PolicyRefused(reason)
            if self._admin_relied_on(new, held) != pinned:
                raise _Moved()  # the admin it relied on changed before their lock: again
            detail = (f"{rule.target}: {old.describe() if old else 'no rule'} \u2192 "
                      f"{new.rule(rule.target).describe()}")
            return new, detail

        # The lock-out check relies on one admin's authenticators: that admin's record is held
        # under its lock while the policy is written, and a user's removal reads the policy
        # from the store under the user's lock (_refuse_last_factor). So an admin removing
        # their last passkey at the instant admins become passkey-only either lands first
        # (and the check sees it) or waits and is refused: never both.
        for _ in range(5):
            try:
                preview = self.two_step_policy(fresh=True).with_rule(rule)
            except pol.PolicyDamaged:
                preview = Policy((rule,))
            pinned = None if preview.conflict() else self._admin_relied_on(preview, None)
            with (self._transaction(pinned) if pinned else contextlib.nullcontext()) as txn:
                held = (pinned, txn.record) if pinned else None
                try:
                    return self._change_policy(change, actor, now)
                except _Moved:
                    continue
        raise PolicyRefused("The admins' authenticators are changing right now: try again in a moment.")

    def clear_policy(self, *, actor: str) -> Policy:
        """Remove every rule (two-step is voluntary again); audited with the rules removed.

        Also the way out of a damaged policy record."""
        actor = check.name(actor, "actor")

        def change(current: Policy | None) -> tuple[Policy, str]:
            if current is None:
                return Policy(), "damaged policy record replaced: no rules"
            removed = "; ".join(f"{r.target}: {r.describe()}" for r in current.rules) or "no rules"
            return Policy(), f"all rules removed ({removed})"
        return self._change_policy(change, actor, self.clock(), repair=True)

    def _change_policy(self, change, actor: str, now: float, *, repair: bool = False) -> Policy:
        with contextlib.ExitStack() as stack:
            try:
                txn = stack.enter_context(self._keyed_transaction(pol.STORE_KEY, repair=repair))
            except RecordDamaged as exc:  # not JSON, not an object: only clear (repair) replaces it
                raise pol.PolicyDamaged() from exc
            try:
                current = None if txn.damaged else Policy.from_record(txn.record)
            except pol.PolicyDamaged:
                if not repair:
                    raise
                current = None
            new, detail = change(current)
            new = Policy(new.rules, changed_at=now, changed_by=actor)
            txn.record.clear()
            txn.record.update(new.to_record())
            txn.log(AuditEvent(now, None, actor, "policy_changed", "success", detail).to_dict())
        self._policy_cache = (time.monotonic(), new)
        return new

    def _admin_relied_on(self, policy: Policy, held: tuple[str, dict[str, Any]] | None) -> str | None:
        """The admin whose authenticators keep ``policy`` from locking out the helpdesk (None:
        it relies on no one's: no rule, no admin, an admin may set up any kind). PolicyRefused
        when it would lock out the helpdesk.

        Locked out: there are admins (role ``admin``, the company directory's
        admin group), the policy limits the authenticator kinds of one of them,
        and no admin has an authenticator of a kind allowed for them. ``held``:
        (name, record) of an admin whose record is held under its lock (read
        from there, and asked first).
        """
        if not policy.rules or self.directory is None:
            return None
        admins = [u.username for u in self.directory.admins()]
        if held is not None and held[0] in admins:
            admins.remove(held[0])
            admins.insert(0, held[0])
        limited: frozenset[str] | None = None
        now = self.clock()
        for name in admins:
            roles, groups = self._member_of(name)
            rec = held[1] if held is not None and name == held[0] else self._read(name)
            req = pol.evaluate(policy, name, roles=roles, groups=groups, kinds=_kinds(rec),
                               since=rec.get("policy_since"), now=now)
            if set(pol.AUTHENTICATOR_KINDS) <= req.allowed:
                return None  # this admin may set up any kind: nothing to rely on
            if req.state == "met":
                return name  # this admin passes with what they have
            limited = req.allowed
        if limited is None:
            return None  # no admin at all: nobody to lock out
        words = Requirement("", "", allowed=limited).allowed_words
        raise PolicyRefused(f"This policy would lock out the helpdesk: no admin has {words}, which "
                            f"it requires of admins. Add one to an admin's account first.")

    # -- a user's requirement --------------------------------------------------------------

    def requirement(self, username: str, *, record: bool = False) -> Requirement:
        """What the policy requires of ``username`` now (see mfa_core.policy's states).

        ``record``: a writing path (sign-in, the reminder run) records the
        start of each grace rule not yet recorded for the user (once). Raises
        PolicyDamaged, StorageError (RecordDamaged, DirectoryUnavailable),
        TypeError/ValueError on a bad name.
        """
        username = check.name(username)
        policy, roles, groups, rec, now, req = self._looked_up(username)
        if record and req.required and pol.starts_to_record(req.rules, rec.get("policy_since") or {},
                                                             now, policy) is not None:
            with self._transaction(username) as txn:
                now = self.clock()
                req = self._requirement_in(username, txn.record, now, policy, roles, groups,
                                           record=True)
        return req

    def _looked_up(self, username: str) -> tuple[Policy, tuple[str, ...], tuple[str, ...],
                                                 dict[str, Any], float, Requirement]:
        """One read of the policy context and the user's record, and the requirement they give:
        (policy, roles, groups, record, now, requirement)."""
        policy, roles, groups = self._policy_context(username)
        rec = self._read(username)
        now = self.clock()
        return policy, roles, groups, rec, now, self._requirement_in(username, rec, now, policy,
                                                                     roles, groups)

    def _policy_context(self, username: str, *, fresh: bool = False
                        ) -> tuple[Policy, tuple[str, ...], tuple[str, ...]]:
        """The policy, and the user's roles and groups when a rule needs them (else none).
        ``fresh``: the policy read from the store now (setting up a factor: rare, and a rule set
        a moment ago on another replica must hold), not this process's copy."""
        policy = self.two_step_policy(fresh=fresh)
        if not policy.needs_directory:
            return policy, (), ()
        roles, groups = self._member_of(username)
        return policy, roles, groups

    def _member_of(self, username: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(roles, groups) of the user in the directory: users.yaml has roles and no groups."""
        directory = self.directory
        if directory is None:
            return (), ()
        try:
            if getattr(directory, "company", False):
                account = directory.find(username)
                if account is None or not account.active:
                    return (), ()
                return tuple(account.roles), tuple(account.groups)
            user = directory.get(username)
        except StorageError:  # DirectoryUnavailable: fail closed
            raise
        except MFAError as exc:  # the user directory cannot be read
            raise StorageError() from exc
        return (tuple(user.roles), ()) if user is not None else ((), ())

    def _requirement_in(self, username: str, rec: dict[str, Any], now: float, policy: Policy,
                        roles: tuple[str, ...], groups: tuple[str, ...], *,
                        record: bool = False) -> Requirement:
        """The requirement from a record already open (no read); ``record``: inside the user's
        transaction, record missing grace starts in it."""
        since = rec.get("policy_since") or {}
        req = pol.evaluate(policy, username, roles=roles, groups=groups, kinds=_kinds(rec),
                           since=since, now=now)
        if record and req.required:
            starts = pol.starts_to_record(req.rules, since, now, policy)
            if starts is not None:
                rec["policy_since"] = starts
        return req

    def _factor_refused(self, rec: dict[str, Any], req: Requirement, kind: str,
                        channel: str | None) -> bool:
        """A factor of ``kind`` is refused under the policy (as a wrong code is).

        A calling service (``channel``) gets only allowed kinds. The portal also
        lets a user with no allowed authenticator ("disallowed") pass with the
        ones they have: the portal then holds them on Manage MFA until they add
        an allowed one.
        """
        if not req.required:
            return False
        if kind in req.allowed and not (kind == "backup_code" and req.state == "disallowed"):
            return False  # (backup codes stand in for an allowed authenticator, never another)
        return channel is not None or req.state != "disallowed"

    def _refuse_last_factor(self, username: str, rec: dict[str, Any], now: float,
                            context: tuple | None, remaining: list[dict[str, Any]]) -> None:
        """The user may not remove their last (allowed) authenticator while two-step is required
        for them: PolicyRefused. ``context``: ``_policy_context``'s answer, taken before the
        user's lock; None for the helpdesk (it still can). Called under the user's lock: the
        policy is read again from the store here (not the process's copy, up to
        ``policy_max_age`` old), so a rule set a moment ago on another replica, or one whose
        lock-out check relied on this user's authenticators, holds."""
        if context is None:
            return
        _, roles, groups = context
        policy = self.two_step_policy(fresh=True)
        if policy.needs_directory and not context[0].needs_directory:
            roles, groups = self._member_of(username)
        req = self._requirement_in(username, rec, now, policy, roles, groups)
        if not req.required:
            return
        left = {a["kind"] for a in remaining}
        if not left or (req.state == "met" and not left & req.allowed):
            raise PolicyRefused(LAST_FACTOR)

    def _check_setup(self, username: str, rec: dict[str, Any], now: float, context: tuple, kind: str,
                     source: str | None, session_id: str | None) -> str | None:
        """May the user set up a ``kind`` now? PolicyRefused when the policy does not allow that
        kind for them, or when they are past the deadline with neither a familiar source nor a
        temporary-pass session. Returns why an overdue user may (for the audit trail), else None."""
        req = self._requirement_in(username, rec, now, *context)
        _refuse_kind(req, kind)
        if req.state != "overdue":
            return None
        if not self._may_set_up(rec, now, source, session_id):
            raise PolicyRefused(OVERDUE_SETUP)
        if source is not None and self._may_set_up(rec, now, source, None):
            return f"from a familiar place ({source})"
        return "in a temporary-pass session"

    def _finish_refused(self, username: str, rec: dict[str, Any], now: float, context: tuple,
                        kind: str, cleared: bool) -> PolicyRefused | None:
        """Why the end of a set-up (the new app's first code, the passkey's answer) is refused
        under the policy in force NOW, or None. The start was checked (``_check_setup``) but the
        deadline may have passed or a rule changed since: a set-up begun in grace by a password
        thief one minute before the deadline must not be finished after it. ``cleared``: the
        start was made while overdue, from a familiar place or in a temporary-pass session."""
        req = self._requirement_in(username, rec, now, *context)
        try:
            _refuse_kind(req, kind)
        except PolicyRefused as refused:
            return refused
        if req.state == "overdue" and not cleared:
            return PolicyRefused(OVERDUE_SETUP)
        return None

    def _may_set_up(self, rec: dict[str, Any], now: float, source: str | None,
                    session_id: str | None) -> bool:
        if source is not None:
            src = passwords.key(self.keyring.pepper, "source", source)
            if passwords.is_familiar(rec.get("password") or {}, src, now, self.password_policy):
                return True
        if session_id is not None:
            try:
                sid = self.sessions.id_of(session_id)
            except (TypeError, ValueError):
                return False
            entry = (rec.get("sessions") or {}).get(sid)
            if (isinstance(entry, dict) and entry.get("via") == temp_pass.STRATEGY and entry.get("passed")
                    and isinstance(entry.get("ends_at"), (int, float)) and entry["ends_at"] > now):
                return True
        return False

    def may_set_up_overdue(self, username: str, *, source: str | None,
                           session_id: str | None) -> bool:
        """Whether ``username`` may set up a factor now. True unless overdue; overdue, only from
        a familiar source (the password throttle's: where they passed before) or in a session
        that passed with the helpdesk's temporary pass (``session_id``: its token, as pages hold
        it). Raises PolicyDamaged, StorageError, TypeError/ValueError."""
        username = check.name(username)
        source = check.source(source)
        _policy, _roles, _groups, rec, now, req = self._looked_up(username)
        if req.state != "overdue":
            return True
        return self._may_set_up(rec, now, source, session_id)

    # -- "Remind me later" ------------------------------------------------------------------

    def snooze_policy(self, username: str) -> float:
        """"Remind me later" on the grace page: not asked again for a day. Returns when the page
        is due again. Refused (PolicyRefused) when the user is not in grace (overdue: set it up now)."""
        username = check.name(username)
        policy, roles, groups = self._policy_context(username)
        with self._transaction(username) as txn:
            now = self.clock()
            rec = txn.record
            req = self._requirement_in(username, rec, now, policy, roles, groups, record=True)
            if req.state in ("overdue", "disallowed"):
                raise PolicyRefused(NOT_SNOOZABLE)
            until = rec.get("policy_snoozed_until")
            if not (isinstance(until, (int, float)) and until > now):
                until = now + pol.SNOOZE
                rec["policy_snoozed_until"] = until
                self._log(txn, now, username, "policy_snoozed", "success",
                          f"{req.days_left} days left" if req.required else "no rule")
        return float(until)

    def policy_prompt_due(self, username: str) -> bool:
        """Whether the sign-in shows the policy page now: in grace and not snoozed within the
        last day; always when overdue or disallowed (no snoozing those)."""
        username = check.name(username)
        _policy, _roles, _groups, rec, now, req = self._looked_up(username)
        if req.state in ("overdue", "disallowed"):
            return True
        if req.state != "grace":
            return False
        until = rec.get("policy_snoozed_until")
        return not (isinstance(until, (int, float)) and until > now)


class _Moved(Exception):
    """The admin a policy change relied on changed before their lock was taken: look again."""


def policy_reason(error: MFAError) -> str:
    """The audit trail's words for a set-up the policy stopped (never the page's sentence)."""
    return "past the deadline" if str(error) == OVERDUE_SETUP else "kind not allowed"


def _refuse_kind(req: Requirement, kind: str) -> None:
    if req.required and kind not in req.allowed:
        raise PolicyRefused(f"Your organization does not allow {pol.FACTOR_WORDS[kind]} for your "
                            f"account: use {req.allowed_words}.")
    if kind == "backup_code" and req.state == "disallowed":  # codes for a kind not allowed
        raise PolicyRefused(f"Your organization requires {req.allowed_words} for your account: "
                            "add one before new backup codes.")


def _kinds(rec: dict[str, Any]) -> set[str]:
    return {a["kind"] for a in authn.listed(rec)}
