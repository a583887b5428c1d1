"""Engine inputs, one encoding: what a shell fed the turn engine, replayable and recordable.

Theory of operation: every input a shell gives :class:`~clutchcall.engine.TurnEngine` -- a
caller frame with its VAD decision, agent audio started / finished, a timer firing -- is one
:class:`EngineInput` (frozen, slotted, keyword-only, validated at construction), carrying the
exact ``now`` passed. The same value is what a :class:`Recorder` receives, what a trace row
stores (``traces/FORMAT.md``: ``dir = "in"``), what the scripted scenarios list and what a
replay feeds back. :func:`apply` feeds one to an engine. A :class:`Recorder` gets every input
(:meth:`Recorder.input`) and every drained output list (:meth:`Recorder.outputs`) in order;
:class:`MemoryRecorder` keeps them in memory (engine-only replays, tests, benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clutchcall.engine.actions import Output
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.errors import LocalProtocolError
from clutchcall.engine.turn import TurnEngine

CALLER_FRAME = "caller_frame"
AGENT_STARTED = "agent_audio_started"
AGENT_FINISHED = "agent_audio_finished"
TIMER = "timer"
INPUT_KINDS = (CALLER_FRAME, AGENT_STARTED, AGENT_FINISHED, TIMER)
"""The input kinds, as the trace format names them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineInput:
    """One engine input: ``kind`` in :data:`INPUT_KINDS`, ``time`` = the ``now`` passed.
    ``seq`` / ``duration_ms`` / ``speech`` are set for ``caller_frame`` only (``seq`` may be
    None). ``features`` (``caller_frame`` only, optional) are the frame's acoustic features
    (``engine/audio/features.py``; the ``evidence`` policy reads them), recorded so that a
    replay is exact. Raises :class:`LocalProtocolError` on an unknown kind, a non-finite time,
    or fields that do not match the kind."""

    kind: str
    time: float
    seq: int | None = None
    duration_ms: int | None = None
    speech: bool | None = None
    features: FrameFeatures | None = None

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise LocalProtocolError(f"EngineInput.kind: one of {INPUT_KINDS}, got {self.kind!r}")
        if not isinstance(self.time, (int, float)) or not math.isfinite(self.time):
            raise LocalProtocolError(f"EngineInput.time: a finite number, got {self.time!r}")
        if self.kind == CALLER_FRAME:
            if self.duration_ms is None or self.speech is None:
                raise LocalProtocolError("EngineInput: a caller_frame needs duration_ms and speech")
        elif (self.seq is not None or self.duration_ms is not None or self.speech is not None
              or self.features is not None):
            raise LocalProtocolError(f"EngineInput: {self.kind} carries only a time")

    @classmethod
    def frame(cls, now: float, *, speech: bool, duration_ms: int, seq: int | None = None,
              features: FrameFeatures | None = None) -> EngineInput:
        """Return the input ``engine.caller_frame(now, speech=..., duration_ms=..., seq=...,
        features=...)``."""
        return cls(kind=CALLER_FRAME, time=now, seq=seq, duration_ms=duration_ms, speech=speech,
                   features=features)

    @classmethod
    def started(cls, now: float) -> EngineInput:
        """Return the input ``engine.agent_audio_started(now)``."""
        return cls(kind=AGENT_STARTED, time=now)

    @classmethod
    def finished(cls, now: float) -> EngineInput:
        """Return the input ``engine.agent_audio_finished(now)``."""
        return cls(kind=AGENT_FINISHED, time=now)

    @classmethod
    def timer(cls, now: float) -> EngineInput:
        """Return the input ``engine.handle_timer(now)``."""
        return cls(kind=TIMER, time=now)


def apply(engine: TurnEngine, inp: EngineInput) -> None:
    """Feed ``inp`` to ``engine`` (no drain). Engine errors propagate."""
    kind = inp.kind
    if kind == CALLER_FRAME:
        assert inp.speech is not None and inp.duration_ms is not None
        engine.caller_frame(inp.time, speech=inp.speech, duration_ms=inp.duration_ms, seq=inp.seq,
                            features=inp.features)
    elif kind == TIMER:
        engine.handle_timer(inp.time)
    elif kind == AGENT_STARTED:
        engine.agent_audio_started(inp.time)
    else:
        engine.agent_audio_finished(inp.time)


class Recorder(Protocol):
    """What a shell records: each input as fed, then the outputs drained after it."""

    def input(self, inp: EngineInput) -> None:
        """Record one input, just after it was fed."""

    def outputs(self, outputs: Sequence[Output]) -> None:
        """Record the outputs of one drain (called after every input's drain)."""


@dataclass(slots=True)
class MemoryRecorder:
    """A :class:`Recorder` that keeps everything in memory: ``inputs`` in order, ``outs``
    (every output, flat) and ``steps`` (the outputs drained after each input)."""

    inputs: list[EngineInput] = field(default_factory=list)
    outs: list[Output] = field(default_factory=list)
    steps: list[list[Output]] = field(default_factory=list)

    def input(self, inp: EngineInput) -> None:
        """Record one input."""
        self.inputs.append(inp)
        self.steps.append([])

    def outputs(self, outputs: Sequence[Output]) -> None:
        """Record one drain's outputs (with the latest input)."""
        self.outs.extend(outputs)
        if self.steps:
            self.steps[-1].extend(outputs)


class TeeRecorder:
    """A :class:`Recorder` that hands everything to several recorders, in order."""

    __slots__ = ("recorders",)

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def input(self, inp: EngineInput) -> None:
        """Record one input in every recorder."""
        for r in self.recorders:
            r.input(inp)

    def outputs(self, outputs: Sequence[Output]) -> None:
        """Record one drain's outputs in every recorder."""
        for r in self.recorders:
            r.outputs(outputs)
