"""Reading what a page drew inline (no media store): the QR ``<img>`` and the backup-codes link."""

from __future__ import annotations

import base64
import html
import re

from streamlit.testing.v1 import AppTest

from portal import backup_view

_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')
_LINK = re.compile(r'<a href="data:text/(?:plain|csv);charset=utf-8;base64,([A-Za-z0-9+/=]+)" '
                   r'download="([^"]+)"')


def inline_qr(at: AppTest) -> tuple[bytes, str]:
    """(PNG, alt text) of the one inline image the run drew."""
    found = [m for e in at.get("html") for m in _IMG.finditer(e.proto.body)]
    assert len(found) == 1, [e.proto.body[:80] for e in at.get("html")]
    return base64.b64decode(found[0].group(1)), html.unescape(found[0].group(2))


def downloads(at: AppTest) -> list[tuple[str, str]]:
    """(file name, text) of each data: download link the run drew."""
    return [(m.group(2), base64.b64decode(m.group(1)).decode("utf-8"))
            for e in at.markdown for m in _LINK.finditer(e.value)]


def new_codes(at: AppTest) -> list[str]:
    """The backup codes the session keeps for this visit ([] when none)."""
    kept = at.session_state[backup_view.CODES] if backup_view.CODES in at.session_state else None
    return list(kept["codes"]) if kept else []


def codes_on_screen(at: AppTest) -> bool:
    """Whether any ten-code list is drawn."""
    return any(len(re.findall(r"\b[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\b", c.value)) == 10
               for c in at.code)
