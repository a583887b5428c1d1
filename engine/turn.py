"""The turn engine: a sans-IO state machine that decides when the caller's turn ended.

Theory of operation
-------------------
The engine never reads a clock, sleeps or does I/O. Every input carries ``now`` (seconds,
monotonic, float). The shell (simulator or production edge) runs one loop::

    engine.caller_frame(now, speech=..., duration_ms=...)  # or agent_audio_started/finished
    for output in engine.drain(): shell.perform(output)     # every input needs a drain after it
    deadline = engine.get_timer()                           # re-arm the one timer
    # when it fires: engine.handle_timer(max(deadline, clock())), then drain again

Caller frames arrive at 1x real time, speech or not; ``now`` is the *end* of the frame's
audio, so the frame covers ``[now - duration, now]``. Each frame yields an ``Append`` first,
then whatever it decided. Silence is measured from the end of the last speech frame, not by
counting frames, so the same decisions come out whether silence arrives as frames or as a
gap that only the timer sees. Deadlines that fell before a frame's start fire before the frame
is processed.

All transitions live in :data:`TRANSITIONS`, one table keyed by ``(State, Input)``; an input
that the table has no row for raises :class:`~clutchcall.engine.errors.InvalidInput`.
Judgement calls (is this a backchannel? is this barge-in confirmed?) are asked of a
:class:`~clutchcall.engine.policy.TurnPolicy` (``config.policy`` names it). The engine tells
the policy whether a turn *answers* the agent: it opened after the agent's audio finished on
its own (not cancelled, and not while the caller was already speaking over it), within
``answer_window_ms``; only the first turn after agent audio can be one. With
``cancel_answer_window_ms`` (off in ``TurnConfig()``, on in the product) a Cancel counts too,
once the turn it opened is filtered: the agent was cut off mid-reply by what proved to be a
backchannel, so the caller's next turn, within that window after the filtered turn's last
speech, answers it (without this the call falls into dead air: the agent is silent and a short
"yes" is filtered as a backchannel).

States
------
``LISTENING``        no turn open, agent silent.
``SPEAKING``         a turn is open and the caller is in speech.
``PAUSED``           a turn is open and the caller is silent, less than the end-of-turn silence.
``AWAITING``         the turn was committed; the agent's first audio has not started.
``AWAITING_SPEECH``  as ``AWAITING`` but the caller speaks again (held, like a barge candidate).
``AGENT``            agent audio plays, caller silent.
``BARGE_PENDING``    agent audio plays and the caller speaks: a barge-in is pending.

The table, row by row (inputs: SPEECH / SILENCE frame, AGENT_STARTED, AGENT_FINISHED, and the
four deadlines PRIME_DUE, SPECULATE_DUE, END_OF_TURN_DUE, BURST_END_DUE):

=================  ==============  ===========================================================
state              input           effect -> next state
=================  ==============  ===========================================================
LISTENING          SPEECH          open turn: TurnStarted -> SPEAKING
LISTENING          SILENCE         nothing
LISTENING          AGENT_STARTED   unsolicited agent audio (a greeting) -> AGENT
LISTENING          AGENT_FINISHED  late finish (after a Cancel): ignored
SPEAKING           SPEECH          count speech
SPEAKING           SILENCE         arm prime (if the policy allows) and end-of-turn -> PAUSED
SPEAKING           AGENT_STARTED   agent starts while the caller is mid-burst: the open turn
                                   ends uncommitted (EndOfTurn reason agent_started), a
                                   barge-in is armed from now -> BARGE_PENDING
SPEAKING           AGENT_FINISHED  late finish: ignored
PAUSED             SPEECH          same turn continues (a speculation in flight is
                                   Retracted) -> SPEAKING
PAUSED             SILENCE         nothing (the deadlines run); with "smart-turn", a frame
                                   carrying ``turn_end_p`` revises the pause's end of turn once
PAUSED             PRIME_DUE       Prime (once per pause)
PAUSED             SPECULATE_DUE   Speculate (see "Speculative commit" below)
PAUSED             END_OF_TURN     speculation in flight: Release, EndOfTurn -> AWAITING;
                                   policy wants a reply: Commit, EndOfTurn -> AWAITING;
                                   else BackchannelFiltered, EndOfTurn -> LISTENING (if
                                   a Cancel opened this turn and cancel_answer_window_ms is
                                   set, the next turn within it is an answer)
PAUSED             AGENT_STARTED   the open turn ends uncommitted (a speculation in flight is
                                   Retracted first) -> AGENT
PAUSED             AGENT_FINISHED  late finish: ignored
AWAITING           SPEECH          speech while the reply is pending is held -> AWAITING_SPEECH
AWAITING           SILENCE         nothing
AWAITING           AGENT_STARTED   -> AGENT
AWAITING           AGENT_FINISHED  the reply ended without audio -> LISTENING
AWAITING_SPEECH    SPEECH          count speech
AWAITING_SPEECH    SILENCE         arm burst end
AWAITING_SPEECH    BURST_END_DUE   burst over before the agent spoke; a short one is
                                   BackchannelFiltered; its audio stays in the model's input
                                   buffer for the next turn -> AWAITING
AWAITING_SPEECH    AGENT_STARTED   agent starts over the caller: barge-in armed from now
                                   (only speech over agent audio counts) -> BARGE_PENDING
AWAITING_SPEECH    AGENT_FINISHED  reply ended without audio: the held speech opens a turn
                                   -> SPEAKING (or PAUSED if in a gap)
AGENT              SPEECH          BargeArmed at the frame's start; count; confirm check
                                   -> BARGE_PENDING (or, if confirmed at once, as below)
AGENT              SILENCE         nothing
AGENT              AGENT_STARTED   error: agent audio already playing
AGENT              AGENT_FINISHED  -> LISTENING
BARGE_PENDING      SPEECH          count; once the policy confirms: BargeConfirmed, Cancel
                                   (agent_played_ms), TurnStarted -> SPEAKING; else, with
                                   barge_yield duck/pause, once the policy says yield (and
                                   not yet yielded): Duck or Pause
BARGE_PENDING      SILENCE         arm burst end
BARGE_PENDING      BURST_END_DUE   a backchannel over the agent: BargeDismissed, Restore /
                                   Resume (if it yielded), BackchannelFiltered, the agent
                                   keeps talking -> AGENT
BARGE_PENDING      AGENT_STARTED   error: agent audio already playing
BARGE_PENDING      AGENT_FINISHED  the agent finished first: no Cancel (nothing to stop);
                                   BargeDismissed(agent_finished), the caller's speech opens a
                                   turn -> SPEAKING (or PAUSED if in a gap)
=================  ==============  ===========================================================

Soft barge-in (``TurnConfig.barge_yield``): a pending barge-in may make the agent yield at
once -- ``Duck`` (gain down) or ``Pause`` (playout held) -- when the policy's
``barge_yield`` says so; a dismissal then emits ``Restore`` / ``Resume`` (also when the agent
finished first), a confirmation emits ``Cancel`` whose ``agent_played_ms`` excludes the time
the playout was paused (the audio the caller actually heard). Each Duck / Pause is closed by
exactly one Restore / Resume or Cancel.

Speech while waiting for the model's first audio (``AWAITING_SPEECH``) never cancels by itself:
``Cancel`` exists to stop agent audio, so it needs agent audio. If the agent starts while the
caller still speaks, the overlap is a pending barge-in like any other, timed from the agent's
start. A barge-in that would be confirmed after the agent already finished is not: the agent
stopped first, so there is nothing to cancel, and the caller's speech becomes a turn.

Speculative commit
------------------
With ``config.speculate`` on, a pause in a turn the policy would reply to (past the backchannel
filter) arms a SPECULATE_DUE deadline ``speculate_silence_ms`` after its last speech frame, if
that is before the pause's end of turn, no speculation is in flight (at most one per call) and
the call's wasted-time budget (``speculate_budget_ms``) is not spent. It emits ``Speculate``
(the shell commits and requests the reply, holding its audio). The speculation is then
resolved exactly once, in the same pause: END_OF_TURN_DUE -> ``Release`` in place of
``Commit`` (the shell plays the held reply at once); a SPEECH frame (the caller goes on) or
AGENT_STARTED -> ``Retract`` (cancel, delete the reply's item, drop its audio; its time in
flight counts against the budget), and the turn carries on as without speculation. A prime
due at or after the speculation is skipped (the speculative commit already put the turn in
the model's context). The end of turn itself is decided exactly as with speculation off, so
the off switch only removes ``Speculate`` / ``Retract`` and turns ``Release`` back into
``Commit`` (and restores those skipped primes).

End of turn per pause
---------------------
The silence that ends a turn is chosen once per pause, when it starts, by the end-of-turn rule
(``config.end_of_turn_rule``, :mod:`clutchcall.engine.endpoint`) from the pause's evidence;
"fixed" is ``end_of_turn_silence_ms`` every time. The one exception is "smart-turn": the
first frame of the pause whose features carry the model's probability (``turn_end_p``, the
shell analyses the pause's audio once) revises it, once. The call's context
(:class:`~clutchcall.engine.endpoint.CallContext`: ``end_of_turn_barge_ms`` after a barge-in,
``end_of_turn_held_ms`` once the caller has resumed a turn after a hold) may lengthen any
rule's choice, never shorten it. :attr:`TurnEngine.end_of_turn_ms` tells the shell the value
chosen for the latest pause.

Errors: a caller frame whose ``now`` is earlier than an input already processed raises
``TimeWentBackwards``; one that overlaps the previous frame or repeats its sequence number
raises ``FrameOutOfOrder``; a duration other than 10/20/30 ms or an input the table lacks
raises ``InvalidInput``. In every case the engine's state is unchanged.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from itertools import chain, islice, repeat
from operator import ge as _ge
from operator import gt as _gt
from operator import sub as _sub
from typing import TYPE_CHECKING

from clutchcall.engine.actions import Append as _Append
from clutchcall.engine.actions import (
    BackchannelFiltered,
    BargeArmed,
    BargeConfirmed,
    BargeDismissed,
    Cancel,
    Commit,
    Duck,
    EndOfTurn,
    Output,
    Pause,
    Prime,
    Release,
    Restore,
    Resume,
    Retract,
    Speculate,
    TurnStarted,
    _set_duration,
    _set_seq,
    _set_speech,
    _set_time,
    appends_unchecked,
)
from clutchcall.engine.actions import _new as _new_output
from clutchcall.engine.config import VAD_FRAME_MS, TurnConfig
from clutchcall.engine.endpoint import (
    CallContext,
    FixedRule,
    PauseEvidence,
    ProsodicRule,
    ProsodyTrack,
    SmartTurnRule,
    make_end_of_turn_rule,
)
from clutchcall.engine.errors import FrameOutOfOrder, InvalidInput, TimeWentBackwards
from clutchcall.engine.policy import BurstEvidence, TurnPolicy, make_policy

if TYPE_CHECKING:
    from clutchcall.engine.audio.features import FrameFeatures

# Time tolerance (s): two frames are contiguous, and a deadline is due, within this much,
# so float rounding of 1x clocks (0.02 * k) never shifts a decision by a frame.
_EPS = 1e-6

# Silence inside a turn shorter than this is a gap inside a burst, not a pause, for the
# end-of-turn rule's evidence (burst length, pauses seen).
_PAUSE_MIN_S = 0.2


class State(enum.Enum):
    """The engine's states (see the module docstring for their meaning)."""

    LISTENING = "listening"
    SPEAKING = "speaking"
    PAUSED = "paused"
    AWAITING = "awaiting"
    AWAITING_SPEECH = "awaiting_speech"
    AGENT = "agent"
    BARGE_PENDING = "barge_pending"


