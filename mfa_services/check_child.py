"""The check process itself: ``python -m mfa_services.check_child FD``, started by ``mfa_services.checks``.

It answers the frames of its socket (``FD``, one end of the pair the server
made) with the API's own check (``mfa_services.api.answer``), in a pool of
``api.CHECK_THREADS`` threads, until the server's end closes. The frames,
the server's side and why a process of its own: ``mfa_services.checks``. A
module apart from it because the check is the API's, and the API asks through
``checks``: the child's side imports both, neither of them imports it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import socket
import sys
import threading
from typing import Any

from starlette.datastructures import Headers

from . import api
from .checks import READY, UNREADABLE, Answer, FrameReader, frame

log = logging.getLogger("mfa_services.api")


def serve(sock: socket.socket, threads: int) -> None:
    """Answer frames from ``sock`` until its other end closes (the child's main loop)."""
    sending = threading.Lock()

    def reply(number: int, got: Answer) -> None:
        data = frame([number, *got])
        with sending:
            sock.sendall(data)

    def check(number: int, message: list[Any]) -> None:
        try:
            _, peer, headers, body = message
            if not (peer is None or isinstance(peer, str)) or not (
                    body is None or isinstance(body, str)):
                raise TypeError("peer or body")
            headers = Headers(raw=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers])
            body = None if body is None else body.encode("latin-1")
        except (TypeError, ValueError, UnicodeError):
            log.error("API check process: an unreadable request (answered 400)")
            reply(number, UNREADABLE)
            return
        reply(number, api.answer(peer, headers, body))  # never raises

    reader = FrameReader()
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="mfa-api") as pool:
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                return  # the server went away: finish what was started, then exit
            for message in reader.feed(data):
                # One request's bytes never end the process that serves the others: a frame
                # that cannot be read is answered (when its id can be read) or dropped (its
                # request then gets the server's 503 after TIMEOUT), and the next one is read.
                if isinstance(message, list) and message and type(message[0]) is int \
                        and message[0] != READY:
                    if len(message) == 4:
                        pool.submit(check, message[0], message)
                    else:
                        pool.submit(reply, message[0], UNREADABLE)
                else:
                    log.error("API check process: an unreadable request frame (dropped)")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Ctrl-C in a terminal reaches the whole process group: the server stops, and this
    # process then reads the end of its socket (no KeyboardInterrupt halfway through a check).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    from portal import config, startup
    config.SWEEPS = False  # the server process sweeps
    problem = startup.keys_problem()
    if problem:  # never generate keys over data: no ready frame, the requests get 503
        log.error("API check process refuses to start: %s", problem)
        return startup.EXIT_REFUSED
    try:
        api._portal()  # open the store now rather than on the first request
    except Exception as exc:  # the requests will get 503 until it opens
        log.error("API check process: the store cannot be opened yet (%s)", type(exc).__name__)
    sock.sendall(frame([READY]))
    serve(sock, api.CHECK_THREADS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
