"""The internal call interface both ingresses present to the pipeline.

Theory of operation
-------------------
An ingress (QUIC/MoQT or WebSocket/Twilio) authenticates a caller, negotiates the caller
codec, and then hands the pipeline one :class:`CallSession` by awaiting
``handler.on_call(call)`` on a :class:`CallHandler`. The pipeline never sees MoQT or JSON:

* ``call.frames()`` is an async iterator of :class:`~clutchcall.engine.call.jitter.UplinkFrame`
  (caller-codec payloads in sequence order, after the jitter buffer; a lost frame comes as
  ``concealed=True`` carrying the output of the concealer). It ends when the caller hangs up
  or the call is closed. The default concealer yields one frame of silence *in the caller
  codec* (so a concealed frame can go through ``Transcoder.uplink`` like any other; for Opus
  it is ``b""``). The edge's batched call loop takes them with ``call.attach_sink(fn)``
  instead: ``fn(frame)`` runs as each frame is released (no queue, no task per call).
  ``call.set_concealer(lambda seq: transcoder.uplink_loss())`` installs Opus
  PLC instead; concealed payloads are then already PCM16 at the model rate (skip ``uplink``).
  Jitter counters: ``call.jitter.stats`` (received, released, late, lost, skipped, ...).
* ``await call.send_agent_audio(payload)`` sends one downlink frame in the caller codec
  (e.g. each payload of ``Transcoder.downlink``). It does not pace: frames leave at once and
  the caller plays them out at 1x from its buffer, which ``clear_playout`` empties.
* ``await call.send_control(event)`` sends a control event, a JSON-able dict with a ``type``
  in :data:`CONTROL_TYPES` (``commit``, ``cancel``, ``clear_playout``, ``error``, ...). Over
  QUIC it is one object on the reliable ``control`` track; over Twilio Media Streams
  ``clear_playout`` is Twilio's ``clear`` and the others ride as ``mark`` names.
* ``await call.clear_playout()`` tells the caller to drop queued agent audio (barge-in).
* ``await call.close(reason)`` ends the call; ``await call.wait_closed()`` waits for the end.

When ``on_call`` returns, the ingress closes the call. :class:`BaseCall` holds what both
ingresses share (jitter buffer drive loop, queues, counters); a transport subclasses it and
implements the three ``_transport_*`` hooks. The jitter buffer's deadlines run on the event
loop's :class:`~clutchcall.prod.call_scheduler.CallScheduler` where one is installed (the
edge's batched call loop: one timer for every call), else on a loop timer per call.
:class:`EchoHandler` is a real handler for
tests and demos: it plays the caller's audio back, frame by frame or turn by turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from clutchcall.engine.call.jitter import JitterBuffer, UplinkFrame
from clutchcall.engine.errors import LocalProtocolError
from clutchcall.prod.call_scheduler import CallScheduler
from clutchcall.prod.ingress.codecs import silence

CONTROL_TYPES = frozenset(
    {"commit", "prime", "cancel", "clear_playout", "error", "turn_started", "end_of_turn", "hangup", "info"}
)


@runtime_checkable
class CallSession(Protocol):
    """What the pipeline gets for one call (see module docstring)."""

    call_id: str
    codec: str
    rate: int
    frame_ms: int
    transport: str

    def frames(self) -> AsyncIterator[UplinkFrame]: ...

    def set_concealer(self, conceal: Callable[[int], bytes]) -> None: ...

    async def send_agent_audio(self, payload: bytes) -> None: ...

    async def send_control(self, event: dict[str, Any]) -> None: ...

    async def clear_playout(self) -> None: ...

    async def close(self, reason: str = "") -> None: ...

    async def wait_closed(self) -> None: ...


class CallHandler(Protocol):
    """The pipeline's entry point: called once per accepted call; the call ends when it returns."""

    async def on_call(self, call: CallSession) -> None: ...


log = logging.getLogger("clutchcall.ingress.call")

_END = object()

#: at most this many uplink frames wait for the pipeline per call (10 s of 20 ms frames: more
#: than the model leg's connect timeout, 5 s, during which the pipeline does not read yet); a
#: sender faster than the pipeline has the rest dropped (``BaseCall.uplink_dropped``)
MAX_QUEUED_FRAMES = 500