class Input(enum.Enum):
    """The inputs of the transition table."""

    SPEECH = "speech"
    SILENCE = "silence"
    AGENT_STARTED = "agent_started"
    AGENT_FINISHED = "agent_finished"
    PRIME_DUE = "prime_due"
    SPECULATE_DUE = "speculate_due"
    END_OF_TURN_DUE = "end_of_turn_due"
    BURST_END_DUE = "burst_end_due"


_Handler = Callable[["TurnEngine", float, int], "State"]


class TurnEngine:
    """The pure turn engine. See the module docstring for the contract.

    Inputs: :meth:`caller_frame`, :meth:`agent_audio_started`, :meth:`agent_audio_finished`,
    :meth:`handle_timer`. Every input may produce outputs: call :meth:`drain` after it.
    """

    __slots__ = (
        "_agent_done_at",
        "_agent_started_at",
        "_answer_overlap",
        "_answer_window",
        "_barge_speech",
        "_bridge_s",
        "_bridge_to",
        "_burst_end_at",
        "_burst_start",
        "_cancel_window",
        "_ctx",
        "_done_by_cancel",
        "_eot_at",
        "_eot_ms",
        "_eot_rule",
        "_evidence",
        "_feat",
        "_feat_edge",
        "_feat_rel",
        "_follow_onset",
        "_follow_s",
        "_follow_speech",
        "_follow_until",
        "_gap_ms",
        "_holds",
        "_last_frame_end",
        "_last_seq",
        "_last_speech_end",
        "_longest_pause",
        "_min_snr",
        "_next_deadline",
        "_next_seq",
        "_now",
        "_on_silence",
        "_on_speech",
        "_out",
        "_pause_eot_ms",
        "_pause_floor_ms",
        "_pause_revised",
        "_paused_at",
        "_paused_total",
        "_pauses",
        "_prime_at",
        "_prime_ms",
        "_prosody",
        "_smart",
        "_spec_at",
        "_spec_budget_ms",
        "_spec_ms",
        "_spec_on",
        "_spec_started",
        "_spec_turn",
        "_spec_wasted_ms",
        "_state",
        "_turn",
        "_turn_answer",
        "_turn_cancel",
        "_turn_onset",
        "_turn_speech",
        "_yield_mode",
        "_yielded",
        "config",
        "policy",
    )

    def __init__(self, config: TurnConfig | None = None, policy: TurnPolicy | None = None) -> None:
        self.config = config if config is not None else TurnConfig()
        self.policy: TurnPolicy = policy if policy is not None else make_policy(self.config)
        self._state = State.LISTENING
        self._out: list[Output] = []
        self._now = -math.inf
        self._last_frame_end = -math.inf
        self._last_seq = -1
        self._next_seq = 0
        self._turn = 0
        self._turn_onset = 0.0
        self._turn_speech = 0
        self._last_speech_end = 0.0
        self._barge_speech = 0
        self._agent_started_at = 0.0
        self._agent_done_at: float | None = None
        self._turn_answer = False
        self._answer_window = self.config.answer_window_ms / 1000.0
        self._answer_overlap = self.config.answer_overlap_ms / 1000.0
        # answer after a Cancel (cancel_answer_window_ms): whether the open turn is the one a
        # Cancel opened; whether _agent_done_at is the end of such a turn, filtered
        self._cancel_window = self.config.cancel_answer_window_ms / 1000.0
        self._turn_cancel = False
        self._done_by_cancel = False
        self._prime_at: float | None = None
        self._eot_at: float | None = None
        self._burst_end_at: float | None = None
        self._next_deadline: float | None = None
        self._prime_ms = self.config.prime_silence_ms
        self._eot_ms = self.config.end_of_turn_silence_ms
        self._gap_ms = self.config.burst_gap_ms
        self._on_speech: _Handler | None = None
        self._on_silence: _Handler | None = None
        # end of turn per pause (engine/endpoint.py)
        rule = make_end_of_turn_rule(self.config)
        # the call's context (barge-in, the caller's holds) may lengthen any rule's choice
        ctx = CallContext.of(self.config)
        self._ctx = ctx if ctx.active else None
        self._holds = 0
        self._pause_floor_ms = 0  # the context's least silence for the latest pause
        self._eot_rule = None if isinstance(rule, FixedRule) and self._ctx is None else rule
        # smart-turn: the probability a frame brings revises the pause's end of turn, once
        self._smart = rule if isinstance(rule, SmartTurnRule) else None
        self._pause_revised = False
        self._pause_eot_ms = self._eot_ms
        # prosodic: the caller's last voiced frames (engine/endpoint.py ProsodyTrack)
        self._prosody = ProsodyTrack() if isinstance(rule, ProsodicRule) else None
        self._burst_start = 0.0
        self._pauses = 0
        self._longest_pause = 0.0
        # speculative commit: at most one in flight (its turn), and the wasted-time budget
        self._spec_on = self.config.speculate
        self._spec_ms = self.config.speculate_silence_ms
        self._spec_budget_ms = self.config.speculate_budget_ms
        self._spec_at: float | None = None
        self._spec_turn: int | None = None
        self._spec_started = 0.0
        self._spec_wasted_ms = 0
        # soft barge-in: 0 none, 1 duck, 2 pause; whether the pending barge-in was yielded
        # to; when the playout was paused and for how long in total (for agent_played_ms)
        self._yield_mode = ("none", "duck", "pause").index(self.config.barge_yield)
        self._yielded = False
        self._paused_at: float | None = None
        self._paused_total = 0.0
        # acoustic evidence (optional per-frame features): the pending burst's summary, the
        # current frame's relative level, the policy's noise gate (None: no gate)
        self._evidence = BurstEvidence()
        self._feat_rel: float | None = None
        self._feat_edge = math.inf
        self._feat: FrameFeatures | None = None
        self._min_snr: float | None = getattr(self.policy, "min_snr_db", None)
        # gate_bridge_ms: inside a pending barge-in, VAD-speech frames the gate dropped hold
        # the burst open (up to this long after its last speech); the last one held
        self._bridge_s = self.config.gate_bridge_ms / 1000.0 if self._min_snr is not None else 0.0
        self._bridge_to = -math.inf
        # evidence_follow_ms: a burst over the agent starting soon after the previous one was
        # dismissed (it ended) continues it -- the caller keeps talking through a short pause
        # ("no, | wait"): its speech, turn onset and burst evidence carry over
        self._follow_s = self.config.evidence_follow_ms / 1000.0 if self._min_snr is not None else 0.0
        self._follow_until = -math.inf
        self._follow_speech = 0
        self._follow_onset = 0.0
        self._enter(State.LISTENING)

    # ------------------------------------------------------------------ observation
    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def turn(self) -> int:
        """The id of the latest turn opened (0 before the first)."""
        return self._turn

    @property
    def end_of_turn_ms(self) -> int:
        """The end-of-turn silence (ms) chosen for the latest pause (the configured one
        before any pause)."""
        return self._pause_eot_ms

    @property
    def speculation_wasted_ms(self) -> int:
        """Model time (ms) retracted speculations have wasted so far in this call."""
        return self._spec_wasted_ms

    def get_timer(self) -> float | None:
        """Return the absolute time (s) at which :meth:`handle_timer` must be called, or
        ``None`` when nothing is pending. Never earlier than the last input's ``now``."""
        return self._next_deadline

    def drain(self) -> list[Output]:
        """Return the outputs decided since the last drain, oldest first, and forget them."""
        out = self._out
        self._out = []
        return out

    # ------------------------------------------------------------------ inputs
    def caller_frame(
        self, now: float, *, speech: bool, duration_ms: int, seq: int | None = None,
        features: FrameFeatures | None = None,
    ) -> None:
        """Feed one caller frame that ended at ``now`` with its VAD decision ``speech``.

        ``duration_ms`` must be 10, 20 or 30; ``seq``, if given, must increase. ``features``
        (optional, from ``engine/audio/features.py``) are the frame's acoustic features for
        the policy; a policy with a noise gate (``evidence``) treats a speech frame too close
        to the noise floor as silence. Emits an ``Append`` for the frame, then whatever the
        frame decided. Raises ``TimeWentBackwards``, ``FrameOutOfOrder`` or ``InvalidInput``
        (state unchanged).
        """
        if duration_ms not in VAD_FRAME_MS:
            raise InvalidInput(f"caller_frame: duration_ms must be 10, 20 or 30, got {duration_ms!r}")
        if not now >= self._now:  # also rejects NaN
            raise TimeWentBackwards(f"caller_frame: now={now!r} is before the last input at {self._now!r}")
        start = now - duration_ms / 1000.0
        if start < self._last_frame_end - _EPS:
            raise FrameOutOfOrder(
                f"caller_frame: frame [{start:.6f}, {now:.6f}] overlaps the previous frame, "
                f"which ended at {self._last_frame_end:.6f}"
            )
        if seq is None:
            seq = self._next_seq
        elif seq <= self._last_seq:
            raise FrameOutOfOrder(f"caller_frame: seq {seq} after seq {self._last_seq}")
        self._now = now
        self._last_frame_end = now
        self._last_seq = seq
        self._next_seq = seq + 1
        deadline = self._next_deadline
        if deadline is not None and deadline <= start + _EPS:
            self._expire(start, now)
        turn_end_p = math.nan
        bridged = False
        if features is not None:
            self._feat_rel = features.rel_db
            self._feat_edge = features.agent_edge_ms
            self._feat = features
            turn_end_p = features.turn_end_p
            if speech and self._min_snr is not None and features.snr_db < self._min_snr:
                speech = False
                # a gap the gate made inside a pending barge-in (VAD hangover on a digitally
                # silent line, between "no," and "wait"): it holds the burst open
                bridged = (self._state is State.BARGE_PENDING and self._bridge_s > 0.0
                           and now - self._last_speech_end <= self._bridge_s + _EPS)
        # append_unchecked(now, seq, duration_ms, speech), inlined: one Python call less
        app = _new_output(_Append)
        _set_time(app, now)
        _set_seq(app, seq)
        _set_duration(app, duration_ms)
        _set_speech(app, speech)
        self._out.append(app)
        # Hot path: the current state's frame handlers are cached by _enter (the same rows as
        # TRANSITIONS; a None handler is a row whose effect is "nothing").
        if speech:
            handler = self._on_speech
            if handler is None:
                raise InvalidInput(f"no transition for input speech in state {self._state.value}")
            state = handler(self, now, duration_ms)
            self._last_speech_end = now
            if self._prosody is not None and features is not None:
                self._prosody.add(now, features)
        elif bridged:
            state = self._state  # no speech counted; the burst stays open
            self._bridge_to = now
            if self._burst_end_at is not None:
                self._burst_end_at = None
                self._recompute_deadline()
        else:
            handler = self._on_silence
            state = self._state if handler is None else handler(self, now, duration_ms)
        if state is not self._state:
            self._enter(state)
        if turn_end_p == turn_end_p and self._smart is not None and state is State.PAUSED:
            self._revise_pause(turn_end_p)
        deadline = self._next_deadline
        if deadline is not None and deadline <= now + _EPS:
            self._expire(now, now)

    def caller_frames_quiet(self, times: Sequence[float], speech: Sequence[bool],
                            duration_ms: int, start: int, stop: int, *,
                            features: Sequence[FrameFeatures | None] | None = None,
                            seqs: Sequence[int] | None = None, min_run: int = 1) -> int:
        """Feed caller frames ``start .. stop - 1`` of a run given as columns -- frame ``k``
        ended at ``times[k]`` with VAD decision ``speech[k]`` (``features[k]`` and
        ``seqs[k]`` if given; all ``duration_ms`` long) -- as long as nothing can be decided,
        and return how many were fed (0 .. ``stop - start``). The caller feeds the next frame
        with :meth:`caller_frame` (firing due deadlines first, as usual).

        The batch entry point for offline drivers (:meth:`EngineDriver.feed_columns
        <clutchcall.engine.call.EngineDriver.feed_columns>`): a frame is taken only if
        :meth:`caller_frame` would have done nothing with it but emit its ``Append`` and count
        it -- silence (after the policy's noise gate) in a state that ignores silence or
        whose burst end is armed already, or speech while the caller already speaks
        (``SPEAKING``, or held in ``AWAITING_SPEECH`` with no burst end armed) -- if it is
        valid (time not going back, no overlap, increasing ``seq``; the same float
        expressions as :meth:`caller_frame`) and if no deadline is due by its end
        (``now + eps``: neither a timer before it nor one inside it fires). Everything else stops the run, so the
        outputs (drained later) and the state afterwards are exactly those of feeding the
        same frames one by one (tests check it on random streams, for every policy). The
        per-frame work runs in C (``list.index``, ``map`` over the run). ``min_run``: return
        0 at once unless the run looks at least this long (its frame ``min_run - 1`` has the
        same decision and no deadline falls before it), since batching pays off only over
        longer runs. Never raises for a bad frame: it stops before it (and for a
        ``duration_ms`` other than 10/20/30, or frames with features under the smart-turn
        end-of-turn rule, takes nothing).
        """
        if stop - start < min_run or stop <= start or duration_ms not in VAD_FRAME_MS:
            return 0
        if self._smart is not None and features is not None:
            return 0  # a frame may carry smart-turn's probability, which revises a pause
        state = self._state
        if self._bridge_s and state is State.BARGE_PENDING and features is not None:
            return 0  # a gated frame may hold the pending burst open (gate_bridge_ms)
        if state is State.SPEAKING:
            want = True  # speech continues the burst: counted, nothing decided
        elif self._on_silence is None:
            want = False  # silence is ignored in this state
        elif self._burst_end_at is not None and self._on_silence is TurnEngine._held_silence:
            want = False  # a held burst's end is armed already: more silence changes nothing
        elif state is State.AWAITING_SPEECH and self._burst_end_at is None:
            want = True  # held speech goes on: counted, nothing decided
        else:
            return 0
        gate = self._min_snr if features is not None else None
        if gate is None:
            if bool(speech[start]) is not want:
                return 0  # the common way a run ends: decide nothing, scan nothing
            if min_run > 1 and bool(speech[start + min_run - 1]) is not want:
                return 0
        deadline = self._next_deadline
        t0 = times[start]
        if deadline is not None:
            if not t0 + _EPS < deadline:  # (also a NaN time)
                return 0
            # valid frames do not overlap: at most this many fit before the deadline
            stop = min(stop, start + int((deadline - t0) * 1000.0 / duration_ms) + 2)
            if stop - start < min_run:
                return 0
        if gate is None:
            try:
                m = speech.index(not want, start, stop)
            except ValueError:
                m = stop
        else:
            assert features is not None
            m = self._quiet_gated(speech, features, want, gate, start, stop)
        if m <= start:
            return 0
        tl = list(times[start:m])
        n = m - start
        step = duration_ms / 1000.0
        # caller_frame's checks, frame by frame: now >= the previous input's now (NaN fails),
        # start = now - d / 1000 >= the previous frame's end - eps, no deadline <= now + eps
        if not (t0 >= self._now and all(map(_ge, islice(tl, 1, None), tl))
                and all(map(_ge, map(_sub, tl, repeat(step)),
                            map(_sub, chain((self._last_frame_end,), tl), repeat(_EPS))))):
            n = self._first_bad_time(tl, duration_ms)
        if deadline is not None and n and deadline <= tl[n - 1] + _EPS:
            n = next(k for k in range(n) if deadline <= tl[k] + _EPS)
        nums: Sequence[int]
        if seqs is None:
            seq0 = self._next_seq
            nums = range(seq0, seq0 + n)
        elif n:
            nums = list(seqs[start:start + n])
            if not (nums[0] > self._last_seq and all(map(_gt, nums[1:], nums))):
                last = self._last_seq
                for k, x in enumerate(nums):
                    if x <= last:
                        n = k
                        break
                    last = x
                nums = nums[:n]
        if not n:
            return 0
        if n < len(tl):
            del tl[n:]
            nums = nums[:n]
        self._out += appends_unchecked(tl, nums, duration_ms, want)
        now = tl[-1]
        self._now = now
        self._last_frame_end = now
        self._last_seq = nums[-1]
        self._next_seq = nums[-1] + 1
        if features is not None:
            for k in range(start + n - 1, start - 1, -1):  # the last frame with features
                f = features[k]
                if f is not None:
                    self._feat_rel = f.rel_db
                    self._feat_edge = f.agent_edge_ms
                    self._feat = f
                    break
        if want:
            self._turn_speech += duration_ms * n
            self._last_speech_end = now
            if self._prosody is not None and features is not None:
                self._track_run(tl, features, start, n)
        return n

    def _track_run(self, times: list[float], features: Sequence[FrameFeatures | None],
                   start: int, n: int) -> None:
        """Add a batch-fed speech run's voiced frames to the prosody ring: only its last
        ``ProsodyTrack.CAPACITY`` voiced ones, which leaves the ring as frame by frame."""
        assert self._prosody is not None
        picked: list[int] = []
        for k in range(n - 1, -1, -1):
            f = features[start + k]
            if f is not None and f.f0_hz > 0.0:
                picked.append(k)
                if len(picked) >= ProsodyTrack.CAPACITY:
                    break
        for k in reversed(picked):
            f = features[start + k]
            assert f is not None
            self._prosody.add(times[k], f)

    @staticmethod
    def _quiet_gated(speech: Sequence[bool], features: Sequence[FrameFeatures | None],
                     want: bool, gate: float, start: int, stop: int) -> int:
        """The end of the quiet run from ``start`` under the noise gate (a speech frame less
        than ``gate`` dB above the noise floor counts as silence)."""
        if want:  # every frame must be speech the gate lets through
            for k in range(start, stop):
                f = features[k]
                if not speech[k] or (f is not None and f.snr_db < gate):
                    return k
            return stop
        k = start  # silence, or VAD speech the gate turns to silence
        while True:
            try:
                k = speech.index(True, k, stop)
            except ValueError:
                return stop
            f = features[k]
            if f is None or f.snr_db >= gate:
                return k
            k += 1

    def _first_bad_time(self, times: list[float], d: int) -> int:
        """The index of the first frame :meth:`caller_frame` would refuse for its time."""
        now, end = self._now, self._last_frame_end
        for k, t in enumerate(times):
            if not t >= now or t - d / 1000.0 < end - _EPS:
                return k
            now = end = t
        return len(times)

    def agent_audio_started(self, now: float) -> None:
        """The agent's audio started playing to the caller at ``now``."""
        self._advance_clock(now, "agent_audio_started")
        self._dispatch(Input.AGENT_STARTED, now, 0)
        self._expire(now, now)

    def agent_audio_finished(self, now: float) -> None:
        """The agent's audio stopped playing at ``now`` (finished, or cleared after Cancel)."""
        self._advance_clock(now, "agent_audio_finished")
        self._dispatch(Input.AGENT_FINISHED, now, 0)
        self._expire(now, now)

    def handle_timer(self, now: float) -> None:
        """Fire every deadline at or before ``now``. Safe to call early or spuriously."""
        self._advance_clock(now, "handle_timer")
        self._expire(now, now)

    # ------------------------------------------------------------------ machinery
    def _advance_clock(self, now: float, what: str) -> None:
        if not now >= self._now:
            raise TimeWentBackwards(f"{what}: now={now!r} is before the last input at {self._now!r}")
        self._now = now

    def _dispatch(self, inp: Input, now: float, duration_ms: int) -> None:
        handler = TRANSITIONS.get((self._state, inp))
        if handler is None:
            raise InvalidInput(f"no transition for input {inp.value} in state {self._state.value}")
        state = handler(self, now, duration_ms)
        if state is not self._state:
            self._enter(state)

    def _enter(self, state: State) -> None:
        self._state = state
        speech = TRANSITIONS.get((state, Input.SPEECH))
        silence = TRANSITIONS.get((state, Input.SILENCE))
        self._on_speech = speech
        self._on_silence = None if silence is TurnEngine._ignore else silence

    def _expire(self, upto: float, now: float) -> None:
        """Fire, in deadline order, every deadline ``<= upto``; outputs are stamped ``now``."""
        while True:
            deadline = self._next_deadline
            if deadline is None or deadline > upto + _EPS:
                return
            if self._prime_at is not None and self._prime_at == deadline:
                self._prime_at = None
                inp = Input.PRIME_DUE
            elif self._spec_at is not None and self._spec_at == deadline:
                self._spec_at = None
                inp = Input.SPECULATE_DUE
            elif self._eot_at is not None and self._eot_at == deadline:
                self._eot_at = None
                inp = Input.END_OF_TURN_DUE
            else:
                self._burst_end_at = None
                inp = Input.BURST_END_DUE
            self._recompute_deadline()
            self._dispatch(inp, now, 0)

    def _recompute_deadline(self) -> None:
        best: float | None = None
        for d in (self._prime_at, self._spec_at, self._eot_at, self._burst_end_at):
            if d is not None and (best is None or d < best):
                best = d
        self._next_deadline = best

    def _clear_deadlines(self) -> None:
        self._prime_at = self._eot_at = self._burst_end_at = self._next_deadline = None
        self._spec_at = None

    def _arm_pause(self) -> None:
        base = self._last_speech_end
        eot_ms = self._eot_ms
        if self._eot_rule is not None:
            ev = PauseEvidence(
                turn_speech_ms=self._turn_speech,
                burst_ms=max(0, round((base - self._burst_start) * 1000.0)),
                answer=self._turn_answer, pauses=self._pauses,
                longest_pause_ms=round(self._longest_pause * 1000.0),
                final=None if self._prosody is None
                else self._prosody.final(self._burst_start - _EPS, base),
                barged=self._turn_cancel, holds=self._holds)
            eot_ms = self._eot_rule.silence_ms(ev)
            if self._ctx is not None:
                self._pause_floor_ms = self._ctx.silence_ms(ev, 0)
                eot_ms = max(eot_ms, self._pause_floor_ms)
        self._pause_eot_ms = eot_ms
        self._pause_revised = False
        spec = self._arm_speculation(base, eot_ms)
        if (self._prime_ms and self._prime_ms < eot_ms and not (spec and self._spec_ms <= self._prime_ms)
                and self.policy.may_prime(self._turn_speech, self._turn_answer)):
            self._prime_at = base + self._prime_ms / 1000.0
        self._eot_at = base + eot_ms / 1000.0
        self._recompute_deadline()

    def _revise_pause(self, p: float) -> None:
        """Smart-turn's P(turn complete) for this pause arrived: set its end of turn, once
        (a deadline already past fires at once)."""
        if self._pause_revised or self._eot_at is None:
            return
        assert self._smart is not None
        self._pause_revised = True
        eot_ms = max(self._smart.revised_ms(p), self._pause_floor_ms)
        self._pause_eot_ms = eot_ms
        self._eot_at = self._last_speech_end + eot_ms / 1000.0
        self._recompute_deadline()

    def _arm_burst_end(self) -> None:
        if self._burst_end_at is None:
            # (a gap the gate bridged counts as the burst's: silence runs from its end)
            self._burst_end_at = max(self._last_speech_end, self._bridge_to) + self._gap_ms / 1000.0
            self._recompute_deadline()

    # ------------------------------------------------------------------ speculation
    def _arm_speculation(self, base: float, eot_ms: int) -> bool:
        """Arm SPECULATE_DUE for this pause if allowed; return whether it was armed."""
        if (not self._spec_on or self._spec_turn is not None or self._spec_ms >= eot_ms
                or self._spec_wasted_ms >= self._spec_budget_ms
                or not self.policy.wants_reply(self._turn_speech, self._turn_answer)):
            return False
        self._spec_at = base + self._spec_ms / 1000.0
        return True

    def _paused_speculate(self, now: float, d: int) -> State:
        self._spec_turn = self._turn
        self._spec_started = now
        self._out.append(Speculate(time=now, turn=self._turn, speech_ms=self._turn_speech,
                                   last_speech_at=self._last_speech_end))
        return State.PAUSED

    def _retract(self, now: float, reason: str) -> None:
        """Withdraw the speculation in flight (if any), counting its time against the budget."""
        turn = self._spec_turn
        if turn is None:
            return
        held = max(0, round((now - self._spec_started) * 1000.0))
        self._spec_turn = None
        self._spec_wasted_ms += held
        self._out.append(Retract(time=now, turn=turn, held_ms=held, reason=reason))

    def _release(self, now: float) -> None:
        """End of turn with the speculation in flight: Release it (the turn's Commit)."""
        held = max(0, round((now - self._spec_started) * 1000.0))
        self._spec_turn = None
        self._out.append(Release(time=now, turn=self._turn, speech_ms=self._turn_speech,
                                 last_speech_at=self._last_speech_end, held_ms=held))

    def _open_turn(self, now: float, onset: float, *, by_cancel: bool = False) -> None:
        # A turn answers the agent if it starts after the agent's audio finished on its own,
        # within the answer window; only the first turn after agent audio can be an answer.
        # (Or, with cancel_answer_window_ms, within that long after the end of a filtered
        # turn that had cancelled the agent: see _paused_end_of_turn.)
        done = self._agent_done_at
        window = self._cancel_window if self._done_by_cancel else self._answer_window
        # (or while it was finishing: up to answer_overlap_ms before, a terminal overlap)
        self._turn_answer = (done is not None
                             and -self._answer_overlap - _EPS <= onset - done <= window + _EPS)
        self._agent_done_at = None
        self._done_by_cancel = False
        self._turn_cancel = by_cancel
        self._turn += 1
        self._turn_onset = onset
        self._burst_start = onset
        self._pauses = 0
        self._longest_pause = 0.0
        self._out.append(TurnStarted(time=now, turn=self._turn, onset=onset))

    def _played_ms(self, now: float) -> int:
        # the agent audio the caller actually heard: time since it started, less pauses
        paused = self._paused_total
        if self._paused_at is not None:
            paused += now - self._paused_at
        return max(0, round((now - self._agent_started_at - paused) * 1000.0))

    # ---------------------------------------------------------- soft barge-in (issue 15)
    def _agent_begins(self, now: float) -> None:
        self._agent_started_at = now
        self._agent_done_at = None
        self._done_by_cancel = False
        self._yielded = False
        self._paused_at = None
        self._paused_total = 0.0

    def _yield_to_barge(self, now: float) -> None:
        """Duck or pause the agent for the pending barge-in (once per barge-in)."""
        self._yielded = True
        if self._yield_mode == 1:
            self._out.append(Duck(time=now, gain_db=self.config.duck_db,
                                  ramp_ms=self.config.duck_ramp_ms))
        else:
            self._paused_at = now
            self._out.append(Pause(time=now))

    def _unyield(self, now: float) -> None:
        """The pending barge-in was dismissed: Restore / Resume the agent if it yielded."""
        if not self._yielded:
            return
        self._yielded = False
        if self._paused_at is not None:
            self._paused_total += now - self._paused_at
            self._paused_at = None
            self._out.append(Resume(time=now))
        else:
            self._out.append(Restore(time=now))

    def _speech_becomes_turn(self, now: float) -> State:
        """The caller's held speech (over or before the agent) opens a turn."""
        self._open_turn(now, self._turn_onset)
        in_gap = self._burst_end_at is not None
        self._clear_deadlines()
        if in_gap:
            self._arm_pause()
            return State.PAUSED
        return State.SPEAKING

    # ------------------------------------------------------------------ handlers
    def _ignore(self, now: float, d: int) -> State:
        return self._state

    def _listening_speech(self, now: float, d: int) -> State:
        self._turn_speech = d
        self._open_turn(now, now - d / 1000.0)
        return State.SPEAKING

    def _to_agent(self, now: float, d: int) -> State:
        self._agent_begins(now)
        return State.AGENT

    def _count_speech(self, now: float, d: int) -> State:
        self._turn_speech += d
        return self._state

    def _speaking_silence(self, now: float, d: int) -> State:
        self._arm_pause()
        return State.PAUSED

    def _turn_interrupted_by_agent(self, now: float) -> None:
        self._clear_deadlines()
        self._out.append(
            EndOfTurn(time=now, turn=self._turn, speech_ms=self._turn_speech, committed=False,
                      reason="agent_started")
        )

    def _speaking_agent_started(self, now: float, d: int) -> State:
        self._turn_interrupted_by_agent(now)
        self._agent_begins(now)
        self._barge_speech = 0
        self._evidence.reset()
        self._out.append(BargeArmed(time=now, onset=now))
        return State.BARGE_PENDING

    def _paused_speech(self, now: float, d: int) -> State:
        self._clear_deadlines()
        self._retract(now, "speech")
        onset = now - d / 1000.0
        pause = onset - self._last_speech_end
        if pause >= _PAUSE_MIN_S - _EPS:
            self._pauses += 1
            self._longest_pause = max(self._longest_pause, pause)
            self._burst_start = onset
            if pause >= CallContext.HOLD_MIN_MS / 1000.0 - _EPS:
                self._holds += 1
        self._turn_speech += d
        return State.SPEAKING

    def _paused_prime(self, now: float, d: int) -> State:
        self._out.append(Prime(time=now, turn=self._turn, speech_ms=self._turn_speech))
        return State.PAUSED

    def _paused_end_of_turn(self, now: float, d: int) -> State:
        self._clear_deadlines()
        speech = self._turn_speech
        if self._spec_turn is not None:
            if self.policy.wants_reply(speech, self._turn_answer):
                self._release(now)
                self._out.append(
                    EndOfTurn(time=now, turn=self._turn, speech_ms=speech, committed=True, reason="silence")
                )
                return State.AWAITING
            self._retract(now, "filtered")  # not reached: speculation needs wants_reply
        if self.policy.wants_reply(speech, self._turn_answer):
            self._out.append(
                Commit(time=now, turn=self._turn, speech_ms=speech, last_speech_at=self._last_speech_end)
            )
            self._out.append(
                EndOfTurn(time=now, turn=self._turn, speech_ms=speech, committed=True, reason="silence")
            )
            return State.AWAITING
        self._out.append(BackchannelFiltered(time=now, speech_ms=speech, over_agent=False))
        self._out.append(
            EndOfTurn(time=now, turn=self._turn, speech_ms=speech, committed=False, reason="silence")
        )
        if self._turn_cancel and self._cancel_window:
            # The filtered turn had cancelled the agent mid-reply (a false barge-in): the agent
            # stopped talking *to* the caller, so the caller's next turn answers it. Its answer
            # window runs from this turn's last speech (the caller cannot answer while still
            # speaking).
            self._agent_done_at = self._last_speech_end
            self._done_by_cancel = True
        return State.LISTENING

    def _paused_agent_started(self, now: float, d: int) -> State:
        self._retract(now, "agent_started")
        self._turn_interrupted_by_agent(now)
        self._agent_begins(now)
        return State.AGENT

    def _awaiting_speech(self, now: float, d: int) -> State:
        self._turn_speech = d
        self._turn_onset = now - d / 1000.0
        return State.AWAITING_SPEECH

    def _finished_before_audio(self, now: float, d: int) -> State:
        return State.LISTENING

    def _held_speech(self, now: float, d: int) -> State:
        self._turn_speech += d
        if self._burst_end_at is not None:
            self._burst_end_at = None
            self._recompute_deadline()
        return self._state

    def _held_silence(self, now: float, d: int) -> State:
        self._arm_burst_end()
        return self._state

    def _awaiting_burst_end(self, now: float, d: int) -> State:
        if not self.policy.wants_reply(self._turn_speech, False):
            self._out.append(BackchannelFiltered(time=now, speech_ms=self._turn_speech, over_agent=False))
        return State.AWAITING

    def _awaiting_speech_agent_started(self, now: float, d: int) -> State:
        self._agent_begins(now)
        self._barge_speech = 0
        self._evidence.reset()
        self._out.append(BargeArmed(time=now, onset=now))
        return State.BARGE_PENDING

    def _awaiting_speech_finished(self, now: float, d: int) -> State:
        return self._speech_becomes_turn(now)

    def _agent_speech(self, now: float, d: int) -> State:
        onset = now - d / 1000.0
        if onset <= self._follow_until + 1e-9:
            # the caller kept talking (evidence_follow_ms): the dismissed burst goes on
            self._turn_speech = self._barge_speech = self._follow_speech
            self._turn_onset = self._follow_onset
            self._evidence.reset()
        else:
            self._turn_speech = 0  # counted (with the barge speech) by _barge_speech_frame
            self._turn_onset = onset
            self._barge_speech = 0
            self._evidence.reset()
        self._follow_until = -math.inf
        self._out.append(BargeArmed(time=now, onset=onset))
        return self._barge_speech_frame(now, d)

    def _barge_speech_frame(self, now: float, d: int) -> State:
        self._turn_speech += d
        self._barge_speech += d
        if self._burst_end_at is not None:
            self._burst_end_at = None
            self._recompute_deadline()
        ev = self._evidence
        if self._feat_rel is not None:
            ev.add(self._feat_rel, self._feat_edge, self._feat)
        if not self.policy.barge_confirmed(self._barge_speech, ev):
            if self._yield_mode and not self._yielded and self.policy.barge_yield(self._barge_speech, ev):
                self._yield_to_barge(now)
            return State.BARGE_PENDING
        played = self._played_ms(now)
        self._out.append(BargeConfirmed(time=now, speech_ms=self._barge_speech, agent_played_ms=played))
        self._out.append(Cancel(time=now, agent_played_ms=played))
        self._yielded = False  # the Cancel ends a duck / pause
        self._paused_at = None
        self._clear_deadlines()
        self._open_turn(now, self._turn_onset, by_cancel=True)
        return State.SPEAKING

    def _agent_finished(self, now: float, d: int) -> State:
        self._follow_until = -math.inf
        self._agent_done_at = now
        self._done_by_cancel = False
        return State.LISTENING

    def _barge_burst_end(self, now: float, d: int) -> State:
        self._out.append(BargeDismissed(time=now, speech_ms=self._barge_speech, reason="burst_ended"))
        if self._follow_s:
            self._follow_until = max(self._last_speech_end, self._bridge_to) + self._follow_s
            self._follow_speech = self._barge_speech
            self._follow_onset = self._turn_onset
        self._unyield(now)
        self._out.append(BackchannelFiltered(time=now, speech_ms=self._turn_speech, over_agent=True))
        return State.AGENT

    def _barge_agent_finished(self, now: float, d: int) -> State:
        self._out.append(BargeDismissed(time=now, speech_ms=self._barge_speech, reason="agent_finished"))
        self._unyield(now)
        self._agent_done_at = now  # the caller started before this: not an answer
        self._done_by_cancel = False
        return self._speech_becomes_turn(now)


