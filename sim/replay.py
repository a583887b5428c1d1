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

from clutchcall.engine import TurnEngine


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """What a replay found: counts, and the first mismatch (None = exact)."""

    inputs: int
    outputs: int
    actions: dict[str, int]
    mismatch: str | None


def replay_in_sim(trace: Any) -> ReplayResult:
    """Replay a ``RecordedTrace`` through a simpy-driven engine; return the result."""
    from clutchcall.traces.recorded import InputEvent

    steps: list[tuple[Any, list[Any]]] = []
    for row in trace.rows:
        if isinstance(row, InputEvent):
            steps.append((row, []))
        elif not steps:
            return ReplayResult(inputs=0, outputs=0, actions={},
                                mismatch=f"output {row!r} before any input")
        else:
            steps[-1][1].append(row)
    env = simpy.Environment()
    engine = TurnEngine(trace.header.config)
    found: list[str] = []
    counts: dict[str, int] = {}
    n_out = [0]

    def feeder():
        for i, (inp, recorded) in enumerate(steps):
            if inp.time > env.now:
                yield env.timeout(inp.time - env.now)
            now = inp.time  # exactly the recorded now, not env.now's float sum
            if inp.kind == "caller_frame":
                engine.caller_frame(now, speech=inp.speech, duration_ms=inp.duration_ms,
                                    seq=inp.seq)
            elif inp.kind == "agent_audio_started":
                engine.agent_audio_started(now)
            elif inp.kind == "agent_audio_finished":
                engine.agent_audio_finished(now)
            else:
                engine.handle_timer(now)
            got = engine.drain()
            n_out[0] += len(got)
            for o in got:
                if o.is_action:
                    counts[o.kind] = counts.get(o.kind, 0) + 1
            if not found:
                for j in range(max(len(got), len(recorded))):
                    a = recorded[j] if j < len(recorded) else None
                    b = got[j] if j < len(got) else None
                    if a != b or type(a) is not type(b):
                        found.append(f"after input {i} ({inp.kind} at t={now!r}), output {j}: "
                                     f"recorded {a!r}, replayed {b!r}")
                        break

    env.process(feeder())
    env.run()
    return ReplayResult(inputs=len(steps), outputs=n_out[0], actions=counts,
                        mismatch=found[0] if found else None)


def load_trace(path: str | Path) -> Any:
    """Read a recorded trace with ``clutchcall.traces``' reader (raises its
    TraceFormatError for a malformed file)."""
    from clutchcall.traces.recorded import read_trace

    return read_trace(path)
