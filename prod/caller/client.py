"""A real caller: streams a WAV file to the edge at 1x and records what it hears.

Theory of operation
-------------------
:class:`Caller` places one call over QUIC/MoQT (:class:`QuicCallerTransport`) or over
WebSocket/TLS speaking Twilio Media Streams (:class:`WsCallerTransport`). It

1. splits the input (16-bit mono PCM at the caller rate) into frames and marks each frame
   speech or not (webrtcvad, aggressiveness 2); a *turn end* is the last speech frame before
   at least ``turn_gap_ms`` (300 ms) of non-speech, or the last speech frame of the file;
2. sends one frame every ``frame_ms`` on the event loop clock (1x real time);
3. plays the agent audio it receives out at 1x into an output timeline (a WAV file): a
   ``clear_playout`` control event (Twilio ``clear``) drops what is queued and not yet played;
4. measures *mouth-to-ear turn latency* per turn: send time of the turn's last speech frame
   -> arrival of the first agent audio frame after it (docs/architecture.md §6).

The transports share one small interface (``connect``, ``send_frame``, ``hangup`` and two
callbacks), so the two legs are compared on the same caller code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import statistics
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clutchcall.engine.audio import Codec, OpusDecoder, OpusEncoder, alaw_decode, alaw_encode
from clutchcall.engine.audio import ulaw_decode as _ulaw_decode
from clutchcall.engine.audio import ulaw_encode as _ulaw_encode
from clutchcall.engine.errors import ConfigError
from clutchcall.prod.ingress.ackdelay import ACK_DELAY_MS, check_ack_delay


@dataclass
class TurnLatency:
    turn: int
    last_speech_sent_at: float
    first_agent_audio_at: float | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.first_agent_audio_at is None:
            return None
        return (self.first_agent_audio_at - self.last_speech_sent_at) * 1000.0


@dataclass
class CallResult:
    call_id: str
    transport: str
    codec: str
    rate: int
    frames_sent: int = 0
    agent_frames_received: int = 0
    agent_frames_played: int = 0
    agent_frames_cleared: int = 0
    clear_playouts: int = 0
    controls: list[dict[str, Any]] = field(default_factory=list)
    turns: list[TurnLatency] = field(default_factory=list)
    connect_ms: float = 0.0
    session_resumed: bool = False
    early_data_accepted: bool = False
    out_wav: str | None = None
    received_payloads: list[bytes] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = [t.latency_ms for t in self.turns if t.latency_ms is not None]
        return {
            "call_id": self.call_id, "transport": self.transport, "codec": self.codec, "rate": self.rate,
            "frames_sent": self.frames_sent, "agent_frames_received": self.agent_frames_received,
            "agent_frames_played": self.agent_frames_played, "agent_frames_cleared": self.agent_frames_cleared,
            "clear_playouts": self.clear_playouts, "controls": len(self.controls),
            "connect_ms": round(self.connect_ms, 2), "session_resumed": self.session_resumed,
            "early_data_accepted": self.early_data_accepted,
            "turns": [
                {"turn": t.turn, "mouth_to_ear_ms": None if t.latency_ms is None else round(t.latency_ms, 2)}
                for t in self.turns
            ],
            "mouth_to_ear_ms_p50": round(statistics.median(lat), 2) if lat else None,
            "out_wav": self.out_wav,
        }


def speech_flags(pcm: bytes, rate: int, frame_ms: int, aggressiveness: int = 2, hangover_ms: int = 0) -> list[bool]:
    """Per-frame speech decisions for 16-bit mono PCM (webrtcvad; optional hangover).

    No hangover by default: a turn's last speech frame is the last frame the VAD called speech;
    pauses inside a turn are bridged by ``turn_gap_ms`` in :func:`turn_ends` instead.
    """
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    n = rate * frame_ms // 1000 * 2
    flags = []
    hang = 0
    for i in range(0, len(pcm) - n + 1, n):
        frame = pcm[i : i + n]
        sp = vad.is_speech(frame, rate) if rate in (8000, 16000, 32000, 48000) else any(frame)
        if sp:
            hang = hangover_ms // frame_ms
        elif hang > 0:
            hang -= 1
            sp = True
        flags.append(sp)
    return flags


def turn_ends(flags: list[bool], frame_ms: int, turn_gap_ms: int) -> list[int]:
    """Indices of the last speech frame of each turn (followed by >= turn_gap_ms non-speech or the end)."""
    ends = []
    gap_frames = max(1, turn_gap_ms // frame_ms)
    last_speech = None
    quiet = 0
    for i, sp in enumerate(flags):
        if sp:
            last_speech, quiet = i, 0
        else:
            quiet += 1
            if last_speech is not None and quiet == gap_frames:
                ends.append(last_speech)
                last_speech = None
    if last_speech is not None:
        ends.append(last_speech)
    return ends


def write_wav(path: str, pcm: bytes, rate: int) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


class CallerCodec:
    """The caller's own encoder/decoder (16-bit PCM <-> caller payloads), on the audio contract."""

    def __init__(self, codec: str, rate: int, frame_ms: int = 20) -> None:
        self.codec = Codec.parse(codec)
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self._enc = OpusEncoder(rate, frame_ms) if self.codec is Codec.OPUS else None
        self._dec = OpusDecoder(rate) if self.codec is Codec.OPUS else None

    def encode(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        if self.codec is Codec.PCM16:
            return pcm
        if self.codec is Codec.G711_ULAW:
            return bytes(_ulaw_encode(x).tobytes())
        if self.codec is Codec.G711_ALAW:
            return bytes(alaw_encode(x).tobytes())
        assert self._enc is not None
        return self._enc.encode(x)

    def decode(self, payload: bytes) -> bytes:
        if self.codec is Codec.PCM16:
            return payload
        if self.codec is Codec.OPUS:
            assert self._dec is not None
            return bytes(self._dec.decode(payload).astype("<i2").tobytes())
        codes = np.frombuffer(payload, dtype=np.uint8)
        pcm = _ulaw_decode(codes) if self.codec is Codec.G711_ULAW else alaw_decode(codes)
        return bytes(pcm.astype("<i2").tobytes())


class CallerTransport:
    """What a caller transport provides; callbacks are set by :class:`Caller`."""

    name = "?"
    on_agent_audio: Callable[[bytes], None]
    on_control: Callable[[dict[str, Any]], None]
    on_closed: Callable[[str], None]
    session_resumed = False
    early_data_accepted = False

    async def connect(self) -> None: ...

    async def send_frame(self, seq: int, payload: bytes) -> None: ...

    async def hangup(self) -> None: ...


class Caller:
    """Places one call (see module docstring)."""

    def __init__(
        self,
        transport: CallerTransport,
        *,
        call_id: str,
        codec: str,
        rate: int,
        frame_ms: int = 20,
        turn_gap_ms: int = 300,
        tail_s: float = 1.0,
        keep_payloads: bool = False,
    ) -> None:
        self.t = transport
        self.call_id = call_id
        self.codec = codec
        self.rate = rate
        self.frame_ms = frame_ms
        self.turn_gap_ms = turn_gap_ms
        self.tail_s = tail_s
        self.keep_payloads = keep_payloads
        self.result = CallResult(call_id=call_id, transport=transport.name, codec=codec, rate=rate)
        self._playout: deque[bytes] = deque()
        self._closed = asyncio.Event()
        self._codec = CallerCodec(codec, rate, frame_ms)

    def _encode(self, pcm: bytes) -> bytes:
        return self._codec.encode(pcm)

    def _decode(self, payload: bytes) -> bytes:
        return self._codec.decode(payload)

    def _agent_audio(self, payload: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self.result.agent_frames_received += 1
        if self.keep_payloads:
            self.result.received_payloads.append(payload)
        for t in self.result.turns:
            if t.first_agent_audio_at is None and now >= t.last_speech_sent_at:
                t.first_agent_audio_at = now
        self._playout.append(payload)

    def _control(self, event: dict[str, Any]) -> None:
        self.result.controls.append(event)
        if event.get("type") == "clear_playout":
            self.result.clear_playouts += 1
            self.result.agent_frames_cleared += len(self._playout)
            self._playout.clear()

    async def run(self, pcm: bytes, out_wav: str | None = None) -> CallResult:
        """Place the call with ``pcm`` (16-bit mono at ``rate``); return what happened."""
        loop = asyncio.get_running_loop()
        self.t.on_agent_audio = self._agent_audio
        self.t.on_control = self._control
        self.t.on_closed = lambda reason: self._closed.set()
        flags = speech_flags(pcm, self.rate, self.frame_ms)
        ends = set(turn_ends(flags, self.frame_ms, self.turn_gap_ms))
        t_connect = loop.time()
        await self.t.connect()
        self.result.connect_ms = (loop.time() - t_connect) * 1000.0
        self.result.session_resumed = self.t.session_resumed
        self.result.early_data_accepted = self.t.early_data_accepted
        n = self.rate * self.frame_ms // 1000 * 2
        frames = [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]
        silence_frame = bytes(n)
        tail = int(self.tail_s * 1000 / self.frame_ms)
        player_out: list[bytes] = []
        t0 = loop.time()
        frame_s = self.frame_ms / 1000.0
        for i in range(len(frames) + tail):
            delay = t0 + i * frame_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closed.is_set():
                break
            if i < len(frames):
                await self.t.send_frame(i, self._encode(frames[i]))
                self.result.frames_sent += 1
                if i in ends:
                    self.result.turns.append(TurnLatency(turn=len(self.result.turns) + 1,
                                                         last_speech_sent_at=loop.time()))
            # the ear: one frame of agent audio (or silence) per tick
            if self._playout:
                player_out.append(self._decode(self._playout.popleft()))
                self.result.agent_frames_played += 1
            else:
                player_out.append(silence_frame)
        await self.t.hangup()
        if out_wav:
            write_wav(out_wav, b"".join(player_out), self.rate)
            self.result.out_wav = out_wav
        return self.result


# ----------------------------------------------------------------------------- QUIC


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


# ----------------------------------------------------------------------------- WebSocket


def control_from_mark(name: str) -> dict[str, Any] | None:
    """Return the control event a Twilio mark name carries (``ctl:<type>[:<code>]``, or an
    older JSON name), or None for a played-position mark (``p<N>``) or another name."""
    if name.startswith("ctl:"):
        parts = name.split(":", 2)
        event: dict[str, Any] = {"type": parts[1]}
        if len(parts) > 2:
            event["code"] = parts[2]
        return event
    if name.startswith("{"):
        try:
            event = json.loads(name)
        except ValueError:
            return None
        return event if isinstance(event, dict) else None
    return None


class WsCallerTransport(CallerTransport):
    """Twilio Media Streams over WebSocket/TLS (the caller plays Twilio's side)."""

    name = "ws"

    def __init__(self, uri: str, *, token: str, call_id: str, cafile: str | None = None) -> None:
        self.uri, self.token, self.call_id, self.cafile = uri, token, call_id, cafile
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.stream_sid = f"MZ{call_id}"
        self._start_ms = 0.0
        # Twilio's playout as the edge sees it: agent audio plays at 1x from when it arrives;
        # a mark is echoed once the audio before it has played, pending ones at once on clear
        self._play_end = 0.0
        self._echoes: dict[str, asyncio.TimerHandle] = {}
        self._echo_tasks: set[asyncio.Future[None]] = set()
        self.marks_echoed = 0

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        ctx = None
        if self.uri.startswith("wss:"):
            ctx = ssl.create_default_context(cafile=self.cafile)
        self.ws = await connect(self.uri, ssl=ctx, max_size=1 << 20)
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
            "start": {
                "streamSid": self.stream_sid, "accountSid": "AC0", "callSid": f"CA{self.call_id}",
                "tracks": ["inbound"], "customParameters": {"token": self.token, "call_id": self.call_id},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }))
        self._seq = 2
        self._start_ms = time.monotonic() * 1000
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        reason = "closed"
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                ev = msg.get("event")
                if ev == "media":
                    payload = base64.b64decode(msg["media"]["payload"])
                    now = asyncio.get_running_loop().time()
                    self._play_end = max(now, self._play_end) + len(payload) / 8000
                    self.on_agent_audio(payload)
                elif ev == "clear":
                    self._play_end = 0.0
                    for name in list(self._echoes):
                        self._echoes.pop(name).cancel()
                        self._echo(name)
                    self.on_control({"type": "clear_playout"})
                elif ev == "mark":
                    name = str(msg.get("mark", {}).get("name", ""))
                    delay = max(0.0, self._play_end - asyncio.get_running_loop().time())
                    self._echoes[name] = asyncio.get_running_loop().call_later(delay, self._echo, name)
                    event = control_from_mark(name)
                    if event is not None:
                        self.on_control(event)
        except ConnectionClosed as exc:
            reason = str(exc)
        finally:
            self.on_closed(reason)

    def _echo(self, name: str) -> None:
        """Echo mark ``name`` back as Twilio does (its audio played, or cleared)."""
        self._echoes.pop(name, None)
        self._seq += 1
        self.marks_echoed += 1
        msg = json.dumps({"event": "mark", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
                          "mark": {"name": name}})
        task = asyncio.ensure_future(self._send_quietly(msg))
        self._echo_tasks.add(task)
        task.add_done_callback(self._echo_tasks.discard)

    async def _send_quietly(self, msg: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send(msg)

    async def send_frame(self, seq: int, payload: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        self._seq += 1
        try:
            await self._send_media(seq, payload)
        except ConnectionClosed as exc:  # the edge ended the call: stop sending
            self.on_closed(str(exc))

    async def _send_media(self, seq: int, payload: bytes) -> None:
        await self.ws.send(json.dumps({
            "event": "media", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(seq + 1), "timestamp": str(seq * 20),
                      "payload": base64.b64encode(payload).decode("ascii")},
        }))

    async def hangup(self) -> None:
        if self.ws is None:
            return
        from websockets.exceptions import ConnectionClosed

        for handle in self._echoes.values():
            handle.cancel()
        self._echoes.clear()

        with contextlib.suppress(ConnectionClosed, OSError):
            self._seq += 1
            await self.ws.send(json.dumps({"event": "stop", "sequenceNumber": str(self._seq),
                                           "streamSid": self.stream_sid,
                                           "stop": {"accountSid": "AC0", "callSid": f"CA{self.call_id}"}}))
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2.0)
            except TimeoutError:
                self._reader.cancel()
