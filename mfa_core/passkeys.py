"""Passkeys (WebAuthn): the relying party, both ceremonies' options and checks, and their single-use challenges.

py_webauthn does the cryptography and the parsing. What this module adds is
what the portal decides:

- which origins may answer: any ``http(s)://localhost:<port>`` while the
  relying party is ``localhost`` (what a developer runs; browsers refuse
  WebAuthn on bare IP addresses), exact origins behind a real domain;
- that an answer is checked against a challenge issued to the same session,
  for the same ceremony and user, within its lifetime, and only once
  (``ChallengeBook``: one keyed record per session and ceremony, taken under
  its lock, so 40 parallel answers to one challenge find it once);
- that a sign count going backwards means a cloned authenticator, checked
  only after the signature (a forged answer cannot raise that alarm);
- that every failure is a ``PasskeyRefused`` whose ``reason`` is for the
  audit trail and whose text is for the user, and a response that is not a
  response at all is an ``InvalidCodeFormat`` that changes nothing.

Nothing kept here is secret: credential id, public key (COSE), sign count,
transports, AAGUID and the backup flags (``NewPasskey.fields()``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from .errors import InvalidCodeFormat, PasskeyChallengeExpired, PasskeyRefused, PasskeySettingsError, SignCountRegressed

ENV_RP_ID = "MFA_PORTAL_RP_ID"
ENV_RP_NAME = "MFA_PORTAL_RP_NAME"
ENV_ORIGINS = "MFA_PORTAL_ORIGINS"
DEFAULT_RP_ID = "localhost"
DEFAULT_RP_NAME = "MFA Portal"

REGISTER = "register"
AUTHENTICATE = "authenticate"
# Seconds a challenge lives: naming the new passkey happens before its
# registration is checked, so that ceremony gets longer.
CHALLENGE_TTL = {REGISTER: 300, AUTHENTICATE: 120}
CHALLENGE_BYTES = 32
RESPONSE_MAX = 64 * 1024     # characters of a response (attestation certificates included)
SIGN_COUNT_MAX = 2 ** 32 - 1
DEFAULT_LABEL = "Passkey"

_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_LOCALHOST_ORIGIN = re.compile(r"https?://localhost(:[0-9]{1,5})?")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# py_webauthn's AuthenticatorTransport values (a test holds them equal): py_webauthn itself, with
# cryptography's x509 and OpenSSL, is imported only by a ceremony (``_webauthn``), ~0.1 s that
# every command and process that never touches a passkey would pay otherwise.
_TRANSPORTS = frozenset({"ble", "cable", "hybrid", "internal", "nfc", "smart-card", "usb"})

# A few well-known authenticators by AAGUID, to suggest a name for a new passkey
# (from the community list passkey-authenticator-aaguids).
KNOWN_AUTHENTICATORS = {
    "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4": "Google Password Manager",
    "adce0002-35bc-c60a-648b-0b25f1f05503": "Chrome on Mac",
    "fbfc3007-154e-4ecc-8c0b-6e020557d7bd": "iCloud Keychain",
    "dd4ec289-e01d-41c9-bb89-70fa845d4bf2": "iCloud Keychain",
    "08987058-cadc-4b81-b6e1-30de50dcbe96": "Windows Hello",
    "9ddd1817-af5a-4672-a2b9-3e3dd95000a9": "Windows Hello",
    "6028b017-b1d4-4c02-b4b3-afcdafc96bb2": "Windows Hello",
    "bada5566-a7aa-401f-bd96-45619a55120d": "1Password",
    "d548826e-79b4-db40-a3d8-11116f7e8349": "Bitwarden",
    "531126d6-e717-415c-9320-3d9aa6981239": "Dashlane",
}


# -- the relying party ------------------------------------------------------------


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: ``id`` (a domain), ``name`` (shown by the browser) and the origins allowed.

    ``origins`` empty means the default: while ``id`` is ``localhost``, the
    origin of the page that started the ceremony, which must be an
    ``http(s)://localhost:<port>`` (another local port's page is another
    origin: its answers are refused); else ``https://<id>`` alone. Raises
    PasskeySettingsError when a value cannot be used.
    """

    id: str = DEFAULT_RP_ID
    name: str = DEFAULT_RP_NAME
    origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rp_id = self.id.strip().lower() if isinstance(self.id, str) else ""
        if not _HOSTNAME.fullmatch(rp_id) or _is_ip(rp_id):
            raise PasskeySettingsError(
                f"The relying party id ({ENV_RP_ID}) must be a domain name such as "
                f"portal.example.com, without scheme or port (not an IP address).")
        name = self.name.strip() if isinstance(self.name, str) else ""
        if not name or len(name) > 64 or not name.isprintable():
            raise PasskeySettingsError(f"The relying party name ({ENV_RP_NAME}) must be 1-64 "
                                       "printable characters.")
        origins = tuple(_origin(o, rp_id) for o in self.origins)
        if not origins and rp_id != DEFAULT_RP_ID:
            origins = (f"https://{rp_id}",)
        object.__setattr__(self, "id", rp_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "origins", origins)

    @classmethod
    def from_settings(cls, environ: Mapping[str, str],
                      table: Mapping[str, Any] | None = None) -> "RelyingParty":
        """From ``MFA_PORTAL_RP_ID`` / ``_RP_NAME`` / ``_ORIGINS`` (comma-separated) over a table.

        The table is e.g. ``[passkeys]`` of ``.streamlit/secrets.toml`` with
        keys ``rp_id``, ``rp_name``, ``origins`` (a list or a comma-separated
        string); the environment wins.
        """
        table = dict(table or {})
        rp_id = environ.get(ENV_RP_ID) or table.get("rp_id") or DEFAULT_RP_ID
        name = environ.get(ENV_RP_NAME) or table.get("rp_name") or DEFAULT_RP_NAME
        raw = environ.get(ENV_ORIGINS) or table.get("origins") or ()
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, (list, tuple)) or not all(isinstance(o, str) for o in raw):
            raise PasskeySettingsError(f"The allowed origins ({ENV_ORIGINS}) must be a "
                                       "comma-separated list of https://host[:port].")
        return cls(id=str(rp_id), name=str(name), origins=tuple(o.strip() for o in raw if o.strip()))

    def accepts(self, origin: Any, page: str | None) -> bool:
        """Whether an answer from ``origin`` is accepted for a ceremony begun on a page at ``page``.

        Configured origins: one of them, and the page's own when it is known.
        The default (``localhost``, none configured): the page's own origin
        only; without it, none.
        """
        if not self.allows(origin):
            return False
        if page is not None:
            return origin == page
        return bool(self.origins)

    def allows(self, origin: Any) -> bool:
        """Whether a page at ``origin`` may be one of this relying party's (see ``accepts``)."""
        if not isinstance(origin, str):
            return False
        if self.origins:
            return origin in self.origins
        return self.id == DEFAULT_RP_ID and _LOCALHOST_ORIGIN.fullmatch(origin) is not None


