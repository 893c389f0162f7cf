"""Mail notifications: tell users by mail when their second factor changes.

Plugged into the engine as ``MFAService(notifier=...)``: the engine calls the
notifier with each audit event after the change is committed, and catches,
logs and audits whatever it raises, so a mail failure never blocks an action.
A mail says what happened, when, and what to do if it was not the user;
never a code or a secret (audit events hold neither).
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
import tomllib
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Mapping

from .audit import AuditEvent
from .errors import MFAError
from .policy import LATE_SETUP
from .users import UserDirectory

log = logging.getLogger("mfa_core.notify")

ENV_PREFIX = "MFA_PORTAL_SMTP_"
DEFAULT_TIMEOUT = 10.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

IF_NOT_YOU = ("If this was not you, contact the helpdesk right away: someone may know your "
              "password. Change your password as soon as you can.")


class NotificationSettingsError(MFAError, ValueError):
    """The SMTP settings are present but unusable (bad port, unknown STARTTLS value...)."""


class NotificationFailed(MFAError):
    """A notification mail could not be handed to the SMTP server."""

    default_message = "The notification mail could not be sent."


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int = 25
    sender: str = ""
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT
    cafile: str = ""  # a private CA for an internal relay's certificate (STARTTLS)

    @property
    def from_address(self) -> str:
        return self.sender or f"MFA Portal <mfa-portal@{self.host}>"


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise NotificationSettingsError(f"The SMTP setting {what} must be true or false, not {value!r}.")


def load_settings(environ: Mapping[str, str] | None = None,
                  secrets_path: str | os.PathLike | None = None,
                  secrets: Mapping[str, Any] | None = None) -> SMTPSettings | None:
    """SMTP settings from the environment (``MFA_PORTAL_SMTP_*``) over an ``[smtp]`` table.

    Keys: host, port (default 587 with STARTTLS, else 25), sender, starttls,
    username, password, timeout (seconds, default 10), cafile.

    The table comes from ``secrets`` (e.g. ``st.secrets["smtp"]``) or from
    the TOML file ``secrets_path`` (``.streamlit/secrets.toml``). Returns None
    when no host is configured. Raises NotificationSettingsError on a bad value.
    """
    env = os.environ if environ is None else environ
    table: dict[str, Any] = {}
    if secrets is not None:
        table.update(secrets)
    elif secrets_path is not None:
        try:
            with open(secrets_path, "rb") as fh:
                table.update(tomllib.load(fh).get("smtp") or {})
        except FileNotFoundError:
            pass
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise NotificationSettingsError(f"The secrets file {secrets_path} cannot be read.") from exc
    for key in ("host", "port", "sender", "starttls", "username", "password", "timeout", "cafile"):
        value = env.get(ENV_PREFIX + key.upper())
        if value is not None and value != "":
            table[key] = value
    host = str(table.get("host") or "").strip()
    if not host:
        return None
    starttls = _boolean(table.get("starttls", False), "starttls")
    try:
        port = int(table.get("port") or (587 if starttls else 25))
        timeout = float(table.get("timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError) as exc:
        raise NotificationSettingsError("The SMTP port and timeout must be numbers.") from exc
    if not 0 < port < 65536 or not timeout > 0:
        raise NotificationSettingsError("The SMTP port or timeout is out of range.")
    username, password = str(table.get("username") or ""), str(table.get("password") or "")
    if password and not username:
        raise NotificationSettingsError("An SMTP password is set without a username.")
    return SMTPSettings(host=host, port=port, sender=str(table.get("sender") or "").strip(),
                        starttls=starttls, username=username, password=password, timeout=timeout,
                        cafile=str(table.get("cafile") or ""))


# -- what a mail says ---------------------------------------------------------

def _left(detail: str) -> int | None:
    match = re.match(r"\s*(\d+) left", detail)
    return int(match.group(1)) if match else None


def _named(detail: str) -> tuple[str, str]:
    """The authenticator's name and the helpdesk's reason in an event's detail (either may be "")."""
    label, sep, reason = detail.rpartition(" (reason: ")
    if sep and reason.endswith(")"):
        return label, reason[:-1]
    return detail, ""


