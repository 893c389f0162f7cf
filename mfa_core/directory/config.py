"""The company directory's settings: the environment over ``[ldap]`` in ``.streamlit/secrets.toml``.

``MFA_PORTAL_LDAP_URL`` (several servers comma-separated, tried in order),
``MFA_PORTAL_LDAP_PRESET`` (``openldap`` | ``active-directory``),
``MFA_PORTAL_LDAP_BIND_DN``, ``MFA_PORTAL_LDAP_BIND_PASSWORD``,
``MFA_PORTAL_LDAP_BASE_DN``, ``MFA_PORTAL_LDAP_CA_FILE``,
``MFA_PORTAL_LDAP_ADMIN_GROUP`` (the helpdesk group's DN) and optionally
``MFA_PORTAL_LDAP_USER_FILTER``, ``MFA_PORTAL_LDAP_START_TLS`` (``1``/``0``;
default on for ``ldap://``), ``MFA_PORTAL_LDAP_TIMEOUT`` (seconds, connect
and each operation). In secrets.toml the same keys without the prefix, lower
case, in an ``[ldap]`` table. The environment wins, key by key.

Checked when the engine opens (:func:`load`): a plain ``ldap://`` URL without
StartTLS is refused unless it is a loopback address, so the directory
password never crosses a network in the clear.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from ..errors import StoreUnavailable

PREFIX = "MFA_PORTAL_LDAP_"
ENV_URL = PREFIX + "URL"
SECRETS_FILE = Path(".streamlit") / "secrets.toml"
KEYS = ("url", "preset", "bind_dn", "bind_password", "base_dn", "ca_file", "admin_group",
        "user_filter", "start_tls", "timeout", "lockout_duration", "bind_failures", "bind_window",
        "password_policy")
# The portal's own cap on wrong binds per person, below the directory's lockout threshold:
# at most BIND_FAILURES wrong binds, then none until BIND_WINDOW seconds passed since the last
# (set it at least to AD's "Reset account lockout counter after"). A success clears it.
DEFAULT_BIND_FAILURES = 5
DEFAULT_BIND_WINDOW = 1800.0
DEFAULT_TIMEOUT = 5.0  # seconds: connect, and each operation


class DirectorySettingsError(StoreUnavailable):
    """The company directory's settings cannot work.

    ``detail`` names the setting (never a password), for the operator (the
    log, the command line); ``str()`` is the generic text the public sign-in
    page may show (no host names).
    """

    default_message = "The company directory is not set up correctly. Contact the helpdesk."

    def __init__(self, detail: str = "the company directory's settings are not valid") -> None:
        super().__init__(detail)


@dataclass(frozen=True)
class Preset:
    name: str
    login_attribute: str        # what the typed name is compared with
    user_filter: str            # which entries are people who may sign in
    id_attribute: str           # the entry's stable id
    name_attribute: str
    email_attribute: str
    attributes: tuple[str, ...]  # what a lookup reads
    nested_groups: bool          # the helpdesk group's members at any depth (AD's matching rule)


PRESETS = {
    "openldap": Preset(
        name="openldap", login_attribute="uid", user_filter="(objectClass=inetOrgPerson)",
        id_attribute="entryUUID", name_attribute="cn", email_attribute="mail",
        attributes=("uid", "cn", "mail", "memberOf", "entryUUID", "pwdAccountLockedTime",
                    "pwdChangedTime", "pwdEndTime", "pwdStartTime", "pwdPolicySubentry"),
        nested_groups=False),
    "active-directory": Preset(
        name="active-directory", login_attribute="sAMAccountName",
        user_filter="(&(objectCategory=person)(objectClass=user))",
        id_attribute="objectGUID", name_attribute="displayName", email_attribute="mail",
        attributes=("sAMAccountName", "cn", "displayName", "mail", "memberOf", "objectGUID",
                    "userAccountControl", "accountExpires", "lockoutTime", "pwdLastSet",
                    "msDS-User-Account-Control-Computed"),
        nested_groups=True),
}


@dataclass(frozen=True)
class LdapSettings:
    urls: tuple[str, ...]
    preset: Preset
    bind_dn: str
    bind_password: str = field(repr=False)
    base_dn: str
    admin_group: str | None = None
    ca_file: str | None = None
    user_filter: str | None = None   # replaces the preset's
    start_tls: bool = True           # for ldap:// URLs (ldaps:// is TLS from the start)
    timeout: float = DEFAULT_TIMEOUT
    lockout_duration: float = 1800.0  # AD: seconds a lockoutTime keeps an account locked (0: until unlocked)
    bind_failures: int = DEFAULT_BIND_FAILURES
    bind_window: float = DEFAULT_BIND_WINDOW
    password_policy: str | None = None  # OpenLDAP: DN of the default ppolicy (olcPPolicyDefault)

    @property
    def filter(self) -> str:
        return self.user_filter or self.preset.user_filter

    def describe(self) -> str:
        """For messages: the servers and base, never the password."""
        return f"{', '.join(self.urls)} (base {self.base_dn}, preset {self.preset.name})"


def raw_settings(environ: Mapping[str, str] | None = None,
                 secrets_path: str | os.PathLike | None = SECRETS_FILE) -> dict[str, str]:
    """key -> value from ``[ldap]`` of the secrets file, overridden by the environment."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    if secrets_path is not None:
        try:
            with open(secrets_path, "rb") as fh:
                table = tomllib.load(fh).get("ldap")
        except FileNotFoundError:
            table = None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DirectorySettingsError(f"The secrets file {secrets_path} cannot be read.") from exc
        if isinstance(table, dict):
            for key in KEYS:
                value = table.get(key)
                if isinstance(value, (str, int, float, bool)) and str(value).strip():
                    found[key] = str(value).strip() if not isinstance(value, bool) else ("1" if value else "0")
    for key in KEYS:
        value = env.get(PREFIX + key.upper())
        if value is not None and value.strip():
            found[key] = value.strip() if key != "bind_password" else value
    return found


