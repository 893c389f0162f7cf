"""A tiny ASGI app behind ``portal.netguard.RealPeer`` that tells a test what the scope says.

Served by a real uvicorn (its default ProxyHeadersMiddleware trusts 127.0.0.1) in
``test_server_limits``: the page's websocket and any request then see the connection's own
address and scheme, as Streamlit's page session (``st.context.ip_address``) does.
"""

import json

from portal.netguard import RealPeer


async def _echo(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    seen = json.dumps([scope["client"][0], scope["scheme"]])
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": seen})
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": seen.encode()})


app = RealPeer(_echo)
