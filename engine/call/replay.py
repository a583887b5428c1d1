"""Replay, one of it: feed recorded engine inputs to a fresh engine and compare outputs.

Theory of operation: the turn engine is a pure function of its inputs, so the inputs a shell
recorded (:class:`~clutchcall.engine.call.inputs.EngineInput`, each with the outputs drained
after it) must reproduce the recorded outputs exactly -- same types, same fields, same float
times. :func:`replay_steps` runs the inputs through an
:class:`~clutchcall.engine.call.driver.EngineDriver` and returns the outputs per input;
:func:`compare_steps` finds the first difference (a :class:`Mismatch`). Trace files
(``clutchcall.traces.recorded``), the simulator's in-simpy replay and engine-only benchmarks
all use these two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clutchcall.engine.actions import Output
from clutchcall.engine.call.driver import EngineDriver
from clutchcall.engine.call.inputs import EngineInput
from clutchcall.engine.config import TurnConfig
from clutchcall.engine.policy import TurnPolicy


def replay_steps(config: TurnConfig | None, inputs: Iterable[EngineInput],
                 policy: TurnPolicy | None = None) -> list[list[Output]]:
    """Feed ``inputs`` to a fresh engine (``config``, ``policy``); return the outputs drained
    after each input, one list per input. Engine errors (``TimeWentBackwards``, ...) propagate."""
    driver = EngineDriver(config=config, policy=policy)
    feed = driver.feed
    return [feed(inp) for inp in inputs]


def replay(config: TurnConfig | None, inputs: Iterable[EngineInput],
           policy: TurnPolicy | None = None) -> list[Output]:
    """Return every output a fresh engine produces on ``inputs``, in order."""
    return [o for step in replay_steps(config, inputs, policy) for o in step]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    """Where a replay first differs: after input number ``input_index`` (at ``time``),
    output ``output_index`` of that step was ``recorded`` but replay gave ``replayed``
    (``None`` where one side has no output there)."""

    input_index: int
    time: float
    output_index: int
    recorded: Output | None
    replayed: Output | None

    def __str__(self) -> str:
        return (f"after input {self.input_index} (t={self.time!r}), output {self.output_index}: "
                f"recorded {self.recorded!r}, replayed {self.replayed!r}")


def compare_step(index: int, inp: EngineInput, recorded: Sequence[Output],
                 replayed: Sequence[Output]) -> Mismatch | None:
    """Return the first difference between one input's recorded and replayed outputs, or None."""
    for j in range(max(len(recorded), len(replayed))):
        a = recorded[j] if j < len(recorded) else None
        b = replayed[j] if j < len(replayed) else None
        if a != b or type(a) is not type(b):
            return Mismatch(input_index=index, time=inp.time, output_index=j, recorded=a,
                            replayed=b)
    return None


def compare_steps(inputs: Sequence[EngineInput], recorded: Sequence[Sequence[Output]],
                  replayed: Sequence[Sequence[Output]]) -> Mismatch | None:
    """Return the first :class:`Mismatch` between recorded and replayed outputs (per input),
    or None when they are identical. Raises ValueError if the step counts differ."""
    if not len(inputs) == len(recorded) == len(replayed):
        raise ValueError(f"{len(inputs)} inputs, {len(recorded)} recorded and {len(replayed)} "
                         "replayed steps")
    for i, inp in enumerate(inputs):
        m = compare_step(i, inp, recorded[i], replayed[i])
        if m is not None:
            return m
    return None


def split_rows(rows: Iterable[EngineInput | Output]
               ) -> tuple[list[EngineInput], list[list[Output]], Output | None]:
    """Split a recorded row sequence (each input followed by its outputs) into (inputs, the
    outputs per input, the first output that came before any input or None)."""
    inputs: list[EngineInput] = []
    steps: list[list[Output]] = []
    stray: Output | None = None
    for r in rows:
        if isinstance(r, EngineInput):
            inputs.append(r)
            steps.append([])
        elif not steps:
            if stray is None:
                stray = r
        else:
            steps[-1].append(r)
    return inputs, steps, stray
