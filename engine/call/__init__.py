"""clutchcall.engine.call: the sans-IO call core shared by the production and simulated shells.

Public surface: :class:`CallCore` and its events, the parts it is made of
(:class:`FrameHold`, :class:`JitterBuffer`, :class:`Playout`, :class:`TurnRecord`,
:class:`SpeculationHold`), the one
drive loop (:class:`EngineDriver`), the one encoding of engine inputs (:class:`EngineInput`,
:class:`Recorder`, :class:`MemoryRecorder`) and the one replay (:func:`replay_steps`,
:func:`compare_steps`). Like the turn engine: no clock, no I/O; time is an input.
"""

from clutchcall.engine.call.core import (
    AgentFinished,
    AgentFrame,
    AgentStarted,
    CallCore,
    CallEvent,
    PlayoutCleared,
    PlayoutRewound,
    ReplyWithoutAudio,
    TurnMeasured,
    UplinkAudio,
)
from clutchcall.engine.call.driver import EngineDriver
from clutchcall.engine.call.hold import FrameHold, HoldConfig, HoldStats
from clutchcall.engine.call.inputs import (
    INPUT_KINDS,
    EngineInput,
    MemoryRecorder,
    Recorder,
    TeeRecorder,
    apply,
)
from clutchcall.engine.call.jitter import JitterBuffer, JitterStats, UplinkFrame
from clutchcall.engine.call.latency import TurnBook, TurnRecord
from clutchcall.engine.call.playout import Playout, PlayoutConfig
from clutchcall.engine.call.replay import Mismatch, compare_steps, replay, replay_steps, split_rows
from clutchcall.engine.call.speculation import Speculation, SpeculationHold

__all__ = [
    "INPUT_KINDS",
    "AgentFinished",
    "AgentFrame",
    "AgentStarted",
    "CallCore",
    "CallEvent",
    "EngineDriver",
    "EngineInput",
    "FrameHold",
    "HoldConfig",
    "HoldStats",
    "JitterBuffer",
    "JitterStats",
    "MemoryRecorder",
    "Mismatch",
    "Playout",
    "PlayoutCleared",
    "PlayoutConfig",
    "PlayoutRewound",
    "Recorder",
    "ReplyWithoutAudio",
    "Speculation",
    "SpeculationHold",
    "TeeRecorder",
    "TurnBook",
    "TurnMeasured",
    "TurnRecord",
    "UplinkAudio",
    "UplinkFrame",
    "apply",
    "compare_steps",
    "replay",
    "replay_steps",
    "split_rows",
]
