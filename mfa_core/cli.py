"""The operator's command line: users, helpdesk actions, the audit trail, key rotation, API clients, PAM,
the two-step policy.

``python -m mfa_core --help`` or the ``mfa-portal`` console script. Exit
status: 0 done, 2 bad input or a refused action (one line on stderr, nothing
changed), 1 the data dir, keys or mail settings cannot be used, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import getpass
import json
import logging
import os
import re
import secrets
import sys
import unicodedata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from . import clients as api_clients
from . import dbcopy, notify, settings
from .errors import KeyringError, MFAError, PolicyDamaged, RecordDamaged, StorageError, StoreUnavailable
from .keys import ENV_KEYS, ENV_PEPPER
from .service import MFAService, MFAStatus, open_service
from .storage import DatabaseError
from .users import (ADMIN_ROLE, ROLES, UserDirectory, UserDirectoryError, check_entries,
                    check_username, load_yaml_file, open_directory)
from .directory import (MANAGED_ELSEWHERE, DirectorySettingsError, DirectoryUnavailable,
                        open_company_directory)

ENV_DATA_DIR = "MFA_PORTAL_DATA_DIR"
ENV_ACTOR = "MFA_PORTAL_ACTOR"
SECRETS_FILE = settings.SECRETS_FILE

_RELATIVE = re.compile(r"(\d+)\s*(s|sec|m|min|h|d|w)")
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_ROLE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class UsageError(ValueError):
    """Bad input on the command line; its text is the one line printed."""


# -- parsing helpers ------------------------------------------------------------

def parse_time(text: str, now: float, what: str = "time") -> float:
    """Epoch seconds from ISO-8601 (date or datetime; UTC unless an offset is given) or ``24h``/``7d``.

    Raises UsageError.
    """
    value = text.strip()
    match = _RELATIVE.fullmatch(value.lower())
    if match:
        return now - int(match.group(1)) * _UNIT[match.group(2)]
    if value.lower() == "now":
        return now
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a time: use ISO-8601 (2026-11-28, "
                         "2026-11-28T09:30Z) or a relative time like 30m, 24h, 7d.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def default_actor(environ: Mapping[str, str]) -> str:
    name = environ.get(ENV_ACTOR)
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):
            name = ""
    name = re.sub(r"[^A-Za-z0-9._@ -]", "", name or "").strip()
    return name or "operator"


def display_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: wide (CJK) characters two, combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def table(rows: list[list[str]], header: list[str], out: TextIO) -> None:
    """Columns padded by display width, so wide (CJK) names keep the columns straight."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        out.write("  ".join(c + " " * (w - display_width(c)) for c, w in zip(row, widths)).rstrip()
                  + "\n")


def status_dict(status: MFAStatus, user: Any = None) -> dict[str, Any]:
    data = {
        "username": status.username,
        "totp_enabled": status.totp_enabled,
        "backup_codes_remaining": status.backup_codes_remaining,
        "pending_enrollment": status.pending_enrollment,
        "failed_attempts": status.failed_attempts,
        "retry_after": status.retry_after,
        "locked": status.locked,
        "mfa_epoch": status.mfa_epoch,
        "last_activity": status.last_activity,
        "password_failures": status.password_failures,
        "password_blocked": status.password_blocked,
        "damaged": status.damaged,
        "two_factor_enabled": status.two_factor_enabled,
        # Whether the helpdesk's pass is active and until when; never the pass (only its HMAC is kept).
        "temporary_pass_active": status.temporary_pass_active,
        "temporary_pass_until": status.temporary_pass_until,
        "temporary_pass_uses": status.temporary_pass_uses,
        "authenticators": [{"id": a.id, "kind": a.kind, "label": a.label,
                            "created_at": a.created_at, "last_used_at": a.last_used_at}
                           for a in status.authenticators],
    }
    if user is not None:
        data.update(name=user.name, email=user.email, roles=user.roles)
    return data


def lock_state(status: MFAStatus) -> str:
    return ", ".join(status.lockout_words()) or "-"


# -- the commands -----------------------------------------------------------------

class Context:
    """What every command needs: the data dir, the user directory, the service (opened late)."""

    def __init__(self, args: argparse.Namespace, environ, stdin: TextIO, stdout: TextIO,
                 stderr: TextIO | None = None) -> None:
        self.args = args
        self.given_environ = environ  # as given, without the secrets file's (for child processes)
        self.stdin = stdin
        self.out = stdout
        self.stderr = stderr or sys.stderr
        self.data_dir = Path(args.data_dir or environ.get(ENV_DATA_DIR) or "data")
        # The database URL and keys may also be in .streamlit/secrets.toml, as for the portal.
        self.environ = settings.with_secrets(environ, SECRETS_FILE)
        self.database_url = settings.database_url(self.environ)
        self._store = None
        self._service: MFAService | None = None
        self._users: UserDirectory | None = None

    @property
    def users(self) -> UserDirectory:
        """The user directory: users.yaml in the data dir, or the database's when one is set."""
        if self._users is None:
            # The company directory (LDAP / AD) when MFA_PORTAL_LDAP_URL or [ldap] url is set.
            self._users = (open_company_directory(self.environ)
                           or open_directory(self.data_dir, self.store() if self.database_url else None))
        return self._users

    def store(self, *, upgrade: bool = False):
        """The database's store (no keys needed: nothing is decrypted). UsageError without a URL."""
        if not self.database_url:
            raise UsageError(f"No database is configured: set {settings.ENV_DATABASE_URL} "
                             f"(or database_url in {SECRETS_FILE}).")
        if self._store is None or upgrade:
            from .storage.postgres import PostgresStore
            if self._store is not None:
                self._store.close()
            try:
                self._store = PostgresStore(self.database_url, min_size=1, max_size=2,
                                            upgrade=upgrade)
            except DatabaseError as exc:
                raise StorageError(f"The database cannot be used: {exc}.") from exc
        return self._store

    def service(self) -> MFAService:
        """Opened only once the input is known good: opening creates the store and keys."""
        if self._service is None:
            settings.check_replica_keys(self.environ)
            notifier = notify.from_settings(self.data_dir, self.environ, SECRETS_FILE)
            self._service = open_service(self.data_dir, notifier=notifier, environ=self.environ)
        return self._service

    def close(self) -> None:
        """Close what the command opened, whatever way it ended: a database pool left open
        prints its workers' traceback when the interpreter stops."""
        for store in (self._store, self._service.store if self._service else None):
            if store is not None:
                try:
                    store.close()
                except Exception:  # noqa: BLE001 (closing after an error: nothing more to say)
                    pass

    def known_user(self, username: str):
        user = self.users.get(username)
        if user is None:
            raise UsageError(f"There is no user named {username!r} in {self.users.location}.")
        return user

    def actor(self) -> str:
        return self.args.actor or default_actor(self.environ)

    def reason(self) -> str:
        """The required --reason, trimmed. Raises UsageError when it is blank."""
        reason = (self.args.reason or "").strip()
        if not reason:
            raise UsageError("A reason is required: --reason TEXT.")
        return reason

    def password(self, confirm: bool = True) -> str:
        if self.args.password_stdin:
            line = self.stdin.readline().rstrip("\r\n")
            if not line:
                raise UsageError("No password on standard input.")
            return line
        if not self.stdin.isatty():
            raise UsageError("Standard input is not a terminal: pipe the password in with "
                             "--password-stdin.")
        first = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat the password: ") != first:
            raise UsageError("The two passwords differ; nothing was changed.")
        return first


