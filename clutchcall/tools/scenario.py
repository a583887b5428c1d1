"""Scripted engine inputs: a deterministic, realistic mix of caller and agent behaviour.

Theory of operation: :func:`scripted_call` turns a seed into a list of engine inputs -- caller
frames at 1x with VAD decisions, agent audio start/finish -- shaped like a phone conversation
(the call is the project's one generator's, :func:`clutchcall.sim.calls.synthetic_call`;
:func:`call_inputs` makes any :class:`~clutchcall.sim.calls.Call` engine inputs):
caller turns of 0.8-4 s with mid-turn pauses, replies from the agent after each committed turn,
backchannels ("mhm") and barge-ins over the agent. It is pure (no clock, no I/O); the demo,
the benchmark and tests drive the engine with it. The inputs are ordinary
:class:`~clutchcall.engine.call.EngineInput` values; :func:`run_inputs` plays such a list
through a :class:`TurnEngine` with the one drive loop and returns every output.
"""

from __future__ import annotations

from dataclasses import dataclass

from clutchcall.engine.actions import Output
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call.driver import EngineDriver
from clutchcall.engine.call.inputs import AGENT_FINISHED, AGENT_STARTED, CALLER_FRAME, EngineInput
from clutchcall.engine.turn import TurnEngine
from clutchcall.sim.calls import Call, synthetic_call

ScriptInput = EngineInput
"""A scripted input is an ordinary engine input (the one encoding, ``engine.call.inputs``)."""


def scripted_call(seed: int = 1, seconds: float = 60.0, frame_ms: int = 20) -> list[ScriptInput]:
    """Return the inputs of a ``seconds``-long scripted call (deterministic in ``seed``): the
    engine inputs (:func:`call_inputs`) of the one call generator's scripted stream,
    :func:`clutchcall.sim.calls.synthetic_call` with ``style="scripted"``.

    The agent's behaviour is scripted, not reactive: after each caller turn the agent talks
    for 1-4 s starting 0.9-1.4 s after the caller's speech ended (the end-of-turn silence plus
    a model's time to first audio); during agent speech the caller may backchannel (150-500 ms)
    or barge in (600-1500 ms).
    """
    return call_inputs(synthetic_call(seed, seconds, frame_ms, style="scripted"))


def call_inputs(call: Call) -> list[ScriptInput]:
    """Return a call's engine inputs as a shell would feed them with no network: caller frame k
    (its VAD decision) at the end of the frame, ``(k + 1) * frame_ms``, and agent audio
    started / finished at the frame ends where the call's ``agent_speech`` intervals start
    and end (intervals on whole frames; one outside the call is never fed)."""
    frame_ms = call.frame_ms
    step = frame_ms / 1000.0
    starts = {round(a) // frame_ms: round(b) // frame_ms for a, b in call.agent_speech}
    ends = {round(b) // frame_ms for _, b in call.agent_speech}
    events: list[ScriptInput] = []
    for k, sp in enumerate(call.speech):
        t = round((k + 1) * step, 6)
        events.append(EngineInput.frame(t, speech=sp, duration_ms=frame_ms))
        if k + 1 in starts:
            events.append(EngineInput.started(t))
        if k + 1 in ends:
            events.append(EngineInput.finished(t))
    return events


def run_inputs(engine: TurnEngine, inputs: list[ScriptInput]) -> list[Output]:
    """Drive ``engine`` through ``inputs`` with the drive loop (docs/architecture.md §2)
    (:class:`~clutchcall.engine.call.EngineDriver`); return all outputs.

    Timers are honoured: before each input, a deadline at or before its time is fired with
    ``handle_timer(deadline)``, as a shell's timer would have done. Agent audio started while
    it plays, or finished while it does not, is skipped.
    """
    return run_columns(engine, list(inputs))


@dataclass(frozen=True, slots=True)
class FrameColumns:
    """A run of consecutive caller-frame inputs as columns (:meth:`EngineDriver.feed_columns
    <clutchcall.engine.call.EngineDriver.feed_columns>`): one duration; ``seqs`` /
    ``features`` None when no frame of the run has one."""

    times: list[float]
    speech: list[bool]
    duration_ms: int
    seqs: list[int] | None
    features: list[FrameFeatures | None] | None


def to_columns(inputs: list[ScriptInput]) -> list[FrameColumns | ScriptInput]:
    """Return ``inputs`` with every run of caller frames (of one duration, all with a
    ``seq`` or none) packed into one :class:`FrameColumns`; other inputs stay as they are.
    :func:`run_columns` of the result gives exactly :func:`run_inputs` of ``inputs``."""
    out: list[FrameColumns | ScriptInput] = []
    run: list[ScriptInput] = []

    def flush() -> None:
        if run:
            seqs = [int(i.seq) for i in run if i.seq is not None]
            feats = [i.features for i in run]
            out.append(FrameColumns(
                times=[i.time for i in run], speech=[bool(i.speech) for i in run],
                duration_ms=int(run[0].duration_ms or 0),
                seqs=seqs if seqs else None,
                features=None if feats.count(None) == len(feats) else feats))
            run.clear()

    for inp in inputs:
        if inp.kind == CALLER_FRAME and (not run or (
                inp.duration_ms == run[0].duration_ms
                and (inp.seq is None) == (run[0].seq is None))):
            run.append(inp)
            continue
        flush()
        if inp.kind == CALLER_FRAME:
            run.append(inp)
        else:
            out.append(inp)
    flush()
    return out


def run_columns(engine: TurnEngine, items: list[FrameColumns | ScriptInput]) -> list[Output]:
    """The drive loop of :func:`run_inputs` over plain inputs and runs packed by
    :func:`to_columns` (the same outputs: each run of caller frames goes through the engine's
    batch entry point, :meth:`~clutchcall.engine.call.EngineDriver.feed_columns`)."""
    driver = EngineDriver(engine)
    out: list[Output] = []
    agent_playing = False
    get_timer = engine.get_timer
    caller_frame = driver.caller_frame
    for item in items:
        if isinstance(item, FrameColumns):
            out += driver.feed_columns(item.times, item.speech, item.duration_ms,
                                       features=item.features, seqs=item.seqs)
            continue
        now = item.time
        deadline = get_timer()
        if deadline is not None and deadline <= now:
            out += driver.advance(now)
        kind = item.kind
        if kind == CALLER_FRAME:
            # as the call core feeds a frame (engine/call/core.py): the driver's per-frame
            # entry point, no EngineInput dispatch; the same outputs as ``driver.feed(item)``
            assert item.speech is not None and item.duration_ms is not None
            out += caller_frame(now, speech=item.speech, duration_ms=item.duration_ms,
                                seq=item.seq, features=item.features)
            continue
        if kind == AGENT_STARTED:
            if agent_playing:
                continue
            agent_playing = True
        elif kind == AGENT_FINISHED:
            if not agent_playing:
                continue
            agent_playing = False
        out += driver.feed(item)
    return out
