"""QR codes of otpauth:// URIs: a 200 px PNG drawn inline in the page (qrcode + pillow).

The QR code holds the TOTP secret, so it never goes to Streamlit's media
store (``st.image`` would serve it at ``/media/<hash>`` to anyone holding the
URL): the page embeds it as a ``data:`` URL in an ``<img>`` with alt text,
which only the session's own websocket carries.
"""

from __future__ import annotations

import base64
import html
import io

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

SIZE = 200
BORDER = 4
ALT = "QR code to scan with your authentication app"


def qr_png(uri: str, size: int = SIZE) -> bytes:
    """A ``size`` x ``size`` PNG whose QR code reads back as exactly ``uri``.

    qrcode chooses the version and the mask; its matrix (the quiet zone of
    ``BORDER`` modules included) is drawn at one pixel per module, then scaled
    with nearest neighbour so every edge stays sharp for a phone camera.
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError("a QR code needs a non-empty text")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=BORDER)
    code.add_data(uri)
    code.make(fit=True)
    matrix = code.get_matrix()  # True = dark, the border included
    image = Image.new("1", (len(matrix), len(matrix)))
    image.putdata([0 if dark else 1 for row in matrix for dark in row])
    image = image.resize((size, size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")  # 1 bit a pixel: a few hundred bytes
    return out.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img_tag(png: bytes, alt: str = ALT, size: int = SIZE) -> str:
    """The ``<img>`` that shows ``png`` inline at ``size`` px, for ``st.html``."""
    return (f'<img src="{data_url(png)}" alt="{html.escape(alt, quote=True)}" width="{size}" '
            f'height="{size}" style="image-rendering: pixelated; display: block">')