def configured(environ: Mapping[str, str] | None = None,
               secrets_path: str | os.PathLike | None = SECRETS_FILE) -> bool:
    """True when a company directory is configured (a URL in the environment or secrets.toml)."""
    return bool(raw_settings(environ, secrets_path).get("url"))


def load(environ: Mapping[str, str] | None = None,
         secrets_path: str | os.PathLike | None = SECRETS_FILE) -> LdapSettings | None:
    """The checked settings, or None when no directory URL is set.

    Raises DirectorySettingsError naming the first setting that cannot work.
    """
    raw = raw_settings(environ, secrets_path)
    if not raw.get("url"):
        return None
    preset_name = raw.get("preset", "openldap").lower()
    preset = PRESETS.get(preset_name)
    if preset is None:
        raise DirectorySettingsError(f"{PREFIX}PRESET must be one of {', '.join(PRESETS)}, "
                                     f"not {preset_name!r}.")
    start_tls = _flag(raw.get("start_tls", "1"), "START_TLS")
    urls = tuple(u.strip() for u in raw["url"].split(",") if u.strip())
    for url in urls:
        _check_url(url, start_tls)
    for key in ("bind_dn", "bind_password", "base_dn"):
        if not raw.get(key):
            raise DirectorySettingsError(f"{PREFIX}{key.upper()} is required with {ENV_URL}.")
    ca_file = raw.get("ca_file")
    if ca_file and not Path(ca_file).is_file():
        raise DirectorySettingsError(f"{PREFIX}CA_FILE {ca_file} is not a readable file.")
    user_filter = raw.get("user_filter")
    if user_filter and not (user_filter.startswith("(") and user_filter.endswith(")")
                            and user_filter.count("(") == user_filter.count(")")):
        raise DirectorySettingsError(f"{PREFIX}USER_FILTER must be one parenthesized LDAP filter.")
    return LdapSettings(
        urls=urls, preset=preset, bind_dn=raw["bind_dn"], bind_password=raw["bind_password"],
        base_dn=raw["base_dn"], admin_group=raw.get("admin_group") or None, ca_file=ca_file or None,
        user_filter=user_filter or None, start_tls=start_tls,
        timeout=_number(raw.get("timeout"), "TIMEOUT", DEFAULT_TIMEOUT, 0.1, 120),
        lockout_duration=_number(raw.get("lockout_duration"), "LOCKOUT_DURATION", 1800.0, 0, 10 ** 8),
        bind_failures=int(_number(raw.get("bind_failures"), "BIND_FAILURES", DEFAULT_BIND_FAILURES, 1, 1000)),
        bind_window=_number(raw.get("bind_window"), "BIND_WINDOW", DEFAULT_BIND_WINDOW, 60, 10 ** 7),
        password_policy=raw.get("password_policy") or None)


def _flag(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise DirectorySettingsError(f"{PREFIX}{what} must be 1 or 0.")


def _number(value: str | None, what: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise DirectorySettingsError(f"{PREFIX}{what} must be a number of seconds.") from None
    if not low <= number <= high:
        raise DirectorySettingsError(f"{PREFIX}{what} must be between {low:g} and {high:g} seconds.")
    return number


def _check_url(url: str, start_tls: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise DirectorySettingsError(f"{ENV_URL}: {url!r} is not an ldap:// or ldaps:// URL.")
    if parts.path not in ("", "/") or parts.query:
        raise DirectorySettingsError(f"{ENV_URL}: {url!r} must name only a server (no DN or query).")
    try:
        parts.port
    except ValueError:
        raise DirectorySettingsError(f"{ENV_URL}: {url!r} has a bad port.") from None
    if parts.scheme == "ldap" and not start_tls and not is_loopback(parts.hostname):
        raise DirectorySettingsError(
            f"{ENV_URL}: {url} is plain LDAP without StartTLS: passwords would cross the network "
            f"in the clear. Use ldaps://, or leave {PREFIX}START_TLS on (only a loopback server "
            "may go without).")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
