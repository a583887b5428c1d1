"""Replay of a recorded trace (:mod:`clutchcall.traces.recorded`) through a fresh turn engine.

:func:`replay` feeds the trace's inputs to a fresh engine and :func:`first_mismatch` compares
its outputs with the recorded ones -- both through the one replay,
:mod:`clutchcall.engine.call.replay`. The trace file format itself is
:mod:`clutchcall.traces.recorded`.
"""

from __future__ import annotations

from clutchcall.engine.actions import Output
from clutchcall.engine.call.replay import Mismatch, compare_steps, split_rows
from clutchcall.engine.call.replay import replay_steps as replay_inputs
from clutchcall.engine.policy import TurnPolicy
from clutchcall.traces.recorded import RecordedTrace


def replay_steps(trace: RecordedTrace, policy: TurnPolicy | None = None) -> list[list[Output]]:
    """Feed the trace's inputs to a fresh engine (the header's config, ``policy`` or the
    default threshold policy); return the drained outputs after each input, one list per
    input (:func:`clutchcall.engine.call.replay_steps`). Engine errors (e.g.
    ``TimeWentBackwards``) propagate."""
    return replay_inputs(trace.header.config, trace.inputs, policy)


def replay(trace: RecordedTrace, policy: TurnPolicy | None = None) -> list[Output]:
    """Return every output a fresh engine produces on the trace's inputs, in order."""
    return [o for step in replay_steps(trace, policy) for o in step]


def first_mismatch(trace: RecordedTrace, policy: TurnPolicy | None = None) -> Mismatch | None:
    """Replay ``trace`` and compare step by step; return the first
    :class:`~clutchcall.engine.call.Mismatch`, or ``None`` when the replay reproduces every
    recorded output exactly (same types, same field values, same float times). Rows before
    the first input count as a mismatch."""
    inputs, recorded, stray = split_rows(trace.rows)
    if stray is not None:
        return Mismatch(input_index=-1, time=float(stray.time), output_index=0, recorded=stray,
                        replayed=None)
    return compare_steps(inputs, recorded, replay_inputs(trace.header.config, inputs, policy))
