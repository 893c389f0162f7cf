"""mfa_services: the services other systems talk to, on the engine in ``mfa_core``.

``mfa_services.radius``: the RADIUS server (VPN concentrators, network gear).
``mfa_services.api``: the HTTP verification API (served by the portal's
server, ``portal.server``), with its check process ``mfa_services.checks``
(the child itself: ``mfa_services.check_child``) and its OpenAPI description
``mfa_services.openapi``.
``mfa_services.pam``: the PAM client (``python -m mfa_core pam``), which asks
that API. ``mfa_services.engine``: one way of calling the engine.
No Streamlit here.
"""