def cmd_users_add(ctx: Context) -> int:
    a = ctx.args
    username = check_username(a.username)
    if ctx.users.get(username) is not None:
        raise UsageError(f"A user named {username!r} already exists.")
    roles = list(dict.fromkeys(["user", *(a.role or []), *([ADMIN_ROLE] if a.admin else [])]))
    _check_profile(name=a.name or "", email=a.email or "", roles=roles)
    _check_known_roles(roles)
    password = ctx.password()
    user = ctx.users.add(username, password, name=a.name or "", email=a.email or "", roles=roles)
    ctx.out.write(f"Added user {user.username} (roles: {', '.join(user.roles)}).\n")
    return 0


def cmd_directory_test(ctx: Context) -> int:
    """Exit 0: the directory answers (and NAME is there and active); 1: it cannot be used;
    2: NAME is unknown or inactive."""
    try:
        users = open_company_directory(ctx.environ)
    except DirectorySettingsError as exc:
        ctx.stderr.write(f"error: {_one_line(exc.detail)}\n")
        return 1
    if users is None:
        ctx.stderr.write("error: No company directory is configured: set MFA_PORTAL_LDAP_URL "
                         f"(or url in the [ldap] table of {SECRETS_FILE}).\n")
        return 1
    try:
        where = users.check()
        ctx.out.write(f"Directory: {users.settings.describe()}\nService account: "
                      f"{users.settings.bind_dn} can search ({where}).\n")
        if not ctx.args.username:
            return 0
        account = users.find(ctx.args.username, fresh=True)
    except DirectoryUnavailable as exc:
        ctx.stderr.write(f"error: {exc}: {_one_line(exc.detail)}\n")
        return 1
    finally:
        users.backend.close()
    if account is None:
        ctx.stderr.write(f"error: No person named {ctx.args.username!r} "
                         f"({users.settings.preset.login_attribute}) under {users.settings.base_dn} "
                         f"matching {users.settings.filter}.\n")
        return 2
    ctx.out.write(f"{account.username}: {account.dn}\n  id: {account.stable_id or '-'}\n"
                  f"  name: {account.name}\n  mail: {account.email or '-'}\n"
                  f"  roles: {', '.join(account.roles)}\n"
                  f"  state: {'active' if account.active else account.inactive_reason}\n")
    return 0 if account.active else 2


def cmd_users_list(ctx: Context) -> int:
    users = ctx.users.users()
    if not getattr(users, "complete", True):
        ctx.stderr.write(f"Only the first {len(users):,} users: the directory stopped the listing (its size "
                         "limit for the portal's service account; see docs/directory.md).\n")
    if ctx.args.json:
        json.dump([{"username": u.username, "name": u.name, "email": u.email, "roles": u.roles}
                   for u in users], ctx.out, indent=2)
        ctx.out.write("\n")
    elif not users:
        ctx.out.write(f"No users in {ctx.users.location}.\n")
    else:
        table([[u.username, u.name, u.email or "-", ",".join(u.roles)] for u in users],
              ["USERNAME", "NAME", "EMAIL", "ROLES"], ctx.out)
    return 0


def cmd_users_remove(ctx: Context) -> int:
    username = ctx.args.username
    ctx.known_user(username)
    if not ctx.args.keep_mfa:
        # A user added later under the same name must not inherit this one's authenticator.
        svc = ctx.service()
        try:
            has_record = svc.store.read(username) is not None
        except RecordDamaged:
            has_record = True  # the reset replaces a damaged record too
        if has_record:
            svc.reset_mfa(username, actor=ctx.actor(), reason="user removed from the directory")
    ctx.users.remove(username)
    ctx.out.write(f"Removed user {username}.\n")
    return 0


def cmd_users_passwd(ctx: Context) -> int:
    username = ctx.args.username
    ctx.known_user(username)
    ctx.users.set_password(username, ctx.password())
    ctx.out.write(f"Password changed for {username}.\n")
    return 0


def cmd_users_import(ctx: Context) -> int:
    entries = check_entries(load_yaml_file(ctx.args.file))
    for username, entry in entries.items():  # all checked before anything is written
        _check_profile(name=entry.get("name", ""), first_name=entry.get("first_name", ""),
                       last_name=entry.get("last_name", ""), email=entry.get("email", ""),
                       roles=entry.get("roles", []), who=username)
    count = ctx.users.import_entries(entries)
    ctx.out.write(f"Imported {count} user{'s' if count != 1 else ''} from {ctx.args.file} "
                  f"into {ctx.users.location} (added or replaced by name).\n")
    return 0


def cmd_users_export(ctx: Context) -> int:
    text = ctx.users.export_yaml()
    if ctx.args.file in (None, "-"):
        ctx.out.write(text)
        return 0
    from .storage import write_atomic
    write_atomic(Path(ctx.args.file), text.encode("utf-8"), mode=0o600)  # password hashes inside
    count = len(ctx.users.entries())
    ctx.out.write(f"Exported {count} user{'s' if count != 1 else ''} to {ctx.args.file} (mode 0600).\n")
    return 0


def cmd_db_upgrade(ctx: Context) -> int:
    from .storage.postgres import SCHEMA_VERSION
    store = ctx.store(upgrade=True)
    was = store.upgraded_from
    if was == SCHEMA_VERSION:
        ctx.out.write(f"The database's schema is at version {SCHEMA_VERSION}: nothing to do.\n")
    elif was == 0:
        ctx.out.write(f"Created the schema, version {SCHEMA_VERSION}.\n")
    else:
        ctx.out.write(f"Upgraded the database's schema from version {was} to {SCHEMA_VERSION}.\n")
    return 0


def _source_pepper(ctx: Context, source_dir: Path) -> bytes | None:
    """The copied data dir's pepper (the environment's, else its key file), or None."""
    from .keys import ENV_KEYS, KEY_FILE, load_keyring
    if not ctx.environ.get(ENV_KEYS) and not (source_dir / KEY_FILE).is_file():
        return None  # never generate keys into the source
    try:
        return load_keyring(source_dir, ctx.environ).pepper
    except MFAError:
        return None


def cmd_db_copy(ctx: Context) -> int:
    source_dir = Path(ctx.args.source)
    store = ctx.store()  # before reading: no URL or no database, nothing read
    source = dbcopy.read_data_dir(source_dir, _source_pepper(ctx, source_dir))
    copied = dbcopy.copy_into(source, store, overwrite=ctx.args.overwrite)
    rows = [("records", "records", "users' MFA records"),
            ("keyed records", "keyed", "sessions, password throttles, cookie tickets"),
            ("audit events", "audit", ""),
            ("API clients", "clients", ""),
            ("directory users", "users", "")]
    ctx.out.write(f"Copied {source_dir} into the database; read back and verified:\n")
    ctx.out.write(f"  {'':<16}{'copied':>8}{'already there':>15}\n")
    for label, kind, note in rows:
        ctx.out.write(f"  {label:<16}{copied.written(kind):>8}{copied.present.get(kind, 0):>15}"
                      f"{'  (' + note + ')' if note else ''}\n")
    if copied.already:
        ctx.out.write(f"{copied.already} row{'s were' if copied.already != 1 else ' was'} already "
                      "in the database as in the data dir (left alone).\n")
    ctx.out.write(f"The secrets are copied encrypted: every replica needs this data dir's keys "
                  f"in {ENV_KEYS} and {ENV_PEPPER} (from its keys.json if they were generated).\n")
    return 0


