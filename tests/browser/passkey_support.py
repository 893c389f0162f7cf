"""Passkeys in the browser journeys: a CDP virtual authenticator in a Playwright page.

Chromium's DevTools protocol (``WebAuthn.enable``,
``WebAuthn.addVirtualAuthenticator``) gives a page a platform authenticator
(CTAP2, internal, resident keys, user verification that always succeeds)
that answers ``navigator.credentials`` with no prompt; Debian's Chromium
supports it headless. A page (or a context) without it has no passkey.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class VirtualAuthenticator:
    cdp: Any
    authenticator_id: str

    def credentials(self) -> list[dict[str, Any]]:
        """The credentials it holds (id, rpId, signCount, isResidentCredential …)."""
        return self.cdp.send("WebAuthn.getCredentials",
                             {"authenticatorId": self.authenticator_id})["credentials"]

    def remove(self) -> None:
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": self.authenticator_id})

    def set_user_verified(self, verified: bool) -> None:
        self.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": self.authenticator_id,
                                                   "isUserVerified": verified})


def add_virtual_authenticator(page) -> VirtualAuthenticator:
    """Give ``page`` a platform passkey authenticator (it stays across the page's navigations)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    found = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    return VirtualAuthenticator(cdp, found["authenticatorId"])


def localhost(url: str) -> str:
    """The same server by name: browsers refuse WebAuthn on an IP address (relying party ``localhost``)."""
    return url.replace("://127.0.0.1:", "://localhost:")
