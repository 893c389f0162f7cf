"""What the portal checks before it serves anything, however it is started.

``streamlit run app.py`` imports ``app.py`` after it has bound its socket,
so :func:`refuse_to_start_if_unfit` runs there and the process exits with one
line for the operator. uvicorn (``uvicorn app:app``) imports the app before
it binds: the same check runs in the app's lifespan, and once more as soon as
the process listens (:func:`watch_listening`); :class:`DemoLoopbackGuard`
refuses every request from elsewhere meanwhile, so demo mode fails closed
whatever starts the server.

The refusals:

- the keys: a data dir that holds data but lost ``keys.json`` (and no keys in
  the environment or secrets.toml) — new keys would make every secret in it
  unusable; with a database, keys that are not configured;
- demo mode (``MFA_PORTAL_DEMO`` not ``0``) served on anything but loopback:
  its sign-in page shows the demo admin's password;
- other machines served over plain HTTP (F3): the session cookie would travel
  in clear, and any page on another port of the host could receive it and
  overwrite it. Serving other machines needs HTTPS: a TLS proxy in front
  (``MFA_PORTAL_PROXY_HEADER`` set; the cookie is then ``__Host-`` and
  ``Secure``) or Streamlit's own certificate (``server.sslCertFile``), unless
  ``MFA_PORTAL_INSECURE_HTTP=1`` says the operator accepts it.

Nothing here imports Streamlit's script side; ``app.py`` loads it before the
runtime exists.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping

from mfa_core import keys, settings
from mfa_core.errors import KeyringError, StorageError

log = logging.getLogger("portal")

EXIT_REFUSED = 2
DEMO_OFF = "MFA_PORTAL_DEMO=0"
ENV_INSECURE = "MFA_PORTAL_INSECURE_HTTP"


class Refused(Exception):
    """The portal must not start; ``str()`` is the operator's one line."""


# -- the checks -------------------------------------------------------------------

def keys_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the configured keys cannot serve the configured data, or None."""
    from . import config
    try:
        env = settings.with_secrets(os.environ if environ is None else environ, settings.SECRETS_FILE)
    except StorageError as err:
        return str(err)
    try:
        settings.check_replica_keys(env)
    except KeyringError as err:
        return err.detail
    if settings.database_url(env) or env.get(keys.ENV_KEYS):
        return None
    data_dir = Path(env.get(config.ENV_DATA_DIR) or "data")
    if not (data_dir / keys.KEY_FILE).exists() and keys.holds_data(data_dir):
        return keys.missing_keys_detail(data_dir)
    return None


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (an IP address or ``localhost``) reaches this machine only."""
    if not address:
        return False
    text = address.strip().strip("[]").split("%")[0]
    if text.lower() == "localhost":
        return True
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return False
    mapped = getattr(found, "ipv4_mapped", None)
    return (mapped or found).is_loopback


def demo_problem(addresses: Iterable[str], environ: Mapping[str, str] | None = None) -> str | None:
    """Why demo mode must not be served on ``addresses`` (the server's bind addresses), or None."""
    from . import config
    env = os.environ if environ is None else environ
    if not _demo_on(env):
        return None
    wide = sorted({a for a in addresses if not is_loopback(a)})
    if wide:
        return (f"demo mode shows its passwords on the sign-in page and is served on loopback only, "
                f"not on {', '.join(wide)}: set {DEMO_OFF} (and real users) to serve other machines")
    if (env.get(config.ENV_PROXY_HEADER) or "").strip():
        return (f"demo mode shows its passwords on the sign-in page and is never served behind a "
                f"proxy ({config.ENV_PROXY_HEADER} is set): set {DEMO_OFF}")
    return None


def insecure_http_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator accepts plain HTTP for other machines (``MFA_PORTAL_INSECURE_HTTP=1``)."""
    env = os.environ if environ is None else environ
    return (env.get(ENV_INSECURE) or "").strip().lower() in ("1", "true", "yes", "on")


def https_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the portal is reached over HTTPS: behind a (TLS) proxy, or with Streamlit's certificate."""
    from . import config
    env = os.environ if environ is None else environ
    if (env.get(config.ENV_PROXY_HEADER) or "").strip():
        return True
    try:
        from streamlit import config as st_config
        return bool(st_config.get_option("server.sslCertFile"))
    except Exception:  # noqa: BLE001 (no Streamlit config: no certificate)
        return False


def transport_problem(addresses: Iterable[str], environ: Mapping[str, str] | None = None) -> str | None:
    """Why other machines must not be served as configured (plain HTTP), or None."""
    wide = sorted({a for a in addresses if not is_loopback(a)})
    if not wide or https_configured(environ) or insecure_http_allowed(environ):
        return None
    return (f"serving other machines ({', '.join(wide)}) over plain HTTP would send the session "
            f"cookie in clear and to every port of this host: put the portal behind a TLS proxy "
            f"and set MFA_PORTAL_PROXY_HEADER, or give Streamlit a certificate "
            f"(server.sslCertFile); {ENV_INSECURE}=1 accepts the risk")


def _demo_on(env: Mapping[str, str]) -> bool:
    return (env.get("MFA_PORTAL_DEMO") or "1").strip().lower() not in ("0", "false", "no", "off")


