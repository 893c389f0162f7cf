"""The RADIUS server: VPN concentrators and network gear check the factors enrolled in the portal.

``python -m mfa_core radius [--address A] [--port P] [--processes N]`` serves
(UDP 1812 on loopback by default, two worker processes); ``python -m mfa_core radius clients add|list|remove|rotate``
manages the NAS that may ask (``mfa_core.radius_clients``).

- ``workers``: the supervisor (what ``radius`` runs): the port's sockets, ``--processes``
  workers started, restarted when one dies, stopped on SIGTERM;
- ``server``: one worker's UDP loop, client look-up, Message-Authenticator, retransmissions, answers;
- ``modes``: ``code``, ``password+code``, ``challenge`` on the engine (``mfa_services.engine``);
- ``dedupe``: the retransmission cache (RFC 5080);
- ``commands``: what the CLI runs (imported lazily by ``mfa_core.cli``);
- ``dictionary``: the RADIUS attributes pyrad decodes and encodes.

Importing this package imports nothing else: pyrad is loaded by ``server`` only.
"""
