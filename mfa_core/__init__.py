"""mfa_core: the MFA engine (passwords, authenticators: TOTP apps and passkeys, backup codes, throttling, audit) on TinyDB. No Streamlit here."""

from .audit import AuditEvent
from .authenticators import Authenticator
from .errors import (AccountLocked, ClockDrift, CodeAlreadyUsed, CodeExpired, EnrollmentExpired,
                     InvalidCode, InvalidCodeFormat, InvalidLabel, KeyringError, KeysMissing, MFAError,
                     NoBackupCodes, NoPendingEnrollment, NotEnabled, PasswordBlocked, RecordDamaged,
                     StorageError, StoreUnavailable, TooManyAttempts, TooManyAuthenticators,
                     UnknownAuthenticator)
from .service import (BackupCodes, MFAService, MFAStatus, PasswordResult, SecondFactorResult,
                      TOTPResource, open_service)
from .sessions import Session, SessionPolicy
from .throttle import PasswordPolicy, ThrottlePolicy

__all__ = [
    "AccountLocked", "AuditEvent", "Authenticator", "BackupCodes", "ClockDrift", "CodeAlreadyUsed", "CodeExpired",
    "EnrollmentExpired", "InvalidCode", "InvalidCodeFormat", "InvalidLabel", "KeyringError", "KeysMissing", "MFAError",
    "MFAService", "MFAStatus", "NoBackupCodes", "NoPendingEnrollment", "NotEnabled",
    "PasswordBlocked", "PasswordPolicy", "PasswordResult", "RecordDamaged", "SecondFactorResult", "Session", "SessionPolicy",
    "StorageError", "StoreUnavailable", "TOTPResource", "ThrottlePolicy", "TooManyAttempts", "TooManyAuthenticators",
    "UnknownAuthenticator", "open_service",
]

# Passkeys (WebAuthn): mfa_core.passkeys holds the relying party and the ceremonies.
from .errors import (PasskeyAlreadyRegistered, PasskeyChallengeExpired, PasskeyRefused,  # noqa: E402
                     PasskeySettingsError, SignCountRegressed)

__all__ += ["PasskeyAlreadyRegistered", "PasskeyChallengeExpired", "PasskeyRefused",
            "PasskeySettingsError", "SignCountRegressed"]

# The two-step policy (who must use two-step, by when, with which factors): mfa_core.policy.
from .errors import FactorNotAllowed, PolicyDamaged, PolicyRefused  # noqa: E402
from .policy import FACTORS, Policy, Requirement, Rule  # noqa: E402

__all__ += ["FACTORS", "FactorNotAllowed", "Policy", "PolicyDamaged", "PolicyRefused", "Requirement", "Rule"]