def _check_roles(roles: list[str], prefix: str = "") -> None:
    bad = [r for r in roles if not _ROLE.fullmatch(r)]
    if bad:
        raise UsageError(f"{prefix}{bad[0]!r} is not a role name: lower-case letters, digits, "
                         "'-' or '_'.")


def _check_profile(*, email: str, roles: list[str], who: str | None = None, **names: str) -> None:
    """What ``users add`` and ``users import`` both require of a user (UsageError otherwise).

    Names without control characters, a mail address without them either (a
    line break in it would break the To header of the mails), roles by the
    role pattern. ``who`` names the user in the message (an import's many).
    """
    prefix = f"User {who!r}: " if who is not None else ""
    for field, value in names.items():
        if value and not value.isprintable():
            raise UsageError(f"{prefix}the {field.replace('_', ' ')} holds a control character "
                             "(a line break, a tab...); nothing was changed.")
    if email and not (_EMAIL.fullmatch(email) and email.isprintable()):
        raise UsageError(f"{prefix}{email!r} is not a mail address; nothing was changed.")
    _check_roles(roles, prefix)


def _check_known_roles(roles: list[str]) -> None:
    """A role the portal does not act on is a typo (``admn``): refused, naming the known ones."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise UsageError(f"Unknown role {unknown[0]!r}: the roles are {', '.join(ROLES)}; "
                         "nothing was changed.")


def cmd_users_roles(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    if not ctx.args.roles:
        ctx.out.write(f"{user.username}: {', '.join(user.roles) or '(no roles)'}\n")
        return 0
    roles = list(dict.fromkeys(ctx.args.roles))
    _check_roles(roles)
    _check_known_roles(roles)
    old = ", ".join(user.roles) or "(no roles)"
    if roles == user.roles:
        ctx.out.write(f"Roles of {user.username} unchanged: {old}.\n")
        return 0
    ctx.users.set_roles(user.username, roles)
    ctx.out.write(f"Roles of {user.username}: {old} -> {', '.join(roles)}.\n")
    return 0


def cmd_mfa_status(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    try:
        status = ctx.service().status(user.username)
    except RecordDamaged as exc:
        if ctx.args.json:
            json.dump({"username": user.username, "damaged": True, "detail": exc.detail}, ctx.out,
                      indent=2)
            ctx.out.write("\n")
        else:
            ctx.out.write(f"{'user:':<22}{user.username}\n{'record:':<22}damaged ({exc.detail}): "
                          f"the user cannot sign in; 'mfa reset {user.username} --reason ...' "
                          "replaces it\n")
        return 1
    if ctx.args.json:
        json.dump(status_dict(status, user), ctx.out, indent=2)
        ctx.out.write("\n")
        return 0
    yes = {True: "yes", False: "no"}
    rows = [
        ("user", f"{user.username} ({user.name}{', ' + user.email if user.email else ''})"),
        ("two-step", "on" if status.two_factor_enabled else "off"),
        ("authenticators", str(len(status.authenticators))),
        ("backup codes left", str(status.backup_codes_remaining) if status.two_factor_enabled else "-"),
        ("set-up in progress", yes[status.pending_enrollment]),
        ("failed attempts", str(status.failed_attempts)),
        ("locked", yes[status.locked]),
        ("wrong passwords", str(status.password_failures)),
        ("password blocked", yes[status.password_blocked] + (" (from new places)"
                                                             if status.password_blocked else "")),
        ("wait before next try", f"{status.retry_after} s"),
        ("temporary pass", f"until {format_time(status.temporary_pass_until)} "
                           f"({status.temporary_pass_uses} sign-ins left)"
         if status.temporary_pass_active else "none"),
        ("MFA epoch", str(status.mfa_epoch)),
        ("last activity", format_time(status.last_activity)),
    ]
    for label, value in rows:
        ctx.out.write(f"{label + ':':<22}{value}\n")
    if status.authenticators:
        ctx.out.write("\n")
        table([[a.id, a.kind_words, a.label, format_time(a.created_at), format_time(a.last_used_at)]
               for a in status.authenticators],
              ["ID", "KIND", "NAME", "ADDED", "LAST USED"], ctx.out)
    return 0


def cmd_mfa_list(ctx: Context) -> int:
    users = ctx.users.users()
    svc = ctx.service()
    statuses = list(zip(users, svc.statuses(u.username for u in users)))
    if ctx.args.json:
        json.dump([status_dict(s, u) for u, s in statuses], ctx.out, indent=2)
        ctx.out.write("\n")
        return 0
    table([[u.username, "damaged" if s.damaged else "on" if s.two_factor_enabled else "off",
            str(len(s.authenticators)) if s.two_factor_enabled else "-",
            str(s.backup_codes_remaining) if s.two_factor_enabled else "-", lock_state(s),
            f"until {format_time(s.temporary_pass_until)}" if s.temporary_pass_active else "-",
            format_time(s.last_activity)] for u, s in statuses],
          ["USERNAME", "TWO-STEP", "AUTHENTICATORS", "CODES", "LOCKOUT", "TEMPORARY PASS",
           "LAST ACTIVITY"], ctx.out)
    return 0


def _indented_json(data: dict[str, Any], big: str) -> str:
    """``json.dumps(data, indent=2)``, the same text, with the list ``data[big]`` (of strings,
    at the first level) encoded by the C encoder: with ``indent`` json encodes in Python, one
    piece at a time (100,000 names in ~0.1 s). Its items' separator carries the indentation."""
    items = data.get(big)
    if not (isinstance(items, list) and items and set(map(type, items)) == {str}):
        return json.dumps(data, indent=2)
    mark = f"\x00{secrets.token_hex(8)}\x00"  # in no name: JSON text escapes "\x00"
    text = json.dumps({**data, big: mark}, indent=2)
    inner = json.dumps(items, separators=(",\n    ", ": "))[1:-1]
    return text.replace(json.dumps(mark), "[\n    " + inner + "\n  ]", 1)


