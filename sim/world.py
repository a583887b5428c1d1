"""The simulated world of one call: caller, caller leg, edge (the real turn engine), model.

Theory of operation
-------------------
One ``simpy.Environment`` per call; all times are ``env.now`` seconds of virtual time and the
wall clock is never read. The parts:

* **caller** -- sends one frame every ``frame_ms`` for the whole call (speech or silence, as a
  phone leg does), frame k ending at caller time ``(k + 1) * frame_ms``; its VAD decision comes
  from the labelled call (VAD run on the audio by :mod:`clutchcall.sim.calls`).
* **uplink** -- the transport model (:mod:`clutchcall.sim.transport`, or the exact aioquic
  mode) turns the caller's whole send schedule into arrival times at the edge in one call
  (closed form per frame: no simpy event per packet). The edge's **jitter buffer** then feeds
  the engine in sequence order at most at 1x: a frame is fed at
  ``max(arrival, previous feed + frame)``; a frame not there by its playout deadline
  (``send + RTT/2 + late_frame_ms``) is skipped (a gap the engine sees as no frame), and while
  the buffer is behind real time it drops *silence* frames to catch up (never speech). Over
  QUIC a lost frame thus costs one gap; over TCP every later frame waits for it (head-of-line
  blocking) and the speech behind it is fed late.
* **edge** -- the :class:`~clutchcall.engine.TurnEngine`, driven by the DESIGN §2 loop with
  ``env.now``: feed -> drain -> perform -> re-arm the one timer (a single logical timer: each
  re-arm schedules one simpy timeout tagged with a generation; a stale one is ignored, and the
  firing one calls ``handle_timer(max(deadline, env.now))``). ``agent_audio_started`` /
  ``agent_audio_finished`` are fed when the edge starts / stops forwarding agent audio.
* **model** -- continuous prefill: after a ``Commit`` reaches it (``model_leg_ms``), its first
  audio comes after a lognormal time to first audio (median ``ttfa_median_ms``); without
  prefill (``prefill=False``) the delay grows by ``no_prefill_ms_per_s`` per second of the
  turn's speech. Audio flows out at 1x. A ``Cancel`` is honoured ``cancel_delay_ms`` after it
  reaches the model; a reply asked for before that waits for it.
* **agent speech** -- the labelled call's ``agent_speech`` intervals are the agent's planned
  playback, what the caller heard and reacted to. An interval that answers a ``reply``
  segment (:func:`~clutchcall.sim.calls.reply_intervals`) is the model's reply: it plays only
  if a commit closes that segment, starting at the model's own first audio and keeping its
  planned length (FORMAT.md: "a simulator with a reactive agent may instead start it at its
  own commit and keep only its length"); a missed reply leaves the agent silent. Every other
  interval (a greeting, ...) plays at its planned time, sent by the edge at ``start - RTT/2``
  so that it reaches the caller on time. A commit with no planned answer to claim (a
  backchannel that woke the model, a second commit inside one turn) gets a drawn
  ``reply_min_ms``..``reply_max_ms`` reply, ended before the caller's next labelled turn.
  A ``Cancel`` stops all agent audio at once and sends a "clear playout" control message
  downlink (QUIC: its own stream; TCP: behind every earlier byte); the agent stops at the
  caller when it arrives.
* **scripted agent** (``SimConfig.agent = "scripted"``, ``clutchcall eval``'s default) --
  *every* ``agent_speech`` interval plays at its planned time, replies included, whatever the
  engine decided, so that one failure never hides another (a missed reply does not silence
  the backchannels and interruptions labelled inside it). A commit does not start audio: its
  first audio at the caller is predicted as the reactive agent would play it (the model's
  first audio at the edge plus the downlink's one-way delay), so turn latency stays
  measurable. A ``Cancel`` silences the interval it hits until that interval's planned end;
  the next interval plays at its planned time.
* **downlink** -- each stretch of agent audio is handed to the downlink transport as one batch
  of 1x frames; the caller hears the first agent audio when the first of them is delivered.

The outputs of a run (:class:`CallRun`) are plain records; :mod:`clutchcall.sim.metrics`
scores them against the labels.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import simpy
from clutchcall.engine import Cancel, Commit, TurnConfig, TurnEngine
from clutchcall.engine.actions import (
    BackchannelFiltered,
    BargeArmed,
    Duck,
    Pause,
    Prime,
    Restore,
    Resume,
)
from clutchcall.engine.errors import ConfigError
from clutchcall.engine.turn import State
from clutchcall.sim.calls import Call, reply_intervals, segment_for_commit
from clutchcall.sim.link import Link, LinkConfig, direction_rngs
from clutchcall.sim.transport import CONTROL, QuicModel, TcpTlsModel

TRANSPORTS = ("quic", "tcp", "quic-exact")
AGENTS = ("reactive", "scripted")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    """The caller leg: transport and the link of each direction."""

    transport: str = "quic"
    """"quic" (fast model), "tcp" (TCP+TLS 1.3 model) or "quic-exact" (aioquic)."""
    uplink: LinkConfig = field(default_factory=LinkConfig)
    downlink: LinkConfig = field(default_factory=LinkConfig)
    late_frame_ms: float = 60.0
    """Edge jitter-buffer depth: a caller frame later than this past its nominal arrival
    (send + RTT/2) is skipped."""
    frame_bytes: int = 160
    """Audio payload per 20 ms frame (Opus at 64 kbit/s)."""
    zero_rtt: bool = False
    """QUIC resumption with 0-RTT (handshake costs nothing)."""
    playout_delay_ms: float = 0.0
    """Fixed jitter-buffer depth: no caller frame is fed before ``send + RTT/2 +
    playout_delay_ms`` (a playout schedule, as the production QUIC ingress's
    ``IngressConfig.jitter_depth_ms``); 0 = fed on arrival. The late deadline is at least it."""
    jitter_buffer: str = "adaptive"
    """"adaptive": fed on arrival (see :func:`feed_schedule`); "playout": the production
    ingress's buffer (:func:`playout_schedule`: a schedule ``playout_delay_ms`` deep anchored
    on the first frame, re-anchored on a late frame, never shrinking back)."""
    media_clock: bool = False
    """The engine hears each caller frame at its media time (its nominal arrival ``send +
    RTT/2 + playout_delay_ms``, laid end to end, never before the engine's clock) even when
    the frame is fed later (TCP head-of-line blocking), as the production pipeline does;
    False = at the time it is fed."""
    quic_ack_every: int = 2
    """Fast QUIC model: the receiver ACKs every N-th ack-eliciting packet (RFC 9000: 2)."""
    quic_ack_delay_ms: float = 25.0
    """Fast QUIC model: ...or this long after the first unacknowledged one (RFC 9000: 25 ms;
    aioquic uses 1 ms with every packet)."""

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"NetConfig.transport: one of {TRANSPORTS}, got {self.transport!r}")
        if self.late_frame_ms < 0 or not math.isfinite(self.late_frame_ms):
            raise ConfigError("NetConfig.late_frame_ms: must be a finite number >= 0")
        if self.frame_bytes < 1:
            raise ConfigError("NetConfig.frame_bytes: must be >= 1")
        if self.jitter_buffer not in ("adaptive", "playout"):
            raise ConfigError("NetConfig.jitter_buffer: 'adaptive' or 'playout', "
                              f"got {self.jitter_buffer!r}")
        if self.playout_delay_ms < 0 or not math.isfinite(self.playout_delay_ms):
            raise ConfigError("NetConfig.playout_delay_ms: must be a finite number >= 0")

    @classmethod
    def symmetric(cls, *, transport: str = "quic", rtt_ms: float = 50.0, loss: float = 0.0,
                  jitter_ms: float = 0.0, **link: Any) -> NetConfig:
        """Return a config with the same link parameters both ways."""
        extra = {k: link.pop(k) for k in ("late_frame_ms", "frame_bytes", "zero_rtt",
                                          "quic_ack_every", "quic_ack_delay_ms",
                                          "playout_delay_ms", "media_clock", "jitter_buffer")
                 if k in link}
        lc = LinkConfig(rtt_ms=rtt_ms, loss=loss, jitter_ms=jitter_ms, **link)
        return cls(transport=transport, uplink=lc, downlink=lc, **extra)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The modelled speech-to-speech model."""

    ttfa_median_ms: float = 350.0
    """Median time to first audio after the final commit reaches the model."""
    ttfa_sigma: float = 0.35
    """Lognormal shape of the time to first audio (0 = always the median)."""
    prefill: bool = True
    """Continuous prefill; False adds ``no_prefill_ms_per_s`` per second of turn speech."""
    no_prefill_ms_per_s: float = 80.0
    reply_min_ms: int = 1200
    reply_max_ms: int = 3500
    cancel_delay_ms: float = 50.0
    """How long after a cancel reaches it the model stops and is ready again."""
    model_leg_ms: float = 5.0
    """One-way delay edge <-> model."""

    def __post_init__(self) -> None:
        for name in ("ttfa_median_ms", "ttfa_sigma", "no_prefill_ms_per_s", "cancel_delay_ms",
                     "model_leg_ms"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"ModelConfig.{name}: must be a finite number >= 0")
        if not 0 < self.reply_min_ms <= self.reply_max_ms:
            raise ConfigError("ModelConfig: need 0 < reply_min_ms <= reply_max_ms")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything one simulated run depends on (with the calls)."""

    turn: TurnConfig = field(default_factory=TurnConfig)
    net: NetConfig = field(default_factory=NetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 1
    agent: str = "reactive"
    """Which agent plays downlink (see "agent speech" in the module docstring):
    ``"reactive"`` -- the model's replies start at its own first audio after a commit (a
    missed reply leaves the agent silent): for latency prediction; ``"scripted"`` -- the agent
    plays the labelled ``agent_speech`` timeline whatever the engine decided, so every
    labelled segment is scored (``clutchcall eval``'s default)."""

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ConfigError(f"SimConfig.agent: one of {AGENTS}, got {self.agent!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the config as nested plain dicts."""
        return {"turn": self.turn.to_dict(), "net": asdict(self.net), "model": asdict(self.model),
                "seed": self.seed, "agent": self.agent}


@dataclass(slots=True)
class CallRun:
    """What happened in one simulated call (times in seconds; caller times on the caller's
    clock = the call's timeline, edge times on the same virtual clock)."""

    call: Call
    connect_s: float = 0.0
    frames_fed: int = 0
    frames_skipped: int = 0
    turns: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[dict[str, Any]] = field(default_factory=list)
    actions: list[tuple[float, str, int]] = field(default_factory=list)
    """(time, kind, turn or agent_played_ms or -1) of every Prime/Commit/Cancel, for replay."""
    backchannels_filtered: int = 0
    primes: int = 0
    barges_armed: int = 0
    retransmissions: int = 0
    packets_lost: int = 0
    agent_playing: list[list[float]] = field(default_factory=list)
    """[start, end] edge times of each stretch in which agent audio was forwarded."""
    events: list[tuple[int, str]] = field(default_factory=list)
    """(t_ms, kind) of every decision, kind in commit / prime / cancel / duck / pause /
    resume / restore / filtered; ``t_ms`` on the call's audio clock: the end of the caller
    frame that decided it (a timer decision: the last frame's end plus the edge time since
    it was fed). What ``clutchcall eval --events-out`` writes."""
    yields: list[dict[str, Any]] = field(default_factory=list)
    """Each soft yield (duck or pause) of a pending barge-in: ``kind``, ``seq`` (the caller
    frame that decided it), ``audible_caller_s`` (when the caller hears it: edge time + the
    downlink's one-way delay) and ``end_caller_s`` (restore / resume / cancel at the caller;
    inf if never), ``outcome`` (restore, resume or cancel)."""


def _make_transports(net: NetConfig, rngs: dict[str, np.random.Generator]
                     ) -> tuple[Any, Any]:
    """Return (uplink, downlink) transports: fast models, or the exact aioquic pair."""
    up = Link(net.uplink, rngs["uplink"])
    up_ack = Link(net.downlink, rngs["uplink_ack"])
    down = Link(net.downlink, rngs["downlink"])
    down_ack = Link(net.uplink, rngs["downlink_ack"])
    if net.transport == "tcp":
        return TcpTlsModel(up, up_ack), TcpTlsModel(down, down_ack)
    if net.transport == "quic":
        kw = {"zero_rtt": net.zero_rtt, "ack_every": net.quic_ack_every,
              "ack_delay_ms": net.quic_ack_delay_ms}
        return QuicModel(up, up_ack, **kw), QuicModel(down, down_ack, **kw)  # type: ignore[arg-type]
    from clutchcall.sim.quic_exact import ExactQuicTransport

    return ExactQuicTransport.pair(net, rngs)


def feed_schedule(send: list[float], arrival: list[float], speech: tuple[bool, ...],
                  frame_s: float, nominal_owd: float, late_s: float, *,
                  skip_late_speech: bool = True, hold_s: float = 0.0
                  ) -> tuple[list[tuple[float, int, bool]], int]:
    """Return ([(feed time, seq, speech)], frames skipped): when and in which order the
    edge jitter buffer feeds caller frames to the engine.

    Frame k is fed at ``max(arrival, previous frame resolved, previous feed + frame)`` (in
    order, at most 1x). If that is past its deadline ``send + nominal_owd + late_s`` it is
    skipped -- except a speech frame when ``skip_late_speech`` is False (TCP: the bytes
    will come and the engine must hear the speech; silence is dropped to catch up). A
    skipped frame is resolved when it arrives or at its deadline, whichever is first.
    ``hold_s`` > 0 is a fixed playout schedule: no frame is fed before its playout time
    ``send + nominal_owd + hold_s``, and the deadline is at least that time.
    """
    out: list[tuple[float, int, bool]] = []
    last = -math.inf
    gate = -math.inf
    skipped = 0
    eps = 1e-9
    late_s = max(late_s, hold_s)
    for k in range(len(send)):
        a = arrival[k]
        nominal = send[k] + nominal_owd + hold_s
        dl = send[k] + nominal_owd + late_s
        t = max(gate, a)
        t = max(t, last + frame_s, nominal)
        if a < math.inf and t > a + eps and not speech[k] and t > nominal + eps:
            # behind the schedule: drop this silence frame to catch up
            skipped += 1
            gate = max(gate, a)
        elif t <= dl + eps or (a < math.inf and speech[k] and not skip_late_speech):
            out.append((t, k, speech[k]))
            last = gate = t
        else:
            skipped += 1
            r = min(dl, a)
            gate = max(gate, r)
    return out, skipped


def playout_schedule(arrival: list[float], speech: tuple[bool, ...], frame_s: float,
                     depth_s: float) -> tuple[list[tuple[float, int, bool]], int]:
    """Return ([(feed time, seq, speech)], frames skipped) of the production ingress's
    jitter buffer (``prod/ingress/jitter.py``): anchored on the first frame received
    (``seq0``; earlier frames are late), frame k plays at ``anchor + depth + (k - seq0) *
    frame``. A frame there by its slot plays at the slot; one missing at its slot is lost
    (concealed: skipped here) if a later frame arrives before it does; else the frame due next
    is late and the schedule is re-anchored on its arrival, which adds its lateness to the
    buffer's accumulated lag. The lag drains during silence as in production: right after a
    non-speech (or concealed) frame, if the lag is at least one frame and the next frame
    arrived early enough to stay ``depth`` in the buffer on a schedule one frame earlier, the
    schedule moves one frame earlier (the next frame plays at once). Here "silent" is the
    frame's speech flag (production: an RMS energy check on the caller payload).
    """
    n = len(arrival)
    out: list[tuple[float, int, bool]] = []
    if n == 0:
        return out, 0
    after = [math.inf] * (n + 1)  # earliest arrival among frames k+1..n-1
    for k in range(n - 1, -1, -1):
        after[k] = min(arrival[k], after[k + 1])
    seq0 = min(range(n), key=lambda k: arrival[k])
    if arrival[seq0] == math.inf:
        return out, n
    anchor = arrival[seq0] + depth_s - seq0 * frame_s
    skipped = seq0
    lag = 0.0  # accumulated re-anchor shift not yet drained (s)
    quiet_prev = False  # the frame played last was non-speech or concealed
    eps = 1e-9
    for k in range(seq0, n):
        a = arrival[k]
        # lag drain during silence (prod/ingress/jitter.py JitterBuffer._maybe_drain)
        if quiet_prev and lag >= frame_s - eps and a + depth_s <= anchor + (k - 1) * frame_s + eps:
            anchor -= frame_s
            lag -= frame_s
        quiet_prev = False
        slot = anchor + k * frame_s
        if a <= slot:
            t = slot
        elif after[k + 1] < a or a == math.inf:
            skipped += 1  # concealed at its slot
            quiet_prev = True
            continue
        else:
            anchor += a - slot
            lag += a - slot
            t = a
        out.append((t, k, speech[k]))
        quiet_prev = not speech[k]
    return out, skipped


def _ignore(_t: float) -> None:
    return None


def call_seed(seed: int, name: str) -> int:
    """Return the per-call seed derived from the run seed and the call's name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) & 0x7FFFFFFFFFFFFFFF


class _World:
    def __init__(self, call: Call, cfg: SimConfig, recorder: Any = None) -> None:
        self.rec = recorder
        self.call = call
        self.cfg = cfg
        self.env = simpy.Environment()
        self.rngs = direction_rngs(call_seed(cfg.seed, call.name))
        self.model_rng = self.rngs["model"]
        self.up, self.down = _make_transports(cfg.net, self.rngs)
        self.eng = TurnEngine(cfg.turn)
        self.exact: Any = getattr(self.down, "conn", None)
        if not callable(getattr(self.exact, "run_until", None)):
            self.exact = None
        self.exact_gen = 0
        self.run = CallRun(call=call)
        self.frame_s = call.frame_ms / 1000.0
        self.owd_down = cfg.net.downlink.one_way_s
        self.owd_up = cfg.net.uplink.one_way_s
        self.leg = cfg.model.model_leg_ms / 1000.0
        self.clock = 0.0  # the latest time given to the engine
        # timer
        self.timer_gen = 0
        self.timer_at: float | None = None
        # agent audio at the edge
        self.sources: dict[int, float] = {}  # source id -> scheduled end
        self.source_gen = 0
        self.source_ids = 0
        self.playing = False
        # model
        self.reply_gen = 0
        self.model_ready_at = 0.0
        self.last_speech_seq = -1
        self.cur_seq = -1
        # the labelled agent speech at the edge: [edge start, edge end, used]. Intervals that
        # answer a reply segment are the model's replies: they play only when claimed by a
        # commit of that segment (starting at the model's own first audio, keeping their
        # length); the others (greetings, ...) play at their planned times.
        self.script = [[a / 1000.0 - self.owd_down, b / 1000.0 - self.owd_down, False]
                       for a, b in call.agent_speech]
        self.scripted = cfg.agent == "scripted"
        self.reply_of = {} if self.scripted else reply_intervals(call)
        self.reactive = set(self.reply_of.values())
        # the call's audio clock: the end of the last caller frame fed, and when it was fed
        self.frame_audio_end = 0.0
        self.frame_edge_at = 0.0
        # soft barge-in playout: the open yield record, and while paused the agent audio
        # held back: [(length s, first-audio callback or None)]
        self.open_yield: dict[str, Any] | None = None
        self.paused = False
        self.held: list[tuple[float, Callable[[float], None] | None]] = []
        # the agent's phrase ends (pause starts) on the edge clock, from what the playout
        # forwards (the labelled agent_pauses, shifted with the interval that contains them);
        # while paused, the ones not yet played, as offsets from the pause
        self.edges: list[float] = []
        self.held_edges: list[float] = []
        reply_starts = sorted(s.start_ms for s in call.segments if s.expect == "reply")
        self.reply_segment_starts = [x / 1000.0 for x in reply_starts]

    # -------------------------------------------------------------- drive loop
    def pump(self) -> None:
        eng = self.eng
        rec = self.rec
        outs = eng.drain()
        if rec is not None:
            rec.outputs(outs)
        while outs:
            for o in outs:
                k = o.kind
                if k == "append":
                    continue
                self.perform(o)
            outs = eng.drain()
            if rec is not None and outs:
                rec.outputs(outs)
        d = eng.get_timer()
        if d is not None and d != self.timer_at:
            self.timer_at = d
            self.timer_gen += 1
            gen = self.timer_gen
            ev = self.env.timeout(max(0.0, d - self.env.now))
            ev.callbacks.append(partial(self._fire_cb, gen, d))
        elif d is None and self.timer_at is not None:
            self.timer_at = None
            self.timer_gen += 1  # disarm the pending timeout

    def _fire_cb(self, gen: int, deadline: float, _event: object) -> None:
        self.fire(gen, deadline)

    def fire(self, gen: int, deadline: float) -> None:
        if gen != self.timer_gen:
            return
        self.timer_at = None
        now = max(deadline, self.env.now)
        self.clock = now
        if self.rec is not None:
            self.rec.timer(now)
        self.eng.handle_timer(now)
        self.pump()

    def feeder(self, schedule: list[tuple[float, int, bool]]):  # type: ignore[no-untyped-def]
        env, eng, fms = self.env, self.eng, self.call.frame_ms
        timeout = env.timeout
        rec = self.rec
        net = self.cfg.net
        media = net.media_clock
        base = self.owd_up + net.playout_delay_ms / 1000.0
        frame_s = self.frame_s
        feats = self.call.features
        last_end = -math.inf
        for t, seq, speech in schedule:
            dt = t - env.now
            if dt > 0:
                yield timeout(dt)
            self.cur_seq = seq
            if speech:
                self.last_speech_seq = seq
            now = env.now
            dur = fms
            if not media and now < last_end + frame_s - 1e-9:
                # fed together with the previous frame (the playout buffer drained a frame of
                # lag after silence): laid end to end as the production pipeline does, a
                # silence frame counted as 10 ms, a speech frame held until it fits
                if not speech and fms > 10:
                    dur, now = 10, max(now, last_end + 0.010)
                else:
                    now = last_end + frame_s
                if now > env.now:
                    yield timeout(now - env.now)
            if media:
                # the frame's media time on the edge clock: its nominal arrival, laid end to
                # end, never before the engine's clock (the production pipeline's rule)
                now = max((seq + 1) * frame_s + base, last_end + frame_s, self.clock)
                now = min(now, env.now)
            last_end = now
            self.clock = now
            self.frame_audio_end = (seq + 1) * frame_s
            self.frame_edge_at = now
            if rec is not None:
                rec.caller_frame(now, speech=speech, duration_ms=dur, seq=seq)
            f = None
            if feats is not None:
                f = feats[seq]
                if self.edges:
                    f = dataclasses.replace(f, agent_edge_ms=self.edge_distance_ms(seq))
            eng.caller_frame(now, speech=speech, duration_ms=dur, seq=seq, features=f)
            self.pump()

    # -------------------------------------------------------------- actions
    def edge_distance_ms(self, seq: int) -> float:
        """Return the distance (ms, caller clock) from the end of caller frame ``seq`` to the
        nearest agent phrase end as the caller hears it."""
        t = (seq + 1) * self.frame_s - self.owd_down
        i = bisect.bisect_left(self.edges, t)
        best = math.inf
        for j in (i - 1, i):
            if 0 <= j < len(self.edges):
                best = min(best, abs(self.edges[j] - t))
        return best * 1000.0

    def add_edges(self, start: float, offsets: list[float]) -> None:
        """Record the phrase ends of agent audio starting at edge time ``start``."""
        if offsets:
            self.edges = sorted(self.edges + [start + o for o in offsets])

    def pauses_of(self, j: int) -> list[float]:
        """Return the offsets (s) of the phrase ends inside labelled agent interval ``j``."""
        a, b = self.call.agent_speech[j]
        return [(p0 - a) / 1000.0 for p0, _p1 in self.call.agent_pauses if a <= p0 < b]

    def audio_ms(self, t: float) -> int:
        """Return edge time ``t`` on the call's audio clock (ms): the last caller frame's end
        plus the edge time since that frame was fed."""
        return round((self.frame_audio_end + max(0.0, t - self.frame_edge_at)) * 1000.0)

    def perform(self, o: Any) -> None:
        now = self.env.now
        if isinstance(o, Commit):
            self.run.actions.append((o.time, "commit", o.turn))
            self.run.events.append((self.audio_ms(o.time), "commit"))
            self.on_commit(o, now)
        elif isinstance(o, Cancel):
            self.run.actions.append((o.time, "cancel", o.agent_played_ms))
            self.run.events.append((self.audio_ms(o.time), "cancel"))
            self.on_cancel(o, now)
        elif isinstance(o, Prime):
            self.run.actions.append((o.time, "prime", o.turn))
            self.run.events.append((self.audio_ms(o.time), "prime"))
            self.run.primes += 1
        elif isinstance(o, BackchannelFiltered):
            self.run.events.append((self.audio_ms(o.time), "filtered"))
            self.run.backchannels_filtered += 1
        elif isinstance(o, (Duck, Pause, Restore, Resume)):
            self.run.events.append((self.audio_ms(o.time), o.kind))
            self.on_yield(o, now)
        elif isinstance(o, BargeArmed):
            self.run.barges_armed += 1

    def on_commit(self, o: Commit, now: float) -> None:
        m = self.cfg.model
        # the caller's own last speech frame of this burst: the last one fed, extended over
        # speech frames the jitter buffer skipped (lost or late) right after it
        k, speech = self.last_speech_seq, self.call.speech
        while k + 1 < len(speech) and speech[k + 1]:
            k += 1
        end_caller = (k + 1) * self.frame_s
        ttfa = m.ttfa_median_ms / 1000.0
        if m.ttfa_sigma > 0:
            ttfa *= math.exp(m.ttfa_sigma * float(self.model_rng.standard_normal()))
        if not m.prefill:
            ttfa += m.no_prefill_ms_per_s / 1000.0 * o.speech_ms / 1000.0
        reply_len = float(self.model_rng.integers(m.reply_min_ms, m.reply_max_ms + 1)) / 1000.0
        start = max(now + self.leg, self.model_ready_at) + ttfa + self.leg
        rec = {
            "turn": o.turn, "speech_ms": o.speech_ms, "end_of_speech_caller_s": end_caller,
            "last_speech_edge_s": o.last_speech_at, "commit_s": now, "ttfa_s": ttfa,
            "commit_audio_s": self.audio_ms(now) / 1000.0,
            "reply_start_edge_s": math.nan, "first_audio_caller_s": math.nan, "cancelled": False,
        }
        self.run.turns.append(rec)
        if self.scripted:
            # the scripted agent plays the labelled timeline: the modelled reply is not
            # played, only its first audio predicted (the downlink's one-way delay after the
            # model's first audio reaches the edge), so turn latency stays measurable
            rec["reply_start_edge_s"] = start
            rec["first_audio_caller_s"] = start + self.owd_down
            self.reply_gen += 1
            gen = self.reply_gen
            ev = self.env.timeout(start - now)
            ev.callbacks.append(lambda _e: self.scripted_reply_due(gen))
            return
        self.reply_gen += 1
        gen = self.reply_gen
        ev = self.env.timeout(start - now)
        ev.callbacks.append(lambda _e: self.start_reply(gen, rec, reply_len, end_caller))

    def scripted_reply_due(self, gen: int) -> None:
        """Scripted agent: the modelled reply would start now, but the script plays instead.
        If no scripted audio is playing, the engine is told the reply ended without audio
        (as a model that produced none), so it listens again rather than wait forever."""
        if gen != self.reply_gen or self.playing:
            return
        if self.eng.state in (State.AWAITING, State.AWAITING_SPEECH):
            now = self.env.now
            self.clock = max(self.clock, now)
            if self.rec is not None:
                self.rec.agent_audio_finished(now)
            self.eng.agent_audio_finished(now)
            self.pump()

    def start_reply(self, gen: int, rec: dict[str, Any], reply_len: float, end_caller: float
                    ) -> None:
        if gen != self.reply_gen:
            return
        now = self.env.now
        seg = segment_for_commit(self.call.segments, end_caller * 1000.0)
        j = self.reply_of.get(seg, -1)
        if j >= 0 and not self.script[j][2]:
            # the recorded answer to this turn: its planned length, started now
            a, b, _used = self.script[j]
            self.script[j][2] = True
            end = now + max(b - a, self.frame_s)
            self.add_edges(now, self.pauses_of(j))
        else:
            # no recorded answer to claim: a drawn length, ended before the caller's next
            # labelled turn (the recording shows the caller did not wait for more)
            nxt = [x for x in self.reply_segment_starts if x > end_caller + 0.05]
            limit = (nxt[0] if nxt else math.inf) - self.owd_down - 0.1
            end = max(now + self.frame_s, min(now + reply_len, limit))
        rec["reply_start_edge_s"] = now
        rec["first_audio_caller_s"] = math.inf

        def first(t: float) -> None:
            rec["first_audio_caller_s"] = min(rec["first_audio_caller_s"], t)

        self.start_source(now, end, first)
        self.pump()

    # ---------------------------------------------------------- soft barge-in (issue 15)
    def on_yield(self, o: Any, now: float) -> None:
        """Duck / Pause / Restore / Resume the agent's playout. A duck changes only the
        gain (the audio keeps flowing); a pause stops forwarding at once and holds the rest
        of the playing audio, and Resume plays it on from where it stopped: the rest of the
        interval shifts later by the pause's length (and any audio due meanwhile is queued
        behind it, back to back). The caller hears each change one downlink delay later."""
        heard = now + self.owd_down
        if isinstance(o, (Duck, Pause)):
            self.open_yield = {"kind": o.kind, "seq": self.cur_seq, "audible_caller_s": heard,
                               "end_caller_s": math.inf, "outcome": ""}
            self.run.yields.append(self.open_yield)
            if isinstance(o, Pause) and self.playing and not self.paused:
                self.paused = True
                self.held_edges = [e - now for e in self.edges if e > now]
                self.edges = [e for e in self.edges if e <= now]
                self.held = [(max(0.0, end - now), None) for end in self.sources.values()]
                self.source_gen += 1
                self.sources.clear()
            return
        if self.open_yield is not None:
            self.open_yield["end_caller_s"] = heard
            self.open_yield["outcome"] = o.kind
            self.open_yield = None
        if isinstance(o, Resume) and self.paused:
            self.paused = False
            held, self.held = self.held, []
            total = sum(length for length, _f in held)
            firsts = [f for _l, f in held if f is not None]

            def first(t: float) -> None:
                for f in firsts:
                    f(t)

            self.add_edges(now, self.held_edges)
            self.held_edges = []
            if total > 0:
                self.start_source(now, now + total, first if firsts else None)
            elif self.playing:
                self.set_playing(False, now)

    def on_cancel(self, o: Cancel, now: float) -> None:
        self.reply_gen += 1  # a reply not yet started is dropped
        self.model_ready_at = now + self.leg + self.cfg.model.cancel_delay_ms / 1000.0
        if self.run.turns and self.playing:
            self.run.turns[-1]["cancelled"] = True
        crec = {"cancel_edge_s": now, "cancel_seq": self.cur_seq,
                "agent_played_ms": o.agent_played_ms, "agent_stop_caller_s": math.inf}
        self.run.cancels.append(crec)
        if self.exact is not None:
            self.exact.run_until(now)
            self.exact.drop_pending(now)

            def stopped(t: float) -> None:
                crec["agent_stop_caller_s"] = t

            self.exact.send(now, 24, CONTROL, stopped)
            self.kick_exact()
        else:
            crec["agent_stop_caller_s"] = self.down.deliver([now], [24], [CONTROL])[0]
        self.source_gen += 1
        self.sources.clear()
        self.paused = False
        self.held = []
        self.held_edges = []
        self.edges = [e for e in self.edges if e <= now]
        if self.open_yield is not None:
            self.open_yield["end_caller_s"] = crec["agent_stop_caller_s"]
            self.open_yield["outcome"] = "cancel"
            self.open_yield = None
        if self.playing:
            self.set_playing(False, now)

    # -------------------------------------------------------------- agent audio
    def start_source(self, start: float, end: float,
                     first: Callable[[float], None] | None = None) -> None:
        """Start forwarding agent audio [start, end) at the edge; ``first(t)`` is called
        with the delivery time at the caller of each frame (the caller keeps the minimum).
        While the playout is paused the audio is held and plays after the resume."""
        if self.paused:
            self.held.append((end - start, first))
            return
        n = max(1, round((end - start) / self.frame_s))
        times = [start + i * self.frame_s for i in range(n)]
        if self.exact is not None:
            self.exact.run_until(start)
            cb = first if first is not None else _ignore
            for t in times:
                self.exact.send(t, self.cfg.net.frame_bytes, 0, cb)
            self.kick_exact()
        else:
            arrivals = self.down.deliver(times, [self.cfg.net.frame_bytes] * n)
            if first is not None:
                first(min(arrivals))
        self.source_ids += 1
        sid = self.source_ids
        self.sources[sid] = end
        gen = self.source_gen
        if not self.playing:
            self.set_playing(True, start)
        ev = self.env.timeout(end - start)
        ev.callbacks.append(lambda _e: self.end_source(gen, sid))

    def kick_exact(self) -> None:
        """Re-arm the exact downlink's driver at its next deadline (one pending timeout)."""
        assert self.exact is not None
        t = self.exact.next_time()
        if t == math.inf:
            return
        self.exact_gen += 1
        gen = self.exact_gen
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _e: self.drive_exact(gen))

    def drive_exact(self, gen: int) -> None:
        if gen != self.exact_gen or self.exact is None:
            return
        self.exact.run_until(self.env.now)
        self.kick_exact()

    def end_source(self, gen: int, sid: int) -> None:
        if gen != self.source_gen or sid not in self.sources:
            return
        del self.sources[sid]
        if not self.sources and self.playing:
            self.set_playing(False, self.env.now)
            self.pump()

    def set_playing(self, on: bool, now: float) -> None:
        self.clock = now
        self.playing = on
        if on:
            self.run.agent_playing.append([now, math.inf])
            if self.rec is not None:
                self.rec.agent_audio_started(now)
            self.eng.agent_audio_started(now)
        else:
            self.run.agent_playing[-1][1] = now
            if self.rec is not None:
                self.rec.agent_audio_finished(now)
            self.eng.agent_audio_finished(now)

    def script_proc(self):  # type: ignore[no-untyped-def]
        env = self.env
        for j, item in enumerate(self.script):
            a, b, _used = item
            if j in self.reactive:
                continue
            if a > env.now:
                yield env.timeout(a - env.now)
            if item[2] or b <= env.now:
                continue
            item[2] = True
            self.add_edges(a, self.pauses_of(j))
            self.start_source(env.now, b)
            self.pump()

    # -------------------------------------------------------------- run
    def simulate(self) -> CallRun:
        call = self.call
        self.run.connect_s = self.up.handshake(0.0)
        n = len(call.speech)
        send = [(k + 1) * self.frame_s for k in range(n)]
        arrival = self.up.deliver(send, [self.cfg.net.frame_bytes] * n)
        if self.cfg.net.jitter_buffer == "playout":
            schedule, skipped = playout_schedule(arrival, call.speech, self.frame_s,
                                                 self.cfg.net.playout_delay_ms / 1000.0)
        else:
            schedule, skipped = feed_schedule(
                send, arrival, call.speech, self.frame_s, self.owd_up,
                self.cfg.net.late_frame_ms / 1000.0,
                skip_late_speech=self.cfg.net.transport != "tcp",
                hold_s=self.cfg.net.playout_delay_ms / 1000.0)
        self.run.frames_fed = len(schedule)
        self.run.frames_skipped = skipped
        self.env.process(self.feeder(schedule))
        self.env.process(self.script_proc())
        self.env.run(until=call.duration_s + 10.0)
        if self.exact is not None:
            self.exact.run_until(call.duration_s + 30.0)
        self.run.retransmissions = self.up.retransmissions + self.down.retransmissions
        self.run.packets_lost = self.up.fwd.lost + self.down.fwd.lost
        return self.run