def load_relying_party(environ: Mapping[str, str],
                       secrets_path: str | os.PathLike | None = ".streamlit/secrets.toml"
                       ) -> RelyingParty | PasskeySettingsError:
    """The relying party from the environment over the ``[passkeys]`` table of ``secrets_path``.

    Settings that cannot be used come back as the error (not raised): the
    portal still runs, with passkeys off and the reason logged.
    """
    table: Mapping[str, Any] = {}
    if secrets_path is not None:
        try:
            with open(secrets_path, "rb") as fh:
                table = tomllib.load(fh).get("passkeys") or {}
        except FileNotFoundError:
            pass
        except (OSError, tomllib.TOMLDecodeError):
            return PasskeySettingsError(f"The secrets file {secrets_path} cannot be read.")
    if not isinstance(table, Mapping):
        return PasskeySettingsError("The [passkeys] table of the secrets file is not a table.")
    try:
        return RelyingParty.from_settings(environ, table)
    except PasskeySettingsError as err:
        return err


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origin(value: str, rp_id: str) -> str:
    """An allowed origin as the browser writes it (``scheme://host[:port]``), or PasskeySettingsError."""
    bad = PasskeySettingsError(
        f"The origin {value!r} ({ENV_ORIGINS}) is not usable: write scheme://host[:port] with "
        f"https (http only for localhost) and a host that is {rp_id} or under it.")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise bad from None
    host = parts.hostname or ""
    if (parts.path or parts.query or parts.fragment or parts.username or parts.password
            or not _HOSTNAME.fullmatch(host) or not (host == rp_id or host.endswith("." + rp_id))):
        raise bad
    if parts.scheme != "https" and not (parts.scheme == "http" and host == "localhost"):
        raise bad
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