def cmd_mfa_coverage(ctx: Context) -> int:
    from . import coverage
    svc = ctx.service()
    if ctx.args.csv:
        data = svc.coverage(grace_limit=None)
        writer = csv.writer(ctx.out, lineterminator="\n")
        writer.writerow(coverage.CSV_HEADER)
        writer.writerows(coverage.csv_rows(data))
        return 0
    data = svc.coverage()
    if ctx.args.json:
        ctx.out.write(_indented_json(data, "overdue_users") + "\n")
        return 0
    covered = data["covered"]

    def share(n: int) -> str:
        return f"{n:,} ({100 * n / covered:.0f} %)" if covered else f"{n:,}"
    rows = [("users", f"{data['users']:,}"), ("covered by a rule", f"{covered:,}"),
            ("enrolled", share(data["enrolled"])), ("in grace", share(data["in_grace"])),
            ("overdue", share(data["overdue"])), ("factor not allowed", share(data["disallowed"])),
            ("not covered", f"{data['not_covered']:,}")]
    rows += [(f"with {kind.replace('_', ' ')}", f"{n:,}") for kind, n in data["by_factor"].items()]
    last7 = sum(d["count"] for d in data["enrollments_per_day"][-7:])
    rows.append(("enrollments, 7 days", f"{last7:,}"))
    for label, value in rows:
        ctx.out.write(f"{label + ':':<22}{value}\n")
    if data["overdue_users"]:
        shown = data["overdue_users"][:20]
        more = len(data["overdue_users"]) - len(shown)
        ctx.out.write(f"\noverdue: {', '.join(shown)}" + (f" and {more:,} more (--csv lists all)"
                                                           if more else "") + "\n")
    return 0


