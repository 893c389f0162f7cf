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


# A URL's password: from "://user:" to the LAST "@" of the token (a password may hold an
# unencoded "@"); a conninfo string's "password=...".
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_SHORTEST = 3  # a shorter piece of a password is not blanked: it would blank ordinary words


def redact(text: str, url: str | None = None) -> str:
    """``text`` without the password of a database URL or conninfo string in it.

    With ``url`` (the configured one), every piece of its password found in
    ``text`` is blanked, however the database's client cut it (a password
    with a space, or an unencoded "@" that makes its end look like a host
    name: ``failed to resolve host 'tpw@127.0.0.1'``), then any password
    shaped like one in a URL or a ``password=`` keyword.
    """
    # The role and database names are not secret, and the operator needs them ('password
    # authentication failed for user "mfa"'): as the server quotes them, they stay.
    shielded: dict[str, str] = {}
    for n, name in enumerate(_public_names(url) if url else ()):
        quoted = f'"{name}"'
        if quoted in text:
            shielded[f"\x00{n}\x00"] = quoted
            text = text.replace(quoted, f"\x00{n}\x00")
    for password in _passwords_of(url) if url else ():
        text = _blank_pieces(text, password)
    for spill in _host_spills(url) if url else ():  # however short: blanked with its "@"
        text = text.replace(spill, "***@")
    text = _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))
    for mark, quoted in shielded.items():
        text = text.replace(mark, quoted)
    return text


def _public_names(url: str) -> list[str]:
    """The user and database names ``url`` gives (not secret), as the client reads them."""
    try:
        from psycopg.conninfo import conninfo_to_dict
        parsed = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - malformed: nothing read
        return []
    names = [parsed.get("user"), parsed.get("dbname")]
    passwords = _passwords_of(url)
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and n
            and '"' not in n and "\x00" not in n and n not in passwords]


def _passwords_of(url: str) -> list[str]:
    """Every reading of ``url``'s password: the client's parse, and between "user:" and the last "@"."""
    found: list[str] = []
    try:
        from psycopg.conninfo import conninfo_to_dict  # the client's own reading, when it can
        parsed = conninfo_to_dict(url).get("password")
        if isinstance(parsed, str):
            found.append(parsed)
    except Exception:  # noqa: BLE001 - malformed: the readings below still apply
        pass
    scheme = url.find("://")
    if scheme >= 0 and "@" in url[scheme + 3:]:
        userinfo = url[scheme + 3:url.rindex("@")]
        if ":" in userinfo:  # "user@host" has no password (PGPASSWORD, ~/.pgpass): nothing to blank
            found.append(userinfo.partition(":")[2])
    match = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url, re.IGNORECASE)
    if match:
        found.append(match.group(1).strip("'"))
    return [p for p in dict.fromkeys(found) if len(p) >= _SHORTEST]


def _host_spills(url: str) -> list[str]:
    """The end of a password with an unencoded "@" that the client reads as the host's start."""
    try:
        from psycopg.conninfo import conninfo_to_dict
        host = conninfo_to_dict(url).get("host")
    except Exception:  # noqa: BLE001 - malformed: nothing read as a host
        return []
    return [host[:host.rindex("@") + 1]] if isinstance(host, str) and "@" in host else []


def _blank_pieces(text: str, password: str) -> str:
    """``text`` with every run of at least _SHORTEST characters that is a piece of ``password`` blanked."""
    out: list[str] = []
    i = 0
    while i < len(text):
        end = i
        while end < len(text) and text[i:end + 1] in password:
            end += 1
        if end - i >= _SHORTEST:
            out.append("***")
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