# -- encoding ---------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _webauthn() -> Any:
    """py_webauthn, imported on first use (see ``_TRANSPORTS``)."""
    import webauthn
    import webauthn.helpers.exceptions  # noqa: F401 - WebAuthnException, caught by the ceremonies
    import webauthn.helpers.structs  # noqa: F401
    return webauthn


def unb64url(text: str) -> bytes:
    """Bytes of a base64url text (padding optional); ValueError when it is not one."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text.rstrip("=")):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def user_handle(pepper: bytes, username: str) -> bytes:
    """The WebAuthn user id of ``username``: stable, opaque, never the name itself."""
    return hmac.new(pepper, b"webauthn-user:" + username.encode("utf-8"), hashlib.sha256).digest()


NOT_A_RESPONSE = "That is not a passkey response. Try again."


def parse_response(response: Any) -> dict[str, Any]:
    """The browser's answer as a JSON object; InvalidCodeFormat (changes nothing) when it is not one."""
    if isinstance(response, str):
        if len(response) > RESPONSE_MAX:
            raise InvalidCodeFormat(NOT_A_RESPONSE)
        try:
            response = json.loads(response)
        except ValueError:
            raise InvalidCodeFormat(NOT_A_RESPONSE) from None
    elif isinstance(response, Mapping):
        try:
            if len(json.dumps(response)) > RESPONSE_MAX:
                raise InvalidCodeFormat(NOT_A_RESPONSE)
        except (TypeError, ValueError):
            raise InvalidCodeFormat(NOT_A_RESPONSE) from None
        response = dict(response)
    else:
        raise TypeError(f"response must be a str or a mapping, not {type(response).__name__}")
    if not isinstance(response, dict):
        raise InvalidCodeFormat(NOT_A_RESPONSE)
    inner = response.get("response")
    if (not isinstance(response.get("id"), str) or not response["id"]
            or response.get("rawId") != response["id"] or not isinstance(inner, dict)
            or not isinstance(inner.get("clientDataJSON"), str)):
        raise InvalidCodeFormat(NOT_A_RESPONSE)
    try:
        unb64url(response["id"])
    except ValueError:
        raise InvalidCodeFormat(NOT_A_RESPONSE) from None
    return response


def credential_id_of(response: Any) -> str:
    """The credential id (base64url) an answer is signed with: which of the user's passkeys answered."""
    return parse_response(response)["id"]


def _client_data(rp: RelyingParty, response: dict[str, Any], ceremony: str,
                 page: str | None = None) -> dict[str, Any]:
    """The answer's client data, with its origin checked against the relying party's and ``page``'s."""
    try:
        client = json.loads(unb64url(response["response"]["clientDataJSON"]))
    except (ValueError, UnicodeDecodeError):
        raise PasskeyRefused(reason="client data malformed") from None
    if not isinstance(client, dict) or client.get("type") != ceremony:
        raise PasskeyRefused(reason="wrong ceremony")
    if not rp.accepts(client.get("origin"), page):
        raise PasskeyRefused(reason="wrong origin")
    if client.get("crossOrigin") is True or "topOrigin" in client:
        raise PasskeyRefused(reason="answered from a frame of another site")
    return client


def _reason(exc: Exception) -> str:
    """Which check failed, in a few words for the audit trail (never a value from the answer)."""
    text = str(exc).lower()
    for needle, reason in (("challenge", "wrong challenge"), ("origin", "wrong origin"),
                           ("rp id", "wrong relying party"), ("signature", "bad signature"),
                           ("present", "no user presence"), ("attestation", "attestation refused"),
                           ("alg", "unsupported key"), ("public key", "unsupported key")):
        if needle in text:
            return reason
    return "invalid response"


