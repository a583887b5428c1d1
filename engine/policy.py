"""Turn-taking policy: the replaceable judgement calls inside the turn engine.

Theory of operation: the transition table (``engine/turn.py``) decides *when* a question is
asked -- at the end of a turn, and on every speech frame over agent audio -- and a policy
answers it. Keeping the answers here lets an improved policy be proposed, simulated on the
corpus and adopted with evidence without touching the state machine.

How bursts are measured (shared by every policy): a turn's speech is the sum of the durations
of its speech frames (silence inside the turn does not count); a barge-in's speech is the sum
of the caller's speech frames *while agent audio plays*, across silences shorter than
``burst_gap_ms``. Both are integers of milliseconds, so the thresholds compare exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from clutchcall.engine.config import TurnConfig

if TYPE_CHECKING:
    from clutchcall.engine.audio.features import FrameFeatures


OCTAVE_JUMP_ST = 9.0
"""A voiced frame more than this many semitones from the caller's running pitch is taken for
a pitch-tracker octave error (+-12) and left out of the burst's mean relative pitch."""


class BurstEvidence:
    """What the policy knows of the pending barge-in's burst beyond its length: running sums
    of its speech frames' acoustic features (``engine/audio/features.py``) when the shell
    feeds them, else nothing (``frames == 0``). Owned and updated by the engine (one
    :meth:`add` per speech frame over the agent); read-only here. O(1) per frame.

    * ``mean_rel_db`` -- mean level relative to the caller's running speech level, over the
      burst's *voiced* frames once it has ``VOICED_FRAMES_MIN`` of them (vowel against
      vowel: the running level is a voiced-frame level too), else over all its frames;
    * ``mean_rel_f0_st`` -- mean pitch relative to the caller's running pitch (semitones)
      over the voiced frames that have a reference and lie within ``OCTAVE_JUMP_ST`` of it
      (None before ``VOICED_FRAMES_MIN`` of them);
    * ``f0_slope_st_per_frame`` -- least-squares slope of the voiced frames' pitch
      (semitones per speech frame of the burst; None before ``VOICED_FRAMES_MIN``).
    """

    __slots__ = ("edge_ms", "frames", "rel_sum", "rf_n", "rf_sum", "sx", "sxx", "sxy", "sy",
                 "vframes", "vrel_sum")

    VOICED_FRAMES_MIN = 3

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous burst."""
        self.frames = 0
        self.rel_sum = 0.0
        self.edge_ms = math.inf
        self.vframes = 0
        self.vrel_sum = 0.0
        self.rf_n = 0
        self.rf_sum = 0.0
        self.sx = self.sy = self.sxx = self.sxy = 0.0

    def add(self, rel_db: float, edge_ms: float, features: FrameFeatures | None = None) -> None:
        """Count one speech frame whose level is ``rel_db`` relative to the caller's speech;
        the burst's first frame also sets ``edge_ms``, its onset's distance to the agent's
        nearest phrase end. ``features`` (the whole frame's, optional) adds its voicing and
        pitch."""
        if not self.frames:
            self.edge_ms = edge_ms
        self.frames += 1
        self.rel_sum += rel_db
        if features is not None and features.f0_hz > 0.0:
            self.vframes += 1
            self.vrel_sum += rel_db
            if features.rel_f0_st != 0.0 and abs(features.rel_f0_st) <= OCTAVE_JUMP_ST:
                self.rf_n += 1
                self.rf_sum += features.rel_f0_st
            x = float(self.frames)
            y = 12.0 * math.log2(features.f0_hz / 100.0)
            self.sx += x
            self.sy += y
            self.sxx += x * x
            self.sxy += x * y

    @property
    def mean_rel_db(self) -> float | None:
        """The burst's mean level relative to the caller's running speech level (dB; voiced
        frames once there are enough), or None without features."""
        if self.vframes >= self.VOICED_FRAMES_MIN:
            return self.vrel_sum / self.vframes
        return self.rel_sum / self.frames if self.frames else None

    @property
    def mean_rel_f0_st(self) -> float | None:
        """Mean pitch relative to the caller's (semitones), or None with too few voiced frames."""
        return self.rf_sum / self.rf_n if self.rf_n >= self.VOICED_FRAMES_MIN else None

    @property
    def f0_slope_st_per_frame(self) -> float | None:
        """Pitch slope over the burst's voiced frames (semitones per frame), or None."""
        n = self.vframes
        if n < self.VOICED_FRAMES_MIN:
            return None
        den = n * self.sxx - self.sx * self.sx
        return (n * self.sxy - self.sx * self.sy) / den if den > 0.0 else 0.0


class TurnPolicy(Protocol):
    """What the engine asks its policy. ``answer`` tells whether the turn answers the agent:
    it started within ``answer_window_ms`` after the agent's audio finished on its own (or
    while it was finishing), as opposed to a turn out of the blue or speech over the agent."""

    def wants_reply(self, turn_speech_ms: int, answer: bool) -> bool:
        """At end of turn: ``True`` -> final ``Commit``; ``False`` -> ``BackchannelFiltered``."""
        ...

    def may_prime(self, turn_speech_ms: int, answer: bool) -> bool:
        """At a pause inside a turn: may a non-final ``Prime`` be sent?"""
        ...

    def barge_confirmed(self, barge_speech_ms: int, evidence: BurstEvidence) -> bool:
        """On each speech frame over agent audio: confirm the pending barge-in now?"""
        ...

    def barge_yield(self, barge_speech_ms: int, evidence: BurstEvidence) -> bool:
        """On each speech frame of a pending barge-in not yet yielded to (only asked when
        ``TurnConfig.barge_yield`` is not "none"): duck / pause the agent now?"""
        ...


class ThresholdPolicy:
    """The product's baseline: the two fixed thresholds of :class:`TurnConfig`.

    * backchannel filter: reply only to turns with ``>= response_min_speech_ms`` of speech;
    * prime only turns that already passed that filter (a backchannel must stay clearable);
    * hold-and-confirm: cancel once ``>= barge_confirm_ms`` of speech over the agent.
    """

    __slots__ = ("_confirm", "_min_speech", "_yield_ms")

    def __init__(self, config: TurnConfig) -> None:
        self._min_speech = config.response_min_speech_ms
        self._confirm = config.barge_confirm_ms
        self._yield_ms = config.barge_yield_ms

    def wants_reply(self, turn_speech_ms: int, answer: bool) -> bool:
        """Return whether a turn of ``turn_speech_ms`` speech deserves a reply."""
        return turn_speech_ms >= self._min_speech

    def may_prime(self, turn_speech_ms: int, answer: bool) -> bool:
        """Return whether the turn so far may be primed into the model's context."""
        return turn_speech_ms >= self._min_speech

    def barge_confirmed(self, barge_speech_ms: int, evidence: BurstEvidence) -> bool:
        """Return whether ``barge_speech_ms`` of speech over the agent confirms a barge-in."""
        return barge_speech_ms >= self._confirm

    def barge_yield(self, barge_speech_ms: int, evidence: BurstEvidence) -> bool:
        """Return whether the agent should yield (duck / pause) to the pending barge-in:
        once ``barge_yield_ms`` of speech over it."""
        return barge_speech_ms >= self._yield_ms


class AnswerAwarePolicy(ThresholdPolicy):
    """The baseline, except that a turn answering the agent needs only
    ``answer_min_speech_ms`` of speech to be replied to.

    Why: backchannels ("mhm", "yeah") come *during* the other's speech, while short answers
    ("yes", "no", "sure") come *after* it, typically ~200 ms after (Stivers et al. 2009). The
    baseline's 600 ms filter drops most short answers; this policy keeps them and still
    filters backchannels, whose bursts start over the agent (a pending barge-in, dismissed or
    confirmed, is never an answer). Evidence: ``clutchcall eval --policy answer_aware`` vs the
    default on the corpus (see the sim notes). Hold-and-confirm barge-in is unchanged.
    """

    __slots__ = ("_answer_min",)

    def __init__(self, config: TurnConfig) -> None:
        super().__init__(config)
        self._answer_min = config.answer_min_speech_ms

    def wants_reply(self, turn_speech_ms: int, answer: bool) -> bool:
        """Return whether the turn deserves a reply (answers need less speech)."""
        return turn_speech_ms >= (self._answer_min if answer else self._min_speech)

    def may_prime(self, turn_speech_ms: int, answer: bool) -> bool:
        """Return whether the turn so far may be primed (answers need less speech)."""
        return self.wants_reply(turn_speech_ms, answer)


class EvidencePolicy(AnswerAwarePolicy):
    """Answer-aware turns, plus a barge-in judged on *how* the caller speaks, not only how
    long (issue 15). Uses the burst's mean level relative to the caller's own running speech
    level (:class:`BurstEvidence`; features from ``engine/audio/features.py``):

    * a burst is *backchannel-like* if its mean level is more than ``evidence_soft_db`` below
      the caller's running speech level (backchannels are spoken softly), or if it starts
      within ``evidence_edge_ms`` of the agent's phrase end (where listeners place
      backchannels) and is not raised (mean level below ``+evidence_edge_db`` relative);
    * a backchannel-like burst needs ``evidence_soft_confirm_ms`` of speech to confirm
      (longer than nearly every backchannel) and is not yielded to before half of it;
    * any other burst is yielded to (duck / pause) after ``barge_yield_ms``, like the
      threshold policy, and confirmed after ``barge_confirm_ms`` if it is *raised* (mean
      level at least ``+evidence_edge_db`` relative, or no level known, or its pitch raised
      by ``evidence_raise_st`` when that cue is on), else after
      ``evidence_mid_confirm_ms`` (0 = ``barge_confirm_ms``): cancel when sure -- the agent
      is already paused, so only the Cancel waits, and a normal-level mid-phrase "yeah"
      that ends before it is dismissed and the agent resumes;
    * the engine treats a frame the VAD calls speech but that stands less than
      ``evidence_min_snr_db`` above the running noise floor as silence (``min_snr_db``):
      webrtcvad calls stationary line noise speech on noisy channels.

    * with voicing and pitch (``FrameFeatures.shaped``) the burst's level is the mean over
      its voiced frames, compared with the caller's voiced-frame speech level; and a burst
      whose voiced pitch is ``evidence_raise_st`` or more semitones above the caller's
      running pitch is never backchannel-like (competitive incomings are pitched high,
      continuers low: French & Local 1983); with ``evidence_fall_st_per_s`` a fast-falling,
      not raised burst is backchannel-like. Both pitch cues are off in the product (no gain
      on the train split, sim/README.md).

    Without features (a shell that sends none) it is exactly ``answer_aware``. The knobs
    were chosen on the corpus *train* split (sim/README.md).
    """

    __slots__ = ("_edge_db", "_edge_ms", "_fall", "_mid_confirm", "_raise", "_soft_confirm",
                 "_soft_db", "_soft_yield", "min_snr_db")

    def __init__(self, config: TurnConfig) -> None:
        super().__init__(config)
        self._soft_db = float(-config.evidence_soft_db)
        self._edge_ms = float(config.evidence_edge_ms)
        self._edge_db = float(config.evidence_edge_db)
        self._soft_confirm = config.evidence_soft_confirm_ms
        self._mid_confirm = config.evidence_mid_confirm_ms or config.barge_confirm_ms
        self._soft_yield = max(config.barge_yield_ms,
                               config.evidence_soft_yield_ms or config.evidence_soft_confirm_ms // 2)
        self.min_snr_db: float | None = float(config.evidence_min_snr_db)
        # pitch cues: semitones above the caller's own pitch; fall in semitones per frame
        self._raise = float(config.evidence_raise_st) if config.evidence_raise_st else math.inf
        self._fall = (-config.evidence_fall_st_per_s * config.frame_ms / 1000.0
                      if config.evidence_fall_st_per_s else -math.inf)

    def _soft(self, evidence: BurstEvidence) -> bool:
        m = evidence.mean_rel_db
        if m is None:
            return False
        rf = evidence.mean_rel_f0_st
        if rf is not None and rf >= self._raise:
            return False  # raised pitch: a competitive incoming, not a continuer
        if m < self._soft_db or (evidence.edge_ms <= self._edge_ms and m < self._edge_db):
            return True
        slope = evidence.f0_slope_st_per_frame
        return slope is not None and slope <= self._fall and (rf is None or rf <= 0.0)

    def barge_confirmed(self, barge_speech_ms: int, evidence: BurstEvidence) -> bool:
        """Return whether the pending barge-in is confirmed (soft bursts need longer, and
        bursts that are not raised need ``evidence_mid_confirm_ms``)."""
        if self._soft(evidence):
            return barge_speech_ms >= self._soft_confirm
        if barge_speech_ms < self._confirm:
            return False
        if barge_speech_ms >= self._mid_confirm:
            return True
        # raised: by level (or no level known), or by pitch (evidence_raise_st, when on)
        m = evidence.mean_rel_db
        rf = evidence.mean_rel_f0_st
        return m is None or m >= self._edge_db or (rf is not None and rf >= self._raise)

    def barge_yield(self, barge_speech_ms: int, evidence: BurstEvidence) -> bool:
        """Return whether to duck / pause now (soft bursts wait ``evidence_soft_yield_ms``,
        by default half their confirm time)."""
        if self._soft(evidence):
            return barge_speech_ms >= self._soft_yield
        return barge_speech_ms >= self._yield_ms


def make_policy(config: TurnConfig) -> TurnPolicy:
    """Return the policy that ``config.policy`` names."""
    if config.policy == "answer_aware":
        return AnswerAwarePolicy(config)
    if config.policy == "evidence":
        return EvidencePolicy(config)
    return ThresholdPolicy(config)
