"""End-of-turn rules: how much silence confirms the end of the caller's turn, chosen per pause.

Theory of operation: when a turn pauses (its first silence frame after speech), the engine
asks its rule once for that pause's end-of-turn silence, from :class:`PauseEvidence` -- what
the engine knows at that moment, all of it a pure function of the frames fed so far. The
answer is fixed for the pause (a later frame cannot shorten a deadline that is already armed,
so the engine stays a pure function of its inputs and the timer is set once).

* :class:`FixedRule` (``end_of_turn_rule = "fixed"``): ``end_of_turn_silence_ms`` for every
  pause -- the baseline, the engine as it was.
* :class:`AdaptiveRule` (``"adaptive"``): a rule on the evidence the engine has at the pause
  -- the turn's speech so far, its final burst, its earlier pauses, whether it answers the
  agent. Candidates were measured on the corpus *train* split (``clutchcall eval
  --end-of-turn-rule adaptive``, calls 0-69) and checked on the test split (70-99); what held
  up is kept (see the class): short answers to the agent end after ``end_of_turn_min_ms``.

* :class:`SmartTurnRule` (``"smart-turn"``, opt-in): Pipecat's smart-turn v3.2 model
  (``engine/audio/smart_turn.py``) on the last 8 s of the caller's audio. The model is
  I/O-free but not cheap (tens of ms), so it runs once per pause, in the shell: the frame that
  ends ``CHECK_MS`` (200 ms) of silence carries its probability (``FrameFeatures.turn_end_p``,
  recorded with the frame, so a replay is exact without the audio). The pause is armed with
  ``end_of_turn_silence_ms`` (what it needs if no probability comes) and that frame revises it
  once (:meth:`SmartTurnRule.revised_ms`): a complete turn ends after ``end_of_turn_min_ms``, an
  incomplete one after ``INCOMPLETE_MS``.

* :class:`ProsodicRule` (``"prosodic"``, the product's rule: ``PRODUCT_TURN``): also the final burst's prosody
  (:class:`FinalProsody`, from :class:`ProsodyTrack`: the engine keeps the caller's last voiced
  frames' pitch, level and relative pitch): a small logistic model fitted on corpus v3's train
  split says how final the burst sounds; continuation prosody (a plateau or rise) lengthens the
  wait to ``end_of_turn_max_ms``, strong final evidence may shorten it to
  ``end_of_turn_final_ms`` (off by default). Pure: the ring is fed frame by frame (or by the
  batch path with the same result) and read once per pause.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from clutchcall.engine.config import TurnConfig

if TYPE_CHECKING:
    from clutchcall.engine.audio.features import FrameFeatures


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseEvidence:
    """What the engine knows when a turn pauses. Durations in integer ms.

    ``turn_speech_ms``: speech in the turn so far; ``burst_ms``: length of the final burst
    (from the end of the turn's previous pause, or its onset, to the pause), silence included
    only inside a burst shorter than the frame; ``answer``: the turn answers the agent (it
    opened right after the agent's audio finished on its own); ``pauses``: pauses inside the
    turn so far, not counting this one; ``longest_pause_ms``: the longest of them (0 if none).
    """

    turn_speech_ms: int
    burst_ms: int
    answer: bool
    pauses: int
    longest_pause_ms: int
    final: FinalProsody | None = None
    """The final burst's prosody (:meth:`ProsodyTrack.final`), None without pitch features."""
    barged: bool = False
    """The turn opened by barging in on the agent (a confirmed barge-in cancelled it)."""
    holds: int = 0
    """The caller's resumed holds in this call so far: pauses of at least
    :attr:`CallContext.HOLD_MIN_MS` inside a turn after which the same turn went on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalProsody:
    """How the burst before a pause ended, from its last voiced frames (:class:`ProsodyTrack`).

    ``slope_st_per_s``: least-squares pitch slope over the voiced frames of the last
    ``ProsodyTrack.SLOPE_MS`` before the last voiced frame (semitones per second; < 0 falling);
    ``rel_f0_st``: the mean pitch of the last ``ProsodyTrack.FINAL_FRAMES`` voiced frames
    relative to the caller's running pitch (``FrameFeatures.rel_f0_st``; 0 without a
    reference); ``rel_db``: their mean level relative to the caller's running speech level;
    ``drop_st``: their mean pitch relative to the mean pitch of the burst's voiced frames in
    the ring before them (semitones; < 0 the burst ends lower than it ran -- a final fall);
    ``tail_ms``: from the last voiced frame's end to the last speech frame's end (the VAD's
    hangover plus any unvoiced tail); ``voiced``: voiced frames of the burst in the ring;
    ``range_st``: the pitch range (max - min, semitones) of the last
    ``ProsodyTrack.PLATEAU_FRAMES`` voiced frames (fewer if the burst has fewer) -- small for
    a level ending (a plateau), larger for a fall or a rise.
    """

    slope_st_per_s: float
    rel_f0_st: float
    rel_db: float
    drop_st: float
    tail_ms: int
    voiced: int
    range_st: float = math.inf


def prosody_vector(final: FinalProsody) -> tuple[float, float, float, float]:
    """The prosodic rule's inputs, scaled to unit-ish ranges and clipped to +-5: the final
    pitch slope / 10 st/s, the final pitch drop / 3 st, the final pitch relative to the
    caller's / 3 st, the final level relative to the caller's / 3 dB."""
    return (max(-5.0, min(5.0, final.slope_st_per_s / 10.0)), max(-5.0, min(5.0, final.drop_st / 3.0)),
            max(-5.0, min(5.0, final.rel_f0_st / 3.0)), max(-5.0, min(5.0, final.rel_db / 3.0)))


class ProsodyTrack:
    """The last voiced frames of the caller's speech: ``(end time, pitch in Hz,
    relative level, relative pitch)`` of at most ``CAPACITY`` frames. The engine adds every
    voiced speech frame (after the noise gate) and asks :meth:`final` when a pause starts.
    Pure, O(1) per frame; the batch path may add only a run's last ``CAPACITY`` voiced frames
    (the ring then holds the same frames)."""

    CAPACITY = 40
    SLOPE_MS = 300
    FINAL_FRAMES = 5
    PLATEAU_FRAMES = 8
    OCTAVE_JUMP_ST = 7.0

    __slots__ = ("_ring",)

    def __init__(self) -> None:
        self._ring: deque[tuple[float, float, float, float]] = deque(maxlen=self.CAPACITY)

    def add(self, now: float, features: FrameFeatures) -> None:
        """Count one speech frame that ended at ``now`` (ignored unless voiced). The ring keeps
        the pitch in Hz; :meth:`final` (once per pause) converts it to semitones, so a frame
        costs one append."""
        f0 = features.f0_hz
        if f0 > 0.0:
            self._ring.append((now, f0, features.rel_db, features.rel_f0_st))

    def final(self, since: float, last_speech_end: float) -> FinalProsody | None:
        """The prosody of the burst that started at ``since`` (s) and whose last speech frame
        ended at ``last_speech_end``; None with fewer than 3 voiced frames in it."""
        log2 = math.log2
        frames = [(f[0], 12.0 * log2(f[1] / 100.0), f[2], f[3]) for f in self._ring
                  if f[0] > since + 1e-9 and f[0] <= last_speech_end + 1e-9]
        if len(frames) < 3:
            return None
        last_t = frames[-1][0]
        sts = sorted(f[1] for f in frames)
        med = sts[len(sts) // 2]
        frames = [f for f in frames if abs(f[1] - med) <= self.OCTAVE_JUMP_ST]
        if len(frames) < 3:
            return None
        win = [f for f in frames if f[0] >= last_t - self.SLOPE_MS / 1000.0 - 1e-9]
        slope = 0.0
        if len(win) >= 3:
            mt = sum(f[0] for f in win) / len(win)
            ms = sum(f[1] for f in win) / len(win)
            den = sum((f[0] - mt) ** 2 for f in win)
            if den > 0.0:
                slope = sum((f[0] - mt) * (f[1] - ms) for f in win) / den
        fin = frames[-self.FINAL_FRAMES:]
        before = frames[:-self.FINAL_FRAMES]
        fin_st = sum(f[1] for f in fin) / len(fin)
        drop = fin_st - sum(f[1] for f in before) / len(before) if before else 0.0
        rf = [f[3] for f in fin if f[3] != 0.0]
        lvl = [f[1] for f in frames[-self.PLATEAU_FRAMES:]]
        return FinalProsody(
            slope_st_per_s=slope, rel_f0_st=sum(rf) / len(rf) if rf else 0.0,
            rel_db=sum(f[2] for f in fin) / len(fin), drop_st=drop,
            tail_ms=max(0, round((last_speech_end - last_t) * 1000.0)), voiced=len(frames),
            range_st=max(lvl) - min(lvl))


class EndOfTurnRule(Protocol):
    """Chooses the end-of-turn silence of one pause."""

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return the silence (ms, >= 1) after which this pause ends the turn."""
        ...


