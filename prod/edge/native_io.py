"""Sockets the edge chooses for its ingresses: a shard's SO_REUSEPORT listeners.

Theory of operation: for ``serve --shards N`` every shard serves on sockets bound before the
fork -- one steered SO_REUSEPORT UDP socket for QUIC (passed as ``QuicIngress(config, handler,
sock=...)``, which runs on :mod:`clutchcall.native` datagram I/O of kind ``IngressConfig.io``:
see ``prod/ingress/dataplane.py``) and one SO_REUSEPORT TCP listener for WebSocket/TLS.
:class:`SocketWsIngress` serves WebSocket/TLS on such a listener; :func:`bind_tcp_reuseport`
makes one. Everything else (MoQT, calls, auth) is the ingresses' own code.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from clutchcall.prod.ingress.tls import ensure_self_signed, server_ssl_context
from clutchcall.prod.ingress.ws import MAX_MESSAGE_BYTES, WsIngress

log = logging.getLogger("clutchcall.edge")


class SocketWsIngress(WsIngress):
    """The WebSocket/TLS ingress serving on an already-bound TCP socket (e.g. SO_REUSEPORT)."""

    def __init__(self, *args: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sock = sock

    async def start(self, tls: bool = True) -> int:
        """Serve on the socket; return its TCP port."""
        from websockets.asyncio.server import serve

        ctx = None
        if tls:
            if self.cert_path is None:
                cert, key = ensure_self_signed(self.config.cert_dir)
                self.cert_path, self.key_path = str(cert), str(key)
            assert self.key_path is not None
            ctx = server_ssl_context(self.cert_path, self.key_path)
        self._server = await serve(self._serve, sock=self._sock, ssl=ctx, max_size=MAX_MESSAGE_BYTES,
                                   open_timeout=self.config.setup_timeout_s)
        self.port = int(self._sock.getsockname()[1])
        return self.port


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
