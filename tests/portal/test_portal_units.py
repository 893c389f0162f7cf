"""The portal's pieces that need no Streamlit run: QR rendering, plain text, the client address, start-up."""

from __future__ import annotations

import io
import os
import re
import time

import pytest
import zxingcpp
from PIL import Image

import portal.config
from portal import session
from portal.display import WORD_JOINER, plain
from portal.qr import img_tag, qr_png

from ..support import leftover_temp_file


@pytest.mark.parametrize("uri", [
    "otpauth://totp/MFA%20Portal:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=MFA%20Portal",
    "otpauth://totp/Example%20Corp%20Single%20Sign-On:someone.with.a.long.name%40example.com"
    "?secret=" + "A" * 32 + "&issuer=Example%20Corp%20Single%20Sign-On",
])
def test_qr_png_is_200_px_and_reads_back_as_exactly_the_uri(uri):
    image = Image.open(io.BytesIO(qr_png(uri)))
    assert image.format == "PNG" and image.size == (200, 200)
    [result] = zxingcpp.read_barcodes(image)
    assert result.text == uri


def test_qr_img_tag_is_inline_200_px_with_alt_text():
    png = qr_png("otpauth://totp/MFA%20Portal:alice?secret=JBSWY3DPEHPK3PXP&issuer=MFA%20Portal")
    tag = img_tag(png, alt='Scan "this"')
    assert tag.startswith('<img src="data:image/png;base64,')
    assert 'alt="Scan &quot;this&quot;"' in tag and 'width="200"' in tag and 'height="200"' in tag


def test_qr_png_refuses_an_empty_text():
    with pytest.raises(ValueError):
        qr_png("")


@pytest.mark.parametrize("left, kind, words", [
    (9, "info", "9 backup codes left."), (4, "info", "4 backup codes left."),
    (3, "warning", "Only 3 backup codes left"), (1, "warning", "Only 1 backup code left"),
    (0, "warning", "Only 0 backup codes left"),
])
def test_backup_codes_left_message_warns_at_three_or_fewer(left, kind, words):
    got_kind, text = session.backup_codes_left_message(left)
    assert got_kind == kind and words in text


def test_the_portal_sweeps_old_temp_files_when_it_opens_a_data_dir(data_dir, monkeypatch):
    leftover = leftover_temp_file(data_dir, "users.yaml", 7200)
    monkeypatch.setattr(portal.config, "_portals", {})  # as a new portal process would
    portal.config.portal()
    deadline = time.monotonic() + 10
    while os.path.exists(leftover) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(leftover)
    assert portal.config.directory().get("alice") is not None


def test_the_client_address_is_the_peer_unless_a_trusted_proxy_header_is_configured():
    from portal.config import client_address
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    assert client_address("10.1.1.1", headers, {}) == "10.1.1.1"  # no proxy: a client cannot pick
    env = {"MFA_PORTAL_PROXY_HEADER": "X-Forwarded-For"}
    assert client_address("10.1.1.1", headers, env) == "203.0.113.9"  # what the proxy appended
    assert client_address("10.1.1.1", {}, env) == "10.1.1.1"
    assert client_address(None, None, {}) is None


@pytest.mark.parametrize("name", [
    "[Pay here](https://evil.example/pay)", "![x](https://tracker.example/p.png)",
    "<img src=https://tracker.example/p.png>", ":red[Admin] :material/lock: $x^2$",
    "**bold** _it_ `code` # head", "Line one\n# Heading two", "a\\*b",
])
def test_plain_escapes_every_markdown_construct_and_keeps_the_text(name):
    escaped = plain(name)
    assert "\n" not in escaped
    for special in "[]()<>*_`#:$!":
        assert special not in escaped.replace("\\" + special, "")  # each one escaped
    unescaped = escaped.replace("\\\\", "\x00").replace("\\", "").replace("\x00", "\\")
    assert unescaped.replace(WORD_JOINER, "") == name.replace("\n", " ")


@pytest.mark.parametrize("text", ["see https://evil.example/pay", "HTTP://x.example", "www.x.example",
                                  "mail me: someone@example.com", "mailto:a@b.example"])
def test_plain_keeps_urls_and_addresses_from_becoming_links(text):
    escaped = plain(text)
    assert not re.search(r"(?i)https?\\?:|www\\?\.|@[^\u2060]", escaped.replace("\\", ""))
    assert escaped.replace("\\", "").replace(WORD_JOINER, "") == text


def test_session_times_come_from_the_environment_and_bad_ones_keep_the_defaults():
    from portal.config import session_policy
    assert session_policy({}) == mfa_core_default()
    assert session_policy({"MFA_PORTAL_SESSION_IDLE": "600", "MFA_PORTAL_SESSION_LIFETIME": "7200"}
                          ) == mfa_core_default(idle=600, lifetime=7200)
    for bad in ({"MFA_PORTAL_SESSION_IDLE": "soon"}, {"MFA_PORTAL_SESSION_IDLE": "5"},
                {"MFA_PORTAL_SESSION_IDLE": "90000"}):
        assert session_policy(bad) == mfa_core_default()


def mfa_core_default(**kw):
    import mfa_core
    return mfa_core.SessionPolicy(**kw)


def test_the_portal_sweeps_expired_records_in_the_background_and_survives_a_failure(
        tmp_path, monkeypatch, caplog):
    import threading

    import mfa_core
    svc = mfa_core.open_service(tmp_path / "data", environ={})
    token = svc.sessions.start("alice", second_factor_passed=True)
    owner_only = set((tmp_path / "data" / "sources").rglob("*.json"))  # the session's owner
    ticket = svc.sessions.ticket(token)
    assert svc.sessions.redeem(ticket) == token
    [key] = set((tmp_path / "data" / "sources").rglob("*.json")) - owner_only  # the ticket's
    real = svc.sweep_expired
    calls: list[str] = []

    def flaky() -> int:
        calls.append("sweep")
        if len(calls) == 1:
            raise mfa_core.StorageError()  # the store away for a moment: logged, tried again
        return real()
    monkeypatch.setattr(svc, "sweep_expired", flaky)
    stop = threading.Event()
    worker = threading.Thread(target=portal.config._sweep_loop, daemon=True,
                              args=(lambda: [svc], 0.05, stop, threading.Event()))
    with caplog.at_level("INFO", logger=portal.config.log.name):
        worker.start()
        deadline = time.monotonic() + 10
        while key.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the background thread's effect
        stop.set()
        worker.join(5)
    assert not key.exists() and not worker.is_alive() and len(calls) >= 2
    assert all(p.exists() for p in owner_only)
    assert "sweeping expired records failed (StorageError)" in caplog.text
    assert svc.sessions.find(token).username == "alice"


def test_opening_the_portal_sweeps_what_expired(tmp_path, monkeypatch):
    import mfa_core
    data = tmp_path / "data"
    svc = mfa_core.open_service(data, environ={})
    token = svc.sessions.start("alice", second_factor_passed=True)
    owner_only = set((data / "sources").rglob("*.json"))
    assert svc.sessions.redeem(svc.sessions.ticket(token)) == token
    [ticket] = set((data / "sources").rglob("*.json")) - owner_only
    monkeypatch.setenv(portal.config.ENV_DATA_DIR, str(data))
    monkeypatch.setenv("MFA_PORTAL_DEMO", "0")
    opened = portal.config.portal()
    deadline = time.monotonic() + 10
    while ticket.exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the sweeping thread's effect
    assert not ticket.exists() and all(p.exists() for p in owner_only)
    assert opened.service.sessions.find(token).username == "alice"
