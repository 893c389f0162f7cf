"""The portal's app without the TCP_NODELAY middleware, for ``python -m bench api`` only.

Shows what Streamlit 1.67's server does on its own: its listening socket has
``proto=0``, so accepted connections keep Nagle's algorithm on and keep-alive
responses wait for the client's delayed ACK.
"""

from pathlib import Path

import streamlit as st

from mfa_services import api
from portal import server

SCRIPT = Path(__file__).resolve().parent.parent / "streamlit_app.py"
app = st.App(str(SCRIPT), routes=server.routes(),
             middleware=[m for m in server.middleware() if m.cls is not api.NoDelayMiddleware])