def simulate_call(call: Call, cfg: SimConfig, recorder: Any = None) -> CallRun:
    """Simulate one call under ``cfg``; return its :class:`CallRun`. Deterministic in
    (call, cfg): the random streams derive from ``cfg.seed`` and the call's name.

    ``recorder``, if given, sees every engine input and drained output, in order, through
    the methods of ``clutchcall.traces.recorded.TraceRecorder``: ``caller_frame(now, *,
    speech, duration_ms, seq)``, ``agent_audio_started(now)``, ``agent_audio_finished(now)``,
    ``timer(now)`` and ``outputs(list)``; :class:`InputLog` is a minimal one."""
    return _World(call, cfg, recorder).simulate()


class InputLog:
    """A recorder that keeps the engine inputs as tuples (for engine-only replay):
    ``("frame", now, speech, duration_ms, seq)``, ``("started", now)``,
    ``("finished", now)``, ``("timer", now)``; and every output in ``outs``."""

    def __init__(self) -> None:
        self.inputs: list[tuple[Any, ...]] = []
        self.outs: list[Any] = []

    def caller_frame(self, now: float, *, speech: bool, duration_ms: int, seq: int | None) -> None:
        self.inputs.append(("frame", now, speech, duration_ms, seq))

    def agent_audio_started(self, now: float) -> None:
        self.inputs.append(("started", now))

    def agent_audio_finished(self, now: float) -> None:
        self.inputs.append(("finished", now))

    def timer(self, now: float) -> None:
        self.inputs.append(("timer", now))

    def outputs(self, outs: list[Any]) -> None:
        self.outs.extend(outs)


def replay_inputs(engine: TurnEngine, inputs: list[tuple[Any, ...]]) -> list[Any]:
    """Feed an :class:`InputLog`'s inputs to ``engine`` (draining after each); return every
    output. The engine is pure, so this reproduces the simulated call's outputs exactly."""
    out: list[Any] = []
    frame, drain = engine.caller_frame, engine.drain
    for inp in inputs:
        k = inp[0]
        if k == "frame":
            frame(inp[1], speech=inp[2], duration_ms=inp[3], seq=inp[4])
        elif k == "timer":
            engine.handle_timer(inp[1])
        elif k == "started":
            engine.agent_audio_started(inp[1])
        else:
            engine.agent_audio_finished(inp[1])
        out += drain()
    return out
