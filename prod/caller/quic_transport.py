"""The caller's QUIC/MoQT transport (:class:`QuicCallerTransport`, one
:class:`~clutchcall.prod.caller.client.CallerTransport`); its MoQT session is
:mod:`clutchcall.prod.caller.moqt_client`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.caller.client import CallerTransport
from clutchcall.prod.ingress.ackdelay import ACK_DELAY_MS, check_ack_delay


class QuicCallerTransport(CallerTransport):
    """MoQT draft-14 over raw QUIC (aioquic or qh3 2.x, ``quic_core``): publishes caller-audio,
    subscribes agent-audio + control; audio in DATAGRAMs where negotiated (``audio_transport``
    "auto") or on streams ("stream")."""

    name = "quic"

    def __init__(
        self, host: str, port: int, *, token: str, call_id: str, codec: str, rate: int, frame_ms: int = 20,
        cafile: str | None = None, session_ticket: Any = None, ticket_sink: Callable[[Any], None] | None = None,
        server_name: str = "localhost", timeout_s: float = 5.0, ack_delay_ms: float = ACK_DELAY_MS,
        close_timeout_s: float = 1.0, quic_core: str | None = None, audio_transport: str = "auto",
        offer_datagrams: bool = True,
    ) -> None:
        from clutchcall.prod.quic.core import get_core

        self.core = get_core(quic_core)  # None: the default; ConfigError if unknown / not installed
        if audio_transport not in ("auto", "stream"):
            raise ConfigError(f"audio_transport must be auto or stream, got {audio_transport!r}")
        self.audio_transport = audio_transport
        # False: do not advertise max_datagram_frame_size (a peer without DATAGRAM support;
        # honoured by aioquic; qh3 2.x clients always advertise it)
        self.offer_datagrams = offer_datagrams
        self.host, self.port = host, port
        self.token, self.call_id = token, call_id
        self.ack_delay_ms = check_ack_delay(ack_delay_ms)
        self.close_timeout_s = close_timeout_s
        self.closes_cut_short = 0
        self.codec, self.rate, self.frame_ms = codec, rate, frame_ms
        self.cafile, self.session_ticket, self.ticket_sink = cafile, session_ticket, ticket_sink
        self.server_name = server_name
        self.timeout_s = timeout_s
        self._cm: Any = None
        self.proto: Any = None

    async def connect(self) -> None:
        from clutchcall.prod.caller.moqt_client import caller_protocol_class
        from clutchcall.prod.moqt.wire import MOQT_ALPN

        qc = self.core.client_configuration(alpn=[MOQT_ALPN], server_name=self.server_name,
                                            cafile=self.cafile, session_ticket=self.session_ticket,
                                            **({} if self.offer_datagrams else {"max_datagram_frame_size": None}))
        proto_cls = caller_protocol_class(self.core)
        self._cm = self.core.connect(
            self.host, self.port, configuration=qc, wait_connected=False,
            create_protocol=lambda *a, **k: proto_cls(*a, transport=self, **k),
            session_ticket_handler=self.ticket_sink,
        )
        self.proto = await self._cm.__aenter__()
        from clutchcall.prod.ingress.udpbuf import CALLER_RCVBUF_BYTES, ensure_rcvbuf

        ensure_rcvbuf(self.proto._transport.get_extra_info("socket"), CALLER_RCVBUF_BYTES)
        self.proto.start_session()
        await asyncio.wait_for(self.proto.ready.wait(), self.timeout_s)
        if self.proto.error is not None:
            raise self.proto.error
        self.session_resumed = self.proto.session_resumed
        self.early_data_accepted = self.proto.early_data_accepted

    async def send_frame(self, seq: int, payload: bytes) -> None:
        self.proto.send_frame(seq, payload)

    async def hangup(self) -> None:
        # CONNECTION_CLOSE goes out at once; aioquic then holds the connection in its closing
        # state for 3 PTOs (to answer stray packets) before the context manager returns. After
        # a congested stretch the PTO can be seconds, and a caller has nothing left to say:
        # wait at most close_timeout_s, then drop the socket (the edge ends the call either way).
        if self.proto is not None:
            self.proto.hangup()
        if self._cm is not None:
            cm, self._cm = self._cm, None
            try:
                await asyncio.wait_for(cm.__aexit__(None, None, None), self.close_timeout_s)
            except TimeoutError:  # (before OSError: TimeoutError is one)
                self.closes_cut_short += 1
                transport = getattr(self.proto, "_transport", None)
                if transport is not None:
                    transport.close()
            except (ConnectionError, OSError):  # connection already gone
                pass
