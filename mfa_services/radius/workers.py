"""Several RADIUS worker processes on one UDP port, started and watched by a supervisor.

One Python process is one interpreter and one GIL for receiving, checking
and answering; two processes answer about 1.6 times what one does. So
``python -m mfa_core radius`` is a supervisor (``--processes N``, default
:data:`DEFAULT_PROCESSES`) that

1. binds N UDP sockets to the address and port itself, with ``SO_REUSEPORT``
   (a port already in use, even by another RADIUS server, is refused unless
   ``--reuse-port`` says to share it), so that a bad address or a port in use
   is one line and exit 2 before anything starts;
2. starts one worker a socket (``python -m mfa_core radius`` again, handed
   the socket's descriptor): each opens the store itself and answers the
   datagrams of its socket, with its own check threads;
3. keeps every socket open while it runs. Linux hands each datagram to one
   socket of the group by a hash of its source address and port, and the
   group never changes, so a NAS's retransmissions always reach the same
   socket: the worker that holds the first answer (``dedupe``). While a worker
   is restarted its socket still receives, and the new worker answers what
   waited (a retransmission among it gets the first check's answer);
4. restarts a worker that dies, after 0.5 s, then 1, 2, 4 s when it keeps
   dying; the fifth death within 60 s stops the whole server with exit 1
   (a crash loop is systemd's to see and restart, ``Restart=on-failure``);
5. on SIGTERM or SIGINT sends SIGTERM to every worker, waits for them (each
   logs its counts and finishes the requests it holds) and exits 0.

A worker watches its supervisor: when it is gone (killed with SIGKILL), the
worker stops too, so no unsupervised server keeps the port.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

log = logging.getLogger("mfa_services.radius")

DEFAULT_PROCESSES = max(1, min(2, os.cpu_count() or 1))
MAX_PROCESSES = 64
RECEIVE_BUFFER = 1 << 20
FIRST_DELAY = 0.5        # seconds before a dead worker is started again; doubled for each recent death
CRASH_WINDOW = 60.0      # deaths counted over this many seconds
CRASH_LIMIT = 5          # the fifth death within CRASH_WINDOW stops the server (exit 1)
START_TIMEOUT = 120.0    # seconds a worker may take to open the store and say it is ready
STOP_TIMEOUT = 20.0      # seconds the workers have to stop after SIGTERM, then SIGKILL
POLL = 0.2


class StartupError(ValueError):
    """Cannot listen (bad address, port in use, no permission): one line, exit 2."""


def bind(address: str, port: int, count: int, *, share: bool = False) -> list[socket.socket]:
    """``count`` UDP sockets on one address and port (``SO_REUSEPORT`` when more than one).

    Unless ``share``, a port that anything holds already is refused, even a
    server that set ``SO_REUSEPORT`` itself: two servers started by mistake
    would otherwise split the datagrams silently.
    """
    try:
        info = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise StartupError(f"Cannot listen on {address!r}: not an address of this host "
                           f"({getattr(exc, 'strerror', None) or exc}).") from None
    family, where = info[0], info[4]
    reuse = share or count > 1
    socks: list[socket.socket] = []
    try:
        if not share:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                _bind(probe, where, address, port)
                where = (where[0], probe.getsockname()[1], *where[2:])  # port 0: the one given
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            except OSError:
                pass
            if reuse:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _bind(sock, where, address, port)
            where = (where[0], sock.getsockname()[1], *where[2:])
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind(sock: socket.socket, where: tuple, address: str, port: int) -> None:
    try:
        sock.bind(where)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"UDP port {port} on {address} is in use (another RADIUS server? "
                               "--reuse-port shares it on purpose).") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"No permission to listen on UDP port {port}: ports below 1024 "
                               "need root or CAP_NET_BIND_SERVICE.") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"Cannot listen on {address}: not an address of this host.") from None
        raise StartupError(f"Cannot listen on {address} port {port}: "
                           f"{exc.strerror or type(exc).__name__}.") from None


class Restarts:
    """When a dead worker is started again: the delay, or None when the server should stop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, first: float = FIRST_DELAY,
                 window: float = CRASH_WINDOW, limit: int = CRASH_LIMIT) -> None:
        self.clock, self.first, self.window, self.limit = clock, first, window, limit
        self._deaths: collections.deque[float] = collections.deque()

    def died(self) -> float | None:
        now = self.clock()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] >= self.window:
            self._deaths.popleft()
        recent = len(self._deaths)
        if recent >= self.limit:
            return None
        return self.first * 2 ** (recent - 1)


@dataclass
class _Worker:
    number: int
    sock: socket.socket
    proc: subprocess.Popen | None = None
    ready_fd: int | None = None       # read end of the pipe the worker writes to once it serves
    ready: bool = False
    restart_at: float | None = None   # monotonic time of the next start, while dead


