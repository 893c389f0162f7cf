"""mfa_services: the services other systems talk to, on the engine in ``mfa_core``.

``mfa_services.radius``: the RADIUS server (VPN concentrators, network gear).
The HTTP verification API and its check process (today ``portal.api`` and
``portal.checks``) and the PAM client move here too. No Streamlit here.
"""
