"""The portal's pieces that need no Streamlit run: QR rendering, the client address, start-up."""

from __future__ import annotations

import io
import os
import random
import string
import time

import numpy as np
import pytest
import qrcode
import zxingcpp
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

import portal.config
from portal import session
from portal.qr import penalties, qr_matrix, qr_png

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


def _texts(seed: int, count: int) -> list[str]:
    """Texts of many lengths (QR versions 1 to 13, so the version-information blocks too)."""
    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "%:/?&=.-_"
    return ["".join(rnd.choices(alphabet, k=rnd.choice([1, 12, 40, 92, 130, 200, 330])))
            for _ in range(count)]


def _qrcode_made(text: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    return code


@pytest.mark.parametrize("text", _texts(seed=6238, count=60))
def test_qr_matrix_is_the_symbol_qrcode_itself_makes_best_mask_included(text):
    expected = np.array(_qrcode_made(text).modules, dtype=bool)
    assert np.array_equal(qr_matrix(text), expected)


@pytest.mark.parametrize("text", _texts(seed=4226, count=8))
def test_mask_penalties_equal_qrcodes_lost_point_for_each_of_the_eight_masks(text):
    code = _qrcode_made(text)
    candidates, expected = [], []
    for mask in range(8):
        code.makeImpl(True, mask)  # what qrcode's best_mask_pattern scores
        candidates.append(np.array(code.modules, dtype=bool))
        expected.append(qrcode.util.lost_point(code.modules))
    assert penalties(np.stack(candidates)).tolist() == expected


def test_qr_codes_drawn_at_once_by_many_sessions_threads_are_each_right():
    # Streamlit runs each session's script in its own thread; the per-version
    # layout caches are filled by whichever thread comes first.
    from concurrent.futures import ThreadPoolExecutor

    from portal import qr
    qr._layout.cache_clear()
    qr._function_modules.cache_clear()
    qr.mask_patterns.cache_clear()
    texts = _texts(seed=30, count=48)
    with ThreadPoolExecutor(max_workers=8) as pool:
        drawn = list(pool.map(qr_matrix, texts))
    for text, modules in zip(texts, drawn):
        assert np.array_equal(modules, np.array(_qrcode_made(text).modules, dtype=bool))


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