S, I = State, Input
TRANSITIONS: dict[tuple[State, Input], _Handler] = {
    (S.LISTENING, I.SPEECH): TurnEngine._listening_speech,
    (S.LISTENING, I.SILENCE): TurnEngine._ignore,
    (S.LISTENING, I.AGENT_STARTED): TurnEngine._to_agent,
    (S.LISTENING, I.AGENT_FINISHED): TurnEngine._ignore,
    (S.SPEAKING, I.SPEECH): TurnEngine._count_speech,
    (S.SPEAKING, I.SILENCE): TurnEngine._speaking_silence,
    (S.SPEAKING, I.AGENT_STARTED): TurnEngine._speaking_agent_started,
    (S.SPEAKING, I.AGENT_FINISHED): TurnEngine._ignore,
    (S.PAUSED, I.SPEECH): TurnEngine._paused_speech,
    (S.PAUSED, I.SILENCE): TurnEngine._ignore,
    (S.PAUSED, I.PRIME_DUE): TurnEngine._paused_prime,
    (S.PAUSED, I.SPECULATE_DUE): TurnEngine._paused_speculate,
    (S.PAUSED, I.END_OF_TURN_DUE): TurnEngine._paused_end_of_turn,
    (S.PAUSED, I.AGENT_STARTED): TurnEngine._paused_agent_started,
    (S.PAUSED, I.AGENT_FINISHED): TurnEngine._ignore,
    (S.AWAITING, I.SPEECH): TurnEngine._awaiting_speech,
    (S.AWAITING, I.SILENCE): TurnEngine._ignore,
    (S.AWAITING, I.AGENT_STARTED): TurnEngine._to_agent,
    (S.AWAITING, I.AGENT_FINISHED): TurnEngine._finished_before_audio,
    (S.AWAITING_SPEECH, I.SPEECH): TurnEngine._held_speech,
    (S.AWAITING_SPEECH, I.SILENCE): TurnEngine._held_silence,
    (S.AWAITING_SPEECH, I.BURST_END_DUE): TurnEngine._awaiting_burst_end,
    (S.AWAITING_SPEECH, I.AGENT_STARTED): TurnEngine._awaiting_speech_agent_started,
    (S.AWAITING_SPEECH, I.AGENT_FINISHED): TurnEngine._awaiting_speech_finished,
    (S.AGENT, I.SPEECH): TurnEngine._agent_speech,
    (S.AGENT, I.SILENCE): TurnEngine._ignore,
    (S.AGENT, I.AGENT_FINISHED): TurnEngine._agent_finished,
    (S.BARGE_PENDING, I.SPEECH): TurnEngine._barge_speech_frame,
    (S.BARGE_PENDING, I.SILENCE): TurnEngine._held_silence,
    (S.BARGE_PENDING, I.BURST_END_DUE): TurnEngine._barge_burst_end,
    (S.BARGE_PENDING, I.AGENT_FINISHED): TurnEngine._barge_agent_finished,
}
"""The transition table. Missing rows (e.g. AGENT_STARTED while agent audio already plays)
raise ``InvalidInput``; deadline inputs only occur in the states that arm them."""
del S, I