def streamlit_address() -> str | None:
    """The address ``streamlit run`` binds (None when Streamlit's CLI did not start this process)."""
    try:
        from streamlit import config as st_config
    except ImportError:  # pragma: no cover
        return None
    if getattr(st_config, "_server_mode", None) not in ("starlette-app", "starlette-app-direct",
                                                        "starlette-managed", "tornado"):
        return None  # not started by `streamlit run` (uvicorn, a test): its config says nothing
    # Unset: Streamlit binds every interface.
    return st_config.get_option("server.address") or "0.0.0.0"


def listening_addresses() -> set[str] | None:
    """The local addresses of this process's listening TCP sockets (None where /proc cannot tell)."""
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return None
    found: set[str] = set()
    for name, family in (("tcp", 4), ("tcp6", 6)):
        try:
            lines = Path(f"/proc/self/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


def problems(addresses: Iterable[str] = ()) -> list[str]:
    """Every reason not to serve, given the addresses the server is (or will be) bound to."""
    found = []
    addresses = set(addresses)
    for problem in (keys_problem(), demo_problem(addresses) or transport_problem(addresses)):
        if problem:
            found.append(problem)
    return found


# -- refusing ----------------------------------------------------------------------

def refuse(lines: list[str]) -> None:
    """Tell the operator (stderr: the server's log) and end the process: nothing is served."""
    for line in lines:
        print(f"MFA Portal refuses to start: {line}", file=sys.stderr, flush=True)
    # os._exit: at import or in the lifespan, raising would let the server print a
    # traceback around the one line (or, under uvicorn, start without the app's checks).
    os._exit(EXIT_REFUSED)


def refuse_to_start_if_unfit(*, serving: bool = False) -> None:
    """At import of ``app.py`` and in its lifespan: end the process if it must not serve.

    The bind addresses are this process's listening sockets when it serves
    (``serving``: the lifespan) or when ``streamlit run`` started it (its
    socket is bound before it imports ``app.py``), plus Streamlit's
    ``server.address``. A plain import (a test, a tool) checks the keys only.
    """
    addresses: set[str] = set()
    bound = streamlit_address()
    if bound is not None:
        addresses.add(bound)
    if serving or bound is not None:
        addresses |= listening_addresses() or set()
    found = problems(addresses)
    if found:
        refuse(found)


async def watch_listening(poll: float = 0.05, limit: float = 120.0) -> None:
    """Once this process listens (uvicorn binds after the lifespan started), check the addresses."""
    waited = 0.0
    while waited < limit:
        found = listening_addresses()
        if found is None:
            return  # no /proc: the per-request guard alone
        if found:
            problem = demo_problem(found) or transport_problem(found)
            if problem:
                refuse([problem])
            return
        await asyncio.sleep(poll)
        waited += poll


def lifespan(app):
    """``st.App(lifespan=...)``: the startup checks under any ASGI server."""
    import contextlib

    @contextlib.asynccontextmanager
    async def _lifespan(_app):
        refuse_to_start_if_unfit(serving=True)
        task = asyncio.get_running_loop().create_task(watch_listening(), name="mfa-startup-watch")
        try:
            yield None
        finally:
            task.cancel()

    return _lifespan(app)


# -- in the page (``streamlit run streamlit_app.py``: no st.App, no middleware) ----------

_page_checked = False


def page_refusal(ip_address: str | None, headers) -> str | None:
    """What a page run shows instead of the portal, or None (see ``DemoLoopbackGuard``).

    The first page run of a process started by ``streamlit run`` on the page
    script itself (no ``app.py``) also runs the startup checks: its socket is
    bound by then.
    """
    global _page_checked
    if not _page_checked:
        _page_checked = True
        if streamlit_address() is not None:
            refuse_to_start_if_unfit()
    if not _demo_on(os.environ):
        return None
    if not isinstance(ip_address, str):
        ip_address = None
    names = {str(k).lower() for k in (headers or {}).keys()} if headers is not None else set()
    # Streamlit 1.67 under st.App gives no peer address to the script (None): the middleware
    # judged the connection already; here only what the headers say (a proxy in front).
    scope = {"client": (ip_address or "127.0.0.1", 0), "server": None,
             "headers": [(n.encode("latin-1"), b"") for n in names]}
    return None if _peer_is_local(scope) else DEMO_REFUSED.decode()


# -- per request -------------------------------------------------------------------

DEMO_REFUSED = (b"This demo portal is served to this machine only. Ask the operator for the "
                b"portal's real address.\n")


def _peer_is_local(scope) -> bool:
    from . import config
    client = scope.get("client")
    server = scope.get("server")
    peer = client[0] if client else None
    local = server[0] if server else None
    if not is_loopback(peer) or (local is not None and not is_loopback(local)):
        return False
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
    # A proxy in front relays other machines: whatever it says they are, demo mode is not for them.
    if any(name in headers for name in ("x-forwarded-for", "forwarded", "x-real-ip")):
        return False
    header = (os.environ.get(config.ENV_PROXY_HEADER) or "").strip().lower()
    return not header or header not in headers


class DemoLoopbackGuard:
    """In demo mode, answer nothing to a request that did not come over loopback from loopback.

    The startup checks refuse a non-loopback bind; this covers what they
    cannot see (uvicorn binding after the lifespan, a proxy on loopback).
    """

    def __init__(self, app) -> None:
        self.app = app
        self._warned = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or not _demo_on(os.environ) or _peer_is_local(scope):
            await self.app(scope, receive, send)
            return
        if not self._warned:
            self._warned = True
            log.error("demo mode refused a request from another machine: demo mode is served on "
                      "loopback only; set %s to serve other machines", DEMO_OFF)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": DEMO_REFUSED})
