"""QR codes of otpauth:// URIs, as 200 px PNGs (qrcode + pillow)."""

from __future__ import annotations

import io

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

SIZE = 200


def qr_png(uri: str, size: int = SIZE) -> bytes:
    """A ``size`` x ``size`` PNG whose QR code reads back as exactly ``uri``.

    Drawn at a whole number of pixels per module, then scaled with nearest
    neighbour so every edge stays sharp enough for a phone camera.
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError("a QR code needs a non-empty text")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=1)
    code.add_data(uri)
    code.make(fit=True)
    modules = code.modules_count + 2 * code.border
    code.box_size = max(1, -(-size // modules))
    image = code.make_image(fill_color="black", back_color="white").get_image().convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
