"""The portal's server: Streamlit's own (``st.App``, Starlette underneath) plus the portal's HTTP routes.

``make run`` starts it (``streamlit run app.py``); the page script is
``streamlit_app.py``. The routes and middleware come from ``portal.server``,
so the pages, the API and anything else the portal serves share one port.
Under uvicorn: ``uvicorn app:app --host 127.0.0.1 --port 8501``. Either way
``portal.netguard`` sets the limits on connections (header and body timeouts,
connections per address) and puts the connection's own address and scheme in
every request, whatever ``X-Forwarded-*`` say, unless ``MFA_PORTAL_PROXY_HEADER``
is set. ``portal.startup``
refuses to start (one line, exit status 2) what must not serve.
"""

import streamlit as st

from portal import incidents, server, startup

# Keys that cannot serve the data dir, demo mode on a non-loopback address: one line for the
# operator and the process ends (under `streamlit run` the socket is bound before this import;
# under uvicorn the lifespan checks again once it listens).
startup.refuse_to_start_if_unfit()

app = st.App("streamlit_app.py", routes=server.routes(), middleware=server.middleware(),
             on_script_error=incidents.on_script_error, lifespan=startup.lifespan)
