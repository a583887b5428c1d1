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
  (closed form per frame: no simpy event per packet). With ``jitter_buffer="playout"`` the
  production :class:`~clutchcall.engine.call.JitterBuffer` releases them (concealed frames
  are fed as silence, as production's concealment decodes to silence). The "adaptive"
  model instead feeds the call core in sequence order at most at 1x: a frame is fed at
  ``max(arrival, previous feed + frame)``; a frame not there by its playout deadline
  (``send + RTT/2 + late_frame_ms``) is skipped (a gap the engine sees as no frame), and while
  the buffer is behind real time it drops *silence* frames to catch up (never speech). Over
  QUIC a lost frame thus costs one gap; over TCP every later frame waits for it (head-of-line
  blocking) and the speech behind it is fed late.
* **edge** -- the production call core, :class:`~clutchcall.engine.call.CallCore` (frame
  hold on the media clock, the :class:`~clutchcall.engine.TurnEngine`, the downlink playout
  at 1x with its agent audio started / finished detection, turn records), driven by the
  docs/architecture.md §2 loop with ``env.now``: input -> ``transmit()`` -> perform -> re-arm the one timer
  (a single logical timer: each re-arm schedules one simpy timeout tagged with a generation;
  a stale one is ignored, and the firing one calls ``handle_timer(max(deadline, env.now))``).
  The simulator keeps only what is not the edge: processes, the link and the model.
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
* **speculation** -- a ``Speculate`` reaches the model like a commit (its time to first
  audio drawn the same way); its reply is handed to the core's playout marked speculative and
  the core *holds* it (``engine/call/speculation.py``, the same code as prod): a ``Release``
  lets it go at once, so it starts at ``max(release, first audio ready)``; a ``Retract``
  drops it and the model is busy with the cancel for ``cancel_delay_ms``. Only released
  speculations become turns (``CallRun.turns``, ``speculative`` True); the counters and the
  model time wasted on retracted ones go to ``CallRun.speculation``.
* **scripted agent** (``SimConfig.agent = "scripted"``, ``clutchcall eval``'s default) --
  *every* ``agent_speech`` interval plays at its planned time, replies included, whatever the
  engine decided, so that one failure never hides another (a missed reply does not silence
  the backchannels and interruptions labelled inside it). A commit does not start audio: its
  first audio at the caller is predicted as the reactive agent would play it (the model's
  first audio at the edge plus the downlink's one-way delay), so turn latency stays
  measurable. A ``Cancel`` silences the interval it hits until that interval's planned end;
  the next interval plays at its planned time. A ``Pause`` holds the playing interval in the
  core's playout and ``Resume`` plays it on from where it stopped: the rest of it shifts
  later by the pause's length, and an interval due meanwhile queues behind it, back to back.
* **downlink** -- agent audio is queued in the core's playout, which paces it at 1x (a
  reply queued while another plays follows it), ducks, pauses and resumes it (the soft
  barge-in: the call core's decision, as in production); when the first frame of a reply
  goes out, its whole run of 1x frames is handed to the downlink transport as one batch; the
  caller hears the first agent audio when the first of them is delivered. (A pause does not
  re-time that batch: the transport model sees the unpaused packet train; only the first
  audio's arrival is scored from it.)

The outputs of a run (:class:`CallRun`) are plain records; :mod:`clutchcall.sim.metrics`
scores them against the labels.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import simpy

from clutchcall.engine import Append, Cancel, Commit
from clutchcall.engine.actions import (
    BackchannelFiltered,
    BargeArmed,
    Duck,
    Pause,
    Prime,
    Release,
    Restore,
    Resume,
    Retract,
    Speculate,
)
from clutchcall.engine.call import (
    AgentFinished,
    AgentFrame,
    AgentStarted,
    CallCore,
    HoldConfig,
    PlayoutCleared,
    PlayoutConfig,
    Recorder,
    UplinkAudio,
)
from clutchcall.engine.config import VAD_FRAME_MS
from clutchcall.engine.errors import InvalidInput
from clutchcall.engine.turn import State
from clutchcall.sim.calls import Call, reply_intervals, segment_for_commit
from clutchcall.sim.config import NetConfig, SimConfig
from clutchcall.sim.feed import feed_schedule, jitter_releases
from clutchcall.sim.link import Link, direction_rngs
from clutchcall.sim.transport import CONTROL, QuicModel, TcpTlsModel

AGENT_SPEECH_DB = -20.0
"""The level given to the agent's frames inside its labelled speech (dBFS)..."""
AGENT_PAUSE_DB = -100.0
"""...and inside its labelled pauses (``agent_pauses``): the core finds phrase ends in them."""


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
    speculation: dict[str, float] = field(default_factory=lambda: {
        "started": 0, "released": 0, "retracted": 0, "wasted_model_s": 0.0})
    """Speculative commits: counts, and model time spent on retracted ones (Speculate ->
    Retract, as the engine counts it against its budget)."""
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
        kw: dict[str, Any] = {"zero_rtt": net.zero_rtt, "ack_every": net.quic_ack_every,
                              "ack_delay_ms": net.quic_ack_delay_ms,
                              "datagrams": net.quic_datagrams}
        return QuicModel(up, up_ack, **kw), QuicModel(down, down_ack, **kw)
    from clutchcall.sim.quic_exact import ExactQuicTransport

    return ExactQuicTransport.pair(net, rngs)


def _ignore(_t: float) -> None:
    return None


def call_seed(seed: int, name: str) -> int:
    """Return the per-call seed derived from the run seed and the call's name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) & 0x7FFFFFFFFFFFFFFF


class _World:
    def __init__(self, call: Call, cfg: SimConfig, recorder: Recorder | None = None) -> None:
        if call.frame_ms not in VAD_FRAME_MS:
            # the engine's frame sizes (the VAD's); the call core would otherwise re-time them
            raise InvalidInput(f"caller frames: duration_ms must be 10, 20 or 30, got "
                               f"{call.frame_ms} (call {call.name})")
        self.call = call
        self.cfg = cfg
        self.env = simpy.Environment()
        self.rngs = direction_rngs(call_seed(cfg.seed, call.name))
        self.model_rng = self.rngs["model"]
        self.up, self.down = _make_transports(cfg.net, self.rngs)
        # the edge: the same call core as production (frame hold, engine, playout)
        # agent frames carry their level (dBFS): the core finds the agent's phrase ends in
        # them, as it does in production from the PCM (engine/call/phrase.py)
        # the hold and the playout at the call's own frame size (the turn config's may differ)
        self.core: CallCore[int, float] = CallCore(
            cfg.turn, hold=HoldConfig(frame_ms=call.frame_ms),
            playout=PlayoutConfig(frame_ms=call.frame_ms), recorder=recorder, agent_level=float)
        self.exact: Any = getattr(self.down, "conn", None)
        if not callable(getattr(self.exact, "run_until", None)):
            self.exact = None
        self.exact_gen = 0
        self.run = CallRun(call=call)
        self.frame_s = call.frame_ms / 1000.0
        self.owd_down = cfg.net.downlink.one_way_s
        self.owd_up = cfg.net.uplink.one_way_s
        self.leg = cfg.model.model_leg_ms / 1000.0
        # the one timer
        self.timer_gen = 0
        self.timer_at: float | None = None
        # agent audio at the edge: response id -> (frames, first-audio callback, delivered)
        self.replies: dict[str, list[Any]] = {}
        self.reply_ids = 0
        # model
        self.reply_gen = 0
        self.model_ready_at = 0.0
        self.last_speech_seq = -1
        self.cur_seq = -1
        self.append_speech = False
        # the speculation in flight: its turn record, and the recorded answer its reply claimed
        self.spec_rec: dict[str, Any] | None = None
        self.spec_claim = -1
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
        # soft barge-in: the open yield record (duck / pause until restore / resume / cancel)
        self.open_yield: dict[str, Any] | None = None
        reply_starts = sorted(s.start_ms for s in call.segments if s.expect == "reply")
        self.reply_segment_starts = [x / 1000.0 for x in reply_starts]

    # -------------------------------------------------------------- drive loop
    def drive(self) -> None:
        """Perform what the core decided, then re-arm the one timer (docs/architecture.md §2)."""
        core = self.core
        for ev in core.transmit():
            self.perform(ev)
        d = core.get_timer()
        if d is not None and d != self.timer_at:
            self.timer_at = d
            self.timer_gen += 1
            gen = self.timer_gen
            tm = self.env.timeout(max(0.0, d - self.env.now))
            tm.callbacks.append(partial(self._fire_cb, gen, d))
        elif d is None and self.timer_at is not None:
            self.timer_at = None
            self.timer_gen += 1  # disarm the pending timeout

    def _fire_cb(self, gen: int, deadline: float, _event: object) -> None:
        if gen != self.timer_gen:
            return
        self.timer_at = None
        self.core.handle_timer(max(deadline, self.env.now))
        self.drive()

    def feeder(self, schedule: list[tuple[float, int, bool, bool]]):
        env, core = self.env, self.core
        timeout = env.timeout
        media = self.cfg.net.media_clock
        frame_s = self.frame_s
        feats = self.call.features
        for t, seq, speech, concealed in schedule:
            dt = t - env.now
            if dt > 0:
                yield timeout(dt)
            now = env.now
            if concealed and not core.admit_conceal(now, 1):
                continue
            f = feats[seq] if feats is not None and not concealed else None
            self.frame_audio_end = (seq + 1) * frame_s
            self.frame_edge_at = now
            # the frame's media time: its send time (the caller sends frame k at (k+1) frames)
            core.caller_audio(now, ((seq, speech),), duration_s=frame_s,
                              media_end=(seq + 1) * frame_s if media else None,
                              features=(f,))
            self.drive()

    # -------------------------------------------------------------- actions
    def pauses_of(self, j: int) -> list[tuple[float, float]]:
        """Return the pauses (s, from its start) inside labelled agent interval ``j``."""
        a, b = self.call.agent_speech[j]
        return [((p0 - a) / 1000.0, (p1 - a) / 1000.0) for p0, p1 in self.call.agent_pauses
                if a <= p0 < b]

    def audio_ms(self, t: float) -> int:
        """Return edge time ``t`` on the call's audio clock (ms): the last caller frame's end
        plus the edge time since that frame was fed."""
        return round((self.frame_audio_end + max(0.0, t - self.frame_edge_at)) * 1000.0)

    def perform(self, o: Any) -> None:
        now = self.env.now
        if isinstance(o, UplinkAudio):
            # the caller's own frame number of the frame just appended
            self.cur_seq = o.payload
            if self.append_speech:
                self.last_speech_seq = o.payload
        elif isinstance(o, Append):
            self.append_speech = o.speech
        elif isinstance(o, AgentFrame):
            self.send_reply(o.response_id, now)
        elif isinstance(o, AgentStarted):
            self.run.agent_playing.append([o.time, math.inf])
        elif isinstance(o, AgentFinished):
            if self.run.agent_playing and self.run.agent_playing[-1][1] == math.inf:
                self.run.agent_playing[-1][1] = o.time
        elif isinstance(o, Commit):
            self.run.actions.append((o.time, "commit", o.turn))
            self.run.events.append((self.audio_ms(o.time), "commit"))
            self.on_commit(o, now)
        elif isinstance(o, PlayoutCleared):
            self.on_cancel(o, now)
        elif isinstance(o, Cancel):
            self.run.actions.append((o.time, "cancel", o.agent_played_ms))
            self.run.events.append((self.audio_ms(o.time), "cancel"))
        elif isinstance(o, Prime):
            self.run.actions.append((o.time, "prime", o.turn))
            self.run.events.append((self.audio_ms(o.time), "prime"))
            self.run.primes += 1
        elif isinstance(o, (Speculate, Release, Retract)):
            self.perform_speculation(o, now)
        elif isinstance(o, BackchannelFiltered):
            self.run.events.append((self.audio_ms(o.time), "filtered"))
            self.run.backchannels_filtered += 1
        elif isinstance(o, (Duck, Pause, Restore, Resume)):
            self.run.events.append((self.audio_ms(o.time), o.kind))
            self.on_yield(o, now)
        elif isinstance(o, BargeArmed):
            self.run.barges_armed += 1

    # -------------------------------------------------------------- speculation
    def perform_speculation(self, o: Speculate | Release | Retract, now: float) -> None:
        """Speculate: request the reply (the core holds its audio); Release: the turn's
        commit (the core plays the held reply at once); Retract: the reply is cancelled."""
        spec = self.run.speculation
        if isinstance(o, Speculate):
            self.run.actions.append((o.time, "speculate", o.turn))
            spec["started"] += 1
            rec, start, reply_len, end_caller = self.request_reply(o, now)
            rec["speculative"] = True
            self.spec_rec, self.spec_claim = rec, -1
            self.schedule_reply(rec, start, reply_len, end_caller)
        elif isinstance(o, Release):
            self.run.actions.append((o.time, "release", o.turn))
            spec["released"] += 1
            held, self.spec_rec = self.spec_rec, None
            if held is not None:  # always: the engine releases only what it speculated
                held["commit_s"] = now
                self.run.turns.append(held)
                if self.scripted:
                    # the held reply plays at max(release, ready); the script plays instead,
                    # and the engine learns the reply had no audio if nothing plays then
                    ready = max(held["reply_start_edge_s"], now)
                    held["reply_start_edge_s"] = ready
                    held["first_audio_caller_s"] = ready + self.owd_down
                    self.reply_gen += 1
                    gen = self.reply_gen
                    ev = self.env.timeout(ready - now)
                    ev.callbacks.append(lambda _e: self.scripted_reply_due(gen))
        else:
            self.run.actions.append((o.time, "retract", o.turn))
            spec["retracted"] += 1
            spec["wasted_model_s"] += o.held_ms / 1000.0
            self.spec_rec = None
            self.reply_gen += 1  # a reply not yet ready is never delivered
            if self.spec_claim >= 0:  # the recorded answer stays for the turn's real reply
                self.script[self.spec_claim][2] = False
            self.model_ready_at = max(self.model_ready_at,
                                      now + self.leg + self.cfg.model.cancel_delay_ms / 1000.0)

    def request_reply(self, o: Commit | Speculate, now: float
                      ) -> tuple[dict[str, Any], float, float, float]:
        """The model is asked for a reply at ``now``: return (turn record, edge time its first
        audio is ready, its drawn length, the caller-time end of the turn's speech)."""
        m = self.cfg.model
        # the caller's own last speech frame of this burst: the last one fed, extended over
        # speech frames the jitter buffer skipped (lost or late) right after it
        k, speech = self.last_speech_seq, self.call.speech
        while k + 1 < len(speech) and speech[k + 1]:
            k += 1
        end_caller = (k + 1 - self.call.speech_hangover_frames) * self.frame_s
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
            "speculative": False,
        }
        return rec, start, reply_len, end_caller

    def schedule_reply(self, rec: dict[str, Any], start: float, reply_len: float,
                       end_caller: float) -> None:
        """Hand the reply's audio to the edge at ``start`` (unless superseded by then)."""
        now = self.env.now
        if self.scripted:
            # the scripted agent plays the labelled timeline: the modelled reply is not
            # played, only its first audio predicted (the downlink's one-way delay after the
            # model's first audio reaches the edge; a speculative reply's at its Release if
            # that is later), so turn latency stays measurable
            rec["reply_start_edge_s"] = start
            rec["first_audio_caller_s"] = start + self.owd_down
            self.reply_gen += 1
            gen = self.reply_gen
            ev = self.env.timeout(max(0.0, start - now))
            ev.callbacks.append(lambda _e: self.scripted_reply_due(gen))
            return
        self.reply_gen += 1
        gen = self.reply_gen
        ev = self.env.timeout(max(0.0, start - self.env.now))
        ev.callbacks.append(lambda _e: self.start_reply(gen, rec, reply_len, end_caller))

    def on_commit(self, o: Commit, now: float) -> None:
        rec, start, reply_len, end_caller = self.request_reply(o, now)
        self.run.turns.append(rec)
        self.schedule_reply(rec, start, reply_len, end_caller)

    def scripted_reply_due(self, gen: int) -> None:
        """Scripted agent: the modelled reply would start now, but the script plays instead.
        If no scripted audio is playing, the engine is told the reply ended without audio
        (as a model that produced none), so it listens again rather than wait forever."""
        core = self.core
        if gen != self.reply_gen or core.playout.playing or len(core.playout):
            return
        if core.engine.state in (State.AWAITING, State.AWAITING_SPEECH):
            self.reply_ids += 1
            core.response_done(self.env.now, f"m{self.reply_ids}", "no_audio")
            self.drive()

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
            if rec is self.spec_rec:
                self.spec_claim = j
            end = now + max(b - a, self.frame_s)
            offsets = self.pauses_of(j)
        else:
            # no recorded answer to claim: a drawn length, ended before the caller's next
            # labelled turn (the recording shows the caller did not wait for more)
            nxt = [x for x in self.reply_segment_starts if x > end_caller + 0.05]
            limit = (nxt[0] if nxt else math.inf) - self.owd_down - 0.1
            end = max(now + self.frame_s, min(now + reply_len, limit))
            offsets = []
        rec["reply_start_edge_s"] = now
        rec["first_audio_caller_s"] = math.inf

        def first(t: float) -> None:
            rec["first_audio_caller_s"] = min(rec["first_audio_caller_s"], t)

        # a speculative reply still in flight is held by the core until its Release
        self.start_source(now, end, first, offsets,
                          spec_rec=rec if rec["speculative"] else None)

    # ---------------------------------------------------------- soft barge-in (issue 15)
    def on_yield(self, o: Any, now: float) -> None:
        """Record a Duck / Pause / Restore / Resume (the call core has already acted on the
        playout: the decision is the core's, the same as production's). The caller hears each
        change one downlink delay later."""
        heard = now + self.owd_down
        if isinstance(o, (Duck, Pause)):
            self.open_yield = {"kind": o.kind, "seq": self.cur_seq, "audible_caller_s": heard,
                               "end_caller_s": math.inf, "outcome": ""}
            self.run.yields.append(self.open_yield)
            return
        if self.open_yield is not None:
            self.open_yield["end_caller_s"] = heard
            self.open_yield["outcome"] = o.kind
            self.open_yield = None

    def on_cancel(self, o: PlayoutCleared, now: float) -> None:
        self.reply_gen += 1  # a reply not yet started is dropped
        self.model_ready_at = now + self.leg + self.cfg.model.cancel_delay_ms / 1000.0
        if self.run.turns and o.was_playing:
            self.run.turns[-1]["cancelled"] = True
        crec = {"cancel_edge_s": now, "cancel_seq": self.cur_seq,
                "agent_played_ms": o.agent_played_ms, "agent_stop_caller_s": math.inf}
        self.run.cancels.append(crec)
        if self.exact is not None:
            self.exact.run_until(now)
            self.exact.drop_pending(now)

            y = self.open_yield

            def stopped(t: float) -> None:
                crec["agent_stop_caller_s"] = t
                if y is not None:
                    y["end_caller_s"] = t

            self.exact.send(now, 24, CONTROL, stopped)
            self.kick_exact()
        else:
            crec["agent_stop_caller_s"] = self.down.deliver([now], [24], [CONTROL])[0]
        if self.open_yield is not None:
            self.open_yield["end_caller_s"] = crec["agent_stop_caller_s"]
            self.open_yield["outcome"] = "cancel"
            self.open_yield = None

    # -------------------------------------------------------------- agent audio
    def start_source(self, start: float, end: float,
                     first: Callable[[float], None] | None = None,
                     pauses: list[tuple[float, float]] | None = None,
                     spec_rec: dict[str, Any] | None = None) -> None:
        """Hand agent audio [start, end) to the edge's playout (the core paces, ducks and
        pauses it); ``first(t)`` is called with the delivery time at the caller of each frame
        (the caller keeps the minimum); ``pauses``: the agent's pauses inside it (s from its
        start): its frames there are silent, elsewhere speech (the level the core reads).
        ``spec_rec``: the audio is a speculative reply (marked so for the core, which holds it
        until its Release); its record's ``reply_start_edge_s`` is when its first frame
        actually goes out."""
        n = max(1, round((end - start) / self.frame_s))
        self.reply_ids += 1
        rid = f"r{self.reply_ids}"
        self.replies[rid] = [n, first, False, spec_rec]
        levels = [AGENT_SPEECH_DB] * n
        fs = self.frame_s
        for p0, p1 in pauses or ():
            for k in range(max(0, round(p0 / fs)), min(n, round(p1 / fs))):
                levels[k] = AGENT_PAUSE_DB
        core = self.core
        spec = spec_rec is not None
        core.agent_audio(start, rid, rid, levels, speculative=spec)
        core.response_done(start, rid, speculative=spec)
        self.drive()

    def send_reply(self, rid: str, now: float) -> None:
        """The core sends a frame of ``rid``: at its first, the downlink transport gets the
        whole run of its frames (``now + k * frame``, the playout's 1x schedule), as one
        batch, so the transport model sees the same packet train as production sends."""
        info = self.replies.get(rid)
        if info is None or info[2]:
            return
        info[2] = True
        n, first = info[0], info[1]
        if info[3] is not None:
            info[3]["reply_start_edge_s"] = now
        times = [now + i * self.frame_s for i in range(n)]
        if self.exact is not None:
            self.exact.run_until(now)
            cb = first if first is not None else _ignore
            for t in times:
                self.exact.send(t, self.cfg.net.frame_bytes, 0, cb)
            self.kick_exact()
        else:
            arrivals = self.down.deliver(times, [self.cfg.net.frame_bytes] * n)
            if first is not None:
                first(min(arrivals))

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

    def script_proc(self):
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
            self.start_source(env.now, b, None, self.pauses_of(j))

    # -------------------------------------------------------------- run
    def simulate(self) -> CallRun:
        call = self.call
        self.run.connect_s = self.up.handshake(0.0)
        n = len(call.speech)
        send = [(k + 1) * self.frame_s for k in range(n)]
        arrival = self.up.deliver(send, [self.cfg.net.frame_bytes] * n)
        schedule: list[tuple[float, int, bool, bool]]
        if self.cfg.net.jitter_buffer == "playout":
            schedule, stats = jitter_releases(arrival, call.speech, self.frame_s,
                                              self.cfg.net.playout_delay_ms / 1000.0)
            skipped = n - stats.released
        else:
            fed, skipped = feed_schedule(
                send, arrival, call.speech, self.frame_s, self.owd_up,
                self.cfg.net.late_frame_ms / 1000.0,
                skip_late_speech=self.cfg.net.transport != "tcp",
                hold_s=self.cfg.net.playout_delay_ms / 1000.0)
            schedule = [(t, k, s, False) for t, k, s in fed]
        self.run.frames_fed = n - skipped
        self.run.frames_skipped = skipped
        self.env.process(self.feeder(schedule))
        self.env.process(self.script_proc())
        self.env.run(until=call.duration_s + 10.0)
        if self.exact is not None:
            self.exact.run_until(call.duration_s + 30.0)
        self.run.retransmissions = self.up.retransmissions + self.down.retransmissions
        self.run.packets_lost = self.up.fwd.lost + self.down.fwd.lost
        return self.run


def simulate_call(call: Call, cfg: SimConfig, recorder: Recorder | None = None) -> CallRun:
    """Simulate one call under ``cfg``; return its :class:`CallRun`. Deterministic in
    (call, cfg): the random streams derive from ``cfg.seed`` and the call's name.

    ``recorder``, if given, is the call core's :class:`~clutchcall.engine.call.Recorder`: it
    sees every engine input and drained output, in order (a
    ``clutchcall.traces.recorded.TraceRecorder``, or a
    :class:`~clutchcall.engine.call.MemoryRecorder` for engine-only replays)."""
    return _World(call, cfg, recorder).simulate()
