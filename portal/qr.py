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
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(uri)
    code.make(fit=True)
    # One pixel per module straight from the matrix (the border included),
    # then scaled up: qrcode's own drawer and PNG optimisation cost ~15 ms a code.
    matrix = code.get_matrix()
    n = len(matrix)
    image = Image.frombytes("L", (n, n), bytes(0 if dark else 255 for row in matrix for dark in row))
    image = image.resize((size, size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