def cmd_mfa_reset(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    reason = ctx.reason()
    actor = ctx.actor()
    status = ctx.service().reset_mfa(user.username, actor=actor, reason=reason)
    ctx.out.write(f"Reset MFA for {user.username}: every authenticator and the backup codes removed, "
                  f"other sessions must verify again (epoch {status.mfa_epoch}).\n")
    return 0


def cmd_mfa_remove(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    reason = ctx.reason()
    svc = ctx.service()
    found = svc.status(user.username).authenticator(ctx.args.authenticator)
    if found is None:
        raise UsageError(f"{user.username} has no authenticator with the id "
                         f"{ctx.args.authenticator!r}: 'mfa status {user.username}' lists them.")
    status = svc.remove_authenticator(user.username, found.id, actor=ctx.actor(), reason=reason)
    rest = (f"{len(status.authenticators)} authenticator{'s' if len(status.authenticators) != 1 else ''}"
            " left, backup codes kept" if status.two_factor_enabled
            else "it was the last one: two-step verification and the backup codes are off")
    ctx.out.write(f"Removed {found.kind_words.lower()} \u201c{found.label}\u201d from "
                  f"{user.username}: {rest}; their other sessions must sign in again.\n")
    return 0


def cmd_mfa_unlock(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    reason = ctx.args.reason
    if reason is not None and not reason.strip():
        raise UsageError("The reason must not be empty.")
    ctx.service().unlock(user.username, actor=ctx.actor(), reason=reason or "lockout cleared")
    ctx.out.write(f"Cleared failed attempts and lockout for {user.username}.\n")
    return 0


def cmd_mfa_pass_issue(ctx: Context) -> int:
    from . import temp_pass
    user = ctx.known_user(ctx.args.username)
    reason = ctx.reason()
    try:
        seconds = temp_pass.parse_duration(ctx.args.valid)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    svc = ctx.service()
    if not temp_pass.MIN_VALID <= seconds <= svc.pass_max_valid:
        raise UsageError(f"--valid is from {temp_pass.describe(temp_pass.MIN_VALID)} up to "
                         f"{temp_pass.describe(svc.pass_max_valid)} ({temp_pass.ENV_MAX_VALID}).")
    if not 1 <= ctx.args.uses <= temp_pass.MAX_USES:
        raise UsageError(f"--uses is from 1 to {temp_pass.MAX_USES}.")
    shown = svc.issue_temporary_pass(user.username, valid_for=seconds, actor=ctx.actor(),
                                     reason=reason, uses=ctx.args.uses)
    until = svc.status(user.username).temporary_pass_until
    uses = ctx.args.uses
    ctx.out.write(f"Temporary pass for {user.username}, valid until {format_time(until)} for "
                  f"{uses} sign-in{'s' if uses != 1 else ''} at the portal (never the API, PAM or "
                  "RADIUS). Read it to the user once; it is not shown again. Any earlier pass "
                  "no longer works.\n")
    ctx.out.write(f"{shown}\n")
    return 0


def cmd_mfa_pass_revoke(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    reason = ctx.reason()
    ctx.service().revoke_temporary_pass(user.username, actor=ctx.actor(), reason=reason)
    ctx.out.write(f"Revoked the temporary pass of {user.username}; the sessions it opened ended.\n")
    return 0


def cmd_audit(ctx: Context) -> int:
    a = ctx.args
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    since = parse_time(a.since, now, "--since") if a.since is not None else None
    until = parse_time(a.until, now, "--until") if a.until is not None else None
    if since is not None and until is not None and since > until:
        raise UsageError("--since is after --until.")
    if a.user is not None:
        check_username(a.user)
    svc = ctx.service()
    events = svc.audit(a.user, since, until)
    if a.user is not None and not events and ctx.users.get(a.user) is None:
        raise UsageError(f"There is no user named {a.user!r} in {ctx.users.location}.")
    if a.json:
        json.dump([{**e.to_dict(), "when": e.when.isoformat(), "label": e.label} for e in events],
                  ctx.out, indent=2)
        ctx.out.write("\n")
    elif not events:
        ctx.out.write("No events.\n")
    else:
        table([[format_time(e.time), e.user or "-", e.actor or "-", e.event, e.outcome, e.detail]
               for e in events], ["TIME", "USER", "ACTOR", "EVENT", "OUTCOME", "DETAIL"], ctx.out)
    return 0


def cmd_keys_rotate(ctx: Context) -> int:
    svc = ctx.service()
    count = svc.rotate_keys(actor=ctx.actor())
    secrets = f"{count} secret{'s' if count != 1 else ''}"
    if svc.keyring.from_file:
        ctx.out.write(f"Rotated the encryption key: {secrets} re-encrypted, old keys dropped.\n")
    else:
        ctx.out.write(f"Re-encrypted {secrets} under the first key of {ENV_KEYS}; "
                      "the older keys in it can now be removed.\n")
    return 0


def cmd_sweep(ctx: Context) -> int:
    removed = ctx.service().sweep_expired()
    ctx.out.write(f"Removed {removed} expired record{'s' if removed != 1 else ''} "
                  "(cookie tickets, passkey challenges, ended sessions' owners, idle address "
                  "records).\n")
    return 0


def cmd_mail_test(ctx: Context) -> int:
    user = ctx.known_user(ctx.args.username)
    if not user.email:
        raise UsageError(f"{user.username!r} has no mail address in the user directory.")
    notifier = notify.from_settings(ctx.data_dir, ctx.environ, SECRETS_FILE)
    if notifier is not None:
        notifier.directory = ctx.users  # the database's when one is set
    if notifier is None:
        raise notify.NotificationSettingsError(
            "No SMTP host is configured (MFA_PORTAL_SMTP_HOST or [smtp] host in "
            f"{SECRETS_FILE}).")
    quiet = logging.getLogger(notify.log.name)
    quiet.disabled = True  # the one error line below says it all
    try:
        notifier.send(notifier.test_message(user.username))
    except notify.NotificationFailed as exc:
        cause = exc.__cause__
        raise notify.NotificationSettingsError(
            f"{exc} {type(cause).__name__}: {cause}" if cause else str(exc)) from exc
    finally:
        quiet.disabled = False
    s = notifier.settings
    ctx.out.write(f"Sent a test mail to {user.email} via {s.host}:{s.port}.\n")
    return 0


def _registry(ctx: Context) -> api_clients.FileClientRegistry:
    return api_clients.open_registry(ctx.data_dir, ctx.service())


def cmd_clients_add(ctx: Context) -> int:
    name = api_clients.check_client_name(ctx.args.name)
    rate = api_clients.check_rate(ctx.args.rate)
    key = _registry(ctx).add(name, rate, actor=ctx.actor())
    ctx.out.write(f"Added API client {name} ({rate} requests a minute). Its key is shown only "
                  "this once; callers send it as 'Authorization: Bearer KEY':\n")
    ctx.out.write(key + "\n")
    return 0


def cmd_clients_list(ctx: Context) -> int:
    found = _registry(ctx).clients()
    if ctx.args.json:
        json.dump([{"name": c.name, "rate": c.rate, "created_at": c.created_at,
                    "last_used": c.last_used, "rotated_at": c.rotated_at} for c in found],
                  ctx.out, indent=2)
        ctx.out.write("\n")
    elif not found:
        ctx.out.write("No API clients.\n")
    else:
        table([[c.name, str(c.rate), format_time(c.created_at), format_time(c.rotated_at),
                format_time(c.last_used)] for c in found],
              ["NAME", "RATE/MIN", "CREATED", "KEY ROTATED", "LAST USED"], ctx.out)
    return 0


def cmd_clients_remove(ctx: Context) -> int:
    name = api_clients.check_client_name(ctx.args.name)
    _registry(ctx).remove(name, actor=ctx.actor())
    ctx.out.write(f"Removed API client {name}: its key no longer works.\n")
    return 0


def cmd_clients_rotate(ctx: Context) -> int:
    name = api_clients.check_client_name(ctx.args.name)
    key = _registry(ctx).rotate(name, actor=ctx.actor())
    ctx.out.write(f"New key for API client {name}; the old key no longer works. "
                  "It is shown only this once:\n")
    ctx.out.write(key + "\n")
    return 0


def cmd_clients_rate(ctx: Context) -> int:
    name = api_clients.check_client_name(ctx.args.name)
    client = _registry(ctx).set_rate(name, api_clients.check_rate(ctx.args.rate), actor=ctx.actor())
    ctx.out.write(f"API client {name} may now make {client.rate} requests a minute.\n")
    return 0


def _show_rule(rule) -> str:
    return f"{rule.target}: {rule.describe()} (set {format_time(rule.created_at)})"


def cmd_policy_set(ctx: Context) -> int:
    a = ctx.args
    from .policy import make_rule
    make_rule(a.require, grace_days=a.grace_days, deadline=a.deadline, allow=a.allow)  # input first
    policy = ctx.service().set_policy_rule(target=a.require, grace_days=a.grace_days,
                                           deadline=a.deadline, allow=a.allow, actor=ctx.actor())
    from .policy import deadline_epoch, parse_target
    rule = policy.rule(parse_target(a.require))
    ctx.out.write(f"Set {_show_rule(rule)}.\n")
    # Allowed (an organization may mean it), but said: a typo in the year makes everyone the
    # rule covers without two-step overdue at once, able to set it up only from a familiar
    # place or with a temporary pass.
    if rule.deadline is not None and deadline_epoch(rule.deadline) <= ctx.service().clock():
        ctx.stderr.write(f"warning: the deadline {rule.deadline} has passed: everyone it covers "
                         "without two-step is overdue now (set-up only from a familiar place or "
                         "with a temporary pass).\n")
    elif rule.grace_days == 0:
        ctx.stderr.write("warning: no grace period: everyone it covers without two-step is overdue "
                         "at their next sign-in (set-up only from a familiar place or with a "
                         "temporary pass).\n")
    return 0


def cmd_policy_show(ctx: Context) -> int:
    policy = ctx.service().two_step_policy()
    if ctx.args.json:
        json.dump(policy.to_dict(), ctx.out, indent=2)
        ctx.out.write("\n")
        return 0
    if not policy.rules:
        ctx.out.write("No two-step policy: two-step verification is voluntary.\n")
        return 0
    for rule in policy.rules:
        ctx.out.write(_show_rule(rule) + "\n")
    ctx.out.write(f"Changed {format_time(policy.changed_at)} by {policy.changed_by or '-'}.\n")
    return 0


def cmd_policy_clear(ctx: Context) -> int:
    try:
        count: int | None = len(ctx.service().two_step_policy(fresh=True).rules)
    except PolicyDamaged:  # clear is the way out of it: the record is replaced (audited)
        count = None
    ctx.service().clear_policy(actor=ctx.actor())
    if count is None:
        ctx.out.write("Replaced the damaged policy record: two-step verification is voluntary "
                      "again. Set the rules again.\n")
    else:
        ctx.out.write(f"Removed {count} rule{'s' if count != 1 else ''}: two-step verification is "
                      "voluntary again.\n")
    return 0


def cmd_policy_remind(ctx: Context) -> int:
    svc = ctx.service()
    if svc.notifier is None:
        raise notify.NotificationSettingsError(
            "No mail settings (smtp_host): no reminder was sent or recorded.")
    sent = svc.send_policy_reminders()
    ctx.out.write(f"Sent {sent} reminder{'s' if sent != 1 else ''}.\n")
    return 0


def cmd_radius(ctx: Context) -> int:
    """``radius``: serve RADIUS; ``radius clients ...``: its clients (mfa_services.radius)."""
    from mfa_services.radius import commands  # lazily: mfa_core never imports it at load
    action = getattr(ctx.args, "radius_action", None)
    return getattr(commands, action or "serve")(ctx)


def cmd_pam(ctx: Context) -> int:
    """``pam``: pam_exec's helper, asking the verification API (mfa_services.pam)."""
    from mfa_services import pam  # lazily: mfa_core never imports it at load
    return pam.run(ctx)


# -- the parser --------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other refusal."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, whatever was typed (an argument may hold a CR or a newline).
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see --help)\n")


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def _parser(prog: str) -> argparse.ArgumentParser:
    """``build_parser(prog)``, built once per process: building its ~140 sub-commands costs
    more than most commands (parsing does not change a parser, so one serves every call)."""
    parser = _PARSERS.get(prog)
    if parser is None:
        parser = _PARSERS[prog] = build_parser(prog)
    return parser


def build_parser(prog: str = "mfa-portal") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help=f"the portal's data directory (default: ${ENV_DATA_DIR} or data/)")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", metavar="NAME",
                       help=f"who acts, for the audit trail (default: ${ENV_ACTOR} or your login)")
    pw = argparse.ArgumentParser(add_help=False)
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of standard input "
                         "(otherwise it is asked for without echo)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = _Parser(prog=prog, description="Operate the MFA portal: users, helpdesk actions, "
                     "the audit trail and the encryption keys.",
                     epilog="Exit status: 0 done; 2 bad input or refused, nothing changed; "
                     "1 the data directory, keys or mail settings cannot be used.")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help=f"the portal's data directory (default: ${ENV_DATA_DIR} or data/)")
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                   parser_class=_Parser)

    users = groups.add_parser("users", help="maintain the users who sign in to the portal",
                              description="Maintain the portal's user directory (bcrypt password "
                                          "hashes, names, mail addresses, roles): users.yaml in "
                                          "the data dir, or the database's when one is set.")
    u = users.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = u.add_parser("add", parents=[common, pw], help="add a user",
                     description="Add a user; the password is asked for twice without echo, "
                                 "or read from stdin with --password-stdin.")
    p.add_argument("username")
    p.add_argument("--name", help="display name (default: the username)")
    p.add_argument("--email", help="mail address for notifications")
    p.add_argument("--role", action="append", metavar="ROLE",
                   help=f"extra role (repeatable; the roles: {', '.join(ROLES)})")
    p.add_argument("--admin", action="store_true", help=f"give the {ADMIN_ROLE!r} role (helpdesk)")
    p.set_defaults(func=cmd_users_add)
    p = u.add_parser("list", parents=[common, as_json], help="list users",
                     description="List the users, their mail addresses and roles.")
    p.set_defaults(func=cmd_users_list)
    p = u.add_parser("remove", parents=[common, actor], help="remove a user",
                     description="Remove a user from the user file and reset their MFA, "
                                 "so a later user of the same name starts clean.")
    p.add_argument("username")
    p.add_argument("--keep-mfa", action="store_true", help="keep the user's MFA record")
    p.set_defaults(func=cmd_users_remove)
    p = u.add_parser("passwd", parents=[common, pw], help="set a user's password",
                     description="Set a user's password (asked twice without echo, or from stdin).")
    p.add_argument("username")
    p.set_defaults(func=cmd_users_passwd)

    p = u.add_parser("roles", parents=[common], help="show or set a user's roles",
                     description=f"Without ROLE, show the user's roles; with ROLEs, set exactly "
                                 f"those and print the old and the new ones (e.g. 'user "
                                 f"{ADMIN_ROLE}' makes a helpdesk admin). The roles: "
                                 f"{', '.join(ROLES)}.")
    p.add_argument("username")
    p.add_argument("roles", nargs="*", metavar="ROLE")
    p.set_defaults(func=cmd_users_roles)

    p = u.add_parser("import", parents=[common], help="add or replace users from a users.yaml",
                     description="Add the users of a users.yaml (bcrypt hashes, roles, names) to "
                                 "the directory, replacing users of the same name; all or "
                                 "nothing. With a database configured, into the database.")
    p.add_argument("file", help="a users.yaml")
    p.set_defaults(func=cmd_users_import)
    p = u.add_parser("export", parents=[common], help="write the directory as a users.yaml",
                     description="Write the directory as a users.yaml (password hashes included: "
                                 "the file is written with mode 0600); to standard output "
                                 "without FILE.")
    p.add_argument("file", nargs="?", help="where to write it (default: standard output)")
    p.set_defaults(func=cmd_users_export)

    db = groups.add_parser("db", help="the shared PostgreSQL database",
                           description=f"The database several replicas share "
                                       f"(${settings.ENV_DATABASE_URL} or database_url in "
                                       f"{SECRETS_FILE}).")
    d = db.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = d.add_parser("upgrade", help="create or upgrade the schema",
                     description="Create the schema on an empty database, or apply the "
                                 "migrations an older one lacks. A portal refuses to run on a "
                                 "schema it does not know.")
    p.set_defaults(func=cmd_db_upgrade)
    p = d.add_parser("copy", help="copy an embedded data dir into the database",
                     description="Copy a data dir's records, sessions and throttles, audit trail, "
                                 "API clients and users.yaml into the database, as stored "
                                 "(nothing decrypted), then read them back and compare. Stop the "
                                 "portal first. Running it again adds what is new and leaves alone "
                                 "what is already there as in the data dir; when the database "
                                 "changed or removed a row the data dir still has, it refuses and "
                                 "copies nothing.")
    p.add_argument("--from", dest="source", required=True, metavar="DATA_DIR",
                   help="the embedded data dir to copy")
    p.add_argument("--overwrite", action="store_true",
                   help="DANGEROUS: the data dir wins over the database; every change made in "
                        "the database since (authenticators removed, passwords and API keys "
                        "changed, sessions ended, roles revoked, lockouts) is undone")
    p.set_defaults(func=cmd_db_copy)

    mfa = groups.add_parser("mfa", help="helpdesk: MFA status, reset, unlock",
                            description="Helpdesk actions on one user's second factor.")
    m = mfa.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = m.add_parser("status", parents=[common, as_json], help="show a user's MFA status",
                     description="Show a user's authenticators, backup codes, lockout and last "
                                 "activity.")
    p.add_argument("username")
    p.set_defaults(func=cmd_mfa_status)
    p = m.add_parser("list", parents=[common, as_json], help="MFA status of every user",
                     description="One line per user: authenticator, backup codes left, "
                                 "lockout state, last activity.")
    p.set_defaults(func=cmd_mfa_list)
    p = m.add_parser("coverage", parents=[common], help="how far the two-step rollout is",
                     description="Users the two-step policy covers: enrolled, in grace, overdue, "
                                 "with a factor the rule does not allow; by factor; enrollments "
                                 "per day. Reads no user's record (fast at 100,000 users).")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true",
                     help="print the whole report as JSON (what the Helpdesk shows)")
    fmt.add_argument("--csv", action="store_true",
                     help="print CSV: username,state,days_left of everyone overdue or in grace")
    p.set_defaults(func=cmd_mfa_coverage)
    p = m.add_parser("reset", parents=[common, actor], help="remove a user's authenticator and codes",
                     description="Remove the user's authenticator, backup codes and lockout; "
                                 "their signed-in sessions must verify again. Audited with "
                                 "the actor and reason.")
    p.add_argument("username")
    p.add_argument("--reason", required=True, help="why (required, goes to the audit trail)")
    p.set_defaults(func=cmd_mfa_reset)
    p = m.add_parser("remove", parents=[common, actor], help="remove one of a user's authenticators",
                     description="Remove one authenticator (its ID from 'mfa status'). The others "
                                 "and the backup codes stay, unless it was the last one. The "
                                 "user's sessions must sign in again. Audited with the actor "
                                 "and reason.")
    p.add_argument("username")
    p.add_argument("authenticator", metavar="ID")
    p.add_argument("--reason", required=True, help="why (required, goes to the audit trail)")
    p.set_defaults(func=cmd_mfa_remove)
    p = m.add_parser("unlock", parents=[common, actor], help="clear failed attempts and a lockout",
                     description="Clear the user's failed attempts and lockout. Audited.")
    p.add_argument("username")
    p.add_argument("--reason", help="why (default: 'lockout cleared')")
    p.set_defaults(func=cmd_mfa_unlock)
    tap = m.add_parser("pass", help="temporary passes for a lost phone",
                       description="A temporary pass lets a user who lost their phone sign in "
                                   "to the portal only to set up a new authenticator.")
    tp = tap.add_subparsers(dest="pass_action", metavar="ACTION", required=True, parser_class=_Parser)
    p = tp.add_parser("issue", parents=[common, actor], help="issue a temporary pass (printed last)",
                      description="Issue a temporary pass (replacing any earlier one) and print "
                                  "it alone on the last line. Audited; the user is mailed.")
    p.add_argument("username")
    p.add_argument("--valid", required=True, metavar="DURATION",
                   help="how long it works: 600s, 30m, 1h ... (10 min up to the maximum, 8 h by "
                        "default)")
    p.add_argument("--reason", required=True, help="why (required, goes to the audit trail)")
    p.add_argument("--uses", type=int, default=1, help="sign-ins it allows (default 1)")
    p.set_defaults(func=cmd_mfa_pass_issue)
    p = tp.add_parser("revoke", parents=[common, actor], help="revoke a user's temporary pass",
                      description="The user's temporary pass stops working. Audited.")
    p.add_argument("username")
    p.add_argument("--reason", required=True, help="why (required, goes to the audit trail)")
    p.set_defaults(func=cmd_mfa_pass_revoke)

    p = groups.add_parser("audit", parents=[common, as_json], help="show the audit trail",
                          description="The audit trail, oldest first. TIME is ISO-8601 "
                                      "(2026-11-28, 2026-11-28T09:30, 2026-11-28T09:30+02:00; "
                                      "UTC unless an offset is given) or relative: 30m, 24h, 7d, 2w.")
    p.add_argument("--user", metavar="U", help="only this user's events")
    p.add_argument("--since", metavar="TIME", help="events at or after TIME")
    p.add_argument("--until", metavar="TIME", help="events before TIME")
    p.set_defaults(func=cmd_audit)

    mail = groups.add_parser("mail", help="mail notifications",
                             description="Check the SMTP settings of the mail notifications.")
    ml = mail.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = ml.add_parser("test", parents=[common], help="send a test mail to a user",
                      description="Send a test mail to the user's address with the configured "
                                  "SMTP settings (MFA_PORTAL_SMTP_* or [smtp] in "
                                  ".streamlit/secrets.toml).")
    p.add_argument("username")
    p.set_defaults(func=cmd_mail_test)

    keys = groups.add_parser("keys", help="encryption keys",
                             description="Manage the key that encrypts TOTP secrets at rest.")
    k = keys.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = k.add_parser("rotate", parents=[common, actor], help="new key, every secret re-encrypted",
                     description="Add a new key, re-encrypt every TOTP secret with it, then drop "
                                 "the old keys. Interrupted, every secret stays readable: run it "
                                 f"again. With keys in ${ENV_KEYS}, put the new key first there, "
                                 "run this, then remove the old keys.")
    p.set_defaults(func=cmd_keys_rotate)

    p = groups.add_parser("sweep", parents=[common], help="remove expired tickets, challenges, sessions",
                          description="Remove the keyed records nothing needs any more: redeemed "
                                      "or stale cookie tickets, used or stale passkey challenges, "
                                      "the owner records of sessions past their lifetime, and "
                                      "password-throttle records of client addresses that hold "
                                      "nothing a check still uses. The "
                                      "portal does this itself when it starts and every hour; "
                                      "safe beside running portals.")
    p.set_defaults(func=cmd_sweep)

    clients = groups.add_parser("clients", help="verification API clients and their keys",
                                description="The services that may call the verification API "
                                            "(POST /api/v1/verify). Keys are stored only as keyed "
                                            "hashes; a new key is printed once.")
    c = clients.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = c.add_parser("add", parents=[common, actor], help="add a client and print its key",
                     description="Add a client and print its key once (the last line of output "
                                 "is the key alone).")
    p.add_argument("name", help="e.g. vpn, ssh-bastion (audited as api/NAME)")
    p.add_argument("--rate", type=int, default=api_clients.DEFAULT_RATE, metavar="N",
                   help=f"requests a minute (default {api_clients.DEFAULT_RATE}), "
                        "counted by each server process")
    p.set_defaults(func=cmd_clients_add)
    p = c.add_parser("list", parents=[common, as_json], help="list the clients",
                     description="Every client: rate limit, created, key rotated, last used "
                                 "(to the minute). Never a key.")
    p.set_defaults(func=cmd_clients_list)
    p = c.add_parser("remove", parents=[common, actor], help="remove a client (its key stops working)",
                     description="Remove a client: its key stops working at once.")
    p.add_argument("name")
    p.set_defaults(func=cmd_clients_remove)
    p = c.add_parser("rotate", parents=[common, actor], help="a new key for a client",
                     description="Replace a client's key and print the new one once (last line); "
                                 "the old key stops working at once.")
    p.add_argument("name")
    p.set_defaults(func=cmd_clients_rotate)
    p = c.add_parser("rate", parents=[common, actor], help="change a client's rate limit",
                     description="Set how many requests a minute the client may make.")
    p.add_argument("name")
    p.add_argument("rate", type=int, metavar="N")
    p.set_defaults(func=cmd_clients_rate)

    directory = groups.add_parser("directory", help="the company directory (LDAP / Active Directory)",
                                  description="Check the company directory set by MFA_PORTAL_LDAP_URL.")
    dsub = directory.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = dsub.add_parser("test", parents=[common], help="check the settings, the service account, a person",
                        description="Connect as the service account and search the base; with NAME, "
                                    "find that person and show their DN, id, roles and state. "
                                    "Exit 0: found and active (or no NAME); 1: the directory cannot "
                                    "be used; 2: NAME is unknown or inactive.")
    p.add_argument("username", nargs="?", metavar="NAME")
    p.set_defaults(func=cmd_directory_test)

    p = groups.add_parser("pam", help="check a code for pam_exec (expose_authtok)",
                          description="For pam_exec.so expose_authtok: ask the portal's "
                                      "verification API whether the code on standard input is "
                                      "right for $PAM_USER. Exit 0 only when it is; any error "
                                      "(server down, timeout, bad key) denies.")
    p.add_argument("--url", required=True, help="the portal's base URL, e.g. http://127.0.0.1:8501")
    p.add_argument("--key-file", required=True, metavar="FILE",
                   help="file holding the client key (not readable by others)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for the answer (default 5)")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for an https URL with a private CA")
    p.set_defaults(func=cmd_pam)

    _radius_parser(groups, common, actor, as_json)
    ps = _policy_parser(groups, common, actor, as_json)
    p = ps.add_parser("remind", parents=[common],
                      help="mail the reminders that are due (run daily: cron, a systemd timer)",
                      description="Mail each user who has no allowed authenticator yet 7 days and "
                                  "1 day before their due date, and once when it passes. Each "
                                  "reminder goes once per user, however many replicas or timers "
                                  "run this at once (recorded in the user's record); audited as "
                                  "policy_reminder. Needs mail settings (smtp_host).")
    p.set_defaults(func=cmd_policy_remind)
    return parser