class BaseCall:
    """Shared machinery of a call; transports subclass it (see module docstring)."""

    transport = "base"

    def __init__(
        self,
        *,
        call_id: str,
        codec: str,
        rate: int,
        frame_ms: int = 20,
        jitter_depth_ms: int = 40,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.call_id = call_id
        self.codec = codec
        self.rate = rate
        self.frame_ms = frame_ms
        self._loop = loop or asyncio.get_running_loop()
        self._silence = silence(codec, rate, frame_ms)
        self.jitter = JitterBuffer(frame_ms=frame_ms, depth_ms=jitter_depth_ms, conceal=lambda seq: self._silence,
                                   is_silent=silence_judge(codec))
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._sink: Callable[[UplinkFrame], bool] | None = None  # attach_sink (batched loop)
        self._sched: CallScheduler | None = None  # the loop's batched scheduler, once found
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = asyncio.Event()
        self.close_reason = ""
        self.agent_frames_sent = 0
        self.controls_sent = 0
        self.uplink_frames = 0
        self.uplink_out_of_order = 0
        self.uplink_max_seq = -1
        self.uplink_dropped = 0
        """Frames refused because :data:`MAX_QUEUED_FRAMES` already waited for the pipeline."""
        self.policy_violation = False
        """Set by :meth:`close_violation`: the transport closes with its policy code."""

    # ------------------------------------------------------------ pipeline side

    def set_concealer(self, conceal: Callable[[int], bytes]) -> None:
        """Replace the silence concealer (e.g. ``lambda seq: transcoder.uplink_loss()`` for Opus)."""
        self.jitter.conceal = conceal

    async def frames(self) -> AsyncIterator[UplinkFrame]:
        """Uplink frames in order until the call ends."""
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)
                return
            assert isinstance(item, UplinkFrame)
            yield item

    def attach_sink(self, sink: Callable[[UplinkFrame], bool]) -> None:
        """Deliver uplink frames by calling ``sink(frame)`` as the jitter buffer releases them
        (in the ingress's datagram handler or the loop scheduler's pass: the batched call loop,
        no queue and no task wake-up per frame) instead of through :meth:`frames`. Frames
        queued before are delivered first, in order. ``sink`` returns False to stop taking
        frames (later ones are queued as if nobody read them, bounded by
        :data:`MAX_QUEUED_FRAMES`); it must not raise (an exception is logged and detaches
        it). The end of the call is :meth:`wait_closed`. Returns None."""
        self._sink = sink
        q = self._queue
        while self._sink is not None and not q.empty():
            item = q.get_nowait()
            if item is _END:
                q.put_nowait(_END)
                return
            assert isinstance(item, UplinkFrame)
            self._deliver(item)

    def _deliver(self, frame: UplinkFrame) -> None:
        sink = self._sink
        assert sink is not None
        try:
            keep = sink(frame)
        except Exception:  # the sink's bug must not end the transport session
            log.exception("uplink sink failed; frames are no longer delivered")
            keep = False
        if not keep:
            self._sink = None

    async def send_agent_audio(self, payload: bytes) -> None:
        if self._closed.is_set():
            return
        self.agent_frames_sent += 1
        await self._transport_send_audio(payload)

    def send_agent_audio_nowait(self, payload: bytes) -> bool:
        """Send one agent frame now, without awaiting, where the transport's send never waits
        (QUIC: the frame is handed to the connection); return False where it may wait
        (WebSocket: use :meth:`send_agent_audio`), True once sent (or dropped: call closed)."""
        send = self._transport_send_audio_nowait
        if send is None:
            return False
        if not self._closed.is_set():
            self.agent_frames_sent += 1
            send(payload)
        return True

    #: a transport whose audio send never waits sets this to its synchronous send
    _transport_send_audio_nowait: Callable[[bytes], None] | None = None

    async def send_control(self, event: dict[str, Any]) -> None:
        """Send a control event; raises LocalProtocolError for a malformed event."""
        if not isinstance(event, dict) or event.get("type") not in CONTROL_TYPES:
            raise LocalProtocolError(f"control event needs a type in {sorted(CONTROL_TYPES)}: {event!r}")
        try:
            json.dumps(event)
        except (TypeError, ValueError) as exc:
            raise LocalProtocolError(f"control event is not JSON-able: {exc}") from None
        if self._closed.is_set():
            return
        self.controls_sent += 1
        await self._transport_send_control(event)

    async def clear_playout(self) -> None:
        await self.send_control({"type": "clear_playout"})

    async def close(self, reason: str = "") -> None:
        if self._closed.is_set():
            return
        self._end(reason or "closed by pipeline")
        await self._transport_close(self.close_reason)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ------------------------------------------------------------ ingress side

    def feed_uplink(self, seq: int, payload: bytes, timestamp_ms: int | None = None) -> None:
        """An uplink frame arrived from the transport: jitter-buffer it and release what is due."""
        if self._closed.is_set():
            return
        self.uplink_frames += 1
        if seq < self.uplink_max_seq:
            self.uplink_out_of_order += 1  # overtaken by a later frame: no head-of-line blocking
        self.uplink_max_seq = max(self.uplink_max_seq, seq)
        now = self._loop.time()
        self.jitter.push(now, seq, payload, timestamp_ms)
        self._drain(now)

    def _drain(self, now: float) -> None:
        for frame in self.jitter.pop(now):
            self._enqueue(frame)
        deadline = self.jitter.get_timer()
        sched = self._sched or CallScheduler.of_loop(self._loop)
        if sched is not None:  # the batched call loop: one timer for every call's deadlines
            self._sched = sched
            sched.arm(self, None if self._closed.is_set() else deadline)
            return
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_at = None
        if self._closed.is_set():
            return
        self._drain(max(deadline or 0.0, self._loop.time()))

    def on_deadline(self, deadline: float) -> None:
        """The loop's :class:`~clutchcall.prod.call_scheduler.CallScheduler`: the jitter
        buffer's deadline ``deadline`` is due (the same as this call's own timer firing)."""
        if not self._closed.is_set():
            self._drain(max(deadline, self._loop.time()))

    # ------------------------------------------------------------ uplink bounds (issue 19)

    def _enqueue(self, frame: UplinkFrame) -> None:
        """Hand ``frame`` to the attached sink, else queue it for the pipeline unless
        :data:`MAX_QUEUED_FRAMES` already wait (a sender faster than the pipeline): then drop
        it and count it in ``uplink_dropped`` (the edge's violation guard sees it; the pipeline
        sees a sequence gap)."""
        if self._sink is not None:
            self._deliver(frame)
            return
        if self._queue.qsize() >= MAX_QUEUED_FRAMES:
            self.uplink_dropped += 1
            return
        self._queue.put_nowait(frame)

    async def close_violation(self, reason: str) -> None:
        """End the call because the caller broke its bounds: like :meth:`close`, but the
        transport closes with its policy code (WebSocket 1008, MoQT PROTOCOL_VIOLATION)."""
        self.policy_violation = True
        await self.close(reason)

    def _end(self, reason: str) -> None:
        """Mark the call ended (caller hung up or transport gone); flush the jitter buffer."""
        if self._closed.is_set():
            return
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
        if self._sched is not None:
            self._sched.cancel(self)
        # release what is buffered, in order, without waiting for its playout time
        for frame in self.jitter.pop(max(self._loop.time(), self.jitter.get_timer() or 0.0) + 3600.0):
            if self._sink is not None:
                self._deliver(frame)
            else:
                self._queue.put_nowait(frame)
        self._closed.set()
        self._queue.put_nowait(_END)

    # ------------------------------------------------------------ transport hooks

    async def _transport_send_audio(self, payload: bytes) -> None:  # pragma: no cover
        raise NotImplementedError

    async def _transport_send_control(self, event: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    async def _transport_close(self, reason: str) -> None:  # pragma: no cover
        raise NotImplementedError


#: a caller frame below this RMS level counts as silent for the jitter buffer's lag drain
SILENT_DBFS = -45.0


def silence_judge(codec: str, threshold_dbfs: float = SILENT_DBFS) -> Callable[[bytes], bool] | None:
    """Return a per-payload silence check for ``codec`` (RMS level below ``threshold_dbfs``),
    used by the jitter buffer to drain accumulated lag during silence: a cheap energy check
    for PCM16 / G.711; for Opus a decode (:func:`opus_silence_judge`, one per call: it keeps
    decoder state); None for an unknown codec (only concealed frames drain there)."""
    import numpy as np

    if codec == "opus":
        return opus_silence_judge(threshold_dbfs)

    from clutchcall.engine.audio import alaw_decode
    from clutchcall.engine.audio import ulaw_decode as _ulaw

    if codec == "pcm16":
        def pcm(payload: bytes) -> Any:
            return np.frombuffer(payload, dtype="<i2", count=len(payload) // 2)
    elif codec == "g711_ulaw":
        def pcm(payload: bytes) -> Any:
            return _ulaw(np.frombuffer(payload, dtype=np.uint8))
    elif codec == "g711_alaw":
        def pcm(payload: bytes) -> Any:
            return alaw_decode(np.frombuffer(payload, dtype=np.uint8))
    else:
        return None

    if codec == "pcm16":
        def is_silent(payload: bytes) -> bool:
            # all-zero bytes = digital silence (level -inf): no array, no BLAS call
            if isinstance(payload, bytes) and not payload.strip(b"\0"):
                return True
            return frame_energy_dbfs(pcm(payload)) < threshold_dbfs
    else:
        def is_silent(payload: bytes) -> bool:
            return frame_energy_dbfs(pcm(payload)) < threshold_dbfs

    return is_silent


def opus_silence_judge(threshold_dbfs: float = SILENT_DBFS) -> Callable[[bytes], bool]:
    """Return a silence check for one call's Opus payloads: each payload is decoded (at
    8 kHz, the cheapest output rate; the jitter buffer asks about every frame it releases, in
    order, so one decoder's inter-frame state stays right) and judged by its RMS level. An
    undecodable payload counts as not silent. Without it an Opus caller (the browser's
    default codec) kept every re-anchor's lag for the rest of the call: a page whose capture
    stalls once for 100 ms heard the agent 100 ms later on every later turn.

    Cost: one extra Opus decode per caller frame (about 40-150 us per 20 ms frame on the
    shared 2-core dev machine); the pipeline's own decode is separate."""
    from clutchcall.engine.audio import AudioError
    from clutchcall.engine.audio.opus import OpusDecoder

    decoder = OpusDecoder(8000)

    def is_silent(payload: bytes) -> bool:
        try:
            return frame_energy_dbfs(decoder.decode(payload)) < threshold_dbfs
        except AudioError:
            return False

    return is_silent


def frame_energy_dbfs(pcm: Any) -> float:
    """RMS level of one frame of int16 samples (ndarray) in dBFS; -inf for silence or empty."""
    import numpy as np

    x = np.asarray(pcm, dtype=np.float64).ravel()
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.dot(x, x)) / x.size)  # one BLAS call: the mean of squares
    return 20 * math.log10(rms / 32768.0) if rms > 0 else -math.inf


