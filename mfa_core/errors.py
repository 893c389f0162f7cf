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


class ClockDrift(InvalidCode):
    """The code is valid for a time step outside the window: the device clock is off."""

    def __init__(self, offset_seconds: int) -> None:
        self.offset_seconds = offset_seconds
        direction = "ahead" if offset_seconds > 0 else "behind"
        super().__init__(
            f"That code is not valid now: your device clock looks about "
            f"{abs(offset_seconds)} s {direction}. Set your phone's time automatically and try again."
        )

    def __reduce__(self):
        # Rebuilt from its data, not its message (pickle, copy, multiprocessing).
        return (type(self), (self.offset_seconds,))


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


class NoBackupCodes(MFAError):
    default_message = "You have no backup codes left. Sign in with your authentication app."


class StorageError(MFAError):
    default_message = "The MFA store is unavailable right now. Try again in a moment."


class KeyringError(MFAError):
    default_message = "The encryption keys cannot be used. Contact your administrator."


def _human_wait(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minutes ({seconds} seconds)"
