"""The browser's side of a passkey ceremony: a tiny component that calls ``navigator.credentials``.

Plain JavaScript through ``st.components.v2`` (no build step, no framework):
it takes the server's options (JSON, binary fields base64url), calls
``navigator.credentials.create`` or ``.get`` once per ceremony, and hands back
either the credential as JSON (``PublicKeyCredential.toJSON``, or the same
shape built by hand on older browsers) or the kind of error: ``unsupported``,
``cancelled``, ``timeout``, ``already_registered``, ``insecure`` (the page's
address does not fit the relying party, e.g. an IP address) or ``failed``.
Nothing secret passes through it: options and answers are public by design,
and each answer is good for one challenge of this session only.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Callable

import streamlit as st

CREATE = "create"
GET = "get"

ERROR_KINDS = ("unsupported", "cancelled", "timeout", "already_registered", "insecure", "failed")

_MESSAGES = {
    "unsupported": "This browser or device cannot use passkeys. Use another way to verify, "
                   "or try a browser that supports passkeys.",
    "cancelled": "The passkey request was cancelled or not allowed. Try again when you are ready.",
    "timeout": "The passkey request timed out. Try again.",
    "already_registered": "That passkey is already registered for your account.",
    "insecure": "Passkeys work only at the portal's own web address (a name such as "
                "localhost, not an IP address). Open the portal there and try again.",
    "failed": "The passkey request did not work. Try again, or use another way to verify.",
}

_HTML = '<p class="mfa-passkey-status" role="status" aria-live="polite"></p>'

_CSS = """
.mfa-passkey-status { margin: 0; font-family: inherit; color: inherit; }
.mfa-passkey-status:empty { display: none; }
"""

_JS = """
const b64urlToBytes = (text) => {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
};
const bytesToB64url = (buffer) => {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
};

function creationOptions(json) {
  if (PublicKeyCredential.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  const options = structuredClone(json);
  options.challenge = b64urlToBytes(json.challenge);
  options.user.id = b64urlToBytes(json.user.id);
  options.excludeCredentials = (json.excludeCredentials || []).map(
    (c) => ({ ...c, id: b64urlToBytes(c.id) }));
  return options;
}

function requestOptions(json) {
  if (PublicKeyCredential.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  const options = structuredClone(json);
  options.challenge = b64urlToBytes(json.challenge);
  options.allowCredentials = (json.allowCredentials || []).map(
    (c) => ({ ...c, id: b64urlToBytes(c.id) }));
  return options;
}

function credentialJSON(cred) {
  if (typeof cred.toJSON === "function") return cred.toJSON();
  const r = cred.response;
  const response = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bytesToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = bytesToB64url(r.authenticatorData);
    response.signature = bytesToB64url(r.signature);
    response.userHandle = r.userHandle ? bytesToB64url(r.userHandle) : null;
  }
  return { id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type,
           authenticatorAttachment: cred.authenticatorAttachment || null,
           clientExtensionResults: cred.getClientExtensionResults(), response };
}

function errorKind(err, started, timeoutMs) {
  const name = err && err.name;
  if (name === "NotAllowedError") {
    // Browsers report a timeout and a cancel alike; the clock tells them apart.
    return performance.now() - started >= timeoutMs - 1000 ? "timeout" : "cancelled";
  }
  if (name === "AbortError") return "cancelled";
  if (name === "InvalidStateError") return "already_registered";
  if (name === "SecurityError") return "insecure";
  if (name === "NotSupportedError") return "unsupported";
  return "failed";
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  if (!data || !data.options || !data.nonce) return;
  const status = parentElement.querySelector(".mfa-passkey-status");
  const done = "mfaPortalPasskey" + data.nonce;
  if (window[done]) return;  // one ceremony per nonce, whatever the reruns
  window[done] = true;
  const report = (value) => setTriggerValue("result", { nonce: data.nonce, ...value });
  if (!window.PublicKeyCredential || !navigator.credentials) {
    report({ error: window.isSecureContext === false ? "insecure" : "unsupported" });
    return;
  }
  if (status && data.prompt) status.textContent = data.prompt;
  const timeoutMs = data.options.timeout || 120000;
  const started = performance.now();
  let call;
  try {
    call = data.mode === "create"
      ? navigator.credentials.create({ publicKey: creationOptions(data.options) })
      : navigator.credentials.get({ publicKey: requestOptions(data.options) });
  } catch (err) {
    report({ error: errorKind(err, started, timeoutMs) });
    return;
  }
  call.then((cred) => {
    if (status) status.textContent = "";
    if (!cred) { report({ error: "cancelled" }); return; }
    report({ response: JSON.stringify(credentialJSON(cred)) });
  }).catch((err) => {
    if (status) status.textContent = "";
    report({ error: errorKind(err, started, timeoutMs) });
  });
}
"""

_component = None


def page_origin() -> str | None:
    """The origin (``scheme://host:port``) this page was served from: its websocket's ``Origin``.

    ``web.OriginGuard`` refused any websocket whose ``Origin`` is not the
    server's own, so this is the portal's address as the browser sees it. A
    passkey answer must come from it (another port of the host is another
    origin). None without a browser's request (a bare script run).
    """
    try:
        value = st.context.headers.get("Origin")
    except Exception:  # no request context
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def new_nonce() -> str:
    """A fresh id for one ceremony: the component runs once per nonce, answers carry it back."""
    return secrets.token_hex(8)


def mount(mode: str, options_json: str, *, nonce: str, key: str,
          on_result: Callable[[], Any] | None = None, prompt: str = "") -> None:
    """Run one ceremony in the browser (``mode`` is ``create`` or ``get``).

    ``on_result`` runs (as a callback, before the next run) when the browser
    answers; read the answer there with ``result(key, nonce)``.
    """
    global _component
    if mode not in (CREATE, GET):
        raise ValueError(f"unknown passkey ceremony {mode!r}")
    if _component is None:  # declared in a script run, once per process
        _component = st.components.v2.component("mfa_portal_passkey", html=_HTML, css=_CSS, js=_JS)
    _component(data={"mode": mode, "options": json.loads(options_json), "nonce": nonce,
                     "prompt": prompt},
               key=key, on_result_change=on_result or (lambda: None))


def result(key: str, nonce: str) -> dict[str, Any] | None:
    """The browser's answer to the ceremony ``nonce``: ``{"response": json}`` or ``{"error": kind}``.

    None while there is none, or when it answers another (older) ceremony.
    """
    try:
        state = st.session_state.get(key)
        value = state.get("result") if state is not None else None
    except Exception:  # a component state Streamlit has not filled yet
        return None
    if not isinstance(value, dict) or value.get("nonce") != nonce:
        return None
    if isinstance(value.get("response"), str):
        return {"response": value["response"]}
    kind = value.get("error")
    return {"error": kind if kind in ERROR_KINDS else "failed"}


def error_message(kind: str) -> str:
    """What to tell the user about a ceremony the browser could not complete."""
    return _MESSAGES.get(kind, _MESSAGES["failed"])
