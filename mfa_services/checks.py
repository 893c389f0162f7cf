"""The API's check process: the verification API's engine calls, in a process of their own.

One Python process that both serves HTTP and runs the engine shares one GIL
between the two: on a 2-core machine that held the API at about 60 % of the
engine's own rate (issue 13), and a VPN or SSH burst made the pages wait
behind it. So the server process only reads the request and writes the answer;
everything after the body was read (the client key, the rate limits, the body's
checks, the engine call: ``mfa_services.api.answer``) runs in one child process per
server process (``mfa_services.check_child``: this module is the server's side and the
frames both sides read), started on the first request, with a pool of threads of its
own (a check spends much of its time in fsync). The two processes share
nothing but the data dir, which is built for that (uvicorn workers and
replicas do the same): throttles, replay state and the audit trail hold across
them. The client rate limits live in the child's memory, so one server
process still counts each client once.

Between them: an anonymous Unix socket pair (nobody else can reach it), with
length-prefixed JSON frames: ``[id, peer, headers, body]`` there,
``[id, status, payload, headers]`` back, answered in any order. Only what a
check reads goes there, each part capped (``FORWARDED``, ``MAX_PEER``, the
API's ``MAX_BODY``), and a frame the child cannot read is answered 400 or
dropped: one request never ends the process that serves the others.

Fails closed: when the child cannot be started, dies, or takes longer than
``TIMEOUT`` seconds, the requests waiting on it get a 503 (never an "ok"); a
child that sent nothing at all for ``TIMEOUT`` seconds is stuck and is killed.
The next request starts a new child (at most one start a second). When the
server process goes away, the child reads the end of its socket, lets the
checks it started finish and exits.

``MFA_PORTAL_API_PROCESS=0`` runs the checks in threads of the server process
instead; so does a test's injected clock (``portal.config.CLOCK``), which
another process cannot share.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mfa_services.api")

ENV = "MFA_PORTAL_API_PROCESS"
TIMEOUT = 30.0         # seconds an answer may take before the request gets a 503
RESTART_PAUSE = 1.0    # seconds between two starts of the child
START_TIMEOUT = 30.0   # seconds the child may take to say it is ready
MAX_FRAME = 1 << 20    # a frame longer than this is a broken peer: the connection is dropped
READY = 0              # the child's first frame, [0]: it imported the engine and opened the store
_HEADER = struct.Struct(">I")
_ROOT = Path(__file__).resolve().parents[1]

Answer = tuple[int, dict[str, Any], dict[str, str]]
UNAVAILABLE: Answer = (503, {"ok": False, "error": "The MFA store is unavailable right now."},
                       {"Retry-After": "5"})
UNREADABLE: Answer = (400, {"ok": False, "error": "The request could not be read."}, {})


def wanted(environ=None) -> bool:
    """Whether the API's checks run in the check process (the default)."""
    env = os.environ if environ is None else environ
    if (env.get(ENV) or "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    from portal import config  # the server's engine host: see mfa_services.api
    return config.CLOCK is None


def frame(message: Any) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def _unpack(buffer: bytearray) -> list[Any]:
    """The whole frames at the start of ``buffer`` (removed from it); ValueError if broken."""
    found = []
    while len(buffer) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ValueError("frame too long")
        if len(buffer) < _HEADER.size + size:
            break
        found.append(json.loads(bytes(buffer[_HEADER.size:_HEADER.size + size])))
        del buffer[:_HEADER.size + size]
    return found


# What a check needs of a request, and no more (issue 20: every header went into the frame,
# and 180 kB of them made a frame over MAX_FRAME that ended the child). Each is cut to its cap:
# a cut key is a wrong key. The body is at most mfa_services.api.MAX_BODY bytes (the server
# refuses a longer one with 413 before anything is sent here), so a frame stays far below MAX_FRAME.
FORWARDED = {b"authorization": 1024, b"content-type": 256}
MAX_PEER = 200


def _latin1(raw_headers) -> list[list[str]]:
    """The headers a check reads (the first of each), each cut to its cap in ``FORWARDED``."""
    kept: dict[bytes, bytes] = {}
    for k, v in raw_headers:
        name = k.lower()
        if name in FORWARDED and name not in kept:
            kept[name] = v[:FORWARDED[name]]
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in kept.items()]


class FrameReader:
    """The child's side of the frames: one broken frame never ends the stream.

    A frame over ``MAX_FRAME`` is skipped (its bytes are read and dropped),
    one that is not JSON is ``BROKEN``; the frames after either are read as usual.
    """

    BROKEN = object()

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skip = 0

    def feed(self, data: bytes) -> list[Any]:
        self.buffer += data
        found: list[Any] = []
        while True:
            if self.skip:
                dropped = min(self.skip, len(self.buffer))
                del self.buffer[:dropped]
                self.skip -= dropped
                if self.skip:
                    break
            if len(self.buffer) < _HEADER.size:
                break
            (size,) = _HEADER.unpack_from(self.buffer)
            if size > MAX_FRAME:
                del self.buffer[:_HEADER.size]
                self.skip = size
                found.append(self.BROKEN)
                continue
            if len(self.buffer) < _HEADER.size + size:
                break
            raw = bytes(self.buffer[_HEADER.size:_HEADER.size + size])
            del self.buffer[:_HEADER.size + size]
            try:
                found.append(json.loads(raw))
            except (ValueError, RecursionError):
                found.append(self.BROKEN)
        return found


