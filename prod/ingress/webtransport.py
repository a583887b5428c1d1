"""WebTransport ingress: the same MoQT draft-14 call over HTTP/3 WebTransport (browsers).

Theory of operation
-------------------
A browser cannot open raw QUIC connections; it can open a WebTransport session, which is an
HTTP/3 extended CONNECT (``:protocol webtransport``) on a QUIC connection with ALPN ``h3``.
Inside that session it gets what MoQT needs: bidirectional and unidirectional streams and
datagrams. So this module is only a framing layer around the raw-QUIC edge's MoQT session:

* :class:`WebTransportProtocol` subclasses :class:`~clutchcall.prod.ingress.quic.EdgeProtocol`
  (all MoQT rules, auth, codec negotiation, the call itself are inherited unchanged). It runs
  aioquic's :class:`~aioquic.h3.connection.H3Connection` (``enable_webtransport=True``) over
  the QUIC connection, accepts one CONNECT to :data:`WT_PATH` (``/moq``) and turns the
  session's events back into the QUIC events the MoQT edge already handles: a
  ``WebTransportStreamDataReceived`` becomes a ``StreamDataReceived`` on the same stream ID
  (the caller's first bidirectional stream is the MoQT control stream, its unidirectional
  streams carry objects), a ``DatagramReceived`` becomes a ``DatagramFrameReceived``.
* Sending: the edge opens its unidirectional streams with ``create_webtransport_stream``
  (which writes the WebTransport stream header), then writes MoQT bytes on them exactly as on
  raw QUIC; control bytes go back on the caller's bidirectional stream.
* Closing: a MoQT termination code closes the *WebTransport session* with that code
  (CLOSE_WEBTRANSPORT_SESSION capsule on the CONNECT stream, then FIN), so a page sees the
  same code in ``WebTransport.closed`` (``closeCode``) that a raw-QUIC caller sees as the QUIC
  application error; the QUIC connection is closed a moment later.

Other requests on the HTTP/3 connection (a GET, a CONNECT to another path or protocol, a
second session) are answered 404 / 400 / 409 and counted; they never reach MoQT. Bad input in
the session is the raw-QUIC edge's: the same :class:`~clutchcall.prod.moqt.wire.MoqtError`
with the same termination codes, counted in ``stats["closed_<CODE>"]``.

:class:`WebTransportIngress` serves this on a UDP port with asyncio datagram I/O (browser
callers, not the data-plane benchmark path) and hands calls (``transport == "webtransport"``)
to the same :class:`~clutchcall.prod.ingress.call.CallHandler` as the other ingresses.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    ProtocolNegotiated,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from clutchcall.prod.ingress.auth import TokenAuthority
from clutchcall.prod.ingress.call import CallHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import EdgeProtocol, QuicCall, QuicIngress
from clutchcall.prod.ingress.tls import ensure_self_signed
from clutchcall.prod.moqt.wire import MoqtError, TerminationCode
from clutchcall.prod.quic.core import get_core

log = logging.getLogger("clutchcall.ingress.webtransport")

#: the path of the MoQT WebTransport session (``https://HOST:PORT/moq``)
WT_PATH = b"/moq"
#: CLOSE_WEBTRANSPORT_SESSION capsule type (draft-ietf-webtrans-http3)
CLOSE_WEBTRANSPORT_SESSION = 0x2843
#: how long after the close capsule the QUIC connection itself is closed
CLOSE_LINGER_S = 0.2


def close_session_capsule(code: int, reason: str) -> bytes:
    """Return a CLOSE_WEBTRANSPORT_SESSION capsule: 32-bit ``code`` and a UTF-8 ``reason``
    (at most 1024 bytes, as the draft requires; longer is cut)."""
    value = (code & 0xFFFFFFFF).to_bytes(4, "big") + reason.encode("utf-8", "replace")[:1024]
    return encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(len(value)) + value


class WebTransportCall(QuicCall):
    """A call whose MoQT session runs inside a WebTransport session (a browser caller)."""

    transport = "webtransport"


class WebTransportProtocol(EdgeProtocol, QuicConnectionProtocol):
    """One HTTP/3 connection carrying (at most) one WebTransport session = one MoQT call."""

    call_class = WebTransportCall
    coalesce_acks = False  # the HTTP/3 layer's events do not pass EdgeSession._on_quic_event
    core = get_core("aioquic")  # HTTP/3 and WebTransport are aioquic's h3 layer

    def _agent_datagrams(self) -> bool:
        """Agent audio stays on WebTransport streams: a raw QUIC DATAGRAM is not an HTTP/3
        datagram of this session (the quarter-stream-ID prefix), so the edge's datagram path
        does not apply here."""
        return False

    def __init__(self, *args: Any, ingress: QuicIngress, **kwargs: Any) -> None:
        super().__init__(*args, ingress=ingress, **kwargs)
        self._h3: H3Connection | None = None
        self.session_id: int | None = None

    # ---------------------------------------------------------------- QUIC -> H3 -> MoQT

    def _on_quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol not in H3_ALPN:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"ALPN {event.alpn_protocol!r}")
            self._h3 = H3Connection(self._quic, enable_webtransport=True)
            return
        if isinstance(event, (HandshakeCompleted, ConnectionTerminated)):
            super()._on_quic_event(event)
            return
        if self._h3 is None or not self.handshake_done:
            return  # no 0-RTT on this ingress: nothing is acted on before the handshake
        for h3_event in self._h3.handle_event(event):
            self._on_h3_event(h3_event)
        if isinstance(event, StreamReset):
            self.moqt.stream_reset(event.stream_id)
        self.transmit()

    def _on_h3_event(self, event: H3Event) -> None:
        assert self._h3 is not None
        if isinstance(event, HeadersReceived):
            self._on_request(event)
        elif isinstance(event, WebTransportStreamDataReceived):
            if event.session_id != self.session_id:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION,
                                f"WebTransport stream of unknown session {event.session_id}")
            # the MoQT edge sees the very stream ID and bytes a raw-QUIC caller would send
            self._on_stream_event(StreamDataReceived(data=event.data, end_stream=event.stream_ended,
                                                     stream_id=event.stream_id))
        elif isinstance(event, DatagramReceived):
            if event.stream_id != self.session_id:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "datagram of unknown session")
            self._on_stream_event(DatagramFrameReceived(data=event.data))

    def _on_request(self, event: HeadersReceived) -> None:
        assert self._h3 is not None
        headers = dict(event.headers)
        method, protocol = headers.get(b":method"), headers.get(b":protocol")
        path = headers.get(b":path", b"").split(b"?", 1)[0]
        status = b"200"
        if method != b"CONNECT" or protocol != b"webtransport":
            status = b"404" if method != b"CONNECT" else b"400"
        elif path != WT_PATH:
            status = b"404"
        elif self.session_id is not None:
            status = b"409"  # one call per connection
        if status != b"200":
            self.ingress.stats[f"wt_refused_{status.decode()}"] += 1
            self._h3.send_headers(event.stream_id, [(b":status", status)], end_stream=True)
            return
        self.session_id = event.stream_id
        self.ingress.stats["wt_sessions"] += 1
        self._h3.send_headers(event.stream_id, [(b":status", b"200"),
                                                (b"sec-webtransport-http3-draft", b"draft02")])

    # ---------------------------------------------------------------- framing hooks

    def _new_uni_stream(self) -> int:
        assert self._h3 is not None and self.session_id is not None
        return self._h3.create_webtransport_stream(self.session_id, is_unidirectional=True)

    def _close_connection(self, code: int, reason: str) -> None:
        if self._h3 is None or self.session_id is None:
            self._quic.close(error_code=code, reason_phrase=reason)
            return
        # close the WebTransport session with the MoQT code; the page reads it in `closed`
        self._quic.send_stream_data(self.session_id, self._data_frame(close_session_capsule(code, reason)),
                                    end_stream=True)
        self.session_id = None
        asyncio.get_running_loop().call_later(CLOSE_LINGER_S, self._close_quic, code, reason)

    @staticmethod
    def _data_frame(payload: bytes) -> bytes:
        # capsules ride in HTTP/3 DATA frames (type 0x0) on the CONNECT stream
        return encode_uint_var(0x0) + encode_uint_var(len(payload)) + payload

    def _close_quic(self, code: int, reason: str) -> None:
        self._quic.close(error_code=code, reason_phrase=reason)
        self.transmit()


class WebTransportIngress(QuicIngress):
    """Serves MoQT calls over WebTransport on UDP ``host:port`` (see module docstring).

    ``sock``: an already-bound UDP socket (the web server binds TCP and UDP on one port
    number, see :mod:`clutchcall.prod.web.server`); else ``config.host`` and ``port``.
    """

    def __init__(self, config: IngressConfig, handler: CallHandler, authority: TokenAuthority | None = None,
                 sock: socket.socket | None = None, port: int = 0) -> None:
        super().__init__(config, handler, authority=authority, sock=sock)
        self._port = port
        self._endpoint: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        """Bind (or use the given socket) and serve; return the UDP port. Raises OSError."""
        if self.cert_path is None:
            cert, key = ensure_self_signed(self.config.cert_dir)
            self.cert_path, self.key_path = str(cert), str(key)
        assert self.key_path is not None
        qc = QuicConfiguration(is_client=False, alpn_protocols=list(H3_ALPN), max_datagram_frame_size=65536,
                               idle_timeout=self.config.idle_timeout_s)
        qc.load_cert_chain(self.cert_path, self.key_path)
        loop = asyncio.get_running_loop()
        kw: dict[str, Any] = {"sock": self._sock} if self._sock is not None else {
            "local_addr": (self.config.host, self._port)}
        transport, server = await loop.create_datagram_endpoint(
            lambda: QuicServer(configuration=qc,
                               create_protocol=lambda *a, **k: WebTransportProtocol(*a, ingress=self, **k)),
            **kw)
        self._server = server
        self._endpoint = transport
        self.io_kind = "asyncio"
        self.port = int(transport.get_extra_info("sockname")[1])
        log.info("WebTransport ingress on %s:%d%s", self.config.host, self.port, WT_PATH.decode())
        return self.port
