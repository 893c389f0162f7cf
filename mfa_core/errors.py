"""The exception tree of the engine: every failure a caller can meet is an MFAError."""

from __future__ import annotations


class MFAError(Exception):
    """Root of every engine failure; never raised directly.

    ``str(err)`` is a message fit to show the person at the keyboard.
    """

    default_message = "Something went wrong with two-step verification."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self)


class InvalidCode(MFAError):
    """The code was well formed but is not a valid code for this user right now."""

    default_message = "That code is not valid. Check your authentication app and try again."


class CodeAlreadyUsed(InvalidCode):
    """The code belongs to a time step that was already accepted (replay)."""

    default_message = "That code was already used — wait for the next code in your app."


class CodeExpired(InvalidCode):
    """The code belongs to an earlier step that was never accepted: it is simply too old."""

    default_message = "That code has expired — use the current one from your authentication app."


class ClockDrift(InvalidCode):
    """The code is valid for a time step outside the window: the device clock is off.

    A code from the past may just as well be an old code typed late, so that
    message says both.
    """

    def __init__(self, offset_seconds: int) -> None:
        self.offset_seconds = offset_seconds
        if offset_seconds > 0:
            super().__init__(
                f"That code is not valid now: your device clock looks about "
                f"{offset_seconds} s ahead. Set your phone's time automatically and try again.")
        else:
            super().__init__(
                f"That code has expired — use the current one. If you typed the current code, "
                f"your device clock looks about {-offset_seconds} s behind: set your phone's "
                f"time automatically and try again.")

    def __reduce__(self):
        # Rebuilt from its data, not its message (pickle, copy, multiprocessing).
        return (type(self), (self.offset_seconds,))


class FactorNotAllowed(InvalidCode):
    """A factor of a kind the two-step policy does not allow this user: refused exactly as a
    wrong code is (same text, counted as a failure); ``kind`` is for the audit trail only."""

    def __init__(self, message: str | None = None, *, kind: str = "totp") -> None:
        self.kind = kind
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_with_kind, (type(self), str(self), self.kind))


def _rebuild_with_kind(cls: type, message: str, kind: str) -> MFAError:
    return cls(message, kind=kind)


class InvalidCodeFormat(MFAError, ValueError):
    """The text typed cannot be a code at all (wrong length or characters).

    Also a ValueError: it is a malformed argument, and it changes nothing
    (it does not count as a failed attempt).
    """


class TooManyAttempts(MFAError):
    """Too many failed attempts: wait ``retry_after`` seconds before the next one."""

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(
            message
            or f"Too many failed attempts. Wait {_human_wait(retry_after)} before trying again."
        )

    def __reduce__(self):
        return (type(self), (self.retry_after, str(self)))


class PasswordBlocked(TooManyAttempts):
    """Too many wrong passwords from unfamiliar places: the password alone is refused from
    new places until the block ends by itself (``retry_after`` seconds), a familiar place
    signs in, or the helpdesk clears it. ``second_factor``: the account has one, and the
    password is checked from a new place when an authentication code comes with it."""

    def __init__(self, retry_after: int = 0, second_factor: bool = False) -> None:
        self.second_factor = second_factor
        if second_factor:
            message = ("Too many wrong passwords: from a new place, this account's password is "
                       "only checked together with an authentication code. Enter your password "
                       "and the code from your authentication app (or a backup code), or sign "
                       "in from a device or network you have used before.")
        else:
            message = ("Too many wrong passwords: signing in with this account's password from a "
                       "new place is blocked"
                       + (f" for {_human_wait(retry_after)}" if retry_after else "")
                       + ". Sign in from a device or network you have used before, or contact "
                       "the helpdesk.")
        super().__init__(retry_after=retry_after, message=message)

    def __reduce__(self):
        return (type(self), (self.retry_after, self.second_factor))


class AccountLocked(TooManyAttempts):
    """Hard stop after too many consecutive failures: only the helpdesk can clear it."""

    def __init__(self) -> None:
        super().__init__(
            retry_after=0,
            message="Too many failed attempts: two-step verification is locked for this "
            "account. Contact the helpdesk to unlock it.",
        )

    def __reduce__(self):
        return (type(self), ())


class NoPendingEnrollment(MFAError):
    default_message = "There is no authenticator set-up in progress. Start again with Add."


class EnrollmentExpired(MFAError):
    default_message = (
        "This set-up took too long and has expired. Press Reset to get a new QR code."
    )


class NotEnabled(MFAError):
    default_message = "Two-step verification with an authentication app is not enabled."