def exit_story(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class Supervisor:
    """Starts one worker per socket and keeps them running (see the module's text)."""

    def __init__(self, socks: Sequence[socket.socket], command: Callable[[int, int], list[str]],
                 environ: Mapping[str, str], *, stderr=None,
                 restarts: Restarts | None = None) -> None:
        self.workers = [_Worker(n, sock) for n, sock in enumerate(socks, 1)]
        self.command, self.environ, self.stderr = command, dict(environ), stderr
        self.restarts = restarts or Restarts()
        self._stop = threading.Event()
        self.address = socks[0].getsockname()

    def stop(self) -> None:
        self._stop.set()

    # -- one worker ------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        fd = worker.sock.fileno()
        try:
            worker.proc = subprocess.Popen(
                self.command(fd, write_fd), env=self.environ, pass_fds=(fd, write_fd),
                stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker.ready_fd, worker.ready, worker.restart_at = read_fd, False, None
        log.info("RADIUS worker %d started (pid %d)", worker.number, worker.proc.pid)

    def _check_ready(self, worker: _Worker) -> None:
        if worker.ready or worker.ready_fd is None:
            return
        try:
            said = os.read(worker.ready_fd, 16)
        except BlockingIOError:
            return
        if said:
            worker.ready = True
            self._close_ready(worker)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None

    # -- the whole server ----------------------------------------------------------

    def run(self) -> int:
        """Until SIGTERM or SIGINT (0), or a crash loop or a worker that cannot start (1)."""
        try:
            for worker in self.workers:
                self._start(worker)
            status = self._wait_ready()
            if status is None:
                log.info("RADIUS server listening on %s port %d (UDP), %d worker process%s",
                         self.address[0], self.address[1], len(self.workers),
                         "" if len(self.workers) == 1 else "es")
                status = self._watch()
        finally:
            self._stop_all()
            for worker in self.workers:
                self._close_ready(worker)
                worker.sock.close()
        log.info("RADIUS server stopped")
        return status

    def _wait_ready(self) -> int | None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._stop.is_set():
            for worker in self.workers:
                self._check_ready(worker)
                code = worker.proc.poll()
                if code is not None and not worker.ready:
                    log.error("RADIUS worker %d could not start (%s): the server stops",
                              worker.number, exit_story(code))
                    return 1
            if all(w.ready for w in self.workers):
                return None
            if time.monotonic() > deadline:
                log.error("the RADIUS workers did not start within %g s: the server stops",
                          START_TIMEOUT)
                return 1
            self._stop.wait(POLL)
        return 0

    def _watch(self) -> int:
        while not self._stop.is_set():
            now = time.monotonic()
            for worker in self.workers:
                if worker.proc is None:
                    if worker.restart_at is not None and now >= worker.restart_at:
                        self._start(worker)
                    continue
                self._check_ready(worker)
                code = worker.proc.poll()
                if code is None:
                    continue
                if self._stop.is_set():
                    break
                pid, worker.proc = worker.proc.pid, None
                self._close_ready(worker)
                delay = self.restarts.died()
                if delay is None:
                    log.error("RADIUS worker %d (pid %d) stopped (%s), the %s time within %g s: "
                              "the server stops (exit 1)", worker.number, pid, exit_story(code),
                              _nth(self.restarts.limit), self.restarts.window)
                    return 1
                log.warning("RADIUS worker %d (pid %d) stopped (%s); starting it again in %g s "
                            "(its socket keeps receiving meanwhile)", worker.number, pid,
                            exit_story(code), delay)
                worker.restart_at = now + delay
            self._stop.wait(POLL)
        return 0

    def _stop_all(self) -> None:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("RADIUS worker pid %d did not stop within %g s: killed",
                            proc.pid, STOP_TIMEOUT)
                proc.kill()
                proc.wait()
        for worker in self.workers:
            worker.proc = None


def _nth(n: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


def worker_command(*, address: str, port: int, threads: int, data_dir: Path,
                   parent: int) -> Callable[[int, int], list[str]]:
    """The command line of a worker serving the socket ``fd`` (``ready`` is its pipe's end)."""
    def command(fd: int, ready: int) -> list[str]:
        return [sys.executable, "-m", "mfa_core", "radius", "--address", address,
                "--port", str(port), "--threads", str(threads),
                "--data-dir", str(Path(data_dir).resolve()),
                "--worker-socket", f"{fd},{ready},{parent}"]
    return command


def worker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the CLI was given, with this code first on the path."""
    env = dict(environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([here, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def supervise(supervisor: Supervisor) -> int:
    """Run ``supervisor`` until SIGTERM or SIGINT, with those signals stopping it."""
    def on_signal(signum, frame):  # noqa: ARG001
        log.info("RADIUS server stopping (signal %d)", signum)
        supervisor.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return supervisor.run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def parse_worker_socket(value: str) -> tuple[int, int, int]:
    try:
        fd, ready, parent = (int(part) for part in value.split(","))
    except ValueError:
        raise StartupError("--worker-socket is FD,READY_FD,PARENT_PID (set by the server "
                           "itself for its workers).") from None
    return fd, ready, parent


def inherited_socket(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"No socket at descriptor {fd} ({exc.strerror}): --worker-socket is "
                           "set by the server itself for its workers.") from None
    if sock.type != socket.SOCK_DGRAM:
        sock.detach()
        raise StartupError(f"Descriptor {fd} is not a UDP socket.")
    return sock


def tell_ready(fd: int) -> None:
    try:
        os.write(fd, b"1")
    except OSError:
        pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


__all__ = ["DEFAULT_PROCESSES", "Restarts", "StartupError", "Supervisor", "bind", "supervise"]
