"""A real caller: streams a WAV file to the edge at 1x and records what it hears.

Theory of operation
-------------------
:class:`Caller` places one call over QUIC/MoQT (``QuicCallerTransport``) or over
WebSocket/TLS speaking Twilio Media Streams (``WsCallerTransport``). It

1. splits the input (16-bit mono PCM at the caller rate) into frames and marks each frame
   speech or not (webrtcvad, aggressiveness 2); a *turn end* is the last speech frame before
   at least ``turn_gap_ms`` (300 ms) of non-speech, or the last speech frame of the file;
2. sends one frame every ``frame_ms`` on the event loop clock (1x real time);
3. plays the agent audio it receives out at 1x into an output timeline (a WAV file): a
   ``clear_playout`` control event (Twilio ``clear``) drops what is queued and not yet played;
4. measures *mouth-to-ear turn latency* per turn: send time of the turn's last speech frame
   -> arrival of the first agent audio frame after it (docs/architecture.md §6).

The transports share one small interface (:class:`CallerTransport`: ``connect``,
``send_frame``, ``hangup`` and the callbacks), so the two legs are compared on the same caller
code; they live in :mod:`clutchcall.prod.caller.quic_transport`,
:mod:`clutchcall.prod.caller.ws_transport` and :mod:`clutchcall.prod.caller.webtransport_client`.
The caller's audio (codec, speech marking, turn ends, WAV out) is
:mod:`clutchcall.prod.caller.audio`.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clutchcall.prod.caller.audio import CallerCodec, speech_flags, turn_ends
from clutchcall.traces.labels import write_wav


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
        if out_wav and player_out:
            write_wav(out_wav, self.rate, np.frombuffer(b"".join(player_out), dtype="<i2"))
            self.result.out_wav = out_wav
        return self.result
