"""A software passkey authenticator for tests: answers the portal's WebAuthn options as a browser would.

Built on ``cryptography`` (ES256 keys and signatures) and fido2's data
structures (authenticator data, attestation object, client data), so the
bytes are the ones a real authenticator and browser produce. The knobs make
the answers a test needs: another origin or relying party, a chosen sign
count, ``none`` or ``packed`` self attestation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.webauthn import (AttestationObject, AttestedCredentialData, AuthenticatorData,
                            CollectedClientData)

from mfa_core.passkeys import b64url, unb64url

FLAG = AuthenticatorData.FLAG
AAGUID = bytes.fromhex("ea9b8d664d011d213ce4b6b48cb575d4")  # "Google Password Manager"


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    sign_count: int = 0


PAGE = "http://localhost:8501"  # the origin of the portal's page that begins a ceremony


@dataclass
class SoftAuthenticator:
    """One authenticator holding credentials; ``origin`` is the page it answers from."""

    origin: str = PAGE
    aaguid: bytes = AAGUID
    attestation: str = "none"          # or "packed" (self attestation)
    counter_step: int = 1              # 0: a synced passkey that always reports 0
    backup_eligible: bool = True
    credentials: dict[bytes, Credential] = field(default_factory=dict)

    def create(self, options_json: str, *, origin: str | None = None,
               rp_id: str | None = None, again: bytes | None = None) -> dict[str, Any]:
        """``navigator.credentials.create`` answered: a registration response (JSON object).

        ``again``: answer with that credential once more, ignoring the exclude
        list (as a misbehaving authenticator would).
        """
        options = json.loads(options_json)
        rp_id = rp_id or options["rp"]["id"]
        excluded = {unb64url(c["id"]) for c in options.get("excludeCredentials") or []}
        if again is None and excluded & set(self.credentials):
            raise RuntimeError("InvalidStateError: already registered")
        cred = (self.credentials[again] if again is not None else
                Credential(secrets.token_bytes(32), ec.generate_private_key(ec.SECP256R1()), rp_id))
        self.credentials[cred.credential_id] = cred
        client = CollectedClientData.create("webauthn.create", unb64url(options["challenge"]),
                                            origin or self.origin)
        flags = FLAG.UP | FLAG.UV | FLAG.AT | (FLAG.BE | FLAG.BS if self.backup_eligible else 0)
        public = ES256.from_cryptography_key(cred.key.public_key())
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp_id.encode()).digest(), flags, cred.sign_count,
            AttestedCredentialData.create(self.aaguid, cred.credential_id, public))
        if self.attestation == "packed":
            sig = cred.key.sign(bytes(auth_data) + client.hash, ec.ECDSA(hashes.SHA256()))
            att_stmt = {"alg": -7, "sig": sig}
        else:
            att_stmt = {}
        attestation = AttestationObject.create(self.attestation, auth_data, att_stmt)
        cid = b64url(cred.credential_id)
        return {"id": cid, "rawId": cid, "type": "public-key", "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(bytes(client)),
                             "attestationObject": b64url(bytes(attestation)),
                             "transports": ["internal", "hybrid"]}}

    def get(self, options_json: str, *, origin: str | None = None, rp_id: str | None = None,
            sign_count: int | None = None, credential_id: bytes | None = None) -> dict[str, Any]:
        """``navigator.credentials.get`` answered: an assertion with the first allowed credential held."""
        options = json.loads(options_json)
        allowed = [unb64url(c["id"]) for c in options.get("allowCredentials") or []]
        if credential_id is None:
            held = [c for c in allowed if c in self.credentials]
            if not held:
                raise RuntimeError("NotAllowedError: no credential for this site")
            credential_id = held[0]
        cred = self.credentials[credential_id]
        if sign_count is None:
            cred.sign_count += self.counter_step
            sign_count = cred.sign_count
        client = CollectedClientData.create("webauthn.get", unb64url(options["challenge"]),
                                            origin or self.origin)
        flags = FLAG.UP | FLAG.UV | (FLAG.BE | FLAG.BS if self.backup_eligible else 0)
        auth_data = AuthenticatorData.create(
            hashlib.sha256((rp_id or options.get("rpId") or cred.rp_id).encode()).digest(),
            flags, sign_count)
        sig = cred.key.sign(bytes(auth_data) + client.hash, ec.ECDSA(hashes.SHA256()))
        cid = b64url(cred.credential_id)
        return {"id": cid, "rawId": cid, "type": "public-key", "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(bytes(client)),
                             "authenticatorData": b64url(bytes(auth_data)),
                             "signature": b64url(sig), "userHandle": None}}
