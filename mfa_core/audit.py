"""Audit events: what happened to whose MFA, when, by whom, with what outcome.

Never a code or a secret: ``detail`` holds only words chosen by the engine
(and a helpdesk reason typed by an admin).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

LABELS = {
    "totp_enrollment_started": "Authenticator set-up started",
    "totp_enrollment_expired": "Authenticator set-up expired",
    "totp_enabled": "Authentication app added",
    "totp_enrollment_failed": "Wrong code while adding an authenticator",
    "totp_removed": "Authenticator removed: two-step verification off",
    "authenticator_removed": "Authenticator removed",
    "authenticator_renamed": "Authenticator renamed",
    "passkey_added": "Passkey added",
    "passkey_registration_failed": "Passkey refused while adding it",
    "passkey_clone_suspected": "Passkey refused: its use counter went backwards (copied?)",
    "backup_codes_generated": "New backup codes generated",
    "backup_code_used": "Signed in with a backup code",
    "second_factor_passed": "Two-step verification passed",
    "second_factor_failed": "Two-step verification failed",
    "password_failed": "Wrong password",
    "password_accepted": "Password accepted",
    "password_throttled": "Password attempt refused: too many failures",
    "password_blocked": "Password blocked from new places after too many failures",
    "record_damaged": "Security record could not be read",
    "session_started": "Signed in",
    "session_ended": "Signed out",
    "sessions_ended": "Signed out of other sessions",
    "throttled": "Attempt refused: too many failures",
    "lockout": "Locked after too many failures",
    "helpdesk_reset": "MFA reset by the helpdesk",
    "temporary_pass_issued": "Temporary pass issued",
    "temporary_pass_used": "Signed in with a temporary pass",
    "temporary_pass_expired": "Temporary pass expired",
    "temporary_pass_revoked": "Temporary pass revoked",
    "lockout_cleared": "Lockout cleared by the helpdesk",
    "keys_rotated": "Encryption keys rotated",
    "notification_failed": "Notification mail could not be sent",
    "notification_sent": "Notification mail sent",
    "api_auth_failed": "Verification API: request with a missing or wrong client key",
    "api_client_added": "Verification API: client added",
    "api_client_removed": "Verification API: client removed",
    "api_client_rotated": "Verification API: client key rotated",
    "api_client_changed": "Verification API: client rate limit changed",
    "policy_changed": "Two-step policy changed",
    "policy_snoozed": "Two-step set-up postponed for a day (Remind me later)",
    "policy_overdue_setup": "Authenticator set-up after the two-step deadline",
    "policy_setup_refused": "Authenticator set-up stopped by the two-step policy",
}


@dataclass(frozen=True)
class AuditEvent:
    time: float
    user: str | None
    actor: str | None
    event: str
    outcome: str  # "success", "failure" or "refused"
    detail: str = ""

    @property
    def label(self) -> str:
        return LABELS.get(self.event, self.event.replace("_", " ").capitalize())

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time, dt.timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies field by field, a measurable
        # share of a verification's CPU (every event is made once per transaction).
        return {"time": self.time, "user": self.user, "actor": self.actor, "event": self.event,
                "outcome": self.outcome, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AuditEvent":
        return cls(time=float(data.get("time", 0)), user=data.get("user"),
                   actor=data.get("actor"), event=str(data.get("event", "")),
                   outcome=str(data.get("outcome", "")), detail=str(data.get("detail", "")))
