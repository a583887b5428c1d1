"""End-of-turn rules: how much silence confirms the end of the caller's turn, chosen per pause.

Theory of operation: when a turn pauses (its first silence frame after speech), the engine
asks its rule once for that pause's end-of-turn silence, from :class:`PauseEvidence` -- what
the engine knows at that moment, all of it a pure function of the frames fed so far. The
answer is fixed for the pause (a later frame cannot shorten a deadline that is already armed,
so the engine stays a pure function of its inputs and the timer is set once).

* :class:`FixedRule` (``end_of_turn_rule = "fixed"``): ``end_of_turn_silence_ms`` for every
  pause -- the baseline, the engine as it was.
* :class:`AdaptiveRule` (``"adaptive"``): a prosodic rule on timing evidence. Conversation
  analysis finds turn ends projected by the shape of the final stretch: a complete, long
  final phrase and short answers to a question are rarely continued, while a caller who has
  already paused inside this turn is a "pauser" whose next pause is likely mid-turn again.
  The rule starts from ``end_of_turn_min_ms`` and adds waiting for the evidence against an
  end: a short final burst (a fragment: "and, um"), a turn that has paused before (wait past
  the longest pause seen in it), a short turn that does not answer the agent. It never goes
  above ``end_of_turn_silence_ms``. Its constants were tuned on the corpus *train* split
  (``clutchcall eval --end-of-turn-rule adaptive``) and are checked on the test split.

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
    """The per-pause rule described in the module docstring.

    silence = min_ms
              + SHORT_BURST_MS   if the final burst is shorter than ``SHORT_BURST_LIMIT_MS``
              + NOT_ANSWER_MS    if the turn is short (< ``SHORT_TURN_MS``) and not an answer
              and at least the longest pause already seen in this turn + ``PAUSER_MARGIN_MS``
    clamped to [min_ms, end_of_turn_silence_ms].
    """

    SHORT_BURST_LIMIT_MS = 700
    SHORT_BURST_MS = 150
    SHORT_TURN_MS = 1200
    NOT_ANSWER_MS = 100
    PAUSER_MARGIN_MS = 150

    __slots__ = ("_max", "_min")

    def __init__(self, config: TurnConfig) -> None:
        self._min = config.end_of_turn_min_ms
        self._max = config.end_of_turn_silence_ms

    def silence_ms(self, ev: PauseEvidence) -> int:
        """Return this pause's end-of-turn silence (see the class docstring)."""
        ms = self._min
        if ev.burst_ms < self.SHORT_BURST_LIMIT_MS:
            ms += self.SHORT_BURST_MS
        if ev.turn_speech_ms < self.SHORT_TURN_MS and not ev.answer:
            ms += self.NOT_ANSWER_MS
        if ev.pauses:
            ms = max(ms, ev.longest_pause_ms + self.PAUSER_MARGIN_MS)
        return max(self._min, min(self._max, ms))


def make_end_of_turn_rule(config: TurnConfig) -> EndOfTurnRule:
    """Return the rule that ``config.end_of_turn_rule`` names."""
    if config.end_of_turn_rule == "adaptive":
        return AdaptiveRule(config)
    return FixedRule(config)
