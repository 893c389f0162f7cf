"""A user's record: its format version, the one validator every read goes through, and its small rules.

Fail closed: a record that exists but is not a valid record raises
RecordDamaged, never reads as "no second factor". A user who never enrolled
has no record at all. Older records are read in the current format (``load``)
and written back in it at their next change: version 0 (before format
versions, no ``v``) and version 1 (one ``totp`` part: one authentication app)
become one authenticator labelled "Authentication app", secret, last step and
backup codes kept.

The record (version 2)::

    username      str, the user's name (a record found under another name is damage)
    v             2
    two_step      bool: true exactly while the user has an authenticator
    authenticators [authenticator]: apps and passkeys (see ``authenticators``)
    pending       {secret, created_at, expires_at, label}: an app's enrollment waiting for
                  its first code
    backup        {salt: hex, hashes: [hex], generated_at}: only while two-step is on
    throttle      {failures, last_failure_at, locked}: second-factor failures at the portal
    throttles     {channel: {failures, last_failure_at, locked}}: second-factor failures
                  through another channel (a calling service, "second factor first")
    password      {sources: {key: {failures, last}}, unfamiliar: int, blocked_at: time,
                   familiar: {key: time}}: password failures ("smart lockout")
    mfa_epoch     int, bumped by every change other sessions must notice
    activity      [event]: the latest audit events, for the Manage MFA page
    revoked_tokens {fingerprint: expiry}
    sessions      {session id: {created_at, last_seen, passed, verified_at, pw, ua, ip,
                  via, ends_at}} (see ``sessions``)
    temp_pass     {salt, hash, issued_at, expires_at, uses, actor}: the helpdesk's temporary
                  pass (see ``temp_pass``)
    policy_since  {target: time}: when each grace rule of the two-step policy first applied
                  to the user (see ``policy``)
    policy_snoozed_until time: "Remind me later" on the policy's page, until then
    policy_reminded {for: due time, "7d"|"1d"|"due": time}: the policy reminders mailed for
                  that due date (see ``coverage_service``)
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from . import authenticators as authn
from .errors import RecordDamaged

FORMAT_VERSION = 2
KNOWN_VERSIONS = (0, 1, 2)
ENROLLMENT_TTL = 600  # a pending enrollment expires after 10 minutes


def _number(value: Any) -> bool:
    """A finite number (JSON has no NaN or infinity; a record holding one is damage)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _part(rec: dict[str, Any], key: str, fields: dict[str, Any]) -> None:
    """``rec[key]``, when present, is a dict whose ``fields`` pass their checks."""
    if key not in rec:
        return
    part = rec[key]
    if not isinstance(part, dict):
        raise RecordDamaged(detail=f"'{key}' is not an object")
    for name, check in fields.items():
        if name not in part or not check(part[name]):
            raise RecordDamaged(detail=f"'{key}.{name}' is missing or wrong")


_SECRET_PART = {"secret": lambda v: isinstance(v, str) and bool(v)}


def validate(username: str, rec: Any) -> dict[str, Any]:
    """``rec`` if it is a valid record of ``username``; raises RecordDamaged otherwise."""
    if not isinstance(rec, dict):
        raise RecordDamaged(detail="the record is not an object")
    version = rec.get("v", 0)
    if not _int(version) or version not in KNOWN_VERSIONS:
        raise RecordDamaged(detail=f"unknown record format version {version!r}")
    if rec.get("username") != username:
        raise RecordDamaged(detail="the record belongs to another name")
    if version < 2:
        if "authenticators" in rec:
            raise RecordDamaged(detail="several authenticators in a record of format "
                                       f"{version}")
        _part(rec, "totp", {**_SECRET_PART, "last_step": lambda v: v is None or _int(v),
                            "enabled_at": _number})
        enabled = "totp" in rec
    else:
        if "totp" in rec:
            raise RecordDamaged(detail="a one-app 'totp' part in a record of several authenticators")
        _authenticators(rec.get("authenticators", []))
        enabled = bool(rec.get("authenticators"))
    _part(rec, "pending", {**_SECRET_PART, "created_at": _number, "expires_at": _number})
    if "pending" in rec and not isinstance(rec["pending"].get("label", ""), str):
        raise RecordDamaged(detail="'pending.label' is wrong")
    _part(rec, "backup", {"salt": lambda v: isinstance(v, str) and _hex(v),
                          "hashes": lambda v: isinstance(v, list) and all(isinstance(h, str) for h in v)})
    _part(rec, "throttle", {})
    throttle = rec.get("throttle") or {}
    if not (_int(throttle.get("failures", 0)) and _optional_number(throttle.get("last_failure_at"))):
        raise RecordDamaged(detail="'throttle' is wrong")
    _part(rec, "throttles", {})
    if "throttles" in rec and not all(
            isinstance(k, str) and isinstance(b, dict) and _int(b.get("failures", 0))
            and _optional_number(b.get("last_failure_at")) and isinstance(b.get("locked", False), bool)
            for k, b in rec["throttles"].items()):
        raise RecordDamaged(detail="'throttles' is wrong")
    _part(rec, "temp_pass", {"salt": lambda v: isinstance(v, str) and _hex(v),
                             "hash": lambda v: isinstance(v, str) and _hex(v) and bool(v),
                             "issued_at": _number, "expires_at": _number,
                             "uses": lambda v: _int(v) and v >= 0,
                             "actor": lambda v: isinstance(v, str)})
    _part(rec, "password", {})
    if "password" in rec and not _password_state(rec["password"]):
        raise RecordDamaged(detail="'password' is wrong")
    for key, kind in (("activity", list), ("revoked_tokens", dict), ("sessions", dict)):
        if key in rec and not isinstance(rec[key], kind):
            raise RecordDamaged(detail=f"'{key}' is wrong")
    if "policy_since" in rec and not (isinstance(rec["policy_since"], dict) and all(
            isinstance(k, str) and _number(v) for k, v in rec["policy_since"].items())):
        raise RecordDamaged(detail="'policy_since' is wrong")
    if "policy_snoozed_until" in rec and not _number(rec["policy_snoozed_until"]):
        raise RecordDamaged(detail="'policy_snoozed_until' is wrong")
    if "policy_reminded" in rec and not (isinstance(rec["policy_reminded"], dict) and all(
            isinstance(k, str) and (_number(v) or v is None) for k, v in rec["policy_reminded"].items())):
        raise RecordDamaged(detail="'policy_reminded' is wrong")
    if "mfa_epoch" in rec and not _int(rec["mfa_epoch"]):
        raise RecordDamaged(detail="'mfa_epoch' is wrong")
    if "backup" in rec and not enabled:
        raise RecordDamaged(detail="backup codes without an authenticator")
    if version >= 1:
        if not isinstance(rec.get("two_step"), bool):
            raise RecordDamaged(detail="'two_step' is missing")
        if rec["two_step"] != enabled:
            raise RecordDamaged(detail="two-step is on but the authenticator is missing"
                                if rec["two_step"] else "an authenticator but two-step is off")
    return rec