def _radius_parser(groups, common, actor, as_json) -> None:
    radius = groups.add_parser("radius", parents=[common],
                               help="the RADIUS server (VPN, network gear) and its clients",
                               description="Without an action: serve RADIUS (PAP Access-Request, "
                                           "Status-Server) on UDP until SIGTERM, logging to stderr: "
                                           "this process binds the port and supervises --processes "
                                           "workers (a dead one is started again; the fifth death "
                                           "within 60 s exits 1). 'radius clients ...' manages who "
                                           "may ask.")
    radius.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; '::' or 0.0.0.0 for all)")
    radius.add_argument("--port", type=int, default=1812, help="UDP port (default 1812)")
    radius.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes sharing the port, restarted when one dies "
                             "(default 2, or 1 on a single CPU)")
    radius.add_argument("--threads", type=int, default=0, metavar="N",
                        help="check threads per process (default $MFA_PORTAL_RADIUS_THREADS or 8)")
    radius.add_argument("--reuse-port", action="store_true",
                        help="share the port with another server started on purpose "
                             "(SO_REUSEPORT); without it a port in use is refused")
    radius.add_argument("--worker-socket", default=None, help=argparse.SUPPRESS)
    radius.set_defaults(func=cmd_radius, radius_action=None)
    r = radius.add_subparsers(dest="radius_group", metavar="clients", parser_class=_Parser)
    rc = r.add_parser("clients", help="RADIUS clients (NAS) and their shared secrets",
                      description="The NAS that may ask: addresses (CIDR), mode, a shared secret "
                                  "kept encrypted under the data dir's keys and printed once.")
    c = rc.add_subparsers(dest="radius_action", metavar="ACTION", required=True,
                          parser_class=_Parser)
    p = c.add_parser("add", parents=[common, actor], help="add a client and print its secret",
                     description="Add a client and print its shared secret once (the last line "
                                 "of output is the secret alone).")
    p.add_argument("name", help="e.g. vpn, core-switches (audited as radius/NAME)")
    p.add_argument("--address", action="append", required=True, metavar="CIDR",
                   help="the address or network it sends from (repeat for more)")
    p.add_argument("--mode", default="code", choices=["code", "password+code", "challenge"],
                   help="what User-Password holds: the code (default), the password and the "
                        "code, or the password then an Access-Challenge for the code")
    p.set_defaults(func=cmd_radius, radius_action="clients_add")
    p = c.add_parser("list", parents=[common, as_json], help="list the clients (never a secret)")
    p.set_defaults(func=cmd_radius, radius_action="clients_list")
    p = c.add_parser("remove", parents=[common, actor], help="remove a client")
    p.add_argument("name")
    p.set_defaults(func=cmd_radius, radius_action="clients_remove")
    p = c.add_parser("rotate", parents=[common, actor], help="a new shared secret for a client",
                     description="Replace a client's shared secret and print the new one once "
                                 "(last line); the old one stops working at once.")
    p.add_argument("name")
    p.set_defaults(func=cmd_radius, radius_action="clients_rotate")


