"""portal: the Streamlit glue shared by every page (sign-in gate, reverification, QR codes).

Pages are thin: they call the guard first, then one ``mfa_core`` operation per
action. This package imports streamlit; ``mfa_core`` never does.

Public API (what pages, including ``pages/3_Helpdesk.py``, may use)
-------------------------------------------------------------------

``require_user(page_title=None, *, home=False, wide=False) -> User``
    First call of every page. Returns the signed-in user (``mfa_core.users.User``:
    ``.username``, ``.name``, ``.email``, ``.roles``, ``.is_admin``) whose session
    has passed the second factor. Otherwise it draws the sign-in screen (password
    form, or the **Two-step verification** challenge) and stops the script
    (``st.stop()``): nothing after the call runs. On pages (``home=False``) the
    sign-in form carries the note "You must be logged in to access this page".
    It also draws the sidebar (links the user may use, **Sign out**), shows
    one-off notices (e.g. backup codes left) and re-checks the user's MFA epoch:
    when their MFA changed elsewhere (removed, helpdesk reset) the session must
    verify again.

``require_admin(page_title=None, *, wide=False) -> User``
    ``require_user`` and, for a user who is not a helpdesk admin, an error
    "This page is for helpdesk admins." and ``st.stop()``.

``status() -> mfa_core.MFAStatus``
    The signed-in user's MFA status as the guard read it in this run (no
    second store read). After changing MFA in a callback, call
    ``note_mfa_changed()``, which refreshes it.

``service() -> mfa_core.MFAService``
    The engine on the portal's data dir (``$MFA_PORTAL_DATA_DIR``, default
    ``data/``), cached per data dir and clock. Its ``.clock`` is the portal's
    clock: use ``service().clock()`` for every time-dependent decision.

``directory() -> mfa_core.users.UserDirectory``
    The user directory (``users.yaml``) of the same data dir. Every call of
    its methods parses the YAML file; to read many users per run use
    ``portal.users.entries(config.portal())`` (the parsed snapshot, shared,
    re-read only when the file changes: never modify it) or
    ``portal.users.lookup(config.portal(), username) -> User | None``; to
    search them, ``portal.users.index(config.portal())`` (an
    ``mfa_core.users.UserIndex`` built once per version of the file).

``sensitive(action, label, run) -> None``
    Run ``run()`` now if the session verified within the last 10 minutes;
    otherwise keep the action pending and open the **Verify it's you** dialog,
    which runs it after a successful verification. Call it from an
    ``on_click`` callback (it never opens the dialog itself: the guard does,
    on the next run). ``action`` is a short id ("remove", "generate", "add"),
    ``label`` the words "to <label>" shown in the dialog.

``verification_remaining() -> int``
    Seconds the session's last verification stays valid (0: none).

``verification_caption() -> None``
    Draws "You verified it's you recently: changes need no code for another
    N min" (or that changes will ask to verify) under sensitive buttons.

``note_mfa_changed() -> None``
    After this session changed the user's MFA itself (enable, remove), keep
    the session's epoch in step so it does not challenge itself.

``flash(kind, text) -> None``
    A one-off message ("success", "info", "warning", "error") shown at the top
    of the next page drawn by the guard.

``qr_png(uri) -> bytes``
    PNG of the QR code of ``uri`` (qrcode's own version and mask choice,
    pillow), 200 x 200 px, 1 bit a pixel. Pure. The Add TOTP page draws it
    inline (``portal.qr.img_tag``: a ``data:`` URL with alt text, never
    ``st.image``, whose media store would serve the secret by URL) and keeps
    the PNG of the pending secret in its session state (never in a shared
    cache) so a rerun does not redraw it.

``sidebar(user, sign_out) -> None``
    The sidebar's links the user may use; "Signed in as" and **Sign out**
    (running the ``sign_out`` callback) at the top of the page (called by ``require_user``;
    ``portal/navigation.py``, with the page paths and ``page_link``).

``plain(text) -> str``
    ``text`` (a name from the directory, an admin's reason) escaped so that
    any markdown element (``st.markdown``, headings, alerts, labels) shows it
    literally, on one line (``portal/display.py``).

``page_link(page, label, icon=None) -> None``
    ``st.page_link`` that is left out (no exception) when a page file runs as
    its own main script (AppTest/bench running a page directly).
    Page paths: ``HOME_PAGE``, ``MANAGE_PAGE``, ``ADD_TOTP_PAGE``, ``HELPDESK_PAGE``.

Session-state keys are prefixed ``portal_`` (shared), ``manage_`` (Manage MFA)
and ``addtotp_`` (Add TOTP). Tests set the clock with ``portal.config.CLOCK =
fn`` (AppTest runs the script in this process); nothing patches datetime.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, not with the package: ``app.py`` imports
# ``portal.server`` before Streamlit's runtime exists, and a component
# declared before then (the cookie manager, imported by ``signin``) would
# never be served.
_EXPORTS = {
    "directory": "config", "service": "config", "qr_png": "qr",
    "flash": "session", "note_mfa_changed": "session", "sensitive": "reverify",
    "status": "session", "verification_caption": "reverify", "verification_remaining": "reverify",
    "ADD_TOTP_PAGE": "navigation", "HELPDESK_PAGE": "navigation", "HOME_PAGE": "navigation",
    "MANAGE_PAGE": "navigation", "page_link": "navigation", "sidebar": "navigation",
    "plain": "display", "require_admin": "signin", "require_user": "signin",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portal' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