# -- the server's side --------------------------------------------------------------

class _Link(asyncio.Protocol):
    """The server's end of the socket: frames out, answers matched to their requests."""

    def __init__(self, owner: "CheckProcess", proc: subprocess.Popen) -> None:
        self.owner, self.proc = owner, proc
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: dict[int, asyncio.Future] = {}
        self.ready = asyncio.get_running_loop().create_future()  # the child's frame 0
        self.heard = time.monotonic()  # when the child last sent a frame

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        self.buffer += data
        try:
            answers = _unpack(self.buffer)
        except ValueError:
            log.error("API check process: unreadable answer; restarting it")
            self.transport.close()
            return
        for number, *answer in answers:
            if number == READY:
                if not self.ready.done():
                    self.ready.set_result(True)
                continue
            status, payload, headers = answer
            future = self.waiting.pop(number, None)
            if future is not None and not future.done():
                future.set_result((status, payload, headers))

    def connection_lost(self, exc) -> None:
        self.owner._lost(self)
        if not self.ready.done():
            self.ready.set_result(False)
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_result(UNAVAILABLE)


COMMAND = (sys.executable, "-m", "mfa_services.check_child")  # the socket's descriptor is added


class CheckProcess:
    """The child that runs the checks, started on the first request (one per server process)."""

    def __init__(self, command: tuple[str, ...] = COMMAND) -> None:
        self.command = command
        self._link: _Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Lock | None = None
        self._started_at = -RESTART_PAUSE
        self._ids = itertools.count(1)

    async def ask(self, peer: str | None, raw_headers, body: bytes | None) -> Answer:
        link = await self._ready()
        if link is None or link.transport.is_closing():
            return UNAVAILABLE
        number = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        link.waiting[number] = future
        data = frame([number, peer[:MAX_PEER] if isinstance(peer, str) else None,
                      _latin1(raw_headers), None if body is None else body.decode("latin-1")])
        if len(data) - _HEADER.size > MAX_FRAME:  # cannot happen with a bounded body; never sent
            return 413, {"ok": False, "error": "The request is too large."}, {}
        link.transport.write(data)
        try:
            return await asyncio.wait_for(future, TIMEOUT)
        except asyncio.TimeoutError:
            log.error("API check process: no answer within %g s", TIMEOUT)
            if time.monotonic() - link.heard >= TIMEOUT:
                # Not a word for as long: stuck, not busy. Its checks are transactions
                # (a kill leaves each done or not done); the next request starts another.
                log.error("API check process: silent for %g s; stopping it", TIMEOUT)
                if link.proc.poll() is None:
                    link.proc.kill()
                link.transport.close()
            return UNAVAILABLE
        finally:
            link.waiting.pop(number, None)

    async def _ready(self) -> _Link | None:
        loop = asyncio.get_running_loop()
        if self._link is not None and self._loop is loop:
            return self._link
        if self._starting is None or self._loop is not loop:
            self._forget()  # a child tied to another event loop
            self._starting, self._loop = asyncio.Lock(), loop
        async with self._starting:
            if self._link is None and time.monotonic() - self._started_at >= RESTART_PAUSE:
                self._started_at = time.monotonic()
                try:
                    await self._start(loop)
                except OSError as exc:
                    log.error("API check process could not be started (%s)", type(exc).__name__)
            return self._link

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        ours, theirs = socket.socketpair()
        try:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
            proc = subprocess.Popen(
                [*self.command, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env, cwd=os.getcwd())
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        _, link = await loop.create_connection(lambda: _Link(self, proc), sock=ours)
        try:
            ready = await asyncio.wait_for(asyncio.shield(link.ready), START_TIMEOUT)
        except asyncio.TimeoutError:
            ready = False
        if ready:
            self._link = link
        else:
            log.error("API check process did not start")
            if proc.poll() is None:
                proc.kill()
            link.transport.close()

    def _lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
            log.warning("API check process ended; the next request starts another")
        # reaped off the event loop
        threading.Thread(target=link.proc.wait, name="mfa-api-reap", daemon=True).start()

    def close(self) -> None:
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.close()  # the child sees the end of its socket and exits

    def _forget(self) -> None:
        """Let go of a child started on another event loop: closed there, or stopped."""
        link, loop, self._link = self._link, self._loop, None
        if link is None:
            return
        self._started_at = -RESTART_PAUSE  # not a crash: a new child may start at once
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(link.transport.close)
        elif link.proc.poll() is None:
            link.proc.terminate()


_process = CheckProcess()


async def ready() -> bool:
    """Whether the check process runs (started now if it does not, as by a request)."""
    return await _process._ready() is not None


async def ask(peer: str | None, raw_headers, body: bytes | None) -> Answer:
    """The API's answer for one request, from the check process."""
    return await _process.ask(peer, raw_headers, body)
