"""A Python caller over WebTransport: the browser's transport, for tests and ``bench callerleg``.

Theory of operation
-------------------
:class:`WebTransportCallerTransport` is :class:`~clutchcall.prod.caller.quic_transport.QuicCallerTransport`
with a WebTransport session in between: it connects with ALPN ``h3``, runs aioquic's
:class:`~aioquic.h3.connection.H3Connection` (``enable_webtransport=True``), sends the extended
CONNECT (``:protocol webtransport``) to ``/moq`` and, once the edge answers 200, runs the very
same MoQT caller (:class:`~clutchcall.prod.caller.moqt_client.CallerProtocol`) on streams it
opens inside the session. WebTransport stream data is handed to the MoQT caller as the
QUIC stream events it already understands. A CLOSE_WEBTRANSPORT_SESSION capsule from the edge
sets ``close_code`` / ``close_reason`` (the MoQT termination code), as a QUIC
CONNECTION_CLOSE does for a raw-QUIC caller. Headers other than 200 fail the connect with
:class:`ConnectionError` naming the status.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
)

from clutchcall.prod.caller.moqt_client import CallerProtocol
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.ingress.webtransport import CLOSE_WEBTRANSPORT_SESSION, WT_PATH
from clutchcall.prod.quic.core import get_core


class WebTransportCallerProtocol(CallerProtocol, QuicConnectionProtocol):
    """The MoQT caller inside one WebTransport session (see module docstring)."""

    core = get_core("aioquic")  # HTTP/3 and WebTransport are aioquic's h3 layer
    coalesce_acks = False  # the MoQT session sees its HTTP/3 events only in part (as the edge's)

    def audio_transport(self) -> str:
        """Caller audio stays on WebTransport streams (a raw QUIC DATAGRAM is not an HTTP/3
        datagram of this session)."""
        return "stream"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # from the start, so the edge's HTTP/3 control streams never reach the MoQT caller
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.session_status: int | None = None
        self.session_open = asyncio.Event()
        self._capsules = b""

    def open_session(self, authority: str, path: bytes = WT_PATH) -> None:
        """Send the extended CONNECT for the WebTransport session."""
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path), (b"origin", f"https://{authority}".encode()),
        ])
        self.session_id = sid
        self.transmit()

    def _new_stream(self, unidirectional: bool) -> int:
        assert self.session_id is not None
        sid = self.h3.create_webtransport_stream(self.session_id, is_unidirectional=unidirectional)
        if not unidirectional:
            # aioquic (1.2) marks a bidirectional WebTransport stream as such only when the peer
            # opened it; mark ours too, so the edge's replies on it are WebTransport data and
            # not parsed as HTTP/3 frames
            with self.h3._get_or_create_stream(sid) as stream:
                stream.frame_type = FrameType.WEBTRANSPORT_STREAM
                stream.session_id = self.session_id
        return sid

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, (HandshakeCompleted, ConnectionTerminated)):
            if isinstance(event, ConnectionTerminated):
                self.session_open.set()
            super().quic_event_received(event)
            return
        for h in self.h3.handle_event(event):
            if isinstance(h, HeadersReceived) and h.stream_id == self.session_id:
                self.session_status = int(dict(h.headers).get(b":status", b"0"))
                self.session_open.set()
            elif isinstance(h, DataReceived) and h.stream_id == self.session_id:
                self._on_capsules(h.data)
            elif isinstance(h, WebTransportStreamDataReceived):
                super().quic_event_received(StreamDataReceived(data=h.data, end_stream=h.stream_ended,
                                                               stream_id=h.stream_id))
        self.transmit()

    def _on_capsules(self, data: bytes) -> None:
        self._capsules += data
        while self._capsules:
            buf = Buffer(data=self._capsules)
            try:
                ctype, length = buf.pull_uint_var(), buf.pull_uint_var()
                value = buf.pull_bytes(length)
            except BufferReadError:
                return
            self._capsules = self._capsules[buf.tell():]
            if ctype == CLOSE_WEBTRANSPORT_SESSION and len(value) >= 4 and self.close_code is None:
                self.close_code = int.from_bytes(value[:4], "big")
                self.close_reason = value[4:].decode("utf-8", "replace")
                self._fail(ConnectionError(f"edge closed the session: code {self.close_code:#x} {self.close_reason}"))
                cb = getattr(self.t, "on_closed", None)
                if cb is not None:
                    cb(self.close_reason)


class WebTransportCallerTransport(QuicCallerTransport):
    """MoQT over WebTransport (HTTP/3) with aioquic: what a browser caller does, in Python."""

    name = "webtransport"

    async def connect(self) -> None:
        """Connect, open the WebTransport session and the MoQT session. Raises ConnectionError
        (refused session / MoQT setup) or TimeoutError."""
        from aioquic.asyncio import connect
        from aioquic.quic.configuration import QuicConfiguration

        qc = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN), server_name=self.server_name,
                               max_datagram_frame_size=65536)
        if self.cafile:
            qc.load_verify_locations(self.cafile)
        else:
            qc.verify_mode = ssl.CERT_NONE
        self._cm = connect(self.host, self.port, configuration=qc, wait_connected=True,
                           create_protocol=lambda *a, **k: WebTransportCallerProtocol(*a, transport=self, **k))
        self.proto = await asyncio.wait_for(self._cm.__aenter__(), self.timeout_s)
        self.proto.open_session(f"{self.server_name}:{self.port}")
        await asyncio.wait_for(self.proto.session_open.wait(), self.timeout_s)
        if self.proto.session_status != 200:
            raise ConnectionError(f"WebTransport session refused: status {self.proto.session_status}")
        self.proto.start_session()
        await asyncio.wait_for(self.proto.ready.wait(), self.timeout_s)
        if self.proto.error is not None:
            raise self.proto.error
        self.session_resumed = self.early_data_accepted = False
