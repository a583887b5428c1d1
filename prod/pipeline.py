"""The per-call pipeline: caller audio -> VAD -> turn engine -> model leg; model audio -> caller.

Theory of operation
-------------------
One :class:`CallPipeline` per call, all on the edge's asyncio loop. Its input is a stream of
:class:`CallerFrame` (caller-codec payloads, normally one ``frame_ms`` frame each, in sequence
order) pushed with :meth:`CallPipeline.feed` or pulled by :meth:`CallPipeline.run` from an async
iterator; its output is a :class:`Downlink` (send one agent frame, clear the playout, send a
control event). A caller leg plugs in with a thin adapter (see :class:`CallSessionDownlink`).

Uplink, per payload: the transcoder decodes it to PCM at the caller rate, the VAD framer cuts
``frame_ms`` frames and judges each, and each frame goes into the :class:`TurnEngine` with
``now`` = when it was due at the edge: its media time (``CallerFrame.ts``) plus the smallest
transit seen (or its arrival when it has no media time). That is the engine's clock, the
*media clock*; it runs behind the loop clock by the current lag (the latest frame's arrival
minus its due time), and the timer, agent start/finish and holds are all placed on it
(``loop.time() - lag``), so arrival jitter never reorders caller frames against the agent's
audio or the deadlines. Frames are laid end to end (never overlapping, never back in time);
one that would end in that clock's future is held until then. Then the one drive loop of DESIGN §2: drain the engine, perform
each output (``Append`` -> the frame's 24 kHz audio to the model leg, ``Prime`` / ``Commit`` /
``BackchannelFiltered`` / ``Cancel`` -> the model leg; every output -> metrics), and re-arm the
single ``loop.call_at`` timer whose callback runs ``handle_timer(max(deadline, loop.time()))``.

Downlink: model audio chunks are transcoded to caller frames and queued; one pacer task sends
them at 1x (frame k of a run at ``start + k * frame_ms``; a late wake-up catches up on that
schedule, only a queue that ran dry restarts it). The engine hears
``agent_audio_started`` when the first frame of a run is actually sent and
``agent_audio_finished`` when the last one has finished playing (the model said the response
is done and the queue is empty) or the playout was cleared. On ``Cancel`` the queue is dropped
and the caller's playout cleared at once, and the model leg is told to cancel and to truncate
the playing item at the audio actually sent to the caller.

Latencies, per committed turn (:class:`TurnRecord`): *turn latency* = first agent frame sent
- when the turn's last speech frame was due at the edge (both on the loop clock);
*edge-added* = turn latency - the configured end-of-turn silence - the model's own time to
first audio as measured at the model leg (``response.create`` written -> first delta read).
So a late timer, a held frame, queues, transcoding and pacing all count as edge-added.

Speculative commit (``TurnConfig.speculate``): ``Speculate`` -> the model leg commits and
requests the reply at once and a :class:`~clutchcall.prod.speculation.ReplyHold` keeps that
reply's audio (and its end) away from the downlink; ``Release`` (the turn's commit) hands the
held events to the downlink at once, so the first frame goes out with no further model wait;
``Retract`` -> the model leg cancels the reply and deletes its item, the hold drops its audio,
the caller hears nothing. For a released turn, what ClutchCall cannot remove is
``max(end-of-turn silence, speculation silence + the model's time to first audio)``, so
edge-added = turn latency minus that. The model leg failing ends the call's pipeline cleanly with an
``error`` control event to the caller; it never raises into the caller leg.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from clutchcall.engine import (
    Append,
    BackchannelFiltered,
    Cancel,
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
from clutchcall.engine.audio import AudioError, Codec, Transcoder, VadFramer
from clutchcall.prod.metrics import EdgeMetrics, call_logger, current_call_id
from clutchcall.prod.model.client import AudioChunk, ModelLeg, ModelLegConfig
from clutchcall.prod.model.protocol import SAMPLE_RATE as MODEL_RATE
from clutchcall.prod.speculation import ReplyHold

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

    def __post_init__(self) -> None:
        codec = Codec.parse(self.caller_codec)  # raises ConfigError
        if self.caller_rate not in codec.rates:
            raise ConfigError(f"PipelineConfig.caller_rate: {self.caller_rate} not supported by "
                              f"{codec.value} (allowed: {sorted(codec.rates)})")
        if self.max_bad_frames < 1:
            raise ConfigError("PipelineConfig.max_bad_frames: must be >= 1")
        if self.late_after_ms < 0 or self.underrun_finish_ms < 20 or self.drain_timeout_s < 0:
            raise ConfigError("PipelineConfig: late_after_ms >= 0, underrun_finish_ms >= 20, "
                              "drain_timeout_s >= 0")


@dataclass(slots=True)
class TurnRecord:
    """One committed turn and its latencies (ms, None until measured). Times are loop-clock
    seconds: ``last_speech_at`` when the turn's last speech frame was due (its nominal
    arrival: media time + the smallest transit seen), ``commit_at`` the
    engine's Commit time, ``performed_at`` when the commit was handed to the model leg,
    ``first_audio_at`` when the first agent frame was sent to the caller."""

    turn: int
    last_speech_at: float
    commit_at: float
    performed_at: float
    first_audio_at: float | None = None
    turn_latency_ms: float | None = None
    eot_silence_ms: float | None = None
    model_ttfa_ms: float | None = None
    edge_added_ms: float | None = None
    response_id: str | None = None
    commit_delay_ms: float | None = None
    """Edge-added part 1: the end-of-turn deadline -> Commit handed to the model leg (timer
    lateness, held frames)."""
    request_delay_ms: float | None = None
    """Part 2: Commit handed over -> ``response.create`` written to the socket (queue)."""
    downlink_delay_ms: float | None = None
    """Part 3: first audio delta read -> first agent frame sent (transcode, pacer)."""
    uplink_hold_ms: float | None = None
    """How long the last speech frame waited between its nominal arrival and the engine's
    clock (it was laid end to end after a late frame or a timer); part of edge-added."""
    speculative_silence_ms: float | None = None
    """A released speculation: the silence (ms) after the last speech frame at which the reply
    was requested (``Speculate``); None for a plain commit."""
    released_at: float | None = None
    """A released speculation: loop time of its ``Release`` (the held audio went to the
    downlink then); ``performed_at`` is when its request was handed to the model leg."""

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-able dict."""
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the pipeline
class CallPipeline:
    """One call's pipeline. ``await start()``, then ``feed(frame)`` per uplink payload (or
    ``await run(frames)``), then ``await close()``. See the module docstring."""

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
    ) -> None:
        self.call_id = call_id
        self.downlink = downlink
        self.turn_config = turn_config or TurnConfig()
        self.config = config or PipelineConfig()
        self.metrics = metrics or EdgeMetrics()
        self.log = call_logger(log, call_id)
        self.engine = TurnEngine(self.turn_config)
        self.frame_ms = self.turn_config.frame_ms
        self._frame_s = self.frame_ms / 1000
        cfg = self.config
        self.transcoder = Transcoder(cfg.caller_codec, cfg.caller_rate, MODEL_RATE,
                                     frame_ms=cfg.caller_frame_ms, quality=cfg.resample_quality)
        # the VAD judges what the caller leg decoded (before any resampling delay)
        self.vad_rate = self.transcoder.codec_rate
        self.vad = VadFramer(self.vad_rate, self.frame_ms, self.turn_config.vad_aggressiveness)
        self.model = ModelLeg(
            model_config or ModelLegConfig(), url=model_url, on_audio=self._on_model_audio,
            on_response_done=self._on_response_done, on_error=self._on_model_error,
            on_closed=self._on_model_closed, metrics=self.metrics, logger=self.log)
        self.hold = ReplyHold(self._is_speculative)
        self._spec_performed_at: float | None = None  # loop time of the speculation in flight
        self.outputs: list[Output] | None = [] if record_outputs else None
        self.inputs: list[tuple[Any, ...]] | None = [] if record_outputs else None
        """Engine inputs in order, for traces: ``("frame", now, speech, duration_ms, seq)``,
        ``("timer", now)``, ``("agent_started", now)``, ``("agent_finished", now)``."""
        self.turns: list[TurnRecord] = []
        self.failed: str | None = None
        self.loop = asyncio.get_running_loop()
        # engine clock
        self._now = 0.0
        self._last_frame_end = -1.0
        self._seq = itertools.count()
        self._last_seq = -1
        self._transit: float | None = None  # smallest arrival - media end seen (s)
        self._lag = 0.0  # arrival - nominal end of the latest frame (s)
        self._uplink: dict[int, np.ndarray] = {}  # caller-rate frames awaiting their Append
        self._up_batch: list[np.ndarray] = []  # appended, not yet resampled for the model
        self._up_batch_samples = 0
        self._up_batch_max = self.vad_rate * self.model.config.append_batch_ms // 1000
        self._held: collections.deque[tuple[float, np.ndarray, bool]] = collections.deque()
        self._pump_handle: asyncio.TimerHandle | None = None
        self._speech_arrival = (0.0, 0.0)  # (engine end, nominal arrival) of the last speech frame
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # downlink
        self._queue: collections.deque[tuple[str, str, bytes]] = collections.deque()
        self._filled_at = 0.0  # loop time the queue last went from empty to non-empty
        self._wake = asyncio.Event()
        self._clear_pending = False
        self._controls: collections.deque[dict[str, Any]] = collections.deque()
        self._playing_item: str | None = None
        self._playing_response: str | None = None
        self._playing = False
        self._sent_ms: dict[str, int] = {}
        self._done_responses: set[str] = set()
        self._dropped: set[str] = set()  # cancelled responses
        self._ttfa: dict[str, float | None] = {}
        self._first_rx: dict[str, float] = {}
        self._pending_turn: TurnRecord | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.agent_frames_sent = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the model leg and start the pacer. Raises RemoteProtocolError if the
        model cannot be reached (the caller is told with an ``error`` control event)."""
        current_call_id.set(self.call_id)
        self.metrics.calls_active.inc()
        self._pacer = asyncio.create_task(self._pace())
        try:
            await self.model.connect()
        except RemoteProtocolError as exc:
            self._fail(f"model leg unavailable: {exc}")
            raise

    async def run(self, frames: AsyncIterator[CallerFrame]) -> list[TurnRecord]:
        """Start, feed every frame of ``frames`` until it ends (or the model leg fails), wait
        up to ``drain_timeout_s`` for the reply in flight to finish, close. Returns the turns."""
        bad = 0
        try:
            await self.start()
            async for frame in frames:
                if self.failed:
                    break
                try:
                    good = self.feed(frame)
                except RemoteProtocolError as exc:
                    self.log.warning("caller frame dropped: %s", exc)
                    good = False
                # a malformed payload is concealed like a lost frame; a caller that sends
                # nothing else is ended
                bad = 0 if good else bad + 1
                if bad >= self.config.max_bad_frames:
                    self._fail(f"{bad} bad caller frames in a row", code="bad_uplink")
                    break
            await self.wait_quiet(self.config.drain_timeout_s)
        except RemoteProtocolError:
            pass  # the model leg could not be reached: start() told the caller
        finally:
            await self.close()
        return self.turns

    async def wait_quiet(self, timeout: float) -> None:
        """Return once no reply is pending or playing (or after ``timeout`` seconds)."""
        end = self.loop.time() + timeout
        while self.loop.time() < end and not self.failed:
            pending = self._pending_turn is not None and self._pending_turn.first_audio_at is None
            if (not pending and not self._playing and not self._queue and not self._held
                    and self.engine.get_timer() is None):
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Stop timers and the pacer, close the model leg. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        if not self.failed:
            self._flush_uplink()
        await self.model.close()
        if self._pacer is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pacer), 1.0)
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pacer
        self.metrics.calls_active.dec()

    # -- uplink --------------------------------------------------------------------------
    def feed(self, frame: CallerFrame) -> bool:
        """Process one uplink payload now; return True if it was good. A malformed payload
        (the transcoder raised ``AudioError``) is counted as lost and concealed like one, and
        False is returned; so are losses (sequence gaps). A sequence number that goes back
        raises RemoteProtocolError (nothing is processed)."""
        if self._closed or self.failed:
            return True
        arrival = self.loop.time()
        seq = frame.seq
        if seq is not None and self._last_seq >= 0 and seq <= self._last_seq:
            raise RemoteProtocolError(f"caller frame seq {seq} after {self._last_seq}")
        parts: list[np.ndarray] = []
        if seq is not None and self._last_seq >= 0 and seq > self._last_seq + 1:
            # a gap: conceal the lost frames (Opus: PLC, before the next packet is decoded) so
            # the engine and the model keep a continuous 1x timeline
            lost = seq - self._last_seq - 1
            self.metrics.frames_lost.inc(lost)
            parts = [self.transcoder.conceal_caller() for _ in range(min(lost, 50))]
        good = True
        try:
            # a frame the caller leg concealed is concealed here (Opus: PLC from the decoder's
            # state) rather than decoded from the caller leg's placeholder payload
            pcm = (self.transcoder.conceal_caller() if frame.concealed
                   else self.transcoder.decode_caller(frame.payload))
        except AudioError as exc:
            good = False
            self.log.warning("bad caller frame concealed: %s", exc)
            pcm = self.transcoder.conceal_caller()
        if frame.concealed or not good:
            self.metrics.frames_lost.inc()
        if seq is not None:
            self._last_seq = seq
        if parts:
            pcm = np.concatenate([*parts, pcm])
        frames = self.vad.push(pcm)
        k = len(frames)
        # where each frame ends: from the sender's media time when the frame carries one
        # (mapped onto the loop clock by the smallest transit seen, so arrival jitter does not
        # move the engine's clock), else from its arrival
        if frame.ts is not None:
            ts_end = frame.ts + len(pcm) / self.vad_rate - sum(len(p) for p in parts) / self.vad_rate
            transit = arrival - ts_end
            # the floor creeps up 1 ms/s so a sender clock slower than ours is followed
            floor = None if self._transit is None else self._transit + 0.001 * len(pcm) / self.vad_rate
            if floor is None or transit < floor:
                self._transit = transit
            else:
                self._transit = floor
                if transit - floor > self.config.late_after_ms / 1000:
                    self.metrics.frames_late.inc()
            last_end = ts_end + self._transit - self.vad.splitter.pending / self.vad_rate
        else:
            last_end = arrival
        # how far the media clock (where frames are placed) runs behind the loop clock now
        self._lag = max(0.0, arrival - last_end)
        for i, (f, speech) in enumerate(frames):
            self._held.append((min(arrival, last_end - (k - 1 - i) * self._frame_s), f, speech))
        self._pump()
        return good

    def _pump(self) -> None:
        """Feed held frames to the engine. A frame's ``now`` is its due time, laid end to end
        after the previous frame; a frame that would end in the engine clock's future is held
        until then, so the engine never runs ahead of real time and no deadline fires early.
        Silence frames take such a lag out again (see below), so one late frame does not delay
        every later one."""
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        while self._held and not self._closed:
            nominal, f, speech = self._held[0]
            dur_ms = self.frame_ms
            end = max(nominal, self._last_frame_end + self._frame_s, self._now)
            if end > nominal + 0.0002 and not speech and dur_ms > 10:
                # re-sync: behind the arrivals after a late frame, a silence frame is given to
                # the engine as 10 ms long (silence is measured in time, not in frames), which
                # takes the lag out instead of carrying it into every later frame
                dur_ms = 10
                end = max(nominal, self._last_frame_end + 0.010, self._now)
            wait = end - self._clock()
            if wait > 0.0002:
                self._pump_handle = self.loop.call_at(end + self._lag, self._pump)
                return
            self._held.popleft()
            self._now = self._last_frame_end = end
            if speech:
                self._speech_arrival = (end, nominal)
            n = next(self._seq)
            self._uplink[n] = f
            if self.inputs is not None:
                self.inputs.append(("frame", end, speech, dur_ms, n))
            self.engine.caller_frame(end, speech=speech, duration_ms=dur_ms, seq=n)
            self._drive()

    # -- the drive loop ------------------------------------------------------------------
    def _drive(self) -> None:
        while True:
            outs = self.engine.drain()
            if not outs:
                break
            for out in outs:
                self._perform(out)
        self._rearm()

    def _perform(self, out: Output) -> None:
        if self.outputs is not None:
            self.outputs.append(out)
        self.metrics.observe_output(out)
        if isinstance(out, Append):
            f = self._uplink.pop(out.seq, None)
            if f is not None and not self.failed:
                # resampled and handed to the model leg in batches of its append size (one
                # soxr call per batch, not per frame); every other action flushes first
                self._up_batch.append(f)
                self._up_batch_samples += f.shape[0]
                if self._up_batch_samples >= self._up_batch_max:
                    self._flush_uplink()
            return
        if out.is_action or isinstance(out, BackchannelFiltered):
            self._flush_uplink()
        if isinstance(out, Prime):
            self.model.prime()
        elif isinstance(out, Commit):
            self.model.commit()
            end, nominal = self._speech_arrival
            # turn latency starts when the last speech frame was due at the edge (its nominal
            # arrival, loop clock); if it was held before the engine saw it, that hold is time
            # spent inside the edge and counts as edge-added.
            last = nominal if end == out.last_speech_at else out.last_speech_at
            self._pending_turn = TurnRecord(out.turn, last, out.time, self.loop.time(),
                                            eot_silence_ms=float(self.engine.end_of_turn_ms),
                                            uplink_hold_ms=(out.last_speech_at - last) * 1000)
            self._control({"type": "commit", "turn": out.turn})
        elif isinstance(out, (Speculate, Release, Retract)):
            self._perform_speculation(out)
        elif isinstance(out, BackchannelFiltered):
            self.model.backchannel_filtered()
        elif isinstance(out, Cancel):
            self._cancel(out)

    # -- speculative commit --------------------------------------------------------------
    def _is_speculative(self, response_id: str) -> bool:
        return response_id == self.model.speculative_response_id

    def _perform_speculation(self, out: Speculate | Release | Retract) -> None:
        if isinstance(out, Speculate):
            self.model.speculate()
            self.hold.start()
            self._spec_performed_at = self.loop.time()
        elif isinstance(out, Retract):
            self.model.retract()
            self.hold.drop()
            self._spec_performed_at = None
            self.log.info("speculation on turn %d retracted after %d ms", out.turn, out.held_ms)
        else:
            self.model.release()
            end, nominal = self._speech_arrival
            last = nominal if end == out.last_speech_at else out.last_speech_at
            performed = self._spec_performed_at if self._spec_performed_at is not None else self.loop.time()
            self._spec_performed_at = None
            spec_silence = (out.time - out.last_speech_at) * 1000 - out.held_ms
            self._pending_turn = TurnRecord(out.turn, last, out.time, performed,
                                            eot_silence_ms=float(self.engine.end_of_turn_ms),
                                            uplink_hold_ms=(out.last_speech_at - last) * 1000,
                                            speculative_silence_ms=float(round(spec_silence)),
                                            released_at=self.loop.time())
            self._control({"type": "commit", "turn": out.turn})
            for kind, args in self.hold.release():
                if kind == "audio":
                    self._on_model_audio(*args)
                else:
                    self._on_response_done(*args)

    def _flush_uplink(self) -> None:
        if self._up_batch:
            pcm = self._up_batch[0] if len(self._up_batch) == 1 else np.concatenate(self._up_batch)
            self._up_batch = []
            self._up_batch_samples = 0
            model_pcm = self.transcoder.to_model(pcm)
            if model_pcm:
                self.model.append(model_pcm)

    def _rearm(self) -> None:
        deadline = self.engine.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._closed:
            self._timer = self.loop.call_at(deadline + self._lag, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_at = None
        if deadline is None or self._closed:
            return
        self._now = max(deadline, self._clock(), self._now)
        if self.inputs is not None:
            self.inputs.append(("timer", self._now))
        self.engine.handle_timer(self._now)
        self._drive()

    def _agent_finished(self) -> None:
        now = self._tick()
        if self.inputs is not None:
            self.inputs.append(("agent_finished", now))
        self.engine.agent_audio_finished(now)

    def _clock(self) -> float:
        """The engine's clock: the loop clock minus the current media lag (see feed)."""
        return self.loop.time() - self._lag

    def _tick(self) -> float:
        self._now = max(self._clock(), self._now)
        return self._now

    # -- downlink ------------------------------------------------------------------------
    def _control(self, event: dict[str, Any]) -> None:
        self._controls.append(event)
        self._wake.set()

    def _on_model_audio(self, chunk: AudioChunk) -> None:
        if chunk.response_id in self._dropped or self._closed:
            return
        if self.hold.offer_audio(chunk):  # a speculative reply: held until Release
            return
        if chunk.first:
            self._ttfa[chunk.response_id] = chunk.model_ttfa_s
            self._first_rx[chunk.response_id] = chunk.received_at
        if not self._queue:
            self._filled_at = self.loop.time()
        for payload in self.transcoder.downlink(chunk.pcm):
            self._queue.append((chunk.response_id, chunk.item_id, payload))
        self._wake.set()

    def _on_response_done(self, response_id: str, status: str) -> None:
        if self.hold.offer_done(response_id, status):
            return
        if response_id not in self._ttfa and response_id not in self._dropped and not self._playing:
            # the reply ended (or was refused) without audio: the engine stops waiting for it
            self.log.warning("model reply %r ended without audio (%s)", response_id, status)
            self._pending_turn = None
            self._agent_finished()
            self._drive()
            return
        self._done_responses.add(response_id)
        if response_id not in self._dropped:
            tail = self.transcoder.downlink_flush()
            item = self._queue[-1][1] if self._queue else (self._playing_item or "")
            if tail and not self._queue:
                self._filled_at = self.loop.time()
            for payload in tail:
                self._queue.append((response_id, item, payload))
        if len(self._done_responses) > 256:
            self._done_responses = set(list(self._done_responses)[-64:])
        self._wake.set()

    def _cancel(self, out: Cancel) -> None:
        item = self._playing_item
        sent = self._sent_ms.get(item, 0) if item else None
        for rid, _, _ in self._queue:
            self._dropped.add(rid)
        if self._playing_response:
            self._dropped.add(self._playing_response)
        self._queue.clear()
        self.transcoder.downlink_reset()
        self._clear_pending = True
        end = self.model.cancel(out.agent_played_ms, item_id=item, sent_ms=sent)
        self.log.info("barge-in: cancel, truncate %s at %s ms", item, end)
        self._control({"type": "cancel", "agent_played_ms": out.agent_played_ms, "audio_end_ms": end})
        if self._playing:
            self._playing = False
            self._playing_item = self._playing_response = None
            self._agent_finished()
        self._wake.set()

    async def _pace(self) -> None:
        """The pacer: the only sender to the caller; sends queued frames at 1x."""
        next_at = 0.0
        try:
            while True:
                if self._closed:
                    while self._controls:
                        await self.downlink.send_control(self._controls.popleft())
                    return
                if self._clear_pending:
                    self._clear_pending = False
                    await self.downlink.clear_playout()
                while self._controls:
                    await self.downlink.send_control(self._controls.popleft())
                now = self.loop.time()
                if self._queue and not self._clear_pending:
                    if now < next_at - 0.0005:
                        await self._sleep_or_wake(next_at - now)
                        continue
                    rid, item, payload = self._queue.popleft()
                    if rid in self._dropped:
                        continue
                    self._start_playing(rid, item)
                    self._sent_ms[item] = self._sent_ms.get(item, 0) + self.frame_ms
                    self.agent_frames_sent += 1
                    await self.downlink.send_agent_audio(payload)
                    # frames of one run go out at start + k * frame_ms. A wake-up that comes
                    # late while the frame was already queued (the loop was busy) keeps that
                    # schedule and catches up, so the audio sent stays at 1x with the engine's
                    # agent clock (agent_played_ms); only a starve (the queue was empty when
                    # the frame was due) restarts the schedule from now.
                    on_time = now - next_at < self._frame_s or self._filled_at <= next_at
                    base = next_at if next_at and on_time else now
                    next_at = base + self._frame_s
                    continue
                if self._playing:
                    play_end = next_at
                    done = self._playing_response in self._done_responses
                    grace = self.config.underrun_finish_ms / 1000
                    if done and now >= play_end - 0.0005 or now >= play_end + grace:
                        self._playing = False
                        self._playing_item = self._playing_response = None
                        self._agent_finished()
                        self._drive()
                        next_at = 0.0
                        continue
                    wait = (play_end - now) if done else (play_end + grace - now)
                    await self._sleep_or_wake(max(wait, 0.001))
                    continue
                next_at = 0.0
                await self._sleep_or_wake(None)
        except (ConnectionError, RemoteProtocolError) as exc:
            self._fail(f"downlink failed: {exc}")

    async def _sleep_or_wake(self, timeout: float | None) -> None:
        self._wake.clear()
        if self._queue and timeout is None:
            return
        # a timer handle that sets the event: cheaper than wait_for's task per wake-up
        handle = None if timeout is None else self.loop.call_later(timeout, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if handle is not None:
                handle.cancel()

    def _start_playing(self, rid: str, item: str) -> None:
        now = self.loop.time()
        if self._playing and self._playing_response == rid:
            return
        if len(self._sent_ms) > 64 or len(self._ttfa) > 64 or len(self._dropped) > 64:
            self._sent_ms = {k: v for k, v in self._sent_ms.items() if k == item}
            self._ttfa = {k: v for k, v in self._ttfa.items() if k == rid}
            self._first_rx = {k: v for k, v in self._first_rx.items() if k == rid}
            self._dropped = {r for r, _, _ in self._queue if r in self._dropped}
        if self._playing:  # a new response while the previous still plays: one continuous run
            self._playing_response, self._playing_item = rid, item
        else:
            self._playing = True
            self._playing_response, self._playing_item = rid, item
            now_e = self._tick()
            if self.inputs is not None:
                self.inputs.append(("agent_started", now_e))
            self.engine.agent_audio_started(now_e)
            self._drive()
        turn = self._pending_turn
        if turn is not None and turn.first_audio_at is None:
            turn.first_audio_at = now
            turn.response_id = rid
            turn.turn_latency_ms = (now - turn.last_speech_at) * 1000
            ttfa = self._ttfa.get(rid)
            if ttfa is not None and turn.eot_silence_ms is not None:
                turn.model_ttfa_ms = ttfa * 1000
                rx = self._first_rx.get(rid)
                if turn.speculative_silence_ms is None:
                    turn.edge_added_ms = turn.turn_latency_ms - turn.eot_silence_ms - turn.model_ttfa_ms
                    turn.commit_delay_ms = ((turn.performed_at - turn.last_speech_at) * 1000
                                            - turn.eot_silence_ms)
                else:
                    # released speculation: the model's wait overlapped the silence; what the
                    # edge cannot remove is whichever of the two ended last
                    floor = max(turn.eot_silence_ms, turn.speculative_silence_ms + turn.model_ttfa_ms)
                    turn.edge_added_ms = turn.turn_latency_ms - floor
                    turn.commit_delay_ms = ((turn.performed_at - turn.last_speech_at) * 1000
                                            - turn.speculative_silence_ms)
                if rx is not None:
                    # held audio waits for the Release: that wait is not the downlink's
                    turn.downlink_delay_ms = (now - max(rx, turn.released_at or rx)) * 1000
                    turn.request_delay_ms = (rx - ttfa - turn.performed_at) * 1000
            self.metrics.observe_turn(turn.turn_latency_ms / 1000,
                                      None if turn.edge_added_ms is None else turn.edge_added_ms / 1000)
            self.turns.append(turn)
            self._pending_turn = None
            self.log.info("turn %d: latency %.1f ms, edge-added %s ms", turn.turn, turn.turn_latency_ms,
                          None if turn.edge_added_ms is None else round(turn.edge_added_ms, 2))

    # -- failures ------------------------------------------------------------------------
    def _on_model_error(self, exc: RemoteProtocolError) -> None:
        pass  # logged and counted by the model leg; the call continues

    def _on_model_closed(self, exc: BaseException | None) -> None:
        if not self._closed:
            self.metrics.model_error("connection", "closed")
            self._fail(f"model leg closed: {exc}")

    def _fail(self, reason: str, code: str = "model_unavailable") -> None:
        if self.failed:
            return
        self.failed = reason
        self.log.error("call failed: %s", reason)
        self._control({"type": "error", "code": code, "message": reason})


# --------------------------------------------------------------------------- adapters
class CallSessionDownlink:
    """Adapts a caller leg's ``CallSession`` (prod/ingress/call.py) to :class:`Downlink`."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def send_agent_audio(self, payload: bytes) -> None:
        await self.call.send_agent_audio(payload)

    async def clear_playout(self) -> None:
        await self.call.clear_playout()

    async def send_control(self, event: dict[str, Any]) -> None:
        await self.call.send_control(event)


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


async def _call_frames(call: Any) -> AsyncIterator[CallerFrame]:
    async for f in call.frames():
        yield CallerFrame(f.payload, seq=f.seq, ts=f.timestamp_ms / 1000, concealed=f.concealed)


class PipelineHandler:
    """A caller leg's ``CallHandler``: runs one :class:`CallPipeline` per accepted call.

    ``on_call(call)`` maps the call's codec/rate/frame length to a :class:`PipelineConfig`
    (an unsupported one gets an ``error`` control event ``unsupported_codec``), runs the
    pipeline until the caller hangs up, and keeps the call's :class:`TurnRecord` list in
    :attr:`turns` (by call id; the latest ``keep_calls`` calls).
    """

    def __init__(self, *, model_url: str, model_config: ModelLegConfig | None = None,
                 turn_config: TurnConfig | None = None, metrics: EdgeMetrics | None = None,
                 pipeline_options: dict[str, Any] | None = None, keep_calls: int = 1000,
                 record: bool = False) -> None:
        self.model_url = model_url
        self.model_config = model_config or ModelLegConfig()
        self.turn_config = turn_config or TurnConfig()
        self.metrics = metrics or EdgeMetrics()
        self.options = pipeline_options or {}
        self.keep_calls = keep_calls
        self.record = record
        self.turns: dict[str, list[TurnRecord]] = {}
        self.pipelines: dict[str, CallPipeline] = {}

    async def on_call(self, call: Any) -> None:
        """Run the pipeline for ``call`` until it ends; never raises for a peer's fault."""
        try:
            cfg = PipelineConfig(caller_rate=call.rate, caller_codec=call.codec,
                                 caller_frame_ms=call.frame_ms, **self.options)
        except ConfigError as exc:
            await call.send_control({"type": "error", "code": "unsupported_codec", "message": str(exc)})
            return
        pipe = CallPipeline(CallSessionDownlink(call), call_id=call.call_id,
                            turn_config=self.turn_config, config=cfg,
                            model_config=self.model_config, model_url=self.model_url,
                            metrics=self.metrics, record_outputs=self.record)
        self.pipelines[call.call_id] = pipe
        try:
            self.turns[call.call_id] = await pipe.run(_call_frames(call))
        finally:
            self.pipelines.pop(call.call_id, None)
            while len(self.turns) > self.keep_calls:
                del self.turns[next(iter(self.turns))]