# -- registration -----------------------------------------------------------------


@dataclass(frozen=True)
class NewPasskey:
    """A verified registration: what the user's record keeps of it (nothing secret)."""

    credential_id: str          # base64url
    public_key: str             # base64url of the COSE key
    sign_count: int
    transports: tuple[str, ...]
    aaguid: str
    backup_eligible: bool
    backed_up: bool
    suggested_label: str = DEFAULT_LABEL

    def fields(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "public_key": self.public_key,
                "sign_count": self.sign_count, "transports": list(self.transports),
                "aaguid": self.aaguid, "backup_eligible": self.backup_eligible,
                "backed_up": self.backed_up}


def _descriptors(passkeys: Iterable[Mapping[str, Any]]) -> list[Any]:
    structs = _webauthn().helpers.structs
    found = []
    for pk in passkeys:
        transports = [structs.AuthenticatorTransport(t) for t in pk.get("transports") or () if t in _TRANSPORTS]
        found.append(structs.PublicKeyCredentialDescriptor(id=unb64url(pk["credential_id"]),
                                                           transports=transports or None))
    return found


def registration_options(rp: RelyingParty, *, user_id: bytes, username: str, display_name: str,
                         challenge: bytes, existing: Iterable[Mapping[str, Any]] = ()) -> str:
    """``navigator.credentials.create``'s options, as JSON (binary fields base64url).

    ``existing`` are the user's passkeys (their fields): the browser refuses to
    register one of them twice. A passkey is preferred (discoverable); user
    verification is preferred, not required: it is a second factor after the password.
    """
    webauthn = _webauthn()
    structs = webauthn.helpers.structs
    options = webauthn.generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_id=user_id, user_name=username,
        user_display_name=display_name or username, challenge=challenge,
        timeout=CHALLENGE_TTL[REGISTER] * 1000,
        authenticator_selection=structs.AuthenticatorSelectionCriteria(
            resident_key=structs.ResidentKeyRequirement.PREFERRED,
            user_verification=structs.UserVerificationRequirement.PREFERRED),
        exclude_credentials=_descriptors(existing))
    return webauthn.options_to_json(options)


def verify_registration(rp: RelyingParty, response: Any, *, challenge: bytes,
                        origin: str | None = None) -> NewPasskey:
    """A registration answer checked against ``challenge`` and the page's ``origin`` (see
    ``RelyingParty.accepts``); raises PasskeyRefused, InvalidCodeFormat."""
    response = parse_response(response)
    inner = response["response"]
    if not isinstance(inner.get("attestationObject"), str):
        raise InvalidCodeFormat(NOT_A_RESPONSE)
    client = _client_data(rp, response, "webauthn.create", origin)
    webauthn = _webauthn()
    try:
        verified = webauthn.verify_registration_response(
            credential=response, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=client["origin"], require_user_presence=True)
    except webauthn.helpers.exceptions.WebAuthnException as exc:
        raise PasskeyRefused(reason=_reason(exc)) from None
    except Exception:  # whatever else a hostile answer makes the parser raise: refused
        raise PasskeyRefused(reason="invalid response") from None
    if not 0 <= verified.sign_count <= SIGN_COUNT_MAX:
        raise PasskeyRefused(reason="invalid sign count")
    transports = tuple(sorted({t for t in inner.get("transports") or () if t in _TRANSPORTS}))
    eligible = verified.credential_device_type == "multi_device"
    attachment = response.get("authenticatorAttachment")
    return NewPasskey(credential_id=b64url(verified.credential_id),
                      public_key=b64url(verified.credential_public_key),
                      sign_count=verified.sign_count, transports=transports, aaguid=verified.aaguid,
                      backup_eligible=eligible, backed_up=bool(verified.credential_backed_up),
                      suggested_label=describe(verified.aaguid, attachment, transports))


