"""Settings the portal and the command line share: the environment over ``.streamlit/secrets.toml``.

Streamlit exports a secrets file's root-level strings as environment
variables in the portal's process only; the command line and the engine's
other callers read the same file here, so ``MFA_PORTAL_DATABASE_URL`` (or
``database_url``), ``MFA_PORTAL_FERNET_KEYS`` and ``MFA_PORTAL_PEPPER`` may
live in either place. The environment wins.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Mapping

from .errors import KeyringError, StorageError
from .keys import ENV_KEYS, ENV_PEPPER

SECRETS_FILE = Path(".streamlit") / "secrets.toml"
ENV_DATABASE_URL = "MFA_PORTAL_DATABASE_URL"
# secrets.toml's lower-case spelling of a setting, beside the environment variable's own name.
ALIASES = {"database_url": ENV_DATABASE_URL}


def with_secrets(environ: Mapping[str, str] | None = None,
                 secrets_path: str | os.PathLike | None = SECRETS_FILE) -> dict[str, str]:
    """The environment, plus the ``MFA_PORTAL_*`` settings of the secrets file it does not set.

    Only root-level string values are taken (tables such as ``[smtp]`` are
    read by their own code). Raises StorageError when the file exists but
    cannot be read; its text never holds a value from the file.
    """
    env = dict(os.environ if environ is None else environ)
    if secrets_path is None:
        return env
    try:
        with open(secrets_path, "rb") as fh:
            table = tomllib.load(fh)
    except FileNotFoundError:
        return env
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StorageError(f"The secrets file {secrets_path} cannot be read.") from exc
    for key, value in table.items():
        name = ALIASES.get(key, key)
        if isinstance(value, str) and name.startswith("MFA_PORTAL_") and not env.get(name):
            env[name] = value
    return env


def database_url(environ: Mapping[str, str]) -> str | None:
    """The configured database URL, or None (the embedded store)."""
    return (environ.get(ENV_DATABASE_URL) or "").strip() or None


def check_replica_keys(environ: Mapping[str, str]) -> None:
    """With a database, the keys must be configured (the same on every replica), never generated.

    Raises KeyringError otherwise: a key file generated into one replica's
    data dir would make every other replica's secrets unreadable to it.
    """
    if database_url(environ) and not (environ.get(ENV_KEYS) and environ.get(ENV_PEPPER)):
        raise KeyringError(
            f"With a database ({ENV_DATABASE_URL}) the keys must come from {ENV_KEYS} and "
            f"{ENV_PEPPER} (environment or {SECRETS_FILE}), the same on every replica; "
            "they are never generated then.")


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str, url: str | None = None) -> str:
    """``text`` without the password of a database URL or conninfo string in it."""
    if url:
        password = _password_of(url)
        if password:
            text = text.replace(password, "***")
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def _password_of(url: str) -> str | None:
    match = re.search(r"://[^:/@\s]*:([^@\s]*)@", url) or re.search(
        r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url, re.IGNORECASE)
    if not match:
        return None
    found = match.group(1).strip("'")
    return found if len(found) >= 3 else None  # a tiny one would blank out ordinary words
