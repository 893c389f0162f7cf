"""A user's authenticators: the named second factors in their record, and the rules on their names.

An authenticator is one entry of the record's ``authenticators`` list::

    {id: opaque str, kind: "totp" | "passkey", label: str, created_at: time,
     last_used_at: time | None, ...what its kind needs}

    totp     secret (Fernet token), last_step (int | None: the last step accepted),
             disclosed ([int], optional: future steps a "clock ahead" refusal named,
             refused as used when their time comes)
    passkey  credential_id, public_key (base64url), sign_count (int), and what
             the browser told at registration (never anything secret)

Labels are what the user calls the device ("iPhone", "Work tablet"): trimmed,
1 to 40 printable characters, unique per user without regard to case. They are
text everywhere (pages show them escaped, never as markdown).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from .errors import InvalidLabel

KINDS = ("totp", "passkey")
DEFAULT_LABEL = "Authentication app"
MAX_LABEL = 40
MAX_TOTP_APPS = 5  # authentication apps one account may keep (passkeys are counted apart)
REASON_MARK = "(reason:"  # how the audit trail adds a helpdesk reason after a name


@dataclass(frozen=True)
class Authenticator:
    """One of a user's authenticators, as pages and tools see it (nothing secret)."""

    id: str
    kind: str
    label: str
    created_at: float
    last_used_at: float | None = None

    @property
    def kind_words(self) -> str:
        return {"totp": "Authentication app", "passkey": "Passkey"}.get(self.kind, self.kind)


def clean_label(value: Any) -> str:
    """``value`` trimmed, if it can be a label. Raises TypeError, InvalidLabel (an MFAError and
    a ValueError)."""
    if not isinstance(value, str):
        raise TypeError(f"label must be a str, not {type(value).__name__}")
    label = value.strip()
    if not label:
        raise InvalidLabel("Give the authenticator a name.")
    if len(label) > MAX_LABEL:
        raise InvalidLabel(f"A name may have at most {MAX_LABEL} characters.")
    if not label.isprintable():
        raise InvalidLabel("A name may only have printable characters.")
    if REASON_MARK in label.casefold():
        # The audit trail and the mails add a helpdesk reason as " (reason: …)" after the
        # name: a name must not be able to pose as one.
        raise InvalidLabel("A name may not contain \u201c(reason:\u201d.")
    return label


def _fold(label: str) -> str:
    return label.casefold()


def taken(rec: dict[str, Any], label: str, *, besides: str | None = None) -> bool:
    """Whether another authenticator of the record (not ``besides``) has this label, in any case."""
    return any(_fold(a["label"]) == _fold(label) for a in listed(rec) if a["id"] != besides)


def label_taken(label: str) -> InvalidLabel:
    """The refusal of a name another of the user's authenticators has (see ``taken``)."""
    return InvalidLabel(f"You already have an authenticator named \u201c{label}\u201d. "
                        "Choose another name.")


def unique_label(labels: list[str] | tuple[str, ...], base: str) -> str:
    """``base``, or ``base 2``, ``base 3``… : the first that none of ``labels`` has (any case).

    Keeps within MAX_LABEL by shortening ``base``.
    """
    used = {_fold(label) for label in labels}
    if _fold(base) not in used:
        return base
    n = 2
    while True:
        suffix = f" {n}"
        candidate = base[:MAX_LABEL - len(suffix)].rstrip() + suffix
        if _fold(candidate) not in used:
            return candidate
        n += 1


def unique_in(rec: dict[str, Any], base: str) -> str:
    """``base``, numbered if one of the record's authenticators has that name (``unique_label``)."""
    return unique_label([a["label"] for a in listed(rec)], base)


def listed(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return rec.get("authenticators") or []


def of_kind(rec: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in listed(rec) if a["kind"] == kind]


def find(rec: dict[str, Any], authenticator_id: str) -> dict[str, Any] | None:
    return next((a for a in listed(rec) if a["id"] == authenticator_id), None)


def new_id() -> str:
    return secrets.token_hex(8)


def add(rec: dict[str, Any], kind: str, label: str, now: float, **fields: Any) -> dict[str, Any]:
    """Append a new authenticator to the record; returns it."""
    entry = {"id": new_id(), "kind": kind, "label": label, "created_at": now,
             "last_used_at": None, **fields}
    rec.setdefault("authenticators", []).append(entry)
    return entry


def remove(rec: dict[str, Any], authenticator_id: str) -> dict[str, Any] | None:
    """Take one authenticator out of the record; returns it (None: no such id)."""
    entry = find(rec, authenticator_id)
    if entry is not None:
        rec["authenticators"] = [a for a in listed(rec) if a["id"] != authenticator_id]
    return entry


def public(entry: dict[str, Any]) -> Authenticator:
    return Authenticator(id=entry["id"], kind=entry["kind"], label=entry["label"],
                         created_at=entry["created_at"], last_used_at=entry.get("last_used_at"))


def from_legacy(username: str, part: dict[str, Any]) -> dict[str, Any]:
    """The one TOTP part of a record from before several authenticators (format 0 and 1).

    Its id is derived from what never changes in it (the user and when it was
    enabled), so it is the same at every read until the record is written in
    the current format. It was used after its enrollment when its last
    accepted step is later than the enrollment's (±1 step).
    """
    from . import totp  # the step arithmetic lives there
    enabled_at = part["enabled_at"]
    digest = hashlib.sha256(f"legacy-totp\0{username}\0{enabled_at!r}".encode()).hexdigest()
    last_step = part.get("last_step")
    used = last_step is not None and last_step > totp.step_at(enabled_at) + totp.WINDOW
    return {"id": digest[:16], "kind": "totp", "label": DEFAULT_LABEL, "created_at": enabled_at,
            "last_used_at": float(last_step * totp.PERIOD) if used else None,
            "secret": part["secret"], "last_step": last_step}