OPTIONAL = ("last_used_at", "disclosed")  # an authenticator's fields that may be absent
_KIND_FIELDS = {
    "totp": {"secret": lambda v: isinstance(v, str) and bool(v),
             "last_step": lambda v: v is None or _int(v),
             "disclosed": lambda v: v is None or (isinstance(v, list) and all(_int(x) for x in v))},
    "passkey": {"credential_id": lambda v: isinstance(v, str) and bool(v),
                "public_key": lambda v: isinstance(v, str) and bool(v),
                "sign_count": _int},
}


def _authenticators(entries: Any) -> None:
    if not isinstance(entries, list):
        raise RecordDamaged(detail="'authenticators' is not a list")
    ids = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise RecordDamaged(detail="an authenticator is not an object")
        kind = entry.get("kind")
        if kind not in _KIND_FIELDS:
            raise RecordDamaged(detail="an authenticator of an unknown kind")
        checks = {"id": lambda v: isinstance(v, str) and bool(v),
                  "label": lambda v: isinstance(v, str) and bool(v),
                  "created_at": _number, "last_used_at": _optional_number, **_KIND_FIELDS[kind]}
        for name, check in checks.items():
            if not check(entry.get(name)) or (name not in OPTIONAL and name not in entry):
                raise RecordDamaged(detail=f"an authenticator's '{name}' is missing or wrong")
        if entry["id"] in ids:
            raise RecordDamaged(detail="two authenticators with one id")
        ids.add(entry["id"])


def load(username: str, rec: Any) -> dict[str, Any]:
    """``rec`` validated (``validate``) and, if older, brought to the current format in place."""
    validate(username, rec)
    if rec.get("v", 0) < 2:
        legacy = rec.pop("totp", None)
        if legacy is not None:
            rec["authenticators"] = [authn.from_legacy(username, legacy)]
    return rec


def _hex(value: str) -> bool:
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _optional_number(value: Any) -> bool:
    return value is None or _number(value)


def _password_state(state: dict[str, Any]) -> bool:
    sources, familiar = state.get("sources", {}), state.get("familiar", {})
    return (isinstance(sources, dict) and isinstance(familiar, dict)
            and _int(state.get("unfamiliar", 0)) and _optional_number(state.get("blocked_at"))
            and all(isinstance(s, dict) and _int(s.get("failures", 0)) and _optional_number(s.get("last"))
                    for s in sources.values())
            and all(_number(t) for t in familiar.values())
            and _bind_budget(state.get("directory_binds", {})))


def _bind_budget(spent: Any) -> bool:
    """The company directory's count of a person's wrong binds (mfa_core.directory)."""
    return isinstance(spent, dict) and _int(spent.get("failures", 0)) and _number(spent.get("last", 0))


def seal(rec: dict[str, Any]) -> None:
    """Bring a loaded record about to be written to the current version (``two_step``
    follows the authenticators)."""
    rec["v"] = FORMAT_VERSION
    if not rec.get("authenticators"):
        rec.pop("authenticators", None)
    rec["two_step"] = bool(rec.get("authenticators"))


def two_step_on(rec: dict[str, Any]) -> bool:
    return bool(rec.get("authenticators"))


def live_pending(rec: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The pending enrollment if it has not expired (the one place expiry is compared)."""
    pending = rec.get("pending")
    return pending if pending and pending["expires_at"] > now else None


def new_pending(secret_token: str, now: float, label: str) -> dict[str, Any]:
    return {"secret": secret_token, "created_at": now, "expires_at": now + ENROLLMENT_TTL,
            "label": label}


def bump_epoch(rec: dict[str, Any]) -> None:
    """The user's MFA changed: every other session of theirs must verify again."""
    rec["mfa_epoch"] = rec.get("mfa_epoch", 0) + 1


def remove_second_factor(rec: dict[str, Any]) -> None:
    """Every authenticator, the backup codes and the enrollment go; the epoch moves on."""
    for key in ("authenticators", "backup", "pending"):
        rec.pop(key, None)
    bump_epoch(rec)
