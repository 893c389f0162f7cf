"""``python -m mfa_core radius ...``: serve, and the RADIUS client registry.

Called by ``mfa_core.cli`` (imported inside its command functions, so that
``mfa_core`` never imports this package at module level). ``ctx`` is the
CLI's ``Context``: ``args``, ``out``, ``environ``, ``service()``, ``actor()``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import sys
from typing import Any

from mfa_core import radius_clients


def _registry(ctx: Any) -> radius_clients.RadiusClientRegistry:
    return radius_clients.open_radius_registry(ctx.service())


def _time(value: float | None) -> str:
    if value is None:
        return "-"
    return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _log_to(stream: Any) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    # The pid tells the supervisor's lines from each worker's.
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s[%(process)d]: %(message)s"))
    for name in ("mfa_services", "mfa_core"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def serve(ctx: Any) -> int:
    """The supervisor (``workers``): binds the port, starts ``--processes`` workers, watches them."""
    from . import server, workers

    a = ctx.args
    if a.worker_socket:
        return _serve_worker(ctx)
    demo = (ctx.environ.get("MFA_PORTAL_DEMO") or "1").strip().lower() not in ("0", "false", "no", "off")
    if demo and not _loopback(a.address):
        # As for the portal (make run): demo mode is never served to other machines.
        raise ValueError(f"address {a.address} serves other machines: turn demo mode off "
                         "(MFA_PORTAL_DEMO=0) first")
    if not 1 <= a.port <= 65535:
        raise ValueError("The port is 1 to 65535.")
    processes = a.processes if a.processes is not None else workers.DEFAULT_PROCESSES
    if not 1 <= processes <= workers.MAX_PROCESSES:
        raise ValueError(f"--processes is 1 to {workers.MAX_PROCESSES}.")
    threads = a.threads if a.threads else server.threads_from_env(ctx.environ)

    socks = workers.bind(a.address, a.port, processes, share=bool(a.reuse_port))
    try:
        _log_to(ctx.stderr)
        # Opened here once, so that a store or key problem is one line before any worker starts.
        svc = ctx.service()
        if not radius_clients.open_radius_registry(svc).clients():
            logging.getLogger("mfa_services.radius").warning(
                "no RADIUS clients yet: every request is dropped until one is added "
                "('radius clients add NAME --address CIDR')")
        ctx.close()  # each worker opens its own (a database pool is not shared across processes)
        port = socks[0].getsockname()[1]
        supervisor = workers.Supervisor(
            socks, workers.worker_command(address=a.address, port=port, threads=threads,
                                          data_dir=ctx.data_dir, parent=os.getpid()),
            workers.worker_environ(ctx.given_environ), stderr=_fd_or_none(ctx.stderr))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return workers.supervise(supervisor)


def _serve_worker(ctx: Any) -> int:
    """One worker: the socket its supervisor bound, the store opened here, check threads."""
    from . import server, workers

    a = ctx.args
    fd, ready, parent = workers.parse_worker_socket(a.worker_socket)
    sock = workers.inherited_socket(fd)
    _log_to(ctx.stderr)
    svc = ctx.service()
    # Re-read at most once a second: an added, removed or rotated client counts within 1 s.
    registry = radius_clients.open_radius_registry(svc, max_age=server.REGISTRY_MAX_AGE)
    threads = a.threads if a.threads else server.threads_from_env(ctx.environ)
    return server.serve(svc, registry, a.address, a.port, threads=threads, sock=sock,
                        ready=lambda: workers.tell_ready(ready), parent=parent)


def _fd_or_none(stream: Any) -> Any:
    """Where the workers write their log: the supervisor's stderr when it is a real file."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return stream


def clients_add(ctx: Any) -> int:
    a = ctx.args
    # Checked before the data dir is opened (opening creates it and its keys).
    name, networks = radius_clients.check_client_name(a.name), radius_clients.check_networks(a.address)
    mode = radius_clients.check_mode(a.mode)
    secret = _registry(ctx).add(name, networks, mode, actor=ctx.actor())
    ctx.out.write(f"Added RADIUS client {name} ({', '.join(networks)}, mode {mode}). "
                  "Its shared secret is shown only this once:\n")
    ctx.out.write(secret + "\n")
    return 0


def clients_list(ctx: Any) -> int:
    found = _registry(ctx).clients()
    if ctx.args.json:
        json.dump([{"name": c.name, "kind": c.kind, "addresses": list(c.networks), "mode": c.mode,
                    "created_at": c.created_at, "rotated_at": c.rotated_at} for c in found],
                  ctx.out, indent=2)
        ctx.out.write("\n")
        return 0
    if not found:
        ctx.out.write("No RADIUS clients.\n")
        return 0
    rows = [[c.name, ",".join(c.networks), c.mode, _time(c.created_at), _time(c.rotated_at)]
            for c in found]
    header = ["NAME", "ADDRESSES", "MODE", "CREATED", "SECRET ROTATED"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header, *rows]:
        ctx.out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    return 0


def clients_remove(ctx: Any) -> int:
    radius_clients.check_client_name(ctx.args.name)
    _registry(ctx).remove(ctx.args.name, actor=ctx.actor())
    ctx.out.write(f"Removed RADIUS client {ctx.args.name}: its requests are dropped from now on.\n")
    return 0


def clients_rotate(ctx: Any) -> int:
    radius_clients.check_client_name(ctx.args.name)
    secret = _registry(ctx).rotate(ctx.args.name, actor=ctx.actor())
    ctx.out.write(f"New shared secret for RADIUS client {ctx.args.name}; the old one no longer "
                  "works. It is shown only this once:\n")
    ctx.out.write(secret + "\n")
    return 0