def _policy_parser(groups, common, actor, as_json):
    """``policy set|show|clear``; returns the subparsers (``policy remind`` is added beside)."""
    policy = groups.add_parser("policy", help="the two-step policy: who must use it, by when, how",
                               description="Who must use two-step verification, by when (a "
                                           "deadline or a grace period per user) and with which "
                                           "factors. Kept in the store: every replica sees it.")
    ps = policy.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = ps.add_parser("set", parents=[common, actor], help="set the rule for one target",
                      description="Set the rule for everyone, a role or a directory group; "
                                  "that target's earlier rule is replaced, the others stay. "
                                  "Refused (exit 2, nothing changed) when it would lock out the "
                                  "admins. Audited with the old and new rule.")
    p.add_argument("--require", required=True, metavar="TARGET",
                   help="everyone, role:NAME (users.yaml roles; role:admin) or group:DN "
                        "(a company-directory group)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--grace-days", type=int, metavar="N",
                      help="days from when the rule first applies to each user (a new hire "
                           "gets the same days)")
    when.add_argument("--deadline", metavar="YYYY-MM-DD", help="due at 00:00 UTC that day")
    p.add_argument("--allow", metavar="FACTOR,...",
                   help="allowed factors among totp, passkey, backup_code (default: all three)")
    p.set_defaults(func=cmd_policy_set)
    p = ps.add_parser("show", parents=[common, as_json], help="show the rules",
                      description="The rules in force, one a line (or JSON).")
    p.set_defaults(func=cmd_policy_show)
    p = ps.add_parser("clear", parents=[common, actor], help="remove every rule",
                      description="Remove every rule: two-step is voluntary again. Audited.")
    p.set_defaults(func=cmd_policy_clear)
    return ps


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m mfa_core" if name in ("__main__.py", "", "-c") else name


