"""The OpenAPI 3.1 description of the verification API, served at ``GET /api/v1/openapi.json``.

Written by hand to match ``mfa_services.api`` (a test validates it with
openapi-spec-validator and checks it against the routes).
"""

from __future__ import annotations

import copy
from typing import Any

from .api_contract import MAX_BODY, PREFIX, REFUSAL_FLOOR, STRATEGIES


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before the next attempt.",
                                "schema": {"type": "integer", "minimum": 1}}}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "MFA Portal verification API",
        "version": "1.0.0",
        "description": (
            "Other systems (VPN, SSH via PAM, internal apps) ask whether a code is right for a "
            "user, against the factors enrolled in the portal. The same engine call as the "
            "portal's sign-in: same window, replay rule, throttle and audit trail. The answer "
            "never says why a code failed. Client keys: `python -m mfa_core clients add NAME`."
        ),
    },
    "paths": {
        f"{PREFIX}/verify": {
            "post": {
                "operationId": "verify",
                "summary": "Check a TOTP code or a backup code for a user",
                "description": (
                    "A right code is accepted once (a TOTP step or a backup code is used up). "
                    "Unknown users, users without two-step, wrong, expired or reused codes and "
                    "locked accounts all answer `{\"ok\": false}`; reasons go to the audit trail. "
                    "Every answer but an accepted code leaves no sooner than "
                    f"{int(REFUSAL_FLOOR * 1000)} ms after the request arrived, so its time does "
                    f"not tell either. The body is at most {MAX_BODY} bytes."
                ),
                "security": [{"clientKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/VerifyRequest"},
                        "examples": {
                            "totp": {"value": {"username": "alice", "code": "123456"}},
                            "backup": {"value": {"username": "alice", "code": "abcd-efgh-jkmn-pqrs",
                                                 "strategy": "backup_code"}},
                        },
                    }},
                },
                "responses": {
                    "200": {
                        "description": "The answer: accepted or not (never why not).",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/VerifyResponse"}}},
                    },
                    "400": _error("The body is not JSON, has wrong types or unknown fields."),
                    "401": _error("The client key is missing, wrong or removed (audited).",
                                  {"WWW-Authenticate": {"schema": {"type": "string"}}}),
                    "413": {"description": f"The body is larger than {MAX_BODY} bytes (refused "
                                           "before the key is looked at; no body, the connection "
                                           "is closed)."},
                    "431": {"description": "The request's headers are too large (no body, the "
                                           "connection is closed)."},
                    "429": _error("The user's throttle holds after failed attempts, or the client "
                                  "is over its request rate.", _RETRY_AFTER),
                    "503": _error("The MFA store cannot be used right now; try again.",
                                  _RETRY_AFTER),
                },
            },
        },
        f"{PREFIX}/health": {
            "get": {
                "operationId": "health",
                "summary": "For load balancers: the engine, the client registry and the check "
                           "process can be used",
                "security": [],
                "responses": {
                    "200": {"description": "Serving.", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Health"}}}},
                    "503": {"description": "The store, the client registry or the process that "
                                           "runs the checks cannot be used.",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Health"}}}},
                },
            },
        },
        f"{PREFIX}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This description",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document.",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "clientKey": {
                "type": "http", "scheme": "bearer",
                "description": "A client key from `python -m mfa_core clients add NAME` "
                               "(`mfap_…`).",
            },
        },
        "schemas": {
            "VerifyRequest": {
                "type": "object",
                "required": ["username", "code"],
                "additionalProperties": False,
                "properties": {
                    "username": {"type": "string", "minLength": 1, "maxLength": 128},
                    "code": {"type": "string", "maxLength": 64,
                             "description": "A 6-digit TOTP code or a backup code "
                                            "(xxxx-xxxx-xxxx-xxxx, any case, separators optional)."},
                    "strategy": {"type": "string", "enum": list(STRATEGIES),
                                 "description": "Left out: six digits are a TOTP code, anything "
                                                "else a backup code."},
                },
            },
            "VerifyResponse": {
                "type": "object",
                "required": ["ok"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "strategy": {"type": "string", "enum": list(STRATEGIES),
                                 "description": "Only when ok: the factor that was accepted."},
                },
            },
            "Error": {
                "type": "object",
                "required": ["ok", "error"],
                "properties": {
                    "ok": {"type": "boolean", "const": False},
                    "error": {"type": "string"},
                    "retry_after": {"type": "integer", "minimum": 1},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}},
            },
        },
    },
}


def document() -> dict[str, Any]:
    """The description (a copy: callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
