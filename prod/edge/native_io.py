"""Sockets the edge chooses for its ingresses: a shard's SO_REUSEPORT listeners.

Theory of operation: for ``serve --shards N`` every shard serves on sockets bound before the
fork -- one steered SO_REUSEPORT UDP socket for QUIC (passed as ``QuicIngress(config, handler,
sock=...)``, which runs on :mod:`clutchcall.native` datagram I/O of kind ``IngressConfig.io``:
see ``prod/ingress/dataplane.py``) and one SO_REUSEPORT TCP listener for WebSocket/TLS (passed as ``WsIngress(..., sock=...)``).
:func:`bind_tcp_reuseport` makes that listener.
"""

from __future__ import annotations

import socket


def bind_tcp_reuseport(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on (host, port) with SO_REUSEPORT (port 0: a free one).
    Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        s.listen(1024)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s