class _ReaderGone(Exception):
    """Standard output's reader went away (``... | head``): the command stops, quietly."""


class _Output:
    """Standard output whose broken pipe is :class:`_ReaderGone`, not an OSError.

    Kept apart from other broken pipes (an SMTP or HTTP connection): those are errors.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise _ReaderGone() from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise _ReaderGone() from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


EXIT_READER_GONE = 141  # 128 + SIGPIPE: what a shell reports for a command its pipe's reader left


def _silence(stream: TextIO) -> None:
    """Point a closed pipe's descriptor at /dev/null: the interpreter's final flush of what is
    still buffered then neither fails nor prints 'Exception ignored ... BrokenPipeError'."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None, *, environ=None, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    environ = os.environ if environ is None else environ
    stdin, stderr = stdin or sys.stdin, stderr or sys.stderr
    raw_stdout = stdout or sys.stdout
    stdout = _Output(raw_stdout)
    parser = _parser(_prog())
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:  # --help | head
        _silence(sys.stdout)
        return EXIT_READER_GONE
    func: Callable[[Context], int] = args.func
    # The engine's warnings (a mail that could not be sent) as plain lines, not log records.
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    engine_log = logging.getLogger("mfa_core")
    engine_log.addHandler(handler)
    ctx = Context(args, environ, stdin, stdout, stderr)
    try:
        if _managed_elsewhere(args, ctx):
            stderr.write(f"error: {MANAGED_ELSEWHERE}\n")
            return 2
        status = func(ctx)
        stdout.flush()  # a reader that left shows here, not at the interpreter's exit
        return status
    except _ReaderGone:
        _silence(raw_stdout)
        return EXIT_READER_GONE
    except (StorageError, KeyringError, notify.NotificationSettingsError) as exc:
        # The command line is the operator's: what went wrong, not the text a visitor sees.
        shown = exc.detail if isinstance(exc, (StoreUnavailable, KeyringError)) else exc
        stderr.write(f"error: {_one_line(shown)}\n")
        return 1
    except (MFAError, UserDirectoryError, ValueError, TypeError) as exc:
        stderr.write(f"error: {_one_line(exc)}\n")
        return 2
    except DatabaseError as exc:  # its text names no password
        stderr.write(f"error: The database cannot be used: {_one_line(exc)}\n")
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        stderr.write(f"error: {exc.strerror or type(exc).__name__}{where}\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("interrupted: run the command again (an interrupted key rotation "
                     "leaves every secret readable)\n")
        return 130
    finally:
        ctx.close()
        engine_log.removeHandler(handler)


def _managed_elsewhere(args: argparse.Namespace, ctx: Context) -> bool:
    """A change to users while the company directory holds them (refused before anything is done)."""
    if getattr(args, "command", None) != "users":
        return False
    action = getattr(args, "action", None)
    changes = action in ("add", "passwd", "remove", "import") or (action == "roles" and args.roles)
    if not changes:
        return False
    from .directory import configured
    return configured(ctx.environ, SECRETS_FILE)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