def _compose(event: AuditEvent, name: str, issuer: str) -> tuple[str, str] | None:
    """Subject and body for the events a user hears about; None for the others."""
    helpdesk = f"the helpdesk ({event.actor})" if event.actor else "the helpdesk"
    by_someone_else = event.actor not in (None, event.user)
    detail = event.detail
    late = event.event in ("totp_enabled", "passkey_added") and detail.endswith(LATE_SETUP)
    if late:
        detail = detail[:-len(LATE_SETUP)]
    label, reason = _named(detail)
    called = f" \u201c{label}\u201d" if label else ""
    if event.event == "totp_enabled":
        subject = "An authenticator app was added to your account"
        what = (f"An authentication app{called} was added for two-step verification on your "
                "account.")
    elif event.event == "totp_removed":
        subject = "Your authenticator app was removed"
        what = (f"The authenticator{called} was removed from your account, together with your "
                "backup codes. Two-step verification is now off.")
    elif event.event == "passkey_added":
        subject = "A passkey was added to your account"
        what = f"A passkey{called} was added for two-step verification on your account."
    elif event.event == "passkey_clone_suspected":
        named = event.detail.rpartition(": sign count")[0]
        subject = "A sign-in with one of your passkeys was refused"
        what = (f"A sign-in with your passkey{f' “{named}”' if named else ''} was refused: its "
                "use counter went backwards, which can mean that the passkey was copied. If you "
                "did not expect this, remove that passkey on the Manage MFA page, sign in with "
                "another authenticator and tell the helpdesk.")
    elif event.event == "authenticator_removed":
        subject = "An authenticator was removed from your account"
        what = (f"The authenticator{called} was removed from your account. Two-step "
                "verification stays on with your other authenticators, and your backup codes "
                "still work.")
    elif event.event == "backup_codes_generated":
        subject = "New backup codes were generated"
        made = re.match(r"\s*(\d+) codes", event.detail)
        what = ("A new set of backup codes was generated for your account"
                + (f": you now have {made.group(1)} backup codes" if made else "")
                + ". Your previous backup codes no longer work.")
    elif event.event == "backup_code_used":
        left = _left(event.detail)
        count = ("" if left is None else
                 f" You have {left} backup code{'s' if left != 1 else ''} left.")
        subject = "A backup code was used to sign in"
        what = f"One of your backup codes was used to sign in to your account.{count}"
        if left is not None and left <= 3:
            what += " Generate a new set on the Manage MFA page before you run out."
    elif event.event == "helpdesk_reset":
        subject = "Two-step verification was reset by the helpdesk"
        what = (f"Two-step verification on your account was reset by {helpdesk}: your "
                "authentication app and backup codes were removed. Sign in and add an "
                "authentication app again.")
        if event.detail:
            what += f"\n\nReason given: {event.detail}"
        by_someone_else = False
    elif event.event == "temporary_pass_issued":
        subject = "The helpdesk issued a temporary pass for your account"
        what = (f"{helpdesk[0].upper() + helpdesk[1:]} issued a temporary pass for your account: "
                "it lets you sign in once (or a few times) without your authenticator, only to "
                "set up a new one, and it expires within hours.\n\nIf you did not ask the "
                "helpdesk for this, tell IT security right away.")
        if reason:
            what += f"\n\nReason given: {reason}"
        by_someone_else = False
    elif event.event == "policy_reminder":
        detail, _, kinds = event.detail.partition("; set up ")
        passed, _, due = detail.partition(", due ")
        kinds = kinds or "an authentication app or a passkey"
        if passed.startswith("deadline passed"):
            subject = "Two-step verification is now required for your account"
            what = (f"Your organization required two-step verification for your account by "
                    f"{due or 'a date that has passed'}, and that date has passed. Until you set it "
                    "up you can only sign in to set it up, and only from a device or network you "
                    "signed in from before; otherwise contact the helpdesk.")
        else:
            subject = f"Set up two-step verification by {due}" if due else \
                "Set up two-step verification"
            what = (f"Your organization requires two-step verification for your account by "
                    f"{due} ({passed}). Sign in to the portal and add {kinds} on the Manage MFA "
                    "page; it takes two minutes.")
        by_someone_else = False
    elif event.event == "lockout":
        subject = "Two-step verification is locked on your account"
        what = ("Two-step verification on your account was locked after too many failed "
                "attempts. Contact the helpdesk to unlock it.")
    elif event.event == "password_blocked":
        subject = "Too many wrong passwords were tried on your account"
        what = ("Someone typed a wrong password for your account too many times from places "
                "you have not signed in from. Signing in with your password from a new place "
                "is blocked; from your usual devices and networks you sign in as always. If "
                "you did not try this yourself, change your password and tell the helpdesk.")
    else:
        return None
    if late:
        what += ("\n\nIt was set up after your organization's deadline for two-step "
                 "verification. If you did not set it up yourself, call IT security right away: "
                 "someone else may know your password.")
    if by_someone_else and event.event not in ("lockout", "password_blocked"):
        what += f"\n\nThis change was made by {event.actor}."
        if reason:
            what += f"\n\nReason given: {reason}"
    when = event.when.strftime("%A %d %B %Y at %H:%M UTC")
    if event.event == "policy_reminder":  # nothing happened to the account: no "if not you"
        return f"[{issuer}] {subject}", (f"Hello {name},\n\n{what}\n\nThis message was sent "
                                         f"automatically by {issuer}; do not reply to it.\n")
    body = (f"Hello {name},\n\n{what}\n\nWhen: {when}\n\n{IF_NOT_YOU}\n\n"
            f"This message was sent automatically by {issuer}; do not reply to it.\n")
    return f"[{issuer}] {subject}", body


