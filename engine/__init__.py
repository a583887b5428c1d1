"""clutchcall.engine: the sans-IO turn engine (no clock, no I/O; time is an input).

Public surface: :class:`TurnEngine`, :class:`TurnConfig`, :class:`State`, the outputs in
:mod:`clutchcall.engine.actions` and the errors in :mod:`clutchcall.engine.errors`.
"""

from clutchcall.engine.actions import (
    Append,
    BackchannelFiltered,
    BargeArmed,
    BargeConfirmed,
    BargeDismissed,
    Cancel,
    Commit,
    EndOfTurn,
    Output,
    Prime,
    Release,
    Retract,
    Speculate,
    TurnStarted,
)
from clutchcall.engine.config import TurnConfig
from clutchcall.engine.errors import (
    ClutchCallError,
    ConfigError,
    FrameOutOfOrder,
    InvalidInput,
    LocalProtocolError,
    RemoteProtocolError,
    TimeWentBackwards,
)
from clutchcall.engine.policy import ThresholdPolicy, TurnPolicy
from clutchcall.engine.turn import TRANSITIONS, Input, State, TurnEngine

__all__ = [
    "TRANSITIONS",
    "Append",
    "BackchannelFiltered",
    "BargeArmed",
    "BargeConfirmed",
    "BargeDismissed",
    "Cancel",
    "ClutchCallError",
    "Commit",
    "ConfigError",
    "EndOfTurn",
    "FrameOutOfOrder",
    "Input",
    "InvalidInput",
    "LocalProtocolError",
    "Output",
    "Prime",
    "Release",
    "RemoteProtocolError",
    "Retract",
    "Speculate",
    "State",
    "ThresholdPolicy",
    "TimeWentBackwards",
    "TurnConfig",
    "TurnEngine",
    "TurnPolicy",
    "TurnStarted",
]
