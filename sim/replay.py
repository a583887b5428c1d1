"""Replaying a recorded trace through the simulator: the edge's engine driven from simpy.

Theory of operation: a recorded trace (``clutchcall.traces.recorded``, FORMAT.md §2) lists
every input the production (or simulated) edge fed its turn engine -- caller frames, agent
audio started / finished, timer firings -- each with the ``now`` it passed, and the outputs
drained after each. :func:`replay_in_sim` runs one simpy process that feeds those inputs at
their recorded times (``env.now`` equals each input's time), drains after each, and compares
the drained outputs with the recorded ones, field by field and float time by float time.
The engine being a pure function of its inputs, any difference is a bug (or a changed
engine). The recorded timer inputs are the timer: the shell's timer fired at those times
(``max(deadline, clock())``), so re-deriving them from ``get_timer()`` would not reproduce
the production times exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy

from clutchcall.engine.call import EngineDriver, Mismatch, split_rows
from clutchcall.engine.call.replay import compare_step


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """What a replay found: counts, and the first mismatch (None = exact)."""

    inputs: int
    outputs: int
    actions: dict[str, int]
    mismatch: str | None


def replay_in_sim(trace: Any) -> ReplayResult:
    """Replay a ``RecordedTrace`` through a simpy-driven engine; return the result. The
    engine is fed by the one drive loop (:class:`~clutchcall.engine.call.EngineDriver`) and
    compared by the one replay comparison (:func:`~clutchcall.engine.call.replay.compare_step`)."""
    inputs, recorded, stray = split_rows(trace.rows)
    if stray is not None:
        return ReplayResult(inputs=0, outputs=0, actions={},
                            mismatch=f"output {stray!r} before any input")
    env = simpy.Environment()
    driver = EngineDriver(config=trace.header.config)
    found: list[Mismatch] = []
    counts: dict[str, int] = {}
    n_out = [0]

    def feeder():
        for i, inp in enumerate(inputs):
            if inp.time > env.now:
                yield env.timeout(inp.time - env.now)
            got = driver.feed(inp)  # exactly the recorded now, not env.now's float sum
            n_out[0] += len(got)
            for o in got:
                if o.is_action:
                    counts[o.kind] = counts.get(o.kind, 0) + 1
            if not found:
                m = compare_step(i, inp, recorded[i], got)
                if m is not None:
                    found.append(m)

    env.process(feeder())
    env.run()
    return ReplayResult(inputs=len(inputs), outputs=n_out[0], actions=counts,
                        mismatch=str(found[0]) if found else None)


def load_trace(path: str | Path) -> Any:
    """Read a recorded trace with ``clutchcall.traces``' reader (raises its
    TraceFormatError for a malformed file)."""
    from clutchcall.traces.recorded import read_trace

    return read_trace(path)
