"""Where the portal's settings come from: data dir, demo mode, cookie key, clock, service.

One engine and one user directory per data dir (and clock) are shared by every
session; they hold no per-session data, only the store's handles.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mfa_core
from mfa_core import keys, notify, passkeys, settings
from mfa_core.storage import sweep_leftovers
from mfa_core.users import UserDirectory

log = logging.getLogger("portal")

ENV_DATA_DIR = "MFA_PORTAL_DATA_DIR"
ENV_DEMO = "MFA_PORTAL_DEMO"
ENV_PROXY_HEADER = "MFA_PORTAL_PROXY_HEADER"

# The portal's clock. None means time.time. AppTest runs the pages in the test
# process, so a test sets ``portal.config.CLOCK = fake_clock`` and every
# time-dependent decision (the engine's and the session layer's) follows it.
CLOCK: Callable[[], float] | None = None


@dataclass(frozen=True)
class Portal:
    """What one data dir gives the pages: the engine and the directory."""

    data_dir: Path
    service: mfa_core.MFAService
    directory: UserDirectory
    demo: bool


_portals: dict[tuple[str, str, int], Portal] = {}
_lock = threading.Lock()


def data_dir() -> Path:
    return Path(os.environ.get(ENV_DATA_DIR) or "data")


def demo_mode() -> bool:
    return os.environ.get(ENV_DEMO, "1").strip().lower() not in ("0", "false", "no", "off")


def client_address(peer: str | None, headers, environ=None) -> str | None:
    """The client's address: the connection's peer, or what a trusted proxy says.

    Only when ``MFA_PORTAL_PROXY_HEADER`` names a header (e.g.
    ``X-Forwarded-For``) set by the proxy in front of the portal is it read,
    and then its last entry: the one that proxy appended (anything before it
    came from the client and may be forged). Without a proxy the header is
    ignored, so a client cannot pick its own address.
    """
    env = os.environ if environ is None else environ
    name = (env.get(ENV_PROXY_HEADER) or "").strip()
    if name and headers is not None:
        value = headers.get(name)
        if isinstance(value, str) and value.strip():
            last = value.split(",")[-1].strip()
            if last:
                return last[:200]
    return peer if isinstance(peer, str) and peer else None


LOCALHOST = "localhost"


def session_address(peer: str | None, headers, environ=None) -> str | None:
    """Where a sign-in session is listed as coming from: ``client_address``, or ``LOCALHOST``
    for a connection over loopback (Streamlit gives no address for 127.0.0.1 or ::1, while
    the request's headers are there). For the session list only: the throttle keeps
    ``client_address``."""
    found = client_address(peer, headers, environ)
    if found is None and peer is None and headers is not None:
        try:
            host = headers.get("host")
        except Exception:  # not a mapping: no request to speak of
            host = None
        if isinstance(host, str) and host:
            return LOCALHOST
    return found


def forwarded_https(headers, environ=None) -> bool:
    """Whether the trusted proxy (``MFA_PORTAL_PROXY_HEADER`` set) says the client used HTTPS."""
    env = os.environ if environ is None else environ
    if not (env.get(ENV_PROXY_HEADER) or "").strip() or headers is None:
        return False
    return str(headers.get("x-forwarded-proto") or "").split(",")[-1].strip().lower() == "https"


def session_policy(environ=None) -> mfa_core.SessionPolicy:
    """Idle time and lifetime of a sign-in session, from the environment (seconds) or the defaults.

    Settings that cannot be used are logged and the defaults kept: the
    portal still starts, with the safer (shorter) values.
    """
    env = os.environ if environ is None else environ
    default = mfa_core.SessionPolicy()
    try:
        return mfa_core.SessionPolicy(
            idle=int(env.get("MFA_PORTAL_SESSION_IDLE") or default.idle),
            lifetime=int(env.get("MFA_PORTAL_SESSION_LIFETIME") or default.lifetime))
    except ValueError as err:
        log.error("session settings ignored (%s): idle %d s, lifetime %d s", err, default.idle,
                  default.lifetime)
        return default


def clock() -> Callable[[], float]:
    return CLOCK or time.time


def portal() -> Portal:
    """The cached engine + directory for the current data dir and clock."""
    raw = os.environ.get(ENV_DATA_DIR) or "data"
    clk = clock()
    key = (raw, os.getcwd() if not os.path.isabs(raw) else "", id(clk))
    found = _portals.get(key)
    if found is not None and found.service.clock is clk:
        return found
    with _lock:
        found = _portals.get(key)
        if found is None or found.service.clock is not clk:
            found = _open(Path(raw).resolve(), clk)
            _portals[key] = found
            _start_sweeping()
    return found


def service() -> mfa_core.MFAService:
    return portal().service


def directory() -> UserDirectory:
    return portal().directory


def _open(path: Path, clk: Callable[[], float]) -> Portal:
    # The database URL and the keys may also come from .streamlit/secrets.toml; with a
    # database they must be configured (the same on every replica), never generated.
    env = settings.with_secrets(os.environ, settings.SECRETS_FILE)
    # Demo users only in a data dir without data: one that lost its users.yaml keeps its records.
    fresh = not keys.holds_data(path)
    # Mail goes out from a background thread: a click never waits for the relay.
    try:
        settings.check_replica_keys(env)
        svc = mfa_core.open_service(path, clock=clk, notifier=_notifier(path),
                                    notify_in_background=True, session_policy=session_policy(),
                                    environ=env, relying_party=_relying_party(env))
    except (mfa_core.StoreUnavailable, mfa_core.KeyringError) as err:
        # The page shows the generic text (the sign-in page is public); the operator's log the
        # detail (host, port, database, the key file; passwords redacted).
        log.error("%s", err.detail)
        raise
    users = svc.directory
    demo = demo_mode()
    if demo and (fresh or svc.store.database):
        users.ensure_demo_users()
    elif demo and not users.exists():
        log.error("%s holds data but no %s: the demo users are not created over it; restore the "
                  "file or add users (python -m mfa_core users add)", path, "users.yaml")
    if not svc.store.database and SWEEPS:
        # Temp files of writers killed mid-write: swept once per process, off the request path.
        threading.Thread(target=_sweep_leftovers, args=(path,), name="mfa-sweep", daemon=True).start()
    # The banner never advertises passwords of a directory somebody set up by hand.
    return Portal(data_dir=path, service=svc, directory=users, demo=demo and users.has_demo_users())


def _relying_party(env) -> passkeys.RelyingParty | mfa_core.PasskeySettingsError:
    """Passkeys' relying party (environment over ``[passkeys]`` in secrets.toml).

    Settings that cannot work must not keep the portal from starting: log
    them and run with passkeys off.
    """
    found = passkeys.load_relying_party(env, settings.SECRETS_FILE)
    if isinstance(found, mfa_core.PasskeySettingsError):
        log.error("passkeys are off: %s", found)
    return found


SWEEP_INTERVAL = 3600.0  # seconds between two sweeps of expired keyed records
SWEEPS = True  # False in the API's check process: its server process sweeps the same store
_sweeper: threading.Thread | None = None
_sweep_now = threading.Event()


def _start_sweeping() -> None:
    """Sweep every open portal's expired records now, then every hour (one thread a process)."""
    global _sweeper
    if not SWEEPS:
        return
    if _sweeper is None:
        _sweeper = threading.Thread(target=_sweep_loop, name="mfa-sweep-expired", daemon=True,
                                    args=(lambda: [p.service for p in list(_portals.values())],))
        _sweeper.start()
    _sweep_now.set()


def _sweep_loop(services: Callable[[], list[mfa_core.MFAService]], interval: float = SWEEP_INTERVAL,
                stop: threading.Event | None = None, wake: threading.Event = _sweep_now) -> None:
    """Used tickets, challenges and old sessions' owners, swept when woken or every ``interval`` s."""
    stop = stop or threading.Event()
    while not stop.is_set():
        wake.wait(interval)
        wake.clear()
        for svc in services():
            try:
                removed = svc.sweep_expired()
                if removed:
                    log.info("removed %d expired ticket, challenge and session record(s)", removed)
            except Exception as exc:  # a failed sweep must never end the thread or reach a page
                log.warning("sweeping expired records failed (%s); trying again later",
                            type(exc).__name__)


def _sweep_leftovers(path: Path) -> None:
    removed = sweep_leftovers(path)  # skips what it cannot read or remove
    if removed:
        log.info("removed %d leftover temp file(s) from %s", removed, path)


def _notifier(path: Path) -> notify.MailNotifier | None:
    """Mail notifications when SMTP is configured (environment or secrets.toml), else None.

    Bad settings must not keep the portal from starting: log them and run without mail.
    """
    try:
        return notify.from_settings(path)
    except notify.NotificationSettingsError as err:
        log.error("mail notifications are off: %s", err)
        return None
