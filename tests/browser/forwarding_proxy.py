"""A TLS proxy in front of the portal: HTTPS to the browser (a test CA's certificate), plain
HTTP to the portal on loopback with ``X-Forwarded-For`` and ``X-Forwarded-Proto: https``
added to every request, the page's websocket included.

A journey needs the portal to see a client address (Streamlit gives none over loopback),
and Playwright's extra headers never reach a websocket's handshake in this Chromium. One
listener per client address: ``ForwardingProxy(upstream_port, "203.0.113.7", tls_dir)``,
then browse ``proxy.url`` in a context that accepts the test CA's certificate. Each plain request goes on a connection of its own (``Connection:
close``), so every request head passes through here; an upgraded connection (the
websocket) is spliced both ways after its head.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

HEAD_MAX = 64 * 1024


class ForwardingProxy:
    def __init__(self, upstream_port: int, client_address: str, tls_dir: Path) -> None:
        from tests.ldap_server import make_tls

        tls_dir.mkdir(parents=True, exist_ok=True)
        _ca, cert, key = make_tls(tls_dir)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(cert, key)
        self.upstream_port = upstream_port
        self.client_address = client_address
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)
        assert self.server is not None, "the forwarding proxy did not start"
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls))
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _head(self, raw: bytes) -> bytes:
        lines = raw.decode("latin-1").split("\r\n")
        kept = [lines[0]]
        upgrade = False
        for line in lines[1:]:
            name = line.split(":", 1)[0].strip().lower()
            if name == "upgrade":
                upgrade = True
            if name in ("x-forwarded-for", "x-forwarded-proto", "connection") and line:
                if name == "connection":
                    kept.append(line)
                continue
            if line:
                kept.append(line)
        if not upgrade:
            kept = [ln for ln in kept if not ln.lower().startswith("connection:")]
            kept.append("Connection: close")
        kept += [f"X-Forwarded-For: {self.client_address}", "X-Forwarded-Proto: https"]
        return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        up_writer.write(self._head(raw[:-4]))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 (already closed)
                pass
