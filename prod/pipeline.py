"""The per-call pipeline: the asyncio shell around the sans-IO call core.

Theory of operation
-------------------
One :class:`CallPipeline` per call, all on the edge's asyncio loop. Everything that decides
*when* -- the media clock and frame hold, the engine, the downlink playout at 1x, agent audio
started / finished, clear-playout, the turn latencies -- is the
:class:`~clutchcall.engine.call.CallCore` (``engine/call/``), which the simulator runs too.
This shell keeps what is I/O: the caller leg (decode, VAD framing, concealment with the
codec's PLC), the model leg (append / prime / commit / cancel over its socket), one sender
task that writes the core's downlink decisions to the caller in order, metrics and logs.

Its input is a stream of :class:`CallerFrame` (caller-codec payloads, normally one
``frame_ms`` frame each, in sequence order) pushed with :meth:`CallPipeline.feed` or pulled
by :meth:`CallPipeline.run` from an async iterator; its output is a :class:`Downlink` (send
one agent frame, clear the playout, send a control event). A caller leg plugs in with a thin
adapter (see :class:`CallSessionDownlink`).

The drive loop (docs/architecture.md §2, as in the simulator): every input goes to the core with
``now = loop.time()`` (a payload's decoded VAD frames, a model audio chunk, a response done),
then :meth:`CallPipeline._drive` performs everything :meth:`CallCore.transmit` returns
(``UplinkAudio`` -> batched, resampled, appended to the model leg; ``Prime`` / ``Commit`` /
``BackchannelFiltered`` -> the model leg; ``PlayoutCleared`` after ``Cancel`` -> the model
leg cancels and truncates the playing item at the audio actually sent, the caller's playout is
cleared; ``AgentFrame`` -> the sender; every engine output -> metrics) and re-arms the single
``loop.call_at`` timer at :meth:`CallCore.get_timer`, whose callback runs
``handle_timer(max(deadline, loop.time()))`` (or, given a shard's
:class:`~clutchcall.prod.call_scheduler.CallScheduler`, arms that one scheduler instead, which
calls :meth:`CallPipeline.on_deadline` in one pass with every other due call). Engine inputs are recorded by the recorder
passed in (``recorder=``, e.g. a trace recorder) and, with ``record_outputs``, in memory
(:attr:`CallPipeline.inputs` / :attr:`CallPipeline.outputs`).

Speculative commit (``TurnConfig.speculate``): ``Speculate`` -> the model leg commits and
requests the reply at once (:meth:`ModelLeg.speculate`); the reply's audio is handed to the
core marked ``speculative`` and the core holds it (``engine/call/speculation.py``: the hold is
a playout decision, the simulator runs the same); ``Release`` (the turn's commit) -> the core
lets the held audio go at once and the model leg keeps the reply; ``Retract`` -> the core drops
the held audio and the model leg sends ``response.cancel`` + ``conversation.item.delete`` (the
caller heard nothing, the model's context keeps no reply the caller never heard).

Latencies are the core's :class:`~clutchcall.engine.call.TurnRecord` (definitions in
``engine/call/latency.py``). The model leg failing ends the call's pipeline cleanly with an
``error`` control event to the caller; it never raises into the caller leg. A caller that
breaks the core's bounds (frames far ahead of real time, endless concealment) is counted and
flagged in ``pipeline.core.violation``; ending such calls is the edge's decision.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from clutchcall.engine import (
    Append,
    BackchannelFiltered,
    Commit,
    ConfigError,
    Output,
    Prime,
    Release,
    RemoteProtocolError,
    Retract,
    Speculate,
    TurnConfig,
    TurnEngine,
)
from clutchcall.engine.audio import AudioError, Codec, Transcoder
from clutchcall.engine.audio.features import FeatureTracker, FrameFeatures, frame_level_db
from clutchcall.engine.audio.smart_turn import LiveProbe, SmartTurn
from clutchcall.engine.audio.vad import VAD_BACKENDS, FrameVad, make_vad_framer
from clutchcall.engine.call import (
    AgentFrame,
    CallCore,
    EngineInput,
    HoldConfig,
    MemoryRecorder,
    PlayoutCleared,
    PlayoutConfig,
    PlayoutRewound,
    Recorder,
    ReplyWithoutAudio,
    TeeRecorder,
    TurnMeasured,
    TurnRecord,
    UplinkAudio,
)
from clutchcall.engine.call.core import Event
from clutchcall.prod.call_scheduler import CallScheduler
from clutchcall.prod.metrics import EdgeMetrics, call_logger, current_call_id
from clutchcall.prod.model.client import AudioChunk, ModelLeg, ModelLegConfig
from clutchcall.prod.model.protocol import SAMPLE_RATE as MODEL_RATE
from clutchcall.prod.model.protocol import ModelTimeoutError

log = logging.getLogger("clutchcall.pipeline")



# --------------------------------------------------------------------------- interfaces
@dataclass(frozen=True, slots=True)
class CallerFrame:
    """One uplink payload. ``seq``: increasing frame number (gaps are losses), None to
    number them in order; ``ts``: the sender's media time of the frame start (s), optional;
    ``concealed``: the caller leg already concealed a loss with this payload."""

    payload: bytes
    seq: int | None = None
    ts: float | None = None
    concealed: bool = False


class Downlink(Protocol):
    """Where the pipeline sends to the caller (all awaited from the pipeline's pacer task)."""

    async def send_agent_audio(self, payload: bytes) -> None:
        """Send one ``frame_ms`` frame of agent audio in the caller codec."""

    async def clear_playout(self) -> None:
        """Tell the caller to drop agent audio it has queued (barge-in)."""

    async def send_control(self, event: dict[str, Any]) -> None:
        """Send a control event (``commit``, ``cancel``, ``error``, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """Per-call knobs of the pipeline (the engine's are in :class:`TurnConfig`)."""

    caller_rate: int = 16000
    """Caller-leg sample rate (Hz); the codec must support it (Opus: 8-48 kHz, decoded at
    24 kHz; G.711: 8 kHz; PCM16: 8/16/24/32/48 kHz)."""
    caller_codec: str = "pcm16"
    """Caller-leg codec: ``pcm16``, ``opus``, ``g711_ulaw`` or ``g711_alaw``."""
    caller_frame_ms: int = 20
    """Downlink packetisation: agent audio goes to the caller in frames this long."""
    resample_quality: str = "auto"
    """Quality of the caller<->model resamplers (the Transcoder's ``quality``). "auto" (default)
    uses the low-latency polyphase resampler where the rate ratio allows (8/16 <-> 24 kHz:
    1.3-3.9 ms of delay, every frame out at once) and soxr HQ otherwise. soxr "HQ" delays the
    first agent frame of a reply by ~19 ms on average (40 ms max) for 16 kHz callers -- straight
    into edge-added latency; "LQ" 6-27 ms. Callers at 24 kHz and Opus callers need none."""
    late_after_ms: int = 60
    """A frame arriving this much later than its media time predicts counts as late."""
    underrun_finish_ms: int = 400
    """With the queue empty this long and the response not done, the agent counts as finished."""
    max_bad_frames: int = 50
    """This many malformed caller payloads in a row end the call (``error`` ``bad_uplink``);
    fewer are dropped and counted as lost."""
    drain_timeout_s: float = 10.0
    """After the caller's last frame, :meth:`CallPipeline.run` waits at most this long for the
    agent's reply to finish playing."""
    max_ahead_ms: int = 1000
    """At most this much caller audio may wait ahead of the media clock (a sender faster than
    real time); beyond it frames are dropped and the core flags ``hold_overflow``."""
    max_conceal_per_gap: int = 50
    """At most this many frames are concealed for one sequence gap."""
    max_conceal_per_s: int = 50
    """Concealment budget per second (a bucket this deep); refusals flag ``conceal_rate``."""
    vad: str = "webrtc"
    """VAD backend that judges the caller's frames (``engine/audio/vad.py``): ``webrtc``
    (default) or ``silero`` (needs the ``[silero]`` extra; ~0.3 ms of CPU per 20 ms frame)."""

    def __post_init__(self) -> None:
        codec = Codec.parse(self.caller_codec)  # raises ConfigError
        if self.vad not in VAD_BACKENDS:
            raise ConfigError(f"PipelineConfig.vad: one of {VAD_BACKENDS}, got {self.vad!r}")
        if self.caller_rate not in codec.rates:
            raise ConfigError(f"PipelineConfig.caller_rate: {self.caller_rate} not supported by "
                              f"{codec.value} (allowed: {sorted(codec.rates)})")
        if self.max_bad_frames < 1:
            raise ConfigError("PipelineConfig.max_bad_frames: must be >= 1")
        if self.late_after_ms < 0 or self.underrun_finish_ms < 20 or self.drain_timeout_s < 0:
            raise ConfigError("PipelineConfig: late_after_ms >= 0, underrun_finish_ms >= 20, "
                              "drain_timeout_s >= 0")


# --------------------------------------------------------------------------- the pipeline
class CallPipeline:
    """One call's asyncio shell around a :class:`~clutchcall.engine.call.CallCore`.
    ``await start()``, then ``feed(frame)`` per uplink payload (or ``await run(frames)``),
    then ``await close()``. See the module docstring."""

    def __init__(
        self,
        downlink: Downlink,
        *,
        call_id: str = "call",
        turn_config: TurnConfig | None = None,
        config: PipelineConfig | None = None,
        model_config: ModelLegConfig | None = None,
        model_url: str | None = None,
        metrics: EdgeMetrics | None = None,
        record_outputs: bool = True,
        recorder: Recorder | None = None,
        scheduler: CallScheduler | None = None,
    ) -> None:
        self.call_id = call_id
        self.scheduler = scheduler
        """The shard's one scheduler for the core deadlines of all its calls (the batched call
        loop, :mod:`clutchcall.prod.call_scheduler`); None: this call's own loop timer."""
        self.downlink = downlink
        self.turn_config = turn_config or TurnConfig()
        self.config = cfg = config or PipelineConfig()
        self.metrics = metrics or EdgeMetrics()
        self.log = call_logger(log, call_id)
        self.frame_ms = self.turn_config.frame_ms
        self.transcoder = Transcoder(cfg.caller_codec, cfg.caller_rate, MODEL_RATE,
                                     frame_ms=cfg.caller_frame_ms, quality=cfg.resample_quality)
        # the VAD judges what the caller leg decoded (before any resampling delay)
        self.vad_rate = self.transcoder.codec_rate
        self.vad: FrameVad = make_vad_framer(self.vad_rate, self.frame_ms,
                                             self.turn_config.vad_aggressiveness, cfg.vad)
        self.model = ModelLeg(
            model_config or ModelLegConfig(), url=model_url, on_audio=self._on_model_audio,
            on_response_done=self._on_response_done, on_error=self._on_model_error,
            on_closed=self._on_model_closed, metrics=self.metrics, logger=self.log)
        memory = MemoryRecorder() if record_outputs else None
        self.outputs: list[Output] | None = None if memory is None else memory.outs
        """Every engine output in order (with ``record_outputs``)."""
        self.inputs: list[EngineInput] | None = None if memory is None else memory.inputs
        """Every engine input in order (with ``record_outputs``), for replay."""
        recorders = [r for r in (memory, recorder) if r is not None]
        rec: Recorder | None = (None if not recorders else recorders[0] if len(recorders) == 1
                                else TeeRecorder(*recorders))
        # soft barge-in (issue 15): agent frames wait in the core's playout as caller-rate PCM
        # and are encoded when sent, with the duck gain (a ramp) applied first; caller frames
        # carry acoustic features when the policy or the end-of-turn rule reads them (evidence;
        # smart-turn, prosodic)
        smart = self.turn_config.end_of_turn_rule == "smart-turn"
        self._features: FeatureTracker | None = (
            FeatureTracker() if self.turn_config.policy == "evidence" or smart
            or self.turn_config.end_of_turn_rule == "prosodic" else None)
        # opt-in smart-turn rule: each pause's analysed frame carries the model's probability
        self._turn_probe: LiveProbe | None = (
            LiveProbe(_smart_turn_model(), self.vad_rate, self.frame_ms) if smart else None)
        self.core: CallCore[np.ndarray, np.ndarray] = CallCore(
            self.turn_config, recorder=rec,
            hold=HoldConfig(frame_ms=self.frame_ms, late_after_ms=cfg.late_after_ms,
                            max_ahead_ms=cfg.max_ahead_ms,
                            max_conceal_per_gap=cfg.max_conceal_per_gap,
                            max_conceal_per_s=cfg.max_conceal_per_s),
            playout=PlayoutConfig(frame_ms=cfg.caller_frame_ms,
                                  underrun_finish_ms=cfg.underrun_finish_ms),
            agent_level=frame_level_db if self._features is not None else None)
        self.failed: str | None = None
        self.loop = asyncio.get_running_loop()
        self._up_batch: list[np.ndarray] = []  # appended, not yet resampled for the model
        self._up_batch_samples = 0
        self._up_batch_max = self.vad_rate * self.model.config.append_batch_ms // 1000
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # downlink: what the core decided to send, in order, sent by one task
        self._ops: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self._bad = 0  # malformed caller payloads in a row (push)
        self._stopped = asyncio.Event()  # push path: the pipeline failed or the edge ended it
        # agent frames go straight to a caller leg whose send never waits (QUIC) while
        # nothing is queued for the sender task; otherwise through the sender, in order
        self._send_now = getattr(downlink, "send_agent_audio_nowait", None)
        self._sender_idle = False
        self.agent_frames_sent = 0
        self._rewound = 0  # agent frames taken back by rewinds (written twice)

    @property
    def engine(self) -> TurnEngine:
        """The call's turn engine (owned by the core)."""
        return self.core.engine

    @property
    def turns(self) -> list[TurnRecord]:
        """The committed turns measured so far."""
        return self.core.turns

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the model leg and start the sender. Raises RemoteProtocolError if the
        model cannot be reached (the caller is told with an ``error`` control event)."""
        current_call_id.set(self.call_id)
        self.metrics.calls_active.inc()
        self._sender = asyncio.create_task(self._send_loop())
        try:
            await self.model.connect()
        except RemoteProtocolError as exc:
            self._fail(f"model leg unavailable: {exc}",
                       code="model_timeout" if isinstance(exc, ModelTimeoutError) else "model_unavailable")
            raise

    async def run(self, frames: AsyncIterator[CallerFrame]) -> list[TurnRecord]:
        """Start, feed every frame of ``frames`` until it ends (or the model leg fails), wait
        up to ``drain_timeout_s`` for the reply in flight to finish, close. Returns the turns."""
        async def feed() -> None:
            async for frame in frames:
                if not self.push(frame):  # failed (e.g. max_bad_frames malformed in a row)
                    break

        return await self._lifecycle(feed)

    async def _lifecycle(self, uplink: Callable[[], Awaitable[None]]) -> list[TurnRecord]:
        """Start, run ``uplink`` (the caller's frames, pulled or pushed), wait up to
        ``drain_timeout_s`` for the reply in flight, close (also on failure). Returns the turns."""
        try:
            await self.start()
            await uplink()
            await self.wait_quiet(self.config.drain_timeout_s)
        except RemoteProtocolError:
            pass  # the model leg could not be reached: start() told the caller
        finally:
            await self.close()
        return self.turns

    def push(self, frame: CallerFrame) -> bool:
        """Process one caller frame: the batched call loop's uplink (the caller leg calls this
        as it releases each frame, no task per call) and :meth:`run`'s per frame
        (:meth:`feed`; a malformed payload is concealed like a lost frame, and
        ``max_bad_frames`` of them in a row fail the call with ``bad_uplink``). Return False
        once the pipeline takes no more frames (failed): the caller stops delivering. Never
        raises for the caller's fault."""
        if self.failed or self._closed:
            return False
        try:
            good = self.feed(frame)
        except RemoteProtocolError as exc:
            self.log.warning("caller frame dropped: %s", exc)
            good = False
        self._bad = 0 if good else self._bad + 1
        if self._bad >= self.config.max_bad_frames:
            self._fail(f"{self._bad} bad caller frames in a row", code="bad_uplink")
        return not self.failed

    async def run_pushed(self, attach: Callable[[], None], ended: Awaitable[Any]) -> list[TurnRecord]:
        """Like :meth:`run`, with the uplink pushed (:meth:`push`) instead of pulled: start,
        ``attach()`` (the caller leg begins calling :meth:`push`), wait until ``ended`` (the
        caller leg's end) completes or the pipeline fails, wait up to ``drain_timeout_s`` for
        the reply in flight, close. Returns the turns."""
        async def pushed() -> None:
            attach()
            end = asyncio.ensure_future(ended)
            stop = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait((end, stop), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (end, stop):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t

        return await self._lifecycle(pushed)

    def stop(self) -> None:
        """End :meth:`run_pushed`'s wait for the caller leg (the edge ended the call). Returns None."""
        self._stopped.set()

    async def wait_quiet(self, timeout: float) -> None:
        """Return once no reply is pending or playing (or after ``timeout`` seconds)."""
        end = self.loop.time() + timeout
        while self.loop.time() < end and not self.failed:
            if self.core.idle() and not self._ops:
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Stop the timer and the sender, close the model leg. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.core.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.scheduler is not None:
            self.scheduler.cancel(self)
        if not self.failed:
            self._flush_uplink()
        await self.model.close()
        if self._sender is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._sender), 1.0)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
        self.metrics.calls_active.dec()

    # -- uplink --------------------------------------------------------------------------
    def feed(self, frame: CallerFrame) -> bool:
        """Process one uplink payload now; return True if it was good. A malformed payload
        (the transcoder raised ``AudioError``) is counted as lost and concealed like one, and
        False is returned; so are losses (sequence gaps). A sequence number that goes back
        raises RemoteProtocolError (nothing is processed). Concealment is bounded by the
        core (``max_conceal_per_gap`` / ``max_conceal_per_s``)."""
        if self._closed or self.failed:
            return True
        arrival = self.loop.time()
        core = self.core
        lost = core.caller_seq(frame.seq)
        parts: list[np.ndarray] = []
        if lost:
            # a gap: conceal the lost frames (Opus: PLC, before the next packet is decoded) so
            # the engine and the model keep a continuous 1x timeline
            self.metrics.frames_lost.inc(lost)
            parts = [self.transcoder.conceal_caller()
                     for _ in range(core.admit_conceal(arrival, lost))]
        good = True
        pcm: np.ndarray | None
        if frame.concealed:
            # a frame the caller leg concealed is concealed here (Opus: PLC from the decoder's
            # state) rather than decoded from the caller leg's placeholder payload
            pcm = self.transcoder.conceal_caller() if core.admit_conceal(arrival, 1) else None
        else:
            try:
                pcm = self.transcoder.decode_caller(frame.payload)
            except AudioError as exc:
                good = False
                self.log.warning("bad caller frame concealed: %s", exc)
                pcm = self.transcoder.conceal_caller() if core.admit_conceal(arrival, 1) else None
        if frame.concealed or not good:
            self.metrics.frames_lost.inc()
        own = 0 if pcm is None else len(pcm)
        chunks = parts if pcm is None else [*parts, pcm]
        if chunks:
            whole = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            rate = self.vad_rate
            media_end = None
            if frame.ts is not None:
                media_end = frame.ts + (own / rate if pcm is not None
                                        else self.config.caller_frame_ms / 1000)
            late = core.stats.late
            vad_frames = self.vad.push(whole)
            core.caller_audio(arrival, vad_frames, media_end=media_end,
                              duration_s=len(whole) / rate,
                              pending_s=self.vad.splitter.pending / rate,
                              features=self._frame_features(vad_frames))
            if core.stats.late > late:
                self.metrics.frames_late.inc(core.stats.late - late)
        self._drive()
        return good

    def _frame_features(self, frames: list[tuple[np.ndarray, bool]]
                        ) -> list[FrameFeatures | None] | None:
        """Return each VAD frame's acoustic features (``engine/audio/features.py``), or None
        when nothing reads them (neither the evidence policy nor the smart-turn rule, whose
        probability rides on each pause's analysed frame). The agent phrase-end cue (``agent_edge_ms``) is filled in
        by the core from the agent audio it plays (``agent_level``)."""
        tracker = self._features
        if tracker is None:
            return None
        fms = self.frame_ms
        rate = self.vad_rate
        feats: list[FrameFeatures | None] = [tracker.push_pcm(f, rate, sp, fms) for f, sp in frames]
        probe = self._turn_probe
        if probe is not None:
            for k, (f, sp) in enumerate(frames):
                p = probe.push(f, sp)
                ft = feats[k]
                if p == p and ft is not None:
                    feats[k] = dataclasses.replace(ft, turn_end_p=p)
        return feats

    def agent_played(self, frames_written: int) -> None:
        """The far end confirmed it has played every agent frame up to the
        ``frames_written``-th this pipeline wrote (Twilio: the echo of a ``mark`` sent after
        that frame; echoes of marks sent before a clear must not be passed -- Twilio echoes
        those at once, unplayed). From the first call on, the core's pause / duck take back
        what the far end still buffers (a ``clear`` goes out, the frames are written again)
        and a Cancel truncates at what was heard. Frames written twice (taken back) are
        counted once. Raises ConfigError for a position beyond what was written."""
        if self._closed:
            return
        self.core.agent_played(self.loop.time(), frames_written - self._rewound)
        self._drive()

    # -- the drive loop ------------------------------------------------------------------
    def _drive(self) -> None:
        """Perform everything the core decided, then re-arm the one timer."""
        for ev in self.core.transmit():
            self._perform(ev)
        deadline = self.core.get_timer()
        if self.scheduler is not None:
            self.scheduler.arm(self, None if self._closed else deadline)
            return
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._closed:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_at = None
        if deadline is None or self._closed:
            return
        self.core.handle_timer(max(deadline, self.loop.time()))
        self._drive()

    def on_deadline(self, deadline: float) -> None:
        """The shard scheduler's callback (batched call loop): the core deadline
        ``deadline`` is due; the same as this call's own timer firing."""
        if self._closed:
            return
        self.core.handle_timer(max(deadline, self.loop.time()))
        self._drive()

    def _perform(self, ev: Event) -> None:
        if ev.__class__ is Append:
            return  # the engine's one output per caller frame: no metric, nothing to perform
        if isinstance(ev, UplinkAudio):
            if not self.failed:
                # resampled and handed to the model leg in batches of its append size (one
                # soxr call per batch, not per frame); every other action flushes first
                f: np.ndarray = ev.payload
                self._up_batch.append(f)
                self._up_batch_samples += f.shape[0]
                if self._up_batch_samples >= self._up_batch_max:
                    self._flush_uplink()
        elif isinstance(ev, AgentFrame):
            self.agent_frames_sent += 1
            # encoded now, in send order, with the core's gain ramp (duck / restore)
            self._send("audio", self.transcoder.encode_agent(ev.payload, ev.gain_start, ev.gain))
        elif isinstance(ev, PlayoutRewound):
            # a pause / duck took back audio the far end had buffered: drop it there
            self._rewound += ev.frames
            self._send("clear", None)
        elif isinstance(ev, Output):
            self.metrics.observe_output(ev)  # (Append returned above)
            if ev.is_action or isinstance(ev, BackchannelFiltered):
                self._flush_uplink()
            if isinstance(ev, Prime):
                self.model.prime()
            elif isinstance(ev, Commit):
                self.model.commit()
                self._send("control", {"type": "commit", "turn": ev.turn})
            elif isinstance(ev, BackchannelFiltered):
                self.model.backchannel_filtered()
            elif isinstance(ev, (Speculate, Release, Retract)):
                self._perform_speculation(ev)
        elif isinstance(ev, PlayoutCleared):
            self.transcoder.downlink_reset()
            heard = ev.sent_ms if ev.heard_ms is None else ev.heard_ms
            end = self.model.cancel(self._played_ms_on_cancel(ev.agent_played_ms, heard),
                                    item_id=ev.item_id, sent_ms=heard)
            self.log.info("barge-in: cancel, truncate %s at %s ms", ev.item_id, end)
            self._send("clear", None)
            self._send("control", {"type": "cancel", "agent_played_ms": ev.agent_played_ms,
                                   "audio_end_ms": end})
        elif isinstance(ev, TurnMeasured):
            turn = ev.record
            assert turn.turn_latency_ms is not None
            self.metrics.observe_turn(turn.turn_latency_ms / 1000,
                                      None if turn.edge_added_ms is None else turn.edge_added_ms / 1000)
            self.log.info("turn %d: latency %.1f ms, edge-added %s ms", turn.turn,
                          turn.turn_latency_ms,
                          None if turn.edge_added_ms is None else round(turn.edge_added_ms, 2))
        elif isinstance(ev, ReplyWithoutAudio):
            # the reply ended (or was refused) without audio: the engine stopped waiting for it
            self.log.warning("model reply %r ended without audio (%s)", ev.response_id, ev.status)

    # -- speculative commit (the hold itself is the core's: engine/call/speculation.py) -----
    def _perform_speculation(self, ev: Speculate | Release | Retract) -> None:
        if isinstance(ev, Speculate):
            self.model.speculate()
        elif isinstance(ev, Release):
            self.model.release()
            self._send("control", {"type": "commit", "turn": ev.turn})
        else:
            self.model.retract()
            if not self.core.playout.playing:
                self.transcoder.downlink_reset()  # the dropped reply's partial frame
            self.log.info("speculation on turn %d retracted (%s) after %d ms", ev.turn,
                          ev.reason, ev.held_ms)

    def _is_speculative(self, response_id: str) -> bool:
        """Return whether ``response_id`` is the speculative reply in flight (``""``: a
        request the model refused while a speculation was in flight)."""
        model = self.model
        return model.speculating and (response_id == model.speculative_response_id
                                      or response_id == "")

    def _flush_uplink(self) -> None:
        if self._up_batch:
            pcm = self._up_batch[0] if len(self._up_batch) == 1 else np.concatenate(self._up_batch)
            self._up_batch = []
            self._up_batch_samples = 0
            model_pcm = self.transcoder.to_model(pcm)
            if model_pcm:
                self.model.append(model_pcm)

    # -- downlink ------------------------------------------------------------------------
    def _send(self, kind: str, arg: Any) -> None:
        if (kind == "audio" and self._sender_idle and not self._ops and not self._closed
                and self._send_now is not None):
            try:
                if self._send_now(arg):
                    return
            except (ConnectionError, RemoteProtocolError) as exc:
                self._fail(f"downlink failed: {exc}")
                return
        self._ops.append((kind, arg))
        self._wake.set()

    def _on_model_audio(self, chunk: AudioChunk) -> None:
        if self._closed or self.core.playout.is_dropped(chunk.response_id):
            return
        self.core.agent_audio(self.loop.time(), chunk.response_id, chunk.item_id,
                              self.transcoder.downlink_frames(chunk.pcm), first=chunk.first,
                              model_ttfa_s=chunk.model_ttfa_s, received_at=chunk.received_at,
                              speculative=self._is_speculative(chunk.response_id))
        self._drive()

    def _on_response_done(self, response_id: str, status: str) -> None:
        if self._closed:
            return
        core = self.core
        now = self.loop.time()
        spec = self._is_speculative(response_id)
        if not core.playout.is_dropped(response_id) and (core.playout.has_audio(response_id)
                                                          or core.playout.playing):
            tail = self.transcoder.downlink_flush_frames()
            if tail:
                core.agent_audio(now, response_id, None, tail, speculative=spec)
        core.response_done(now, response_id, status, speculative=spec)
        self._drive()

    async def _send_loop(self) -> None:
        """The only sender to the caller: performs the core's downlink decisions in order."""
        ops = self._ops
        try:
            while True:
                while ops:
                    kind, arg = ops.popleft()
                    if kind == "control":
                        await self.downlink.send_control(arg)
                    elif self._closed:
                        continue  # after close only control events still go out
                    elif kind == "audio":
                        await self.downlink.send_agent_audio(arg)
                    else:
                        await self.downlink.clear_playout()
                if self._closed:
                    return
                self._wake.clear()
                self._sender_idle = True
                try:
                    await self._wake.wait()
                finally:
                    self._sender_idle = False
        except (ConnectionError, RemoteProtocolError) as exc:
            self._fail(f"downlink failed: {exc}")

    def _played_ms_on_cancel(self, engine_played_ms: int, sent_ms: int | None) -> int:
        """Return the played-time to truncate the model's reply at. A caller leg that confirms
        playback (Twilio mark echoes: ``unconfirmed_ms()``) is believed: what was sent of the
        item minus what is not yet confirmed played, minus frames the core emitted that the
        sender has not written yet (they are cleared unplayed). Otherwise the engine's agent
        clock."""
        unconfirmed = getattr(self.downlink, "unconfirmed_ms", None)
        u = unconfirmed() if callable(unconfirmed) else None
        if u is None or sent_ms is None:
            return engine_played_ms
        unsent = sum(1 for kind, _ in self._ops if kind == "audio") * self.config.caller_frame_ms
        return max(0, sent_ms - u - unsent)

    # -- failures ------------------------------------------------------------------------
    def _on_model_error(self, exc: RemoteProtocolError) -> None:
        # logged and counted by the model leg; the call continues. A reply that timed out
        # for good (its retry too) is told to the caller: it would otherwise hear silence.
        if isinstance(exc, ModelTimeoutError) and exc.final:
            self._send("control", {"type": "error", "code": "model_timeout",
                                   "stage": exc.stage, "message": str(exc)})

    def _on_model_closed(self, exc: BaseException | None) -> None:
        if not self._closed:
            self.metrics.model_error("connection", "closed")
            self._fail(f"model leg closed: {exc}")

    def _fail(self, reason: str, code: str = "model_unavailable") -> None:
        if self.failed:
            return
        self.failed = reason
        self._stopped.set()
        self.log.error("call failed: %s", reason)
        self._send("control", {"type": "error", "code": code, "message": reason})

# --------------------------------------------------------------------------- adapters
class CallSessionDownlink:
    """Adapts a caller leg's ``CallSession`` (prod/ingress/call.py) to :class:`Downlink`."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def send_agent_audio(self, payload: bytes) -> None:
        await self.call.send_agent_audio(payload)

    def send_agent_audio_nowait(self, payload: bytes) -> bool:
        """Send one agent frame now if the caller leg's send never waits (QUIC); return
        False (nothing sent) where it may wait: then :meth:`send_agent_audio`."""
        f = getattr(self.call, "send_agent_audio_nowait", None)
        return bool(f(payload)) if f is not None else False

    async def clear_playout(self) -> None:
        await self.call.clear_playout()

    async def send_control(self, event: dict[str, Any]) -> None:
        await self.call.send_control(event)

    def unconfirmed_ms(self) -> int | None:
        """Agent audio (ms) sent but not yet confirmed played by the caller leg (Twilio mark
        echoes), or None where the transport does not confirm playback."""
        f = getattr(self.call, "unconfirmed_ms", None)
        return int(f()) if callable(f) else None

    def confirmed_played_ms(self) -> int | None:
        """Agent audio (ms) the caller leg confirmed played so far on the call (Twilio mark
        echoes; cumulative, a lower bound at most one mark interval behind), or None where
        the transport does not confirm playback (prod/ingress/ws.py docstring)."""
        played = getattr(self.call, "played_ms", None)
        return int(played) if isinstance(played, int) else None


@dataclass
class MemoryDownlink:
    """A downlink that keeps what it is sent, with loop timestamps (for tests and tools)."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)

    async def send_agent_audio(self, payload: bytes) -> None:
        self.frames.append((asyncio.get_running_loop().time(), payload))

    async def clear_playout(self) -> None:
        self.clears.append(asyncio.get_running_loop().time())

    async def send_control(self, event: dict[str, Any]) -> None:
        self.controls.append(event)


def _smart_turn_model() -> SmartTurn:
    """The process's smart-turn session (``end_of_turn_rule = "smart-turn"`` only; imported
    here so the default path never loads onnxruntime)."""
    from clutchcall.traces.smart_turn_model import shared_model

    return shared_model()
