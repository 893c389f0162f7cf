"""mfa_core: the MFA engine (TOTP, backup codes, throttling, audit) on TinyDB. No Streamlit here."""

from .audit import AuditEvent
from .errors import (AccountLocked, ClockDrift, CodeAlreadyUsed, EnrollmentExpired, InvalidCode,
                     InvalidCodeFormat, KeyringError, MFAError, NoBackupCodes, NoPendingEnrollment,
                     NotEnabled, StorageError, TooManyAttempts)
from .service import (BackupCodes, MFAService, MFAStatus, SecondFactorResult, TOTPResource,
                      open_service)
from .throttle import ThrottlePolicy

__all__ = [
    "AccountLocked", "AuditEvent", "BackupCodes", "ClockDrift", "CodeAlreadyUsed",
    "EnrollmentExpired", "InvalidCode", "InvalidCodeFormat", "KeyringError", "MFAError",
    "MFAService", "MFAStatus", "NoBackupCodes", "NoPendingEnrollment", "NotEnabled",
    "SecondFactorResult", "StorageError", "TOTPResource", "ThrottlePolicy", "open_service",
]
