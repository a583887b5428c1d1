"""The QUIC and WebSocket ingresses on sockets the edge chooses: native datagram I/O, shards.

Theory of operation: the caller-leg ingresses bind their own sockets through aioquic's
``serve()`` and websockets' ``serve()``. For ``serve --io uring`` and ``serve --shards N`` the
edge needs two things more: the QUIC ingress fed by :mod:`clutchcall.native`'s batched datagram
I/O (``open_udp_io``: the io_uring reactor, or asyncio with one log line when io_uring is not
built or the kernel refuses it), and both ingresses on sockets bound elsewhere (a shard's
steered SO_REUSEPORT UDP socket; a SO_REUSEPORT TCP listener). :class:`NativeQuicIngress`
subclasses the QUIC ingress and swaps only how it binds: aioquic's own ``QuicServer`` runs
over the native I/O (``clutchcall.native.aio_bridge.serve_quic``), so each received batch is
fed datagram by datagram to aioquic's sans-IO ``QuicConnection.receive_datagram`` and the
replies to a batch leave as one ``send_batch``. :class:`SocketWsIngress` serves WebSocket/TLS
on a given listening socket. Everything else (MoQT, calls, auth) is the ingresses' own code.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from clutchcall.prod.ingress.quic import EdgeProtocol, QuicIngress
from clutchcall.prod.ingress.tls import ensure_self_signed, server_ssl_context
from clutchcall.prod.ingress.ws import MAX_MESSAGE_BYTES, WsIngress

log = logging.getLogger("clutchcall.edge")


class NativeQuicIngress(QuicIngress):
    """The QUIC/MoQT ingress over ``clutchcall.native`` datagram I/O of ``io_kind``
    (``uring``, ``asyncio`` or ``auto``), on ``sock`` if given. :attr:`io_kind` is the kind
    actually running after :meth:`start` (``asyncio`` after a fallback)."""

    def __init__(self, *args: Any, io_kind: str = "uring", sock: socket.socket | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requested_io = io_kind
        self.io_kind = "?"
        self._sock = sock

    async def start(self) -> int:
        """Bind (or take the given socket), start the native I/O and serve; return the UDP
        port. Raises OSError if binding fails or io_uring fails for another reason than the
        kernel refusing it."""
        from aioquic.quic.configuration import QuicConfiguration
        from clutchcall.native.aio_bridge import serve_quic
        from clutchcall.native.udpio import open_udp_io
        from clutchcall.prod.moqt.wire import MOQT_ALPN

        if self.cert_path is None:
            cert, key = ensure_self_signed(self.config.cert_dir)
            self.cert_path, self.key_path = str(cert), str(key)
        qc = QuicConfiguration(is_client=False, alpn_protocols=[MOQT_ALPN], max_datagram_frame_size=65536,
                               idle_timeout=self.config.idle_timeout_s)
        qc.load_cert_chain(self.cert_path, self.key_path)
        io = open_udp_io(self.requested_io, self.config.host, self.config.quic_port, sock=self._sock)
        self.io_kind = io.kind
        if self.requested_io == "uring" and io.kind != "uring":
            log.warning("serve --io uring: io_uring unavailable, QUIC ingress on asyncio datagram I/O")
        self._server = await serve_quic(
            io, configuration=qc,
            create_protocol=lambda *a, **k: EdgeProtocol(*a, ingress=self, **k),
            session_ticket_fetcher=self.tickets.pop, session_ticket_handler=self.tickets.add)
        self.port = int(io.local_address[1])
        return self.port


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
