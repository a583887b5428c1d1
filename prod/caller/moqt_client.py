"""The caller's side of a MoQT call on aioquic (used by QuicCallerTransport).

Theory of operation
-------------------
On ``start_session`` the caller opens its control stream and pipelines CLIENT_SETUP (token,
codec), PUBLISH_NAMESPACE ``("clutchcall", CALL_ID)`` and SUBSCRIBEs to ``agent-audio`` and
``control``. With a session ticket this whole flight leaves as 0-RTT data (the edge holds it
until the handshake completes). The session is *ready* once the edge's SUBSCRIBE to
``caller-audio`` has been accepted and both of our subscriptions are accepted. Each caller
frame then goes out as one object (group = frame sequence): in one QUIC DATAGRAM
(OBJECT_DATAGRAM) when the edge advertised ``max_datagram_frame_size`` and the transport's
``audio_transport`` is ``"auto"``, else on a new unidirectional stream. Agent-audio objects
(from streams or datagrams) and control objects (JSON) are handed to the transport's callbacks.
Hanging up sends PUBLISH_DONE for caller-audio and closes the connection.

Once the session is ready, a UDP datagram that carried agent audio only (DATAGRAMs, or
agent-audio objects on their streams) sends nothing at once: its ACK rides the caller's next
frame (sent every 20 ms) or leaves within 23 ms when the caller sends none
(:mod:`clutchcall.prod.quic.ackcoalesce`, the edge's rule too; under the 25 ms
``max_ack_delay`` both cores advertise). Anything else -- control objects, SUBSCRIBEs, the
handshake, a close -- is answered at once.

The QUIC core (aioquic or qh3 2.x) comes from :mod:`clutchcall.prod.quic`:
:func:`caller_protocol_class` puts :class:`CallerSession` on top of its protocol class.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from clutchcall.prod.ingress.config import (
    NAMESPACE_ROOT,
    PARAM_CODEC,
    TRACK_AGENT_AUDIO,
    TRACK_CALLER_AUDIO,
    TRACK_CONTROL,
    codec_param,
)
from clutchcall.prod.moqt.session import (
    GoawayReceived,
    MoqtSession,
    NamespaceRejected,
    ObjectReceived,
    PublishDoneReceived,
    SubscribeAccepted,
    SubscribeReceived,
    SubscribeRejected,
)
from clutchcall.prod.moqt.wire import (
    AuthToken,
    MoqtError,
    SetupParam,
    TerminationCode,
    encode_object_datagram,
    object_datagram_prefix,
    params_from,
)
from clutchcall.prod.quic.ackcoalesce import AckCoalescing
from clutchcall.prod.quic.core import QuicCore

QuicEvent = Any
DATAGRAM_MIN_FRAME_SIZE = 1200  # as the edge's: a peer accepting 1200-byte DATAGRAMs takes audio


class CallerSession(AckCoalescing):
    """The caller's MoQT session on one QUIC connection (see module docstring)."""

    coalesce_acks = True
    """Agent audio's ACKs wait for the next send (module docstring); a framing whose events
    this class does not see whole (WebTransport's HTTP/3) turns it off."""

    core: QuicCore  # set by caller_protocol_class
    _quic: Any
    _transport: Any
    transmit: Any

    def __init__(self, *args: Any, transport: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.t = transport
        self.core.set_ack_delay(self._quic, transport.ack_delay_ms)
        self._audio_mode: str | None = None  # "datagram" / "stream" once decided
        self.datagram_frames_sent = 0
        self._dg_prefix: tuple[int, bytes] | None = None  # (alias, OBJECT_DATAGRAM prefix)
        self.moqt = MoqtSession("client")
        self.ready = asyncio.Event()
        self.error: Exception | None = None
        self.session_resumed = False
        self.early_data_accepted = False
        self._control_sid: int | None = None
        self._ns = (NAMESPACE_ROOT, transport.call_id.encode())
        self._agent_rid: int | None = None
        self._control_rid: int | None = None
        self._accepted: set[int] = set()
        self._caller_audio_alias: int | None = None
        self._caller_audio_rid: int | None = None
        self.goaway = False
        self.publish_dones: list[Any] = []
        self.close_code: int | None = None
        self.close_reason = ""

    def _new_stream(self, unidirectional: bool) -> int:
        """Open a stream for MoQT (a WebTransport caller opens it inside its session); return its ID."""
        return self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)

    def start_session(self) -> None:
        sid = self._new_stream(False)
        self._control_sid = sid
        token = AuthToken(value=self.t.token.encode()).encode()
        params = params_from({
            SetupParam.PATH: b"/clutchcall",
            SetupParam.AUTHORIZATION_TOKEN: token,
            PARAM_CODEC: codec_param(self.t.codec, self.t.rate, self.t.frame_ms),
        })
        out = [self.moqt.client_setup(params)]
        _, ns = self.moqt.publish_namespace(self._ns)
        out.append(ns)
        self._agent_rid, sub_a = self.moqt.subscribe(self._ns, TRACK_AGENT_AUDIO, priority=0)
        self._control_rid, sub_c = self.moqt.subscribe(self._ns, TRACK_CONTROL, priority=0)
        out += [sub_a, sub_c]
        self._quic.send_stream_data(sid, b"".join(out))
        self.transmit()

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self.ready.set()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        """A UDP datagram from the edge (the core protocol's ``datagram_received``); see the
        module docstring for when its ACK waits."""
        if self._coalescing():
            self._receive_coalescing_ack(data if isinstance(data, bytes) else data.encode(), addr)
        else:
            super().datagram_received(data, addr)  # type: ignore[misc]

    def datagrams_received(self, data: list[bytes], addr: Any) -> None:
        """A batch of UDP datagrams from the edge (qh3's client transport reads in batches)."""
        if self._coalescing():
            self._receive_coalescing_ack(data, addr)
            return
        batch = getattr(super(), "datagrams_received", None)
        if batch is not None:
            batch(data, addr)
        else:
            for d in data:
                super().datagram_received(d, addr)  # type: ignore[misc]

    def _coalescing(self) -> bool:
        return (self.coalesce_acks and self.ready.is_set() and self.error is None
                and self.close_code is None)

    def quic_event_received(self, event: QuicEvent) -> None:
        try:
            self._on_event(event)
        except MoqtError as err:
            self._fail(err)
            self._quic.close(error_code=int(err.code), reason_phrase=err.reason[:200])
            self.transmit()

    def _on_event(self, event: QuicEvent) -> None:
        core = self.core
        if not isinstance(event, (core.DatagramFrameReceived, core.StreamDataReceived)):
            self._rx_media_only = False  # (the handshake, a close, ...: answered at once)
        if isinstance(event, core.HandshakeCompleted):
            self.session_resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
        elif isinstance(event, core.ConnectionTerminated):
            self.close_code = event.error_code
            self.close_reason = event.reason_phrase
            self._fail(ConnectionError(f"edge closed the session: code {event.error_code:#x} {event.reason_phrase}"))
            cb = getattr(self.t, "on_closed", None)
            if cb is not None:
                cb(event.reason_phrase)
        elif isinstance(event, core.DatagramFrameReceived):
            hit = self.moqt.receive_object_datagram(event.data)  # agent audio: the common case
            if hit is not None:  # an object: as _on_moqt's ObjectReceived (readiness unchanged)
                self._on_object(hit[0].request_id, hit[2])
                if hit[0].request_id != self._agent_rid:
                    self._rx_media_only = False
                return
            events = self.moqt.receive_datagram(event.data)
            for ev in events:
                self._on_moqt(ev)
            if not self._only_agent_audio(events):
                self._rx_media_only = False
        elif isinstance(event, core.StreamDataReceived):
            if event.stream_id == self._control_sid:
                events = self.moqt.receive_control(event.data, event.end_stream)
            elif event.stream_id % 4 == 3:  # server-initiated unidirectional
                events = self.moqt.receive_data_stream(event.stream_id, event.data, event.end_stream)
            else:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"unexpected stream {event.stream_id}")
            for ev in events:
                self._on_moqt(ev)
            if event.stream_id == self._control_sid or not self._only_agent_audio(events):
                self.transmit()
            # agent audio on its stream only: nothing to send but its ACK (datagram_received)

    def _only_agent_audio(self, events: list[Any]) -> bool:
        """True if ``events`` are agent-audio objects only (or none: a part of one)."""
        rid = self._agent_rid
        return all(isinstance(ev, ObjectReceived) and ev.request.request_id == rid for ev in events)

    def _on_moqt(self, ev: Any) -> None:
        if isinstance(ev, SubscribeReceived):
            msg = ev.message
            if msg.namespace == self._ns and msg.track_name == TRACK_CALLER_AUDIO:
                self._caller_audio_alias, out = self.moqt.subscribe_ok(msg)
                self._caller_audio_rid = msg.request_id
            else:
                out = self.moqt.subscribe_error(msg, 0x4, "no such track")
            assert self._control_sid is not None
            self._quic.send_stream_data(self._control_sid, out)
        elif isinstance(ev, PublishDoneReceived):
            self.publish_dones.append(ev.message)
        elif isinstance(ev, GoawayReceived):
            self.goaway = True
            self.t.on_control({"type": "info", "goaway": ev.new_session_uri.decode("utf-8", "replace")})
        elif isinstance(ev, SubscribeAccepted):
            self._accepted.add(ev.request.request_id)
        elif isinstance(ev, (SubscribeRejected, NamespaceRejected)):
            self._fail(ConnectionError(f"edge refused: {ev.message.reason}"))
        elif isinstance(ev, ObjectReceived):
            self._on_object(ev.request.request_id, ev.object.payload)
        if (
            self._caller_audio_alias is not None
            and self._agent_rid in self._accepted
            and self._control_rid in self._accepted
        ):
            self.ready.set()

    def _on_object(self, request_id: int, payload: bytes) -> None:
        """An object of the subscription ``request_id``: agent audio or a control event."""
        if request_id == self._agent_rid and payload:
            self.t.on_agent_audio(payload)
        elif request_id == self._control_rid and payload:
            try:
                event = json.loads(payload)
            except ValueError:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "control object is not JSON") from None
            self.t.on_control(event)

    def audio_transport(self) -> str:
        """Return how caller audio goes: "datagram" if both ends negotiated DATAGRAM frames (we
        offered them, the edge advertised a ``max_datagram_frame_size`` large enough for a frame)
        and the transport's ``audio_transport`` allows it, else "stream" (decided once)."""
        if self._audio_mode is None:
            mode = "stream"
            if getattr(self.t, "audio_transport", "auto") != "stream" and getattr(self.t, "offer_datagrams", True):
                peer = self.core.peer_max_datagram_frame_size(self._quic)
                if peer is not None and peer >= DATAGRAM_MIN_FRAME_SIZE:
                    mode = "datagram"
            self._audio_mode = mode
        return self._audio_mode

    def send_frame(self, seq: int, payload: bytes) -> None:
        try:
            self._send_frame(seq, payload)
        except self.core.QuicConnectionError:  # qh3: the edge closed meanwhile (we hear of it next)
            pass

    def _send_frame(self, seq: int, payload: bytes) -> None:
        if self._caller_audio_alias is None or self.close_code is not None:
            return
        if self.audio_transport() == "datagram":
            self.send_datagram_frame(seq, payload)
            return
        sid = self._new_stream(True)
        self._quic.send_stream_data(
            sid, MoqtSession.encode_object_stream(self._caller_audio_alias, seq, payload), end_stream=True
        )
        self.transmit()

    def send_datagram_frame(self, seq: int, payload: bytes) -> None:
        """Send one caller frame as an OBJECT_DATAGRAM instead of a stream (unreliable)."""
        if self._caller_audio_alias is None or self.close_code is not None:
            return
        alias = self._caller_audio_alias
        prefix = self._dg_prefix
        if prefix is None or prefix[0] != alias:
            prefix = self._dg_prefix = (alias, object_datagram_prefix(alias, end_of_group=True))
        # = ObjectDatagram(track_alias=alias, group_id=seq, payload=payload,
        #                  publisher_priority=0, end_of_group=True).encode()
        self._quic.send_datagram_frame(encode_object_datagram(prefix[1], seq, payload, 0))
        self.datagram_frames_sent += 1
        self.transmit()

    def hangup(self) -> None:
        if self.close_code is not None or self._control_sid is None:
            return
        try:
            if self._caller_audio_rid is not None:
                self._quic.send_stream_data(self._control_sid, self.moqt.publish_done(self._caller_audio_rid, 0x2, "hangup"))
            self._quic.close(error_code=0, reason_phrase="caller hung up")
            self.transmit()
        except self.core.QuicConnectionError:  # qh3: the edge closed meanwhile
            pass


def caller_protocol_class(core: QuicCore) -> type:
    """Return the caller's protocol class for ``core``: :class:`CallerSession` on top of the
    core's ``QuicConnectionProtocol`` (made once per core)."""
    return core.protocol_class(CallerSession)


CallerProtocol = CallerSession  # the per-core classes derive from it
