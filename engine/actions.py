"""What the turn engine decides: actions for the model leg and events for metrics/traces.

Theory of operation: every output is a frozen, slotted, keyword-only dataclass on one base,
:class:`Output`, validated when constructed. Traces keep references to them, so they never
mutate. Each carries ``time`` (seconds, the ``now`` of the input that produced it).

Actions (the shell must act on them):

* :class:`Append` -- every caller frame, at once, in order: feed it to the model's input buffer.
* :class:`Prime` -- non-final commit: the turn so far goes into the model's context.
* :class:`Commit` -- final commit: the model must reply now.
* :class:`Cancel` -- confirmed barge-in: stop the agent, clear the caller's playout, and tell
  the model how much agent audio was played (``agent_played_ms``) so it can truncate.

Speculative commit (``TurnConfig.speculate``; see ``engine/turn.py``):

* :class:`Speculate` -- a pause in a real turn reached ``speculate_silence_ms``: commit the
  turn and ask the model for its reply now, but *hold* the reply's audio at the edge.
* :class:`Release` -- the end of that turn is confirmed: play the held reply at once. It takes
  the place of ``Commit`` for the turn (same fields; the model already has the request).
* :class:`Retract` -- the caller spoke again first: cancel the reply, delete its unplayed
  item from the model's conversation, drop the held audio. Nothing of it was played.

Soft barge-in actions (the playout must act on them; only when ``TurnConfig.barge_yield`` is
not ``"none"``): :class:`Duck` / :class:`Restore` -- lower the agent's audio by ``gain_db``
at once (a short ramp), then back to full level when the pending barge-in is dismissed;
:class:`Pause` / :class:`Resume` -- hold the agent's playout (the model keeps streaming into
the buffer), then play on from where it stopped. Every Duck is followed by exactly one
Restore or Cancel, every Pause by exactly one Resume or Cancel.

Events (observable only; for metrics and traces): :class:`TurnStarted`, :class:`EndOfTurn`,
:class:`BackchannelFiltered`, :class:`BargeArmed`, :class:`BargeDismissed`,
:class:`BargeConfirmed`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import ClassVar

from clutchcall.engine.errors import LocalProtocolError


def _check_time(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LocalProtocolError(f"{name}: expected a finite time in seconds, got {value!r}")


def _check_ms(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise LocalProtocolError(f"{name}: expected a non-negative integer of ms, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """Base of every engine output. ``time``: seconds, the ``now`` it was decided at."""

    kind: ClassVar[str] = "output"
    is_action: ClassVar[bool] = False
    time: float

    def __post_init__(self) -> None:
        _check_time(f"{type(self).__name__}.time", self.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class Append(Output):
    """Append caller frame ``seq`` (``duration_ms`` long; ``speech`` = its VAD decision)."""

    kind: ClassVar[str] = "append"
    is_action: ClassVar[bool] = True
    seq: int
    duration_ms: int
    speech: bool

    def __post_init__(self) -> None:
        _check_time("Append.time", self.time)
        if self.duration_ms not in (10, 20, 30):
            raise LocalProtocolError(f"Append.duration_ms: must be 10, 20 or 30, got {self.duration_ms!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Prime(Output):
    """Non-final commit of turn ``turn`` (``speech_ms`` of speech so far); no reply wanted."""

    kind: ClassVar[str] = "prime"
    is_action: ClassVar[bool] = True
    turn: int
    speech_ms: int

    def __post_init__(self) -> None:
        _check_time("Prime.time", self.time)
        _check_ms("Prime.speech_ms", self.speech_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(Output):
    """Final commit of turn ``turn``: reply now. ``last_speech_at``: end of its last speech
    frame (seconds), where turn latency starts."""

    kind: ClassVar[str] = "commit"
    is_action: ClassVar[bool] = True
    turn: int
    speech_ms: int
    last_speech_at: float

    def __post_init__(self) -> None:
        _check_time("Commit.time", self.time)
        _check_time("Commit.last_speech_at", self.last_speech_at)
        _check_ms("Commit.speech_ms", self.speech_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Output):
    """Confirmed barge-in: stop the agent; ``agent_played_ms`` of its audio had played."""

    kind: ClassVar[str] = "cancel"
    is_action: ClassVar[bool] = True
    agent_played_ms: int

    def __post_init__(self) -> None:
        _check_time("Cancel.time", self.time)
        _check_ms("Cancel.agent_played_ms", self.agent_played_ms)


# --------------------------------------------------------------------------- speculation
@dataclass(frozen=True, slots=True, kw_only=True)
class Speculate(Output):
    """Speculative commit of turn ``turn`` (``speech_ms`` so far, its last speech frame ended
    at ``last_speech_at``): commit and request the reply now, hold its audio at the edge."""

    kind: ClassVar[str] = "speculate"
    is_action: ClassVar[bool] = True
    turn: int
    speech_ms: int
    last_speech_at: float

    def __post_init__(self) -> None:
        _check_time("Speculate.time", self.time)
        _check_time("Speculate.last_speech_at", self.last_speech_at)
        _check_ms("Speculate.speech_ms", self.speech_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(Output):
    """End of turn ``turn`` confirmed while its speculation was in flight: play the held
    reply now. Stands for the turn's ``Commit`` (its fields, plus ``held_ms``: how long the
    speculation had been in flight)."""

    kind: ClassVar[str] = "release"
    is_action: ClassVar[bool] = True
    turn: int
    speech_ms: int
    last_speech_at: float
    held_ms: int

    def __post_init__(self) -> None:
        _check_time("Release.time", self.time)
        _check_time("Release.last_speech_at", self.last_speech_at)
        _check_ms("Release.speech_ms", self.speech_ms)
        _check_ms("Release.held_ms", self.held_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retract(Output):
    """The speculation on turn ``turn`` is withdrawn (the caller spoke again, or other agent
    audio started): cancel the reply, delete its item, drop its held audio. ``held_ms``: how
    long it was in flight -- model time spent on a reply nobody hears (the wasted-time budget
    counts it). ``reason``: ``"speech"``, ``"agent_started"`` or ``"filtered"`` (the policy
    changed its mind at the end of turn)."""

    kind: ClassVar[str] = "retract"
    is_action: ClassVar[bool] = True
    turn: int
    held_ms: int
    reason: str

    def __post_init__(self) -> None:
        _check_time("Retract.time", self.time)
        _check_ms("Retract.held_ms", self.held_ms)
        if self.reason not in ("speech", "agent_started", "filtered"):
            raise LocalProtocolError(f"Retract.reason: unknown {self.reason!r}")
# ---------------------------------------------------------------- soft barge-in (issue 15)
@dataclass(frozen=True, slots=True, kw_only=True)
class Duck(Output):
    """A barge-in is pending: lower the agent's audio by ``gain_db`` dB over ``ramp_ms``."""

    kind: ClassVar[str] = "duck"
    is_action: ClassVar[bool] = True
    gain_db: int
    ramp_ms: int

    def __post_init__(self) -> None:
        _check_time("Duck.time", self.time)
        _check_ms("Duck.gain_db", self.gain_db)
        _check_ms("Duck.ramp_ms", self.ramp_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Restore(Output):
    """The pending barge-in was dismissed: bring the ducked agent audio back to full level."""

    kind: ClassVar[str] = "restore"
    is_action: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(Output):
    """A barge-in is pending: hold the agent's playout where it is (nothing is dropped)."""

    kind: ClassVar[str] = "pause"
    is_action: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(Output):
    """The pending barge-in was dismissed: play the held agent audio on from where it
    stopped."""

    kind: ClassVar[str] = "resume"
    is_action: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnStarted(Output):
    """Caller turn ``turn`` opened; its first speech began at ``onset`` (seconds)."""

    kind: ClassVar[str] = "turn_started"
    turn: int
    onset: float

    def __post_init__(self) -> None:
        _check_time("TurnStarted.time", self.time)
        _check_time("TurnStarted.onset", self.onset)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfTurn(Output):
    """Turn ``turn`` ended; ``committed`` tells whether it yielded ``Commit``.
    ``reason``: ``"silence"`` (end-of-turn silence reached) or ``"agent_started"``."""

    kind: ClassVar[str] = "end_of_turn"
    turn: int
    speech_ms: int
    committed: bool
    reason: str

    def __post_init__(self) -> None:
        _check_time("EndOfTurn.time", self.time)
        _check_ms("EndOfTurn.speech_ms", self.speech_ms)
        if self.reason not in ("silence", "agent_started"):
            raise LocalProtocolError(f"EndOfTurn.reason: unknown {self.reason!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackchannelFiltered(Output):
    """A burst too short to be a turn was not committed. ``over_agent``: it was spoken over
    agent audio (a dismissed barge-in) rather than as a turn of its own."""

    kind: ClassVar[str] = "backchannel_filtered"
    speech_ms: int
    over_agent: bool

    def __post_init__(self) -> None:
        _check_time("BackchannelFiltered.time", self.time)
        _check_ms("BackchannelFiltered.speech_ms", self.speech_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class BargeArmed(Output):
    """Caller speech over agent audio: a barge-in is pending from ``onset`` (seconds)."""

    kind: ClassVar[str] = "barge_armed"
    onset: float

    def __post_init__(self) -> None:
        _check_time("BargeArmed.time", self.time)
        _check_time("BargeArmed.onset", self.onset)


@dataclass(frozen=True, slots=True, kw_only=True)
class BargeDismissed(Output):
    """A pending barge-in ended without ``Cancel``. ``reason``: ``"burst_ended"`` (the caller
    stopped first: a backchannel) or ``"agent_finished"`` (the agent stopped first)."""

    kind: ClassVar[str] = "barge_dismissed"
    speech_ms: int
    reason: str

    def __post_init__(self) -> None:
        _check_time("BargeDismissed.time", self.time)
        _check_ms("BargeDismissed.speech_ms", self.speech_ms)
        if self.reason not in ("burst_ended", "agent_finished"):
            raise LocalProtocolError(f"BargeDismissed.reason: unknown {self.reason!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BargeConfirmed(Output):
    """A pending barge-in reached ``barge_confirm_ms`` of speech (``speech_ms``): ``Cancel``
    follows."""

    kind: ClassVar[str] = "barge_confirmed"
    speech_ms: int
    agent_played_ms: int

    def __post_init__(self) -> None:
        _check_time("BargeConfirmed.time", self.time)
        _check_ms("BargeConfirmed.speech_ms", self.speech_ms)
        _check_ms("BargeConfirmed.agent_played_ms", self.agent_played_ms)


_new = object.__new__
# The slot descriptors of Append's fields: setting through them skips the frozen dataclass's
# per-field object.__setattr__ calls (the engine's hot path creates one Append per frame).
_set_time = vars(Output)["time"].__set__
_set_seq = vars(Append)["seq"].__set__
_set_duration = vars(Append)["duration_ms"].__set__
_set_speech = vars(Append)["speech"].__set__


def append_unchecked(time: float, seq: int, duration_ms: int, speech: bool) -> Append:
    """Build an :class:`Append` without re-validating its fields (4x faster).

    Only for the turn engine's hot path, which has validated ``time`` and ``duration_ms``
    itself before calling; the object is identical to ``Append(time=..., ...)``.
    """
    obj: Append = _new(Append)
    _set_time(obj, time)
    _set_seq(obj, seq)
    _set_duration(obj, duration_ms)
    _set_speech(obj, speech)
    return obj


def appends_unchecked(times: list[float], seqs: Iterable[int], duration_ms: int,
                      speech: bool) -> list[Append]:
    """Build the :class:`Append` of each frame of a run (``times[k]``, ``seqs[k]``; one
    ``duration_ms`` and ``speech`` for all) without re-validating, the loop in C (``map``):
    for :meth:`~clutchcall.engine.turn.TurnEngine.caller_frames_quiet`, which has validated
    the run itself. The objects equal those of :func:`append_unchecked`, frame by frame."""
    n = len(times)
    objs: list[Append] = list(map(_new, repeat(Append, n)))
    _consume(map(_set_time, objs, times))
    _consume(map(_set_seq, objs, seqs))
    _consume(map(_set_duration, objs, repeat(duration_ms, n)))
    _consume(map(_set_speech, objs, repeat(speech, n)))
    return objs


_sink: deque[object] = deque(maxlen=0)
_consume: Callable[[Iterable[object]], None] = _sink.extend
"""Run an iterator for its side effects (the slot setters above), in C."""


ACTION_TYPES: tuple[type[Output], ...] = (Append, Prime, Commit, Cancel, Speculate, Release, Retract,
                                          Duck, Restore, Pause, Resume)
EVENT_TYPES: tuple[type[Output], ...] = (
    TurnStarted,
    EndOfTurn,
    BackchannelFiltered,
    BargeArmed,
    BargeDismissed,
    BargeConfirmed,
)
OUTPUT_TYPES: dict[str, type[Output]] = {t.kind: t for t in ACTION_TYPES + EVENT_TYPES}