class MailNotifier:
    """The engine's notifier: mails the user of each event worth telling them about."""

    EVENTS = frozenset({"totp_enabled", "totp_removed", "authenticator_removed",
                        "passkey_added", "passkey_clone_suspected",
                        "backup_codes_generated",
                        "backup_code_used", "helpdesk_reset", "lockout", "password_blocked",
                        "temporary_pass_issued", "policy_reminder"})

    def __init__(self, settings: SMTPSettings, directory: UserDirectory, *,
                 issuer: str = "MFA Portal") -> None:
        self.settings = settings
        self.directory = directory
        self.issuer = issuer

    def message(self, event: AuditEvent) -> EmailMessage | None:
        """The mail for ``event``, or None (not a notified event, or no address known)."""
        if event.event not in self.EVENTS or not event.user:
            return None
        user = self.directory.get(event.user)
        if user is None or not user.email:
            log.info("no mail address for %s: %s not notified", event.user, event.event)
            return None
        composed = _compose(event, user.name or user.username, self.issuer)
        if composed is None:
            return None
        subject, body = composed
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.settings.from_address
        msg["To"] = user.email
        msg["Date"] = formatdate(event.time, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="mfa-portal.invalid")
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body)
        return msg

    def test_message(self, username: str) -> EmailMessage:
        """A mail proving the settings work, for ``mfa-portal mail test``. Raises NotificationFailed."""
        user = self.directory.get(username)
        if user is None or not user.email:
            raise NotificationFailed(f"{username!r} has no mail address in the user directory.")
        msg = EmailMessage()
        msg["Subject"] = f"[{self.issuer}] Test message"
        msg["From"] = self.settings.from_address
        msg["To"] = user.email
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain="mfa-portal.invalid")
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(f"Hello {user.name or user.username},\n\nThis is a test of the mail "
                        f"notifications of {self.issuer}. Nothing changed on your account.\n")
        return msg

    def send(self, msg: EmailMessage) -> None:
        """Hand ``msg`` to the SMTP server. Raises NotificationFailed."""
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=s.cafile or None))
                if s.username:
                    smtp.login(s.username, s.password)
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            # The engine audits the failure; the log keeps the server's reason
            # for the operator (never the message body or the SMTP password).
            log.warning("notification mail to %s via %s:%d failed: %s: %s", msg["To"], s.host,
                        s.port, type(exc).__name__, exc)
            raise NotificationFailed() from exc
        log.info("notification mail sent to %s (%s)", msg["To"], msg["Subject"])

    def __call__(self, event: AuditEvent) -> bool:
        """Mail the user about ``event`` if it is worth telling; True when a mail went out."""
        msg = self.message(event)
        if msg is None:
            return False
        self.send(msg)
        return True


def from_settings(data_dir: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None,
                  secrets_path: str | os.PathLike | None = ".streamlit/secrets.toml",
                  *, secrets: Mapping[str, Any] | None = None,
                  issuer: str | None = None) -> MailNotifier | None:
    """A notifier for ``open_service(..., notifier=...)``, or None when no SMTP host is set.

    ``data_dir`` (default ``$MFA_PORTAL_DATA_DIR`` or ``data/``) holds the user
    directory the recipients' addresses come from. Raises
    NotificationSettingsError when the settings are present but unusable.
    """
    env = os.environ if environ is None else environ
    settings = load_settings(env, secrets_path, secrets)
    if settings is None:
        return None
    if data_dir is None:
        data_dir = env.get("MFA_PORTAL_DATA_DIR") or "data"
    return MailNotifier(settings, UserDirectory(Path(data_dir)),
                        issuer=issuer or env.get("MFA_PORTAL_ISSUER") or "MFA Portal")