class UnknownAuthenticator(MFAError):
    default_message = "That authenticator is no longer on this account. Reload the page."


class TooManyAuthenticators(MFAError):
    default_message = ("This account already has 5 authentication apps, the most it may have. "
                       "Remove one you no longer use before adding another.")


class InvalidLabel(MFAError, ValueError):
    """A name for an authenticator that cannot be used (empty, too long, taken): nothing changes."""

    default_message = "That name cannot be used for an authenticator."


class NoBackupCodes(MFAError):
    default_message = "You have no backup codes left. Sign in with your authentication app."


class PasskeyRefused(InvalidCode):
    """A passkey's answer was not accepted: it counts as a failed attempt.

    ``reason`` names the check that failed (wrong origin, wrong relying
    party, challenge, signature …) for the audit trail and the operator;
    ``str()`` is what the user may see, and says no more than they need.
    """

    default_message = ("That passkey could not be verified. Try again, or use another way "
                       "to verify it's you.")

    def __init__(self, message: str | None = None, *, reason: str = "refused") -> None:
        self.reason = reason
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_with_reason, (type(self), str(self), self.reason))


class PasskeyChallengeExpired(PasskeyRefused):
    """No live challenge for this session: never issued, already used, expired or replaced."""

    default_message = ("That passkey request has expired or was already used. "
                       "Start again to get a new one.")


class SignCountRegressed(PasskeyRefused):
    """The authenticator's signature counter went backwards: it may have been cloned."""

    default_message = ("This passkey was refused: its use counter went backwards, which can "
                       "mean it was copied. Use another way to sign in and contact the helpdesk.")


class PasskeyAlreadyRegistered(MFAError):
    default_message = "That passkey is already registered. Choose another device or security key."


class PasskeySettingsError(MFAError, ValueError):
    """The relying-party settings (``MFA_PORTAL_RP_ID`` …) cannot be used: passkeys stay off."""

    default_message = "Passkeys are not set up correctly on this portal. Contact your administrator."


def _rebuild_with_reason(cls: type, message: str, reason: str) -> MFAError:
    return cls(message, reason=reason)


class PolicyRefused(MFAError):
    """The two-step policy refuses this: a rule that cannot be set (its text says why, in one
    line: it would lock out the admins, an empty allow list ...), or an action the policy in
    force forbids (removing your last authenticator while two-step is required, setting one
    up from an unfamiliar place after the deadline). Nothing changed."""

    default_message = "Your organization's two-step policy does not allow this."


class StorageError(MFAError):
    default_message = "The MFA store is unavailable right now. Try again in a moment."


class StoreUnavailable(StorageError):
    """The store cannot be opened (the database is down, the URL is wrong, the data dir unusable).

    ``str()`` is the generic text anyone may see (the sign-in page is public:
    no host, port, database or user name); ``detail`` says what went wrong,
    passwords redacted, for the operator only (the log, the command line).
    """

    def __init__(self, detail: str = "the store cannot be opened") -> None:
        super().__init__()
        self.detail = detail

    def __reduce__(self):
        return (type(self), (self.detail,))


class RecordDamaged(StorageError):
    """A user's record exists but cannot be read as a valid record: fail closed.

    Never read as "no second factor". ``detail`` says what is wrong, for the
    audit trail and the operator; ``str()`` is what the user may see.
    """

    default_message = ("Your account's security settings cannot be read. "
                       "Contact the helpdesk.")

    def __init__(self, message: str | None = None, *, detail: str = "damaged") -> None:
        self.detail = detail
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_damaged, (str(self), self.detail))


def _rebuild_damaged(message: str, detail: str) -> "RecordDamaged":
    return RecordDamaged(message, detail=detail)


class KeyringError(MFAError):
    """The server's keys cannot be used (missing, malformed, not the ones the data was written with).

    ``str()`` is the text anyone may see (the sign-in page is public: no path,
    no setting); ``detail`` says what is wrong, for the operator only (the
    log, the command line).
    """

    default_message = "The MFA portal is temporarily unavailable. Try again later."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__()
        self.detail = detail or "the encryption keys cannot be used"

    def __reduce__(self):
        return (type(self), (self.detail,))


class KeysMissing(KeyringError):
    """The data dir holds data written under keys that are gone: never generate new ones over it."""


def _human_wait(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minutes ({seconds} seconds)"


class PolicyDamaged(StorageError):
    """The stored two-step policy cannot be read: fail closed (sign-ins wait until it is fixed
    or cleared with ``python -m mfa_core policy clear``)."""

    default_message = ("The organization's two-step policy cannot be read right now. "
                       "Contact the helpdesk.")