def describe_response(response: Any) -> str:
    """A name to suggest for the passkey in a registration answer, before it is checked.

    Only for the name field: nothing here is trusted. Raises InvalidCodeFormat.
    """
    response = parse_response(response)
    inner = response["response"]
    transports = [t for t in inner.get("transports") or () if isinstance(t, str)]
    helpers = _webauthn().helpers
    try:
        aaguid = helpers.parse_attestation_object(unb64url(inner["attestationObject"])) \
            .auth_data.attested_credential_data.aaguid
        aaguid_text = helpers.aaguid_to_string(aaguid)
    except Exception:  # whatever a hostile answer holds: no name from it
        aaguid_text = ""
    return describe(aaguid_text, response.get("authenticatorAttachment"), transports)


def describe(aaguid: str, attachment: Any = None, transports: Iterable[str] = ()) -> str:
    """A name to suggest for a new passkey, from what the browser told about the authenticator."""
    known = KNOWN_AUTHENTICATORS.get(aaguid)
    if known:
        return known
    transports = set(transports)
    if attachment == "cross-platform" or transports & {"usb", "nfc", "ble"}:
        return "Security key"
    if attachment == "platform" or "internal" in transports:
        return "Passkey on this device"
    return DEFAULT_LABEL


# -- authentication ---------------------------------------------------------------


@dataclass(frozen=True)
class Assertion:
    """A verified sign-in answer: what changes in the passkey's stored fields."""

    credential_id: str
    sign_count: int
    backed_up: bool
    user_verified: bool


def authentication_options(rp: RelyingParty, *, challenge: bytes,
                           passkeys: Iterable[Mapping[str, Any]]) -> str:
    """``navigator.credentials.get``'s options for the user's passkeys, as JSON."""
    webauthn = _webauthn()
    options = webauthn.generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=CHALLENGE_TTL[AUTHENTICATE] * 1000,
        allow_credentials=_descriptors(passkeys),
        user_verification=webauthn.helpers.structs.UserVerificationRequirement.PREFERRED)
    return webauthn.options_to_json(options)


def verify_authentication(rp: RelyingParty, response: Any, *, challenge: bytes,
                          passkey: Mapping[str, Any], user_id: bytes | None = None,
                          origin: str | None = None) -> Assertion:
    """A sign-in answer checked against ``challenge`` and the stored ``passkey`` (its fields).

    ``origin`` is the page that began the ceremony (see ``RelyingParty.accepts``).

    ``user_id`` is the user's handle (``user_handle``): an answer that names
    another user (a discoverable passkey says whose it is) is refused.

    Raises PasskeyRefused (SignCountRegressed when the signature is good but
    the counter went backwards: a cloned authenticator), InvalidCodeFormat.
    """
    response = parse_response(response)
    if response["id"] != passkey["credential_id"]:
        raise PasskeyRefused(reason="another credential")
    inner = response["response"]
    if not (isinstance(inner.get("authenticatorData"), str) and isinstance(inner.get("signature"), str)):
        raise InvalidCodeFormat(NOT_A_RESPONSE)
    handle = inner.get("userHandle")
    if user_id is not None and handle not in (None, ""):
        try:
            named = unb64url(handle) if isinstance(handle, str) else None
        except ValueError:
            named = None
        if named is None or not hmac.compare_digest(named, user_id):
            raise PasskeyRefused(reason="answer for another user")
    client = _client_data(rp, response, "webauthn.get", origin)
    stored = int(passkey.get("sign_count") or 0)
    webauthn = _webauthn()
    try:
        # The counter is checked below, after the signature: py_webauthn checks it first.
        verified = webauthn.verify_authentication_response(
            credential=response, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=client["origin"], credential_public_key=unb64url(passkey["public_key"]),
            credential_current_sign_count=0, require_user_verification=False)
    except webauthn.helpers.exceptions.WebAuthnException as exc:
        raise PasskeyRefused(reason=_reason(exc)) from None
    except Exception:
        raise PasskeyRefused(reason="invalid response") from None
    count = verified.new_sign_count
    if not 0 <= count <= SIGN_COUNT_MAX:
        raise PasskeyRefused(reason="invalid sign count")
    if (count or stored) and count <= stored:
        raise SignCountRegressed(reason=f"sign count {count} after {stored}")
    return Assertion(credential_id=response["id"], sign_count=count,
                     backed_up=bool(verified.credential_backed_up),
                     user_verified=bool(verified.user_verified))