class FixedRule:
    """The baseline: ``end_of_turn_silence_ms`` for every pause."""

    __slots__ = ("_ms",)

    def __init__(self, config: TurnConfig) -> None:
        self._ms = config.end_of_turn_silence_ms

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return the configured end-of-turn silence."""
        return self._ms


class AdaptiveRule:
    """The per-pause rule of the module docstring, as tuned on the corpus train split.

    A pause after a *short answer* -- the turn answers the agent (it opened right after the
    agent's audio finished on its own) and has under ``SHORT_TURN_MS`` of speech ("yes",
    "no, thanks", "sure, go ahead") -- ends the turn after ``end_of_turn_min_ms``; any other
    pause after ``end_of_turn_silence_ms``. A turn with less speech than
    ``answer_min_speech_ms`` (the least the policy replies to) is not ended early: it could only
    be filtered, and ending it would spend the turn's "answer" status before the caller's real
    answer (a knock, then "yes" 240 ms later: the "yes" then needs the backchannel filter's
    600 ms and is missed -- corpus v3 and v2 test split, call0068, found in issue 16's review).

    Why only this: on the corpus train split (calls 0-69; commands and figures in ``sim/README.md``)
    the evidence that separates a turn's end from a mid-turn pause is the turn's shape,
    not its last burst: short answers are never continued, while a long final burst, a long
    turn or an earlier pause in the turn did not predict an end (crediting them shortened
    mid-turn pauses too: premature replies 6.7 % -> 8.4-10.3 %). The short-answer rule kept
    premature replies at 6.7 %, cut missed replies 13.7 % -> 12.3 % and the p95 turn latency
    from end of speech 1100 -> 843 ms (with speculation at 120 ms; at the 60 ms default
    1028 -> 747 ms); on the test split (calls 70-99) it changed nothing (p50 / p95 661 / 938
    ms either way). Acoustic evidence (pitch fall, energy decay) does not separate them on this
    corpus either (``notebooks/prosody_probe.py``, train split, 48 turn ends vs 15 mid-turn
    pauses of >= 200 ms: energy slope over the last 400 ms AUC 0.50, pitch slope 0.38 with
    mid-turn pauses falling *more*): the generator renders each phrase of a turn on its own,
    so every phrase ends like a turn (corpus v2; corpus v3 renders holds as holds, see
    :class:`ProsodicRule`). On real speech it is the next input to try.
    """

    SHORT_TURN_MS = 1200

    __slots__ = ("_answer_min", "_max", "_min")

    def __init__(self, config: TurnConfig) -> None:
        self._min = config.end_of_turn_min_ms
        self._max = config.end_of_turn_silence_ms
        self._answer_min = config.answer_min_speech_ms

    @classmethod
    def short_answer(cls, ev: PauseEvidence, answer_min_ms: int) -> bool:
        """Whether the pause follows a short answer the policy can reply to: the turn answers
        the agent and has at least ``answer_min_ms`` (``answer_min_speech_ms``) and under
        ``SHORT_TURN_MS`` of speech (the class docstring; :class:`ProsodicRule` uses it too)."""
        return ev.answer and answer_min_ms <= ev.turn_speech_ms < cls.SHORT_TURN_MS

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return this pause's end-of-turn silence (see the class docstring)."""
        return self._min if self.short_answer(ev, self._answer_min) else self._max


PROSODIC_WEIGHTS = (-0.115, -0.859, -0.909, 0.268, -0.241)
"""The prosodic rule's logistic model, ``[intercept, weights of prosody_vector...]``: P(the
pause ends the turn) = sigmoid(intercept + w . x). Fitted on corpus v3's *train* split
(``python notebooks/eot_evidence.py --fit``: 46 turn ends, 14 mid-turn pauses >= 250 ms;
ridge 1.0; in-sample AUC 0.82, leave-one-call-out 0.76). A falling final pitch and a final
pitch below the burst's (a final fall, Gravano & Hirschberg 2011) and a lower final level
say "end"; a plateau or rise says "hold"."""


class ProsodicRule:
    """Shortens *and* lengthens the wait per pause from the final burst's prosody.

    *Continuation prosody* (:meth:`continues`): P(end) from :data:`PROSODIC_WEIGHTS` at or
    below ``P_HOLD`` (a rise or a rising plateau), or a *level ending* (:meth:`plateau`: the
    last ``ProsodyTrack.PLATEAU_FRAMES`` voiced frames within ``PLATEAU_ST`` of each other
    and within ``PLATEAU_DROP_ST`` of the burst's pitch -- the level "H-L%" contour a speaker
    holds the floor with, before a comma, a trailing "and" or a filled pause; Gravano &
    Hirschberg 2011). Pitch excursions under about 2 semitones are at the edge of what
    listeners hear as a pitch movement ('t Hart, Collier & Cohen 1990), hence ``PLATEAU_ST``.
    The logistic model alone misses a level ending that drifts down slightly (a trailing
    ", and," on v3 train: P(end) 0.71), which the plateau test catches.

    * a short *voiced* answer to the agent (as :class:`AdaptiveRule`, so with at least
      ``answer_min_speech_ms`` of speech, and at least 3 voiced frames: a knock or a click
      right after the agent's question is not an answer, and
      ending it after 250 ms would spend the turn's "answer" status before the caller's real
      "yes", which then needs the backchannel filter's 600 ms and is missed -- seen on the
      test split's first run) -> ``end_of_turn_min_ms``, unless it ends on continuation
      prosody ("yes, and ..."; on v3 train a pause 920 ms into a longer turn that opened
      right after the agent was taken for a short answer's end) -> ``end_of_turn_silence_ms``;
    * any other turn with under ``AdaptiveRule.SHORT_TURN_MS`` of speech ("yes", "no thanks"
      that the engine did not flag as an answer) -> ``end_of_turn_silence_ms``: the model was
      fitted on the pauses of multi-word turns only, and a one-word reply's few voiced frames
      are outside what it has seen (applying it there lengthened two short answers past the
      agent's next turn on the first test-split run: missed replies);
    * no prosody (fewer than 3 voiced frames in the final burst, or a shell without pitch
      features) -> ``end_of_turn_silence_ms`` (the fixed rule);
    * else continuation prosody -> ``end_of_turn_max_ms``; P(end) at or above
      ``end_of_turn_final_pct`` % (default 90 = ``P_FINAL``: strong final evidence) ->
      ``end_of_turn_final_ms``; else (neither) ``end_of_turn_neutral_ms`` (default 0 =
      ``end_of_turn_silence_ms``).

    The answer is always within ``[end_of_turn_min_ms, max(end_of_turn_silence_ms,
    end_of_turn_max_ms)]`` (``end_of_turn_final_ms`` is clipped to ``[end_of_turn_min_ms,
    end_of_turn_silence_ms]``, ``end_of_turn_neutral_ms`` to the whole range). Thresholds
    chosen on the train split (sim/README.md). By default ``end_of_turn_final_ms`` =
    ``end_of_turn_neutral_ms`` = ``end_of_turn_silence_ms``: the rule only lengthens. The
    asymmetric setting (final 400 ms from P(end) 0.8, neutral 700 ms) was the train splits'
    best (sim/README.md, "Asymmetric wait") but did not hold up on the test splits.
    Shortening on a final fall cost a premature reply on corpus v2's train split, whose
    mid-turn pauses follow complete sentences with final falls (a hold with no cue, which real
    speech has too): on calls we did not generate, a final fall is not proof of a turn end.
    """

    P_FINAL = 0.9
    P_HOLD = 0.5
    PLATEAU_ST = 2.0
    PLATEAU_DROP_ST = 1.5

    __slots__ = ("_answer_min", "_base", "_final", "_max", "_min", "_neutral", "_p_final")

    def __init__(self, config: TurnConfig) -> None:
        self._answer_min = config.answer_min_speech_ms
        self._min = config.end_of_turn_min_ms
        self._base = config.end_of_turn_silence_ms
        self._max = max(self._base, config.end_of_turn_max_ms)
        self._final = min(self._base, max(self._min, config.end_of_turn_final_ms))
        self._neutral = min(self._max, max(self._min, config.end_of_turn_neutral_ms or self._base))
        self._p_final = config.end_of_turn_final_pct / 100.0

    def p_end(self, final: FinalProsody) -> float:
        """P(this pause ends the turn) from the final burst's prosody."""
        w = PROSODIC_WEIGHTS
        z = w[0] + sum(wi * xi for wi, xi in zip(w[1:], prosody_vector(final), strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def continues(self, final: FinalProsody) -> bool:
        """Whether the burst ends on continuation prosody: P(end) at or below ``P_HOLD`` (a
        plateau or rise by the model) or a level ending (:meth:`plateau`)."""
        return self.p_end(final) <= self.P_HOLD or self.plateau(final)

    @classmethod
    def plateau(cls, final: FinalProsody) -> bool:
        """Whether the burst ended on a level pitch: its last ``ProsodyTrack.PLATEAU_FRAMES``
        voiced frames (it must have that many) span at most ``PLATEAU_ST`` and end within
        ``PLATEAU_DROP_ST`` of the burst's pitch."""
        return (final.voiced >= ProsodyTrack.PLATEAU_FRAMES and final.range_st <= cls.PLATEAU_ST
                and abs(final.drop_st) <= cls.PLATEAU_DROP_ST)

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return this pause's end-of-turn silence (see the class docstring)."""
        if ev.turn_speech_ms < AdaptiveRule.SHORT_TURN_MS:
            if (AdaptiveRule.short_answer(ev, self._answer_min) and ev.final is not None
                    and not self.continues(ev.final)):
                return self._min
            return self._base
        if ev.final is None:
            return self._base
        if self.continues(ev.final):
            return self._max
        if self.p_end(ev.final) >= self._p_final:
            return self._final
        return self._neutral


class SmartTurnRule:
    """Smart-turn v3.2's probability decides the pause (module docstring).

    ``silence_ms`` is the pause's silence until the probability arrives (and for good if it
    never does: a shell without the model, a pause cut short by the noise gate):
    ``end_of_turn_silence_ms``, the fixed rule. :meth:`revised_ms` is the pause's silence once
    the frame ``CHECK_MS`` into it brings P(turn complete) ``p``: ``end_of_turn_min_ms`` at
    ``p >= THRESHOLD`` (Pipecat's 0.5), else ``INCOMPLETE_MS``. Measured on the corpus train
    split in ``sim/README.md``: the model does not separate this corpus's mid-turn pauses
    from its turn ends (every phrase is a complete sentence), so it is not the product's rule.
    """

    THRESHOLD = 0.5
    INCOMPLETE_MS = 700

    __slots__ = ("_incomplete", "_max", "_min")

    def __init__(self, config: TurnConfig) -> None:
        self._min = config.end_of_turn_min_ms
        self._max = config.end_of_turn_silence_ms
        self._incomplete = max(self._max, self.INCOMPLETE_MS)

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return the silence the pause needs before its probability arrives."""
        return self._max

    def revised_ms(self, p: float) -> int:
        """Return the pause's silence once smart-turn said P(turn complete) = ``p``."""
        return self._min if p >= self.THRESHOLD else self._incomplete


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What the call so far says about a pause, on top of any rule (both off by default).

    * After a barge-in (``end_of_turn_barge_ms``): the first pause of a turn the caller
      opened by interrupting the agent needs at least this much silence. An interrupter has
      taken the floor to say something ("no, wait -- I said Tuesday"): the short phrase that
      stops the agent is usually followed, after a short within-turn pause, by what the
      caller wants. Later pauses of the turn follow the rule.
    * Per-caller adaptation (``end_of_turn_held_ms``): once this caller has paused inside a
      turn for at least ``HOLD_MIN_MS`` and then gone on (a hold the engine saw end in more
      speech), every later pause of the call needs at least this much silence: callers differ
      in how long they pause mid-turn, and one who has shown a long hold will likely do so
      again. Learned online from the engine's own inputs (the count is
      :attr:`PauseEvidence.holds`), deterministic, reset per call (one engine per call).

    Pure: :meth:`silence_ms` maps (evidence, the rule's silence) to the pause's silence, never
    shorter than the rule's.
    """

    HOLD_MIN_MS: ClassVar[int] = 300
    """A resumed pause this long counts as a hold: beyond a gap between words or a stop
    closure (the engine counts pauses from 200 ms) -- a pause the caller chose."""

    barge_ms: int
    held_ms: int

    @classmethod
    def of(cls, config: TurnConfig) -> CallContext:
        """The context adjustments ``config`` asks for."""
        return cls(barge_ms=config.end_of_turn_barge_ms, held_ms=config.end_of_turn_held_ms)

    @property
    def active(self) -> bool:
        """Whether either adjustment is on."""
        return bool(self.barge_ms or self.held_ms)

    def silence_ms(self, ev: PauseEvidence, ms: int) -> int:
        """Return the pause's silence: the rule's ``ms``, lengthened by the call's context."""
        if self.barge_ms and ev.barged and ev.pauses == 0:
            ms = max(ms, self.barge_ms)
        if self.held_ms and ev.holds:
            ms = max(ms, self.held_ms)
        return ms


def make_end_of_turn_rule(config: TurnConfig) -> EndOfTurnRule:
    """Return the rule that ``config.end_of_turn_rule`` names."""
    if config.end_of_turn_rule == "adaptive":
        return AdaptiveRule(config)
    if config.end_of_turn_rule == "smart-turn":
        return SmartTurnRule(config)
    if config.end_of_turn_rule == "prosodic":
        return ProsodicRule(config)
    return FixedRule(config)
