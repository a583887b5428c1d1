"""QUIC ingress: MoQT draft-14 over raw QUIC (ALPN ``moq-00``) on aioquic or qh3.

Theory of operation
-------------------
One QUIC connection is one call. The caller opens the control stream (its first
bidirectional stream) and sends CLIENT_SETUP carrying its token (AUTHORIZATION_TOKEN,
USE_VALUE) and its codec (ClutchCall parameter ``PARAM_CODEC``: ``codec/rate/frame_ms``).
The edge checks the token (refusals close the session with UNAUTHORIZED, MALFORMED_AUTH_TOKEN
or EXPIRED_AUTH_TOKEN and are counted), answers SERVER_SETUP, and then:

* the caller sends PUBLISH_NAMESPACE ``("clutchcall", CALL_ID)`` (must match the token); the
  edge answers PUBLISH_NAMESPACE_OK and SUBSCRIBEs to ``caller-audio``;
* the caller SUBSCRIBEs to ``agent-audio`` and ``control``; the edge answers SUBSCRIBE_OK.

A client that carries no AUTHORIZATION_TOKEN may put it in the setup PATH (``/?jwt=TOKEN``,
as moq-rs does); one that sends SUBSCRIBE_NAMESPACE (moq-rs, right after setup: it subscribes
only to broadcasts its peer announced) gets SUBSCRIBE_NAMESPACE_OK and, when the prefix covers
it, the edge's PUBLISH_NAMESPACE ``("clutchcall", CALL_ID)``.

When all three subscriptions stand, the call starts: a :class:`QuicCall` is handed to the
:class:`~clutchcall.prod.ingress.call.CallHandler`. Audio frames travel one per group (group ID
= frame sequence number): as one OBJECT_DATAGRAM each in a QUIC DATAGRAM frame when the peer
advertised ``max_datagram_frame_size`` (and ``IngressConfig.audio_transport`` is not
``"stream"``; agent audio only once the caller itself has sent a DATAGRAM), otherwise each on a new unidirectional subgroup stream, so a lost packet delays
only its own frame. The edge accepts caller audio either way. Control events are JSON objects
on one long-lived subgroup stream of the ``control`` track (reliable, in order). Caller frames
go through the jitter buffer, which conceals a frame lost in a datagram.

QUIC core: the ingress talks to aioquic or qh3 2.x through :mod:`clutchcall.prod.quic`
(``IngressConfig.quic_core``); :func:`edge_protocol_class` puts :class:`EdgeSession` on top of
the chosen core's protocol class.

0-RTT: the edge issues session tickets (:class:`~clutchcall.prod.ingress.tickets.TicketStore`)
and accepts early data, but every stream byte that arrives before the handshake completes is
buffered (bounded) and processed only after it completes: nothing, not even the setup, is acted
on from 0-RTT data, so a replayed 0-RTT flight (which cannot complete a handshake) has no effect.

Datagram I/O: the UDP socket is driven by the native io_uring reactor or by asyncio
(``IngressConfig.io``, see :mod:`~clutchcall.prod.ingress.dataplane`); the core's ``QuicServer``
runs over it, and the replies to one received batch leave in one send batch.

Any MoQT violation closes that session with its termination code (QUIC application error
code) and is counted; other calls are untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter
from typing import Any, cast

from clutchcall.prod.call_scheduler import CallScheduler
from clutchcall.prod.ingress.admission import PendingGate, install_quic_admission
from clutchcall.prod.ingress.auth import AuthError, TokenAuthority, token_from_path
from clutchcall.prod.ingress.call import BaseCall, CallHandler
from clutchcall.prod.ingress.codecs import CodecError, check_codec, frame_bytes
from clutchcall.prod.ingress.config import (
    NAMESPACE_ROOT,
    PARAM_CODEC,
    TRACK_AGENT_AUDIO,
    TRACK_CALLER_AUDIO,
    TRACK_CONTROL,
    IngressConfig,
    codec_param,
    parse_codec_param,
)
from clutchcall.prod.ingress.dataplane import open_ingress_io, serve_ingress_quic
from clutchcall.prod.ingress.tickets import TicketStore
from clutchcall.prod.ingress.tls import ensure_self_signed
from clutchcall.prod.ingress.udpbuf import EDGE_RCVBUF_BYTES, ensure_rcvbuf
from clutchcall.prod.moqt.session import (
    Event,
    MaxRequestIdReceived,
    MoqtSession,
    NamespacePublished,
    NamespaceSubscribed,
    ObjectReceived,
    PublishDoneReceived,
    SetupReceived,
    SubscribeAccepted,
    SubscribeReceived,
    SubscribeRejected,
    UnsubscribeReceived,
)
from clutchcall.prod.moqt.wire import (
    MOQT_ALPN,
    AuthToken,
    MoqtError,
    SetupParam,
    SubgroupHeader,
    TerminationCode,
    TokenAliasType,
    encode_object_datagram,
    encode_varint,
    object_datagram_prefix,
    param_get,
    params_from,
)
from clutchcall.prod.quic.ackcoalesce import ACK_COALESCE_MS as ACK_COALESCE_MS  # (re-exported)
from clutchcall.prod.quic.ackcoalesce import AckCoalescing
from clutchcall.prod.quic.core import QuicCore, get_core

QuicEvent = Any  # the core's event classes (aioquic or qh3), see clutchcall.prod.quic
log = logging.getLogger("clutchcall.ingress.quic")

SUBSCRIBE_ERROR_TRACK_DOES_NOT_EXIST = 0x4
SUBSCRIBE_ERROR_UNAUTHORIZED = 0x1
NAMESPACE_ERROR_UNAUTHORIZED = 0x1
PUBLISH_DONE_TRACK_ENDED = 0x2
PUBLISH_DONE_SUBSCRIPTION_ENDED = 0x3

_AUTH_CODES = {
    "missing": TerminationCode.UNAUTHORIZED,
    "forged": TerminationCode.UNAUTHORIZED,
    "wrong_call": TerminationCode.UNAUTHORIZED,
    "malformed": TerminationCode.MALFORMED_AUTH_TOKEN,
    "expired": TerminationCode.EXPIRED_AUTH_TOKEN,
}


class ControlTrackWriter:
    """Writes control events as objects of one subgroup stream (group 0), in order."""

    def __init__(self, alias: int) -> None:
        self.alias = alias
        self.next_object = 0

    def header(self) -> bytes:
        return SubgroupHeader(track_alias=self.alias, group_id=0, publisher_priority=0).encode()

    def object(self, payload: bytes) -> bytes:
        # object IDs 0, 1, 2, ...: the first delta is the ID itself (0), each next one is 0
        self.next_object += 1
        return encode_varint(0) + encode_varint(len(payload)) + payload


class QuicCall(BaseCall):
    """A call on one QUIC/MoQT session (see module docstring)."""

    transport = "quic"

    def __init__(self, proto: EdgeProtocol, **kw: Any) -> None:
        super().__init__(**kw)
        self._proto = proto
        self._agent_group = 0
        # a QUIC send never waits: the pipeline sends agent frames without a task hop
        # (BaseCall.send_agent_audio_nowait)
        self._transport_send_audio_nowait = self._send_audio_now

    async def _transport_send_audio(self, payload: bytes) -> None:
        self._send_audio_now(payload)

    def _send_audio_now(self, payload: bytes) -> None:
        self._proto.send_agent_frame(self._agent_group, payload)
        self._agent_group += 1

    async def _transport_send_control(self, event: dict[str, Any]) -> None:
        self._proto.send_control_object(json.dumps(event, separators=(",", ":")).encode())

    async def _transport_close(self, reason: str) -> None:
        # a caller ended for breaking its bounds gets PROTOCOL_VIOLATION (BaseCall.close_violation)
        self._proto.end_session(TerminationCode.PROTOCOL_VIOLATION if self.policy_violation
                                else TerminationCode.NO_ERROR, reason)


class EdgeSession(AckCoalescing):
    """One MoQT session at the edge; created by the QUIC core's server per connection, as
    :func:`edge_protocol_class` (this class on top of the core's ``QuicConnectionProtocol``).

    A transport framing subclasses it (WebTransport: clutchcall.prod.ingress.webtransport) and
    overrides the three framing hooks ``_new_uni_stream``, ``_close_connection`` and
    ``call_class``; the MoQT session rules here serve both unchanged."""

    call_class: type[QuicCall] = QuicCall
    core: QuicCore  # set by edge_protocol_class (or the framing subclass)
    _quic: Any
    _transport: Any
    _loop: Any
    _timer: Any
    _timer_at: Any
    _transmit_task: Any
    _process_events: Any
    _call_sched: CallScheduler | None = None  # the loop's batched call scheduler, once found
    coalesce_acks = True
    """Caller audio's ACKs wait for the next send (:meth:`datagram_received`); a framing whose
    events this class does not see (WebTransport's HTTP/3) turns it off."""

    def __init__(self, *args: Any, ingress: QuicIngress, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ingress = ingress
        cfg = ingress.config
        self.core.set_ack_delay(self._quic, cfg.ack_delay_ms)
        self.moqt = MoqtSession("server", max_object_bytes=cfg.max_object_bytes)
        self.handshake_done = False
        self.early_data_accepted = False
        self.session_resumed = False
        self._deferred: list[QuicEvent] = []
        self._deferred_bytes = 0
        self.deferred_events = 0
        self._control_stream_id: int | None = None
        self.call_id: str | None = None
        self.codec = ("pcm16", 16000, cfg.frame_ms)
        self._frame_size: tuple[tuple[str, int, int], int | None] | None = None  # (codec, bytes)
        self._announced = False  # this call's namespace announced to the peer (moq-rs)
        self._caller_audio_rid: int | None = None
        self._namespace_ok = False
        self._caller_audio_ok = False
        self._agent_alias: int | None = None
        self._control_alias: int | None = None
        self._control_stream: int | None = None
        self._control_writer: ControlTrackWriter | None = None
        self._agent_rid: int | None = None
        self._control_rid: int | None = None
        self._agent_streams = 0
        self._audio_mode: str | None = None  # "datagram" / "stream" once decided
        self._agent_prefix: tuple[int, bytes] | None = None  # (alias, OBJECT_DATAGRAM prefix)
        self._caller_datagrams = False  # the caller has sent a DATAGRAM (its audio uses them)
        self.call: QuicCall | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        loop = asyncio.get_running_loop()
        self._setup_timer = loop.call_later(cfg.setup_timeout_s, self._on_setup_timeout)
        self._pending_slot = ingress.gate.admit()  # released on authentication or end
        ingress.stats["sessions"] += 1
        ingress._protocols.add(self)

    # ---------------------------------------------------------------- QUIC events

    def quic_event_received(self, event: QuicEvent) -> None:
        if self._ended:
            return
        try:
            self._on_quic_event(event)
        except MoqtError as err:
            self.ingress.stats[f"closed_{err.code.name}"] += 1
            log.info("closing MoQT session: %s", err)
            self.end_session(err.code, err.reason)
        except Exception as exc:  # a bug must not take the process or other calls down
            log.exception("internal error in MoQT session")
            self.ingress.stats["closed_INTERNAL_ERROR"] += 1
            self.end_session(TerminationCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")

    def _on_quic_event(self, event: QuicEvent) -> None:
        core = self.core
        if type(event) is core.DatagramFrameReceived and self.handshake_done:
            self._on_datagram(event.data)  # caller audio: the common event, first
            return
        if not isinstance(event, (core.DatagramFrameReceived, core.StreamDataReceived)):
            self._rx_media_only = False
        if isinstance(event, core.ProtocolNegotiated):
            if event.alpn_protocol != MOQT_ALPN:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"ALPN {event.alpn_protocol!r}")
            return
        if isinstance(event, core.HandshakeCompleted):
            self.handshake_done = True
            self.early_data_accepted = event.early_data_accepted
            self.session_resumed = event.session_resumed
            if event.session_resumed:
                self.ingress.stats["resumed"] += 1
            if event.early_data_accepted:
                self.ingress.stats["zero_rtt_sessions"] += 1
            deferred, self._deferred = self._deferred, []
            for ev in deferred:
                self._on_stream_event(ev)
            return
        if isinstance(event, core.ConnectionTerminated):
            self._finish(f"connection closed: {event.reason_phrase or event.error_code}")
            return
        if isinstance(event, (core.StreamDataReceived, core.DatagramFrameReceived, core.StreamReset)):
            if not self.handshake_done:
                # 0-RTT data: buffer, act on it only once the handshake has completed
                size = len(getattr(event, "data", b""))
                self._deferred_bytes += size
                if self._deferred_bytes > self.ingress.config.max_zero_rtt_bytes:
                    raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "too much 0-RTT data")
                self._deferred.append(event)
                self.deferred_events += 1
                self.ingress.stats["zero_rtt_deferred_events"] += 1
                return
            self._on_stream_event(event)

    def _on_stream_event(self, event: QuicEvent) -> None:
        core = self.core
        if isinstance(event, core.StreamReset):
            self.moqt.stream_reset(event.stream_id)
            return
        if isinstance(event, core.DatagramFrameReceived):
            self._on_datagram(event.data)
            return
        assert isinstance(event, core.StreamDataReceived)
        sid = event.stream_id
        if not core.stream_is_client_initiated(sid):
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"data on server-initiated stream {sid}")
        if core.stream_is_unidirectional(sid):
            self._handle(self.moqt.receive_data_stream(sid, event.data, event.end_stream))
            return
        if self._control_stream_id is None:
            self._control_stream_id = sid
        elif sid != self._control_stream_id:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "second bidirectional stream")
        self._handle(self.moqt.receive_control(event.data, event.end_stream))

    def _on_datagram(self, data: bytes) -> None:
        """A QUIC DATAGRAM from the caller (after the handshake). An audio frame (the plain
        OBJECT_DATAGRAM, :meth:`MoqtSession.receive_object_datagram`) goes to the call
        directly, as :meth:`_handle` does with its ``ObjectReceived``; anything else takes
        the general path (:meth:`MoqtSession.receive_datagram`: held objects, status
        datagrams, errors)."""
        self.ingress.stats["uplink_datagrams"] += 1
        self._caller_datagrams = True
        hit = self.moqt.receive_object_datagram(data)
        if hit is None:
            self._handle(self.moqt.receive_datagram(data))
            return
        self._on_object(hit[0].request_id, hit[1], hit[2])

    def _on_object(self, request_id: int, group: int, payload: bytes) -> None:
        """An object of the subscription ``request_id``: a caller audio frame goes to the call
        (a wrong-size frame ends it: :meth:`_check_frame`); others are not the edge's."""
        call = self.call
        if call is not None and request_id == self._caller_audio_rid and payload:
            self._check_frame(payload)
            self.ingress.stats["uplink_frames"] += 1
            call.feed_uplink(group, payload)

    # ---------------------------------------------------------------- MoQT events

    def _handle(self, events: list[Event]) -> None:
        if not self.handshake_done and events:  # by construction never: 0-RTT data is deferred
            self.ingress.stats["acted_before_handshake"] += 1
        for ev in events:
            if self._ended:
                return
            if isinstance(ev, SetupReceived):
                self._on_setup(ev)
            elif isinstance(ev, NamespacePublished):
                self._on_namespace(ev)
            elif isinstance(ev, NamespaceSubscribed):
                self._on_namespace_subscribed(ev)
            elif isinstance(ev, SubscribeReceived):
                self._on_subscribe(ev)
            elif isinstance(ev, SubscribeAccepted):
                if ev.request.request_id == self._caller_audio_rid:
                    self._caller_audio_ok = True
                    self._maybe_start()
            elif isinstance(ev, SubscribeRejected):
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "caller refused caller-audio subscription")
            elif isinstance(ev, ObjectReceived):
                self._on_object(ev.request.request_id, ev.object.group_id, ev.object.payload)
            elif isinstance(ev, PublishDoneReceived):
                if ev.message.request_id == self._caller_audio_rid and self.call is not None:
                    self.call._end("caller ended caller-audio")
            elif isinstance(ev, MaxRequestIdReceived):
                if self._namespace_ok and self._caller_audio_rid is None:
                    self._subscribe_caller_audio()
            elif isinstance(ev, UnsubscribeReceived):
                if ev.request is not None and ev.request.track_name == TRACK_AGENT_AUDIO:
                    self._agent_alias = None
                elif ev.request is not None and ev.request.track_name == TRACK_CONTROL:
                    self._control_alias = None
        for ev in events:
            if not isinstance(ev, ObjectReceived):
                self.transmit()  # a control reply may be queued
                return
        # caller audio only: nothing to send but its ACK (see datagram_received)

    def _check_frame(self, payload: bytes) -> None:
        """A constant-rate codec frame must have its exact size (wrong codec -> end the call)."""
        sized = self._frame_size
        if sized is None or sized[0] != self.codec:
            sized = self._frame_size = (self.codec, frame_bytes(*self.codec))
        want = sized[1]
        if want is not None and len(payload) != want:
            codec, rate, frame_ms = self.codec
            self.ingress.stats["bad_frames"] += 1
            raise MoqtError(
                TerminationCode.PROTOCOL_VIOLATION,
                f"caller-audio frame of {len(payload)} bytes, expected {want} for {codec}/{rate}/{frame_ms}",
            )

    def _refuse(self, err: AuthError) -> None:
        code = _AUTH_CODES.get(err.reason, TerminationCode.UNAUTHORIZED)
        self.ingress.stats[f"refused_{err.reason}"] += 1
        raise MoqtError(code, str(err))

    def _on_setup(self, ev: SetupReceived) -> None:
        params = ev.message.params
        raw = param_get(params, SetupParam.AUTHORIZATION_TOKEN)
        token: bytes | None = None
        if isinstance(raw, bytes):
            tok = AuthToken.decode(raw)
            if tok.alias_type != TokenAliasType.USE_VALUE:
                raise MoqtError(TerminationCode.UNKNOWN_AUTH_TOKEN_ALIAS, "token aliases are not supported")
            token = tok.value
        if token is None:  # moq-rs carries it in the PATH (``/?jwt=...``)
            path = param_get(params, SetupParam.PATH)
            token = token_from_path(path) if isinstance(path, bytes) else None
        try:
            self.call_id = self.ingress.authority.verify(token, time.time())
        except AuthError as err:
            self._refuse(err)
        self._release_pending()
        cp = param_get(params, PARAM_CODEC)
        if isinstance(cp, bytes):
            try:
                codec, rate, frame_ms = parse_codec_param(cp)
                check_codec(codec, rate)
            except (ValueError, UnicodeDecodeError, CodecError) as exc:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"codec parameter: {exc}") from None
            if frame_ms != self.ingress.config.frame_ms:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"frame_ms {frame_ms} not offered")
            self.codec = (codec, rate, frame_ms)
        if len(self.ingress.calls) >= self.ingress.config.max_calls:
            raise MoqtError(TerminationCode.TOO_MANY_REQUESTS, "edge at capacity")
        out = self.moqt.server_setup(params_from({PARAM_CODEC: codec_param(*self.codec)}))
        self._send_control_bytes(out)

    def _ns(self) -> tuple[bytes, bytes]:
        assert self.call_id is not None
        return (NAMESPACE_ROOT, self.call_id.encode())

    def _on_namespace(self, ev: NamespacePublished) -> None:
        if ev.message.namespace != self._ns() or self._namespace_ok:
            self.ingress.stats["namespace_refused"] += 1
            self._send_control_bytes(
                self.moqt.publish_namespace_error(
                    ev.message.request_id, NAMESPACE_ERROR_UNAUTHORIZED, "namespace must be (clutchcall, <call id>)"
                )
            )
            return
        self._send_control_bytes(self.moqt.publish_namespace_ok(ev.message.request_id))
        self._namespace_ok = True
        self._subscribe_caller_audio()

    def _on_namespace_subscribed(self, ev: NamespaceSubscribed) -> None:
        """SUBSCRIBE_NAMESPACE (moq-rs sends it right after setup to learn what it can
        subscribe to): answer OK and, if the prefix covers this call's namespace, announce it
        (PUBLISH_NAMESPACE ``("clutchcall", CALL_ID)``: the edge's ``agent-audio`` and
        ``control`` tracks live there). One announcement per session."""
        msg = ev.message
        self._send_control_bytes(self.moqt.subscribe_namespace_ok(msg.request_id))
        ns = self._ns()
        if ns[: len(msg.prefix)] != msg.prefix or self._announced:
            return
        if not self.moqt.can_request():
            self._send_control_bytes(self.moqt.requests_blocked())
            return
        self._announced = True
        _rid, out = self.moqt.publish_namespace(ns)
        self._send_control_bytes(out)

    def _subscribe_caller_audio(self) -> None:
        if not self.moqt.can_request():
            # the caller granted us no request ID yet: say so and wait for MAX_REQUEST_ID
            # (the setup timer closes the session if it never comes)
            self._send_control_bytes(self.moqt.requests_blocked())
            return
        rid, out = self.moqt.subscribe(self._ns(), TRACK_CALLER_AUDIO, priority=0)
        self._caller_audio_rid = rid
        self._send_control_bytes(out)

    def _on_subscribe(self, ev: SubscribeReceived) -> None:
        msg = ev.message
        if msg.namespace != self._ns():
            self._send_control_bytes(
                self.moqt.subscribe_error(msg, SUBSCRIBE_ERROR_UNAUTHORIZED, "not this call's namespace")
            )
            return
        if msg.track_name not in (TRACK_AGENT_AUDIO, TRACK_CONTROL):
            self._send_control_bytes(
                self.moqt.subscribe_error(msg, SUBSCRIBE_ERROR_TRACK_DOES_NOT_EXIST, "no such track")
            )
            return
        alias, out = self.moqt.subscribe_ok(msg, params_from({PARAM_CODEC: codec_param(*self.codec)}))
        self._send_control_bytes(out)
        if msg.track_name == TRACK_AGENT_AUDIO:
            self._agent_alias = alias
            self._agent_rid = msg.request_id
        else:
            self._control_rid = msg.request_id
            self._control_alias = alias
            self._control_writer = ControlTrackWriter(alias)
            self._control_stream = self._new_uni_stream()
            self._quic.send_stream_data(self._control_stream, self._control_writer.header())
        self._maybe_start()

    def _maybe_start(self) -> None:
        if self.call is not None or not (
            self._caller_audio_ok and self._agent_alias is not None and self._control_alias is not None
        ):
            return
        self._setup_timer.cancel()
        codec, rate, frame_ms = self.codec
        assert self.call_id is not None
        try:  # one live call per call id, across both ingresses (auth module docstring)
            self.ingress.authority.claim_call(self.call_id)
        except AuthError:
            self.ingress.stats["refused_in_use"] += 1
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "call already connected") from None
        self.call = self.call_class(
            self, call_id=self.call_id, codec=codec, rate=rate, frame_ms=frame_ms,
            jitter_depth_ms=self.ingress.config.jitter_depth_ms,
        )
        self.ingress.calls[self.call_id] = self.call
        self.ingress.stats["calls_started"] += 1
        self._task = asyncio.ensure_future(self._run_call(self.call))

    async def _run_call(self, call: QuicCall) -> None:
        try:
            await self.ingress.handler.on_call(call)
        except Exception:
            log.exception("call handler failed for call %s", call.call_id)
            self.ingress.stats["handler_errors"] += 1
        finally:
            self.ingress.authority.release_call(call.call_id)
            if not self._ended:
                self.end_session(TerminationCode.NO_ERROR, "call ended")

    # ---------------------------------------------------------------- sending

    def transmit(self) -> None:
        """Send what the connection has to send; while a received batch is being fed, only
        note that (the transport transmits each noted connection once after the batch), and
        likewise during a pass of the loop's call scheduler (once after the pass). With a
        scheduler on the loop (the batched call loop) the connection's QUIC timer is one of
        its deadlines, not a loop timer of its own."""
        self._rx_media_only = False
        dirty = getattr(self._transport, "dirty", None)
        if dirty is not None:
            dirty[self] = None
            return
        sched = self._call_sched
        if sched is None:
            sched = self._call_sched = CallScheduler.of_loop(self._loop)
        try:
            if sched is None:
                super().transmit()
            elif not sched.defer_transmit(self):
                self._transmit_scheduled(sched)
        except self.core.QuicConnectionError as exc:  # qh3 raises where aioquic drops silently
            self.ingress.stats["transmit_errors"] += 1
            log.debug("transmit failed: %s", exc)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        """A UDP datagram from the caller (the core protocol's ``datagram_received``). On the
        batched call loop, once the call runs: if it carried caller audio only, nothing is sent
        now -- its ACK waits for the connection's next send (normally the agent frame of the
        next tick, which carries it) and at most :data:`ACK_COALESCE_MS` (below the
        ``max_ack_delay`` of 25 ms both cores advertise), so one ACK covers about two caller
        frames while the agent is silent and none goes alone while it speaks (the ACK policy
        for 20 ms media, issue 17 item 3). Anything else transmits at once, as before."""
        sched = self._call_sched
        if (sched is None or self.call is None or self._ended or not self.handshake_done
                or not self.coalesce_acks):
            super().datagram_received(data, addr)  # type: ignore[misc]
            return
        if not self._receive_coalescing_ack(cast(bytes, data), addr):  # prod.quic.ackcoalesce
            self.ingress.stats["transmit_errors"] += 1
            log.debug("receive failed on a closed connection")

    def _pending_timer(self) -> float | None:
        assert self._call_sched is not None  # coalescing runs on the batched call loop only
        return self._call_sched.deadline_of(self)

    def _arm_ack_timer(self, deadline: float) -> None:
        assert self._call_sched is not None
        self.ingress.stats["acks_deferred"] += 1
        self._call_sched.arm(self, deadline)

    def _transmit_scheduled(self, sched: CallScheduler) -> None:
        """The core protocol's ``transmit`` (both cores': send the datagrams, re-arm the
        timer) with the timer on ``sched``."""
        self._transmit_task = None
        quic = self._quic
        sendto = self._transport.sendto
        now = self._loop.time()
        # an ACK the connection owes rides this send (aioquic; qh3 does it by itself), as
        # AckCoalescing.transmit does off the batched loop: caller audio's ACKs ride the agent
        # frames instead of leaving alone on aioquic's ACK timer
        self.core.ack_with_next_send(quic, now)
        for data, addr in quic.datagrams_to_send(now=now):
            sendto(data, addr)
        if self._timer is not None:  # armed before the scheduler was installed
            self._timer.cancel()
            self._timer = self._timer_at = None
        sched.arm(self, quic.get_timer())

    def on_deadline(self, deadline: float) -> None:
        """The call scheduler: the QUIC connection's timer ``deadline`` is due (the core
        protocol's ``_handle_timer``)."""
        try:
            self._quic.handle_timer(now=max(deadline, self._loop.time()))
        except self.core.QuicConnectionError as exc:
            self.ingress.stats["transmit_errors"] += 1
            log.debug("timer failed: %s", exc)
            return
        self._process_events()
        self.transmit()

    def _new_uni_stream(self) -> int:
        """Open a unidirectional stream to the caller for a MoQT data stream; return its ID."""
        return self._quic.get_next_available_stream_id(is_unidirectional=True)

    def _close_connection(self, code: int, reason: str) -> None:
        """Close the session with MoQT termination ``code`` (here: the QUIC connection)."""
        self._quic.close(error_code=code, reason_phrase=reason)

    def _send_control_bytes(self, data: bytes) -> None:
        assert self._control_stream_id is not None
        self._quic.send_stream_data(self._control_stream_id, data)

    def send_agent_frame(self, group: int, payload: bytes) -> None:
        try:
            self._send_agent_frame(group, payload)
        except self.core.QuicConnectionError as exc:  # qh3: the caller closed meanwhile
            self._finish(f"connection closed: {exc}")

    def _send_agent_frame(self, group: int, payload: bytes) -> None:
        if self._ended or self._agent_alias is None:
            return
        if self._agent_datagrams():
            self._send_agent_datagram(group, payload)
            return
        sid = self._new_uni_stream()
        self._quic.send_stream_data(
            sid, MoqtSession.encode_object_stream(self._agent_alias, group, payload), end_stream=True
        )
        self._agent_streams += 1
        self.ingress.stats["agent_stream_frames"] += 1
        self.transmit()

    # ---------------------------------------------------------------- audio in DATAGRAMs

    def _agent_datagrams(self) -> bool:
        """True if agent audio goes as OBJECT_DATAGRAMs: the edge's ``audio_transport`` allows
        it, the caller advertised ``max_datagram_frame_size`` large enough for a frame, and the
        caller itself sends DATAGRAMs (its audio): a MoQT peer that negotiates DATAGRAM support
        but publishes and reads on subgroup streams only (moq-rs) keeps getting streams.
        Decided at the first agent frame (the caller has spoken by then)."""
        mode = self._audio_mode
        if mode is None:
            mode = "stream"
            if self.ingress.config.audio_transport != "stream" and self._caller_datagrams:
                peer = self.core.peer_max_datagram_frame_size(self._quic)
                if peer is not None and peer >= DATAGRAM_MIN_FRAME_SIZE:
                    mode = "datagram"
            self._audio_mode = mode
            self.ingress.stats[f"audio_transport_{mode}"] += 1
        return mode == "datagram"

    def _send_agent_datagram(self, group: int, payload: bytes) -> None:
        """One agent frame as one OBJECT_DATAGRAM (group = frame number, object 0; unreliable:
        a lost frame is the caller's jitter buffer's concealment)."""
        alias = self._agent_alias
        assert alias is not None
        prefix = self._agent_prefix
        if prefix is None or prefix[0] != alias:
            prefix = self._agent_prefix = (alias, object_datagram_prefix(alias, end_of_group=True))
        # = ObjectDatagram(track_alias=alias, group_id=group, publisher_priority=0,
        #                  payload=payload, end_of_group=True).encode()
        self._quic.send_datagram_frame(encode_object_datagram(prefix[1], group, payload, 0))
        self.ingress.stats["agent_datagrams"] += 1
        self.transmit()

    def send_control_object(self, payload: bytes) -> None:
        if self._ended or self._control_writer is None or self._control_stream is None:
            return
        try:
            self._quic.send_stream_data(self._control_stream, self._control_writer.object(payload))
        except self.core.QuicConnectionError as exc:  # qh3: the caller closed meanwhile
            self._finish(f"connection closed: {exc}")
            return
        self.transmit()

    # ---------------------------------------------------------------- ending

    def send_goaway(self) -> None:
        if not self._ended and self._control_stream_id is not None and self.moqt.setup_done:
            try:
                self._send_control_bytes(self.moqt.goaway())
            except self.core.QuicConnectionError as exc:  # qh3: the caller closed meanwhile
                self._finish(f"connection closed: {exc}")
                return
            self.transmit()

    def _on_setup_timeout(self) -> None:
        if self.call is None and not self._ended:
            self.ingress.stats["closed_CONTROL_MESSAGE_TIMEOUT"] += 1
            self.end_session(TerminationCode.CONTROL_MESSAGE_TIMEOUT, "setup and subscriptions not completed in time")

    def end_session(self, code: TerminationCode, reason: str) -> None:
        """Close the QUIC connection with MoQT termination ``code`` (an application error).

        A normal end (NO_ERROR) first sends PUBLISH_DONE (TRACK_ENDED, with the number of data
        streams opened) for the tracks the caller subscribed to, and FINs the control track.
        """
        if self._ended:
            return
        try:
            self._end_session(code, reason)
        except self.core.QuicConnectionError:  # qh3: the connection is closed already
            self._finish(reason)

    def _end_session(self, code: TerminationCode, reason: str) -> None:
        if code == TerminationCode.NO_ERROR and self._control_stream_id is not None and self.moqt.setup_done:
            for rid, count in ((self._agent_rid, self._agent_streams), (self._control_rid, 1)):
                if rid is not None and rid in self.moqt.published:
                    self._send_control_bytes(self.moqt.publish_done(rid, PUBLISH_DONE_TRACK_ENDED, reason[:100], count))
            if self._control_stream is not None:
                self._quic.send_stream_data(self._control_stream, b"", end_stream=True)
            # let the PUBLISH_DONEs leave before CONNECTION_CLOSE (which discards unsent stream data)
            self.transmit()
            self._finish(reason)
            asyncio.get_running_loop().call_later(0.1, self._close_now, int(code), reason[:200])
            return
        self._close_connection(int(code), reason[:200])
        self.transmit()
        self._finish(reason)

    def _close_now(self, code: int, reason: str) -> None:
        try:
            self._close_connection(code, reason)
        except self.core.QuicConnectionError:  # qh3: closed by the peer meanwhile
            return
        self.transmit()

    def _release_pending(self) -> None:
        if self._pending_slot:
            self._pending_slot = False
            self.ingress.gate.release()

    def _finish(self, reason: str) -> None:
        if self._ended:
            return
        self._release_pending()
        self._ended = True
        self._setup_timer.cancel()
        self.ingress._protocols.discard(self)
        if self.call is not None:
            self.call._end(reason)
            if self.ingress.calls.get(self.call.call_id) is self.call:
                del self.ingress.calls[self.call.call_id]
            self.ingress.stats["calls_ended"] += 1


