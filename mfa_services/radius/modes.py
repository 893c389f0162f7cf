"""What an Access-Request asks and what the engine answers: the three ways a client may ask.

``code``           User-Password is the one-time code (TOTP, or a backup code), for a NAS
                   that checks the directory password itself.
``password+code``  User-Password is the password and the code in one field: ``password``
                   then the six digits, or ``password,code`` (a backup code too).
``challenge``      User-Password is the password; the answer is an Access-Challenge
                   ("Enter the code from your authentication app") with a single-use
                   State that expires in 60 s and lives in the store (the answer may reach
                   another replica); the next request sends the State back with the code.

The password goes through ``svc.attempt_password`` (smart lockout, the
portal's throttle) and the code through ``svc.attempt_second_factor`` (the
portal's and the API's window, replay rule, throttle and audit): a code used
at the VPN is a replay at the portal and the API, and the other way round.
Only TOTP and backup codes: passkeys and temporary passes never work here.

Nothing here says why a request was refused (the audit trail does). A store
that cannot be used raises :class:`Unanswerable`: the server then sends no
answer at all, so the NAS fails over to another server; never an Accept.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import mfa_core
from mfa_core import backup_codes
from mfa_core.radius_clients import STATE_PREFIX

from .. import engine

ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE = 2, 3, 11
CHALLENGE_TTL = 60.0           # seconds a State may be answered
CHALLENGE_MESSAGE = "Enter the code from your authentication app"
_TOTP_SHAPE = re.compile(r"\d{6}")
_TRAILING_CODE = re.compile(r"(.+?)(\d{6})", re.S)


class Unanswerable(Exception):
    """The store cannot be used: no answer is sent (the NAS tries another server)."""


@dataclass(frozen=True)
class Request:
    username: str
    password: str | None          # User-Password, decrypted
    state: bytes | None           # State sent back after an Access-Challenge
    source: str                   # where the attempt comes from, for the engine's throttle
    refused_method: str | None = None  # "CHAP", "MS-CHAP", "EAP": never checked


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str | None = None
    state: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.code == ACCESS_ACCEPT


REJECT = Outcome(ACCESS_REJECT)
ACCEPT = Outcome(ACCESS_ACCEPT)


def split_password_code(value: str) -> tuple[str, str] | None:
    """``password,code`` or ``password123456``: (password, code), or None when no code is there."""
    head, comma, tail = value.rpartition(",")
    tail = tail.strip()
    if comma and head and (_TOTP_SHAPE.fullmatch(tail) or backup_codes.normalize(tail)):
        return head, tail
    found = _TRAILING_CODE.fullmatch(value)
    return (found.group(1), found.group(2)) if found else None


def _second_factor(svc: Any, client: Any, username: str, code: str, source: str) -> Outcome:
    found = engine.check_second_factor(svc, username, code, actor=client.actor, source=source)
    if found.verdict is engine.Verdict.UNAVAILABLE:
        raise Unanswerable()
    return ACCEPT if found.ok else REJECT  # throttled or no such factor: a plain Reject


def _password(svc: Any, username: str, password: str, source: str) -> bool:
    """True when the password is right and the user has two-step on (a password alone never is enough)."""
    found = engine.check_password(svc, username, password, source=source)
    if found.verdict is engine.Verdict.UNAVAILABLE:
        raise Unanswerable()
    return found.ok and found.two_factor_enabled


def decide(svc: Any, client: Any, request: Request, clock=None) -> Outcome:
    """The answer to one Access-Request from ``client`` (after its authenticators were checked)."""
    if request.refused_method or request.password is None or not request.username:
        return REJECT
    mode = client.mode
    if mode == "code":
        return _second_factor(svc, client, request.username, request.password, request.source)
    if mode == "password+code":
        parts = split_password_code(request.password)
        if parts is None or not _password(svc, request.username, parts[0], request.source):
            return REJECT
        return _second_factor(svc, client, request.username, parts[1], request.source)
    if mode == "challenge":
        states = ChallengeStates(svc.store, clock or svc.clock)
        if request.state is None:
            if not _password(svc, request.username, request.password, request.source):
                return REJECT
            return Outcome(ACCESS_CHALLENGE, CHALLENGE_MESSAGE,
                           states.issue(client.name, request.username))
        if not states.redeem(request.state, client.name, request.username):
            return REJECT
        return _second_factor(svc, client, request.username, request.password, request.source)
    return REJECT


class ChallengeStates:
    """Single-use States of Access-Challenges, as keyed records of the store (any replica redeems)."""

    def __init__(self, store: Any, clock) -> None:
        self.store, self.clock = store, clock

    @staticmethod
    def key(state: bytes) -> str:
        # Only a hash of the State is kept: a copy of the store cannot answer a challenge.
        return STATE_PREFIX + hashlib.sha256(state).hexdigest()

    def issue(self, client: str, username: str) -> bytes:
        state = secrets.token_bytes(16)
        try:
            with self.store.keyed_transaction(self.key(state)) as txn:
                txn.record.update({"client": client, "user": username,
                                   "expires_at": self.clock() + CHALLENGE_TTL, "used": False})
        except (mfa_core.MFAError, OSError) as exc:
            raise Unanswerable() from exc
        return state

    def redeem(self, state: bytes, client: str, username: str) -> bool:
        """True once for a live State of this client and user; it is used up either way."""
        if not 1 <= len(state) <= 64:
            return False
        try:
            with self.store.keyed_transaction(self.key(state)) as txn:
                rec = txn.record
                if "expires_at" not in rec or rec.get("used"):
                    return False
                rec["used"] = True
                return (rec.get("client") == client and rec.get("user") == username
                        and self.clock() < float(rec["expires_at"]))
        except (mfa_core.MFAError, OSError) as exc:
            raise Unanswerable() from exc