class TranscodingEchoHandler:
    """The pipeline's audio path with an echo for a model: every uplink frame goes through the
    audio contract's ``Transcoder`` to model-rate PCM16 (Opus PLC for concealed frames via
    ``set_concealer``) and straight back through ``Transcoder.downlink`` to the caller codec."""

    def __init__(self, model_rate: int = 24000) -> None:
        self.model_rate = model_rate
        self.model_bytes = 0
        self.concealed = 0

    async def on_call(self, call: CallSession) -> None:
        from clutchcall.engine.audio import Transcoder

        tc = Transcoder(call.codec, call.rate, model_rate=self.model_rate, frame_ms=call.frame_ms)
        call.set_concealer(lambda seq: tc.uplink_loss())
        async for frame in call.frames():
            if frame.concealed:
                self.concealed += 1
                pcm = frame.payload  # already model-rate PCM16 (the concealer above)
            else:
                pcm = tc.uplink(frame.payload)
            self.model_bytes += len(pcm)
            for payload in tc.downlink(pcm):
                await call.send_agent_audio(payload)


class EchoHandler:
    """Plays the caller's audio back.

    ``turn_silence_ms=None``: every uplink frame is sent straight back (audio both ways,
    byte-exact). Otherwise turn mode: frames louder than ``threshold_dbfs`` open a turn; after
    ``turn_silence_ms`` of quieter frames the turn's frames are played back (paced at 1x) after
    a ``commit`` control event. Speech arriving during playback stops it with
    ``clear_playout`` (barge-in). Energy is measured on the decoded frame (any codec, via the
    audio contract's ``Transcoder.decode_caller``).
    """

    def __init__(self, turn_silence_ms: int | None = None, threshold_dbfs: float = -40.0) -> None:
        self.turn_silence_ms = turn_silence_ms
        self.threshold_dbfs = threshold_dbfs
        self.calls: list[CallSession] = []
        self.turns = 0

    async def on_call(self, call: CallSession) -> None:
        self.calls.append(call)
        if self.turn_silence_ms is None:
            async for frame in call.frames():
                if not frame.concealed:
                    await call.send_agent_audio(frame.payload)
            return
        from clutchcall.engine.audio import AudioError, Transcoder

        decoder = Transcoder(call.codec, call.rate, frame_ms=call.frame_ms)  # decode_caller only
        turn: list[bytes] = []
        quiet_ms = 0
        playback: asyncio.Task[None] | None = None
        try:
            async for frame in call.frames():
                try:
                    pcm = decoder.conceal_caller() if frame.concealed else decoder.decode_caller(frame.payload)
                except AudioError:
                    continue  # an undecodable payload counts as neither speech nor silence
                loud = frame_energy_dbfs(pcm) > self.threshold_dbfs
                if loud:
                    if playback is not None and not playback.done():
                        playback.cancel()
                        await call.clear_playout()
                    turn.append(frame.payload)
                    quiet_ms = 0
                elif turn:
                    turn.append(frame.payload)
                    quiet_ms += call.frame_ms
                    if quiet_ms >= self.turn_silence_ms:
                        self.turns += 1
                        await call.send_control({"type": "commit", "turn": self.turns})
                        playback = asyncio.ensure_future(self._play(call, turn))
                        turn, quiet_ms = [], 0
        finally:
            if playback is not None and not playback.done():
                playback.cancel()

    @staticmethod
    async def _play(call: CallSession, frames: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, payload in enumerate(frames):
            delay = t0 + i * call.frame_ms / 1000.0 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await call.send_agent_audio(payload)