DATAGRAM_MIN_FRAME_SIZE = 1200
"""Smallest peer ``max_datagram_frame_size`` for which audio goes in DATAGRAMs (any audio frame
of the supported codecs fits in 1200 bytes with its OBJECT_DATAGRAM header)."""

def edge_protocol_class(core: QuicCore) -> type:
    """Return the edge's per-connection protocol class for ``core``: :class:`EdgeSession` on
    top of the core's ``QuicConnectionProtocol`` (made once per core)."""
    return core.protocol_class(EdgeSession)


EdgeProtocol = EdgeSession  # the per-core classes derive from it (isinstance checks, typing)


class QuicIngress:
    """Serves MoQT calls on UDP ``config.host:config.quic_port``; see module docstring."""

    def __init__(
        self,
        config: IngressConfig,
        handler: CallHandler,
        authority: TokenAuthority | None = None,
        tickets: TicketStore | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.config = config
        self._sock = sock  # a pre-bound UDP socket (a shard's), else bind config.host:quic_port
        self.io_kind: str | None = None  # "uring", "xdp" or "asyncio" once started
        self._io: Any = None
        self.handler = handler
        self.authority = authority or TokenAuthority(config.auth_key)
        self.tickets = tickets or TicketStore()
        self.stats: Counter[str] = Counter()
        self.calls: dict[str, QuicCall] = {}
        self.gate = PendingGate(config.max_unauthenticated, self.stats, "quic")
        self._protocols: set[EdgeProtocol] = set()
        self._server: Any = None
        self.core = get_core(config.quic_core)
        self._packets_closed = (0, 0)  # the datagram counters, kept when the server closes
        self.port = 0
        self.cert_path = config.cert
        self.key_path = config.key

    async def start(self) -> int:
        """Bind (or use the given socket) and serve over ``config.io`` datagram I/O; return
        the UDP port. Raises ConfigError if io="uring" cannot be used, OSError if binding fails."""
        if self.cert_path is None:
            cert, key = ensure_self_signed(self.config.cert_dir)
            self.cert_path, self.key_path = str(cert), str(key)
        assert self.key_path is not None
        qc = self.core.server_configuration(cert=self.cert_path, key=self.key_path,
                                            alpn=[MOQT_ALPN], idle_timeout_s=self.config.idle_timeout_s)
        proto_cls = edge_protocol_class(self.core)
        io = open_ingress_io(self.config.io, self.config.host, self.config.quic_port, sock=self._sock,
                             iface=self.config.xdp_iface)
        try:
            self._server = await serve_ingress_quic(
                io, configuration=qc, server_class=self.core.QuicServer,
                create_protocol=lambda *a, **k: proto_cls(*a, ingress=self, **k),
                session_ticket_fetcher=self.tickets.pop, session_ticket_handler=self.tickets.add,
            )
        except BaseException:
            io.close()
            raise
        self.io_kind = io.kind
        self._io = io
        install_quic_admission(self._server, self.gate, self.config.quic_retry_above)
        # the shared UDP socket was bound with a deep receive buffer (bind_udp, EDGE_RCVBUF_BYTES):
        # a loop stall queues instead of dropping, which would collapse the callers' congestion
        # windows (see ingress.udpbuf); AF_XDP has no kernel socket
        size = ensure_rcvbuf(getattr(io, "sock", None), EDGE_RCVBUF_BYTES)
        if size:
            self.stats["udp_rcvbuf_bytes"] = size
        self.port = int(io.local_address[1])
        log.info("QUIC ingress on %s:%d (io=%s)", self.config.host, self.port, io.kind)
        return self.port

    def packet_stats(self) -> dict[str, int]:
        """Return the UDP datagrams this ingress received and sent (``udp_rx_datagrams``,
        ``udp_tx_datagrams``) and the audio frames it carried (``uplink_frames``: caller frames
        received, ``agent_frames``: agent frames sent, by datagram or stream)."""
        tr = getattr(self._server, "_transport", None) if self._server is not None else None
        rx = getattr(tr, "rx_datagrams", 0) + self._packets_closed[0]
        tx = getattr(tr, "tx_datagrams", 0) + self._packets_closed[1]
        return {"udp_rx_datagrams": int(rx), "udp_tx_datagrams": int(tx),
                "uplink_frames": int(self.stats["uplink_frames"]),
                "agent_frames": int(self.stats["agent_datagrams"] + self.stats["agent_stream_frames"])}

    def io_stats(self) -> dict[str, int]:
        """Return the datagram I/O's own counters (io_uring: rx/tx packets, ...; AF_XDP:
        rx/tx frames, drops), or {} for asyncio, before start or after stop."""
        io = self._io
        if io is None or self._server is None or not hasattr(io, "stats"):
            return {}
        return {k: int(v) for k, v in io.stats().items()}

    async def stop(self, goaway_grace_s: float = 0.0) -> None:
        """Stop serving: GOAWAY to every session, ``goaway_grace_s`` for callers to leave, then close."""
        if goaway_grace_s > 0:
            for proto in list(self._protocols):
                proto.send_goaway()
            await asyncio.sleep(goaway_grace_s)
        protos = list(self._protocols)
        for proto in protos:
            proto.end_session(TerminationCode.NO_ERROR, "edge shutting down")
        if self._server is not None:
            await asyncio.sleep(0.15 if protos else 0)
            ps = self.packet_stats()
            self._packets_closed = (ps["udp_rx_datagrams"], ps["udp_tx_datagrams"])
            self._server.close()
            self._server = None
