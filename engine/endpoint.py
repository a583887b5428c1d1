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

Acoustic evidence (final pitch fall, energy decay, final lengthening) enters the same way
once the caller frames carry features: :class:`PauseEvidence` is where it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from clutchcall.engine.config import TurnConfig


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
    pause after ``end_of_turn_silence_ms``.

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
    so every phrase ends like a turn. On real speech it is the next input to try.
    """

    SHORT_TURN_MS = 1200

    __slots__ = ("_max", "_min")

    def __init__(self, config: TurnConfig) -> None:
        self._min = config.end_of_turn_min_ms
        self._max = config.end_of_turn_silence_ms

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return this pause's end-of-turn silence (see the class docstring)."""
        if ev.answer and ev.turn_speech_ms < self.SHORT_TURN_MS:
            return self._min
        return self._max


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


def make_end_of_turn_rule(config: TurnConfig) -> EndOfTurnRule:
    """Return the rule that ``config.end_of_turn_rule`` names."""
    if config.end_of_turn_rule == "adaptive":
        return AdaptiveRule(config)
    if config.end_of_turn_rule == "smart-turn":
        return SmartTurnRule(config)
    return FixedRule(config)
