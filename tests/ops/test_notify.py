"""Mail notifications, delivered to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import mfa_core
from mfa_core import notify

from ..support import HeldInbox, Inbox, free_port, smtp_server
from .conftest import cli_env, code_for, enable_totp


@pytest.fixture
def inbox():
    with smtp_server(Inbox()) as handler:
        yield handler


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    return {"MFA_PORTAL_SMTP_HOST": "127.0.0.1", "MFA_PORTAL_SMTP_PORT": str(port),
            "MFA_PORTAL_SMTP_SENDER": "MFA Portal <mfa@example.org>", **extra}


@pytest.fixture
def mailed(data_dir, clock, directory, inbox):
    """A service whose notifier mails through the loopback server."""
    notifier = notify.from_settings(data_dir, smtp_env(inbox.port), secrets_path=None)
    assert isinstance(notifier, notify.MailNotifier)
    return mfa_core.open_service(data_dir, clock=clock, environ={}, notifier=notifier)


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def no_secret_in(msg, *secrets: str) -> None:
    raw = msg.as_string()
    for secret in secrets:
        assert secret not in raw and secret.replace("-", "") not in raw


# -- settings --------------------------------------------------------------------------

def test_no_host_configured_means_no_notifier(tmp_path):
    assert notify.from_settings(tmp_path, {}, secrets_path=tmp_path / "missing.toml") is None
    assert notify.load_settings({"MFA_PORTAL_SMTP_PORT": "25"}) is None


def test_settings_come_from_the_secrets_file_and_the_environment_wins(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[smtp]\nhost = "smtp.example.org"\nstarttls = true\nusername = "portal"\n'
                       'password = "s3cret-pw"\nsender = "Portal <p@example.org>"\n')
    settings = notify.load_settings({}, secrets)
    assert (settings.host, settings.port, settings.starttls, settings.username) == (
        "smtp.example.org", 587, True, "portal")
    assert "s3cret-pw" not in repr(settings)
    env = {"MFA_PORTAL_SMTP_HOST": "relay.internal", "MFA_PORTAL_SMTP_PORT": "2525",
           "MFA_PORTAL_SMTP_STARTTLS": "no"}
    settings = notify.load_settings(env, secrets)
    assert (settings.host, settings.port, settings.starttls, settings.sender) == (
        "relay.internal", 2525, False, "Portal <p@example.org>")


def test_settings_can_come_from_a_mapping_like_st_secrets(tmp_path):
    settings = notify.load_settings({}, secrets={"host": "mx.example.org", "port": 465})
    assert (settings.host, settings.port) == ("mx.example.org", 465)


@pytest.mark.parametrize("env", [
    {"MFA_PORTAL_SMTP_PORT": "smtp"}, {"MFA_PORTAL_SMTP_PORT": "70000"},
    {"MFA_PORTAL_SMTP_STARTTLS": "maybe"}, {"MFA_PORTAL_SMTP_PASSWORD": "pw-without-user"},
    {"MFA_PORTAL_SMTP_TIMEOUT": "-1"},
])
def test_unusable_settings_are_refused_with_a_message(env):
    with pytest.raises(notify.NotificationSettingsError) as err:
        notify.load_settings({"MFA_PORTAL_SMTP_HOST": "mx.example.org", **env})
    assert "SMTP" in str(err.value) or "smtp" in str(err.value).lower()


def test_a_damaged_secrets_file_is_refused_with_a_message(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("[smtp\nhost=")
    with pytest.raises(notify.NotificationSettingsError, match="cannot be read"):
        notify.load_settings({}, secrets)


# -- what is mailed ------------------------------------------------------------------------

def test_adding_an_authenticator_mails_the_user(mailed, clock, inbox):
    secret = enable_totp(mailed, clock, "alice")
    [msg] = inbox.wait_for(1)
    assert inbox.recipients == [["alice@example.com"]]
    assert msg["To"] == "alice@example.com" and msg["From"] == "MFA Portal <mfa@example.org>"
    assert msg["Subject"] == "[MFA Portal] An authenticator app was added to your account"
    text = body(msg)
    assert text.startswith("Hello Alice Example,")
    assert "Tuesday 14 November 2023 at 22:13 UTC" in text  # when: the event's time, T0
    assert "If this was not you, contact the helpdesk" in text
    no_secret_in(msg, secret)


def test_each_mail_sent_is_audited_for_the_helpdesk(mailed, clock, inbox):
    enable_totp(mailed, clock, "alice")
    mailed.create_totp("bob")  # not mailed: not audited as sent
    inbox.wait_for(1)
    sent = [(e.user, e.actor, e.outcome, e.detail) for e in mailed.audit()
            if e.event == "notification_sent"]
    assert sent == [("alice", "system", "success", "totp_enabled")]
    assert mfa_core.AuditEvent.from_dict({"event": "notification_sent"}).label == "Notification mail sent"


def test_removing_the_authenticator_mails_the_user(mailed, clock, inbox):
    enable_totp(mailed, clock, "alice")
    mailed.disable_totp("alice")
    msgs = inbox.wait_for(2)
    assert msgs[1]["Subject"] == "[MFA Portal] Your authenticator app was removed"
    assert "Two-step verification is now off" in body(msgs[1])


def test_the_mails_name_the_authenticator_by_its_label(mailed, clock, inbox):
    enable_totp(mailed, clock, "alice")
    secret = mailed.create_totp("alice", label="Work tablet").secret
    mailed.verify_totp("alice", code_for(secret, clock()))
    added = inbox.wait_for(2)[1]
    assert "An authentication app “Work tablet” was added" in body(added)
    tablet = {a.label: a.id for a in mailed.status("alice").authenticators}["Work tablet"]
    mailed.remove_authenticator("alice", tablet, actor="helen", reason="stolen, ticket 7")
    removed = inbox.wait_for(3)[2]
    assert removed["Subject"] == "[MFA Portal] An authenticator was removed from your account"
    text = body(removed)
    assert "The authenticator “Work tablet” was removed" in text
    assert "Two-step verification stays on" in text and "backup codes still work" in text
    assert "This change was made by helen." in text and "Reason given: stolen, ticket 7" in text
    mailed.rename_authenticator("alice", mailed.status("alice").authenticators[0].id, "Phone")
    last = mailed.status("alice").authenticators[0].id
    mailed.remove_authenticator("alice", last)
    off = inbox.wait_for(4)[3]  # the rename is not mailed; removing the last one is
    assert "The authenticator “Phone” was removed" in body(off)
    assert "Two-step verification is now off" in body(off)


def test_new_backup_codes_are_announced_but_never_mailed(mailed, clock, inbox):
    secret = enable_totp(mailed, clock, "alice")
    codes = mailed.create_backup_codes("alice").codes
    msg = inbox.wait_for(2)[1]
    assert msg["Subject"] == "[MFA Portal] New backup codes were generated"
    assert "you now have 10 backup codes. Your previous backup codes no longer work." in body(msg)
    no_secret_in(msg, secret, *codes)


def test_a_used_backup_code_is_mailed_with_the_count_left(mailed, clock, inbox):
    enable_totp(mailed, clock, "alice")
    codes = mailed.create_backup_codes("alice").codes
    mailed.attempt_second_factor("alice", codes[0], strategy="backup_code")
    msg = inbox.wait_for(3)[2]
    assert msg["Subject"] == "[MFA Portal] A backup code was used to sign in"
    assert "You have 9 backup codes left." in body(msg)
    no_secret_in(msg, *codes)
    for code in codes[1:8]:
        mailed.attempt_second_factor("alice", code, strategy="backup_code")
    last = inbox.wait_for(10)[9]
    assert "You have 2 backup codes left." in body(last)
    assert "Generate a new set" in body(last)


def test_a_lockout_mails_the_user(mailed, clock, inbox):
    secret = enable_totp(mailed, clock, "alice")
    wrong = "000000" if code_for(secret, clock()) != "000000" else "111111"
    while not mailed.status("alice").locked:
        clock.advance(4000)
        with pytest.raises(mfa_core.MFAError):
            mailed.attempt_second_factor("alice", wrong)
    msgs = inbox.wait_for(2)
    assert [m["Subject"] for m in msgs] == [
        "[MFA Portal] An authenticator app was added to your account",
        "[MFA Portal] Two-step verification is locked on your account"]
    assert "Contact the helpdesk to unlock it" in body(msgs[1])


def test_a_password_blocked_from_new_places_mails_the_user(data_dir, clock, directory, inbox):
    notifier = notify.from_settings(data_dir, smtp_env(inbox.port), secrets_path=None)
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, notifier=notifier,
                                password_policy=mfa_core.PasswordPolicy(account_limit=10))
    for n in range(10):
        with pytest.raises(mfa_core.InvalidCode):
            svc.attempt_password("alice", f"guess-{n}", source=f"203.0.113.{n}")
    [msg] = inbox.wait_for(1)
    assert msg["Subject"] == "[MFA Portal] Too many wrong passwords were tried on your account"
    assert "from your usual devices and networks you sign in as always" in body(msg)
    no_secret_in(msg, *(f"guess-{n}" for n in range(10)))


def test_sign_ins_and_enrollment_steps_are_not_mailed(mailed, clock, inbox):
    secret = enable_totp(mailed, clock, "alice")
    mailed.attempt_second_factor("alice", code_for(secret, clock()))
    mailed.create_totp("bob")
    assert mailed.flush_notifications(timeout=30)  # whatever was to be mailed has been
    assert len(inbox.messages) == 1  # only "authenticator added"


def test_a_user_without_a_mail_address_is_skipped_quietly(data_dir, clock, directory, inbox):
    directory.add("carol", "carol-pass-1")
    svc = mfa_core.open_service(data_dir, clock=clock, environ={},
                                notifier=notify.from_settings(data_dir, smtp_env(inbox.port), None))
    enable_totp(svc, clock, "carol")
    assert svc.flush_notifications(timeout=30)  # whatever was to be mailed has been
    assert inbox.messages == []
    assert not [e for e in svc.audit() if e.event == "notification_failed"]


def test_a_helpdesk_reset_from_the_command_line_mails_the_user(cli, directory, svc, clock, inbox, data_dir):
    enable_totp(svc, clock, "alice")  # this service has no notifier: no mail yet
    result = cli("mfa", "reset", "alice", "--reason", "lost phone, ticket 42", "--actor", "helen",
                 env=cli_env(data_dir, **smtp_env(inbox.port)))
    assert result.returncode == 0, result.stderr
    [msg] = inbox.wait_for(1)
    assert msg["Subject"] == "[MFA Portal] Two-step verification was reset by the helpdesk"
    text = body(msg)
    assert "reset by the helpdesk (helen)" in text and "Reason given: lost phone, ticket 42" in text
    today = dt.datetime.now(dt.timezone.utc).strftime("%d %B %Y")
    assert today in text
    assert [e.event for e in svc.audit("alice")][-2:] == ["helpdesk_reset", "notification_sent"]


def test_a_change_made_by_someone_else_says_who(mailed, clock, inbox):
    enable_totp(mailed, clock, "alice")
    mailed.disable_totp("alice", actor="admin")
    assert "This change was made by admin." in body(inbox.wait_for(2)[1])


# -- failures never block ------------------------------------------------------------------

def test_a_mail_server_that_is_down_never_blocks_the_action_and_is_audited(data_dir, clock, directory, caplog):
    notifier = notify.from_settings(data_dir, smtp_env(free_port(), MFA_PORTAL_SMTP_TIMEOUT="2"), None)
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, notifier=notifier)
    with caplog.at_level(logging.WARNING, logger="mfa_core"):
        secret = enable_totp(svc, clock, "alice")
        status = svc.reset_mfa("alice", actor="admin", reason="lost phone")
    assert svc.status("alice").totp_enabled is False and status.mfa_epoch == 2
    failed = [e for e in svc.audit("alice") if e.event == "notification_failed"]
    assert [(e.actor, e.outcome, e.detail) for e in failed] == [
        ("system", "failure", "totp_enabled"), ("system", "failure", "helpdesk_reset")]
    notify_logs = [r for r in caplog.records if r.name == "mfa_core.notify"]
    assert notify_logs and "alice@example.com" in notify_logs[0].getMessage()
    assert "ConnectionRefusedError" in notify_logs[0].getMessage()
    assert all(secret not in r.getMessage() for r in caplog.records)


@pytest.fixture
def held_inbox():
    with smtp_server(HeldInbox()) as handler:
        yield handler


def test_in_the_background_an_action_returns_while_the_relay_still_holds_its_mail(
        data_dir, clock, directory, held_inbox):
    notifier = notify.from_settings(data_dir, smtp_env(held_inbox.port), None)
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, notifier=notifier,
                                notify_in_background=True)
    enable_totp(svc, clock, "alice")  # returns although the relay has not accepted the mail
    assert held_inbox.arrived.wait(10)
    assert svc.status("alice").totp_enabled
    assert held_inbox.messages == []
    assert not [e for e in svc.audit("alice") if e.event.startswith("notification_")]
    assert svc.flush_notifications(timeout=0.2) is False  # still held
    held_inbox.release.set()
    assert svc.flush_notifications(timeout=10) is True
    [msg] = held_inbox.messages
    assert msg["Subject"] == "[MFA Portal] An authenticator app was added to your account"
    sent = [(e.actor, e.detail) for e in svc.audit("alice") if e.event == "notification_sent"]
    assert sent == [("system", "totp_enabled")]


def test_flush_notifications_refuses_a_bad_timeout_and_returns_at_once_when_idle(svc):
    assert svc.flush_notifications() is True and svc.flush_notifications(timeout=0) is True
    with pytest.raises(TypeError):
        svc.flush_notifications(timeout="5")
    with pytest.raises(ValueError):
        svc.flush_notifications(timeout=-1)


def test_in_the_background_mails_go_out_in_order_and_failures_are_audited(data_dir, clock,
                                                                          directory, inbox):
    svc = mfa_core.open_service(data_dir, clock=clock, environ={}, notify_in_background=True,
                                notifier=notify.from_settings(data_dir, smtp_env(inbox.port), None))
    enable_totp(svc, clock, "alice")
    svc.disable_totp("alice")
    assert svc.flush_notifications(timeout=10)
    assert [m["Subject"] for m in inbox.messages] == [
        "[MFA Portal] An authenticator app was added to your account",
        "[MFA Portal] Your authenticator app was removed"]
    down = mfa_core.open_service(data_dir, clock=clock, environ={}, notify_in_background=True,
                                 notifier=notify.from_settings(data_dir, smtp_env(free_port()), None))
    down.reset_mfa("bob", actor="admin", reason="lost phone")
    assert down.flush_notifications(timeout=20)
    failed = [(e.actor, e.detail) for e in down.audit("bob") if e.event == "notification_failed"]
    assert failed == [("system", "helpdesk_reset")]


def test_the_command_line_reset_succeeds_when_mail_fails(cli, directory, svc, clock, data_dir):
    enable_totp(svc, clock, "alice")
    result = cli("mfa", "reset", "alice", "--reason", "lost phone",
                 env=cli_env(data_dir, **smtp_env(free_port())))
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    warnings = result.stderr.strip().splitlines()
    assert warnings and all(line.startswith("warning: ") for line in warnings)
    assert "alice@example.com" in result.stderr and "ConnectionRefusedError" in result.stderr
    assert not svc.status("alice").totp_enabled
    assert svc.audit("alice")[-1].event == "notification_failed"


def test_unusable_mail_settings_stop_the_command_line_before_any_change(cli, directory, svc, clock, data_dir):
    enable_totp(svc, clock, "alice")
    result = cli("mfa", "reset", "alice", "--reason", "lost phone",
                 env=cli_env(data_dir, MFA_PORTAL_SMTP_HOST="mx", MFA_PORTAL_SMTP_PORT="many"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "SMTP" in result.stderr
    assert svc.status("alice").totp_enabled


# -- STARTTLS and authentication -----------------------------------------------------------

def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_starttls_and_login_reach_a_relay_that_requires_them(data_dir, clock, directory, tmp_path):
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins: list[tuple[str, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login.decode(), auth_data.password))
        return AuthResult(success=auth_data.password == b"relay-pw")

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=tls,
                            require_starttls=True, auth_required=True, authenticator=authenticator)
    controller.start()
    try:
        env = smtp_env(controller.port, MFA_PORTAL_SMTP_STARTTLS="true",
                       MFA_PORTAL_SMTP_USERNAME="portal", MFA_PORTAL_SMTP_PASSWORD="relay-pw",
                       MFA_PORTAL_SMTP_CAFILE=str(cert))
        svc = mfa_core.open_service(data_dir, clock=clock, environ={},
                                    notifier=notify.from_settings(data_dir, env, None))
        enable_totp(svc, clock, "alice")
        assert len(inbox.wait_for(1)) == 1
        assert logins == [("portal", b"relay-pw")]

        env["MFA_PORTAL_SMTP_PASSWORD"] = "wrong-pw"
        svc.notifier = notify.from_settings(data_dir, env, None)
        svc.disable_totp("alice")
        assert not svc.status("alice").totp_enabled
        assert svc.audit("alice")[-1].event == "notification_failed"
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_starttls_against_an_unknown_certificate_fails_closed(data_dir, clock, directory, tmp_path):
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=tls,
                            require_starttls=True)
    controller.start()
    try:
        env = smtp_env(controller.port, MFA_PORTAL_SMTP_STARTTLS="1")  # no cafile: not trusted
        svc = mfa_core.open_service(data_dir, clock=clock, environ={},
                                    notifier=notify.from_settings(data_dir, env, None))
        enable_totp(svc, clock, "alice")
        assert svc.flush_notifications(timeout=30)  # the attempt is over
        assert inbox.messages == []
        assert svc.audit("alice")[-1].event == "notification_failed"
    finally:
        controller.stop()


# -- mail test from the command line ---------------------------------------------------------

def test_mail_test_sends_a_test_message(cli, directory, inbox, data_dir):
    result = cli("mail", "test", "alice", env=cli_env(data_dir, **smtp_env(inbox.port)))
    assert result.returncode == 0, result.stderr
    assert f"Sent a test mail to alice@example.com via 127.0.0.1:{inbox.port}." in result.stdout
    [msg] = inbox.wait_for(1)
    assert msg["Subject"] == "[MFA Portal] Test message" and msg["To"] == "alice@example.com"
    assert "Nothing changed on your account" in body(msg)


@pytest.mark.parametrize("env, expected", [
    ({}, "No SMTP host is configured"),
    ({"MFA_PORTAL_SMTP_HOST": "127.0.0.1", "MFA_PORTAL_SMTP_PORT": "FREE"}, "ConnectionRefusedError"),
])
def test_mail_test_explains_a_failure_in_one_line(cli, directory, data_dir, env, expected):
    env = {k: (str(free_port()) if v == "FREE" else v) for k, v in env.items()}
    result = cli("mail", "test", "alice", env=cli_env(data_dir, **env))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr


def test_mail_test_needs_a_user_with_an_address(cli, directory, data_dir, inbox):
    directory.add("carol", "carol-pass-1")
    env = cli_env(data_dir, **smtp_env(inbox.port))
    assert cli("mail", "test", "ghost", env=env).returncode == 2
    result = cli("mail", "test", "carol", env=env)
    assert result.returncode == 2 and "no mail address" in result.stderr
    assert inbox.messages == []