# -- challenges -------------------------------------------------------------------


@dataclass
class ChallengeBook:
    """Single-use challenges, one per session and ceremony, kept in the store's keyed records.

    ``issue`` replaces any challenge the session had for that ceremony;
    ``take`` removes it under the record's lock and returns it only if it is
    live and was issued for that user: a second answer to the same challenge,
    an answer in another session and a late answer all find none. ``store``
    is the engine's ``Store``; ``session_key`` is what binds a challenge to a
    session (the engine passes the session's id, a keyed hash of its token).
    """

    store: Any
    clock: Callable[[], float]
    ttl: dict[str, int] = field(default_factory=lambda: dict(CHALLENGE_TTL))

    def _key(self, session_key: str, ceremony: str) -> str:
        if ceremony not in self.ttl:
            raise ValueError(f"unknown ceremony {ceremony!r}")
        if not isinstance(session_key, str) or not session_key:
            raise ValueError("A passkey challenge needs a session.")
        return f"passkey-challenge:{ceremony}:{session_key}"

    def issue(self, session_key: str, ceremony: str, username: str, origin: str | None = None, *,
              overdue_ok: bool = False) -> bytes:
        """A new challenge for ``username`` in this session; the one before it is void.

        ``origin`` is the page that asked for it: only an answer from that page is accepted.
        ``overdue_ok``: issued past the two-step policy's deadline on grounds (a familiar
        place, a temporary pass), so its answer may add a passkey then (see ``take_noted``).
        """
        key = self._key(session_key, ceremony)
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        with self.store.keyed_transaction(key) as txn:
            txn.record.update(challenge=b64url(challenge), user=username,
                              expires_at=self.clock() + self.ttl[ceremony])
            txn.record.pop("origin", None)
            txn.record.pop("overdue_ok", None)
            if origin is not None:
                txn.record["origin"] = origin
            if overdue_ok:
                txn.record["overdue_ok"] = True
        return challenge

    def take(self, session_key: str, ceremony: str, username: str) -> bytes:
        """The session's live challenge for ``username``, removed; PasskeyChallengeExpired otherwise."""
        return self.take_bound(session_key, ceremony, username)[0]

    def take_bound(self, session_key: str, ceremony: str, username: str) -> tuple[bytes, str | None]:
        """``take``, with the origin of the page the challenge was issued to (None: not known)."""
        return self.take_noted(session_key, ceremony, username)[:2]

    def take_noted(self, session_key: str, ceremony: str, username: str
                   ) -> tuple[bytes, str | None, bool]:
        """``take_bound``, and whether it was issued ``overdue_ok``."""
        key = self._key(session_key, ceremony)
        with self.store.keyed_transaction(key) as txn:
            rec = txn.record
            sealed, user, expires_at = rec.pop("challenge", None), rec.pop("user", None), rec.pop("expires_at", 0)
            origin = rec.pop("origin", None)
            overdue_ok = rec.pop("overdue_ok", None) is True
        # Raised after the block: the removal above is committed whatever the outcome.
        if not isinstance(sealed, str):
            raise PasskeyChallengeExpired(reason="no challenge")
        if user != username:
            raise PasskeyChallengeExpired(reason="challenge of another user")
        if not isinstance(expires_at, (int, float)) or expires_at <= self.clock():
            raise PasskeyChallengeExpired(reason="challenge expired")
        return unb64url(sealed), origin if isinstance(origin, str) else None, overdue_ok

    @staticmethod
    def expired_record(key: str, rec: dict[str, Any], now: float) -> bool:
        """Whether a keyed record is a challenge no longer needed (taken, or past its time)."""
        if not key.startswith("passkey-challenge:"):
            return False
        expires = rec.get("expires_at")
        return "challenge" not in rec or not isinstance(expires, (int, float)) or expires <= now

    def has(self, session_key: str, ceremony: str) -> bool:
        """Whether a live challenge waits for this session (for the page's state, not a check)."""
        rec = self.store.read_keyed(self._key(session_key, ceremony)) or {}
        return isinstance(rec.get("challenge"), str) and rec.get("expires_at", 0) > self.clock()
