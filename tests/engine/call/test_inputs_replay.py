"""One input encoding, one drive loop, one replay (engine/call/inputs, driver, replay)."""

from __future__ import annotations

import math

import pytest

from clutchcall.engine import Commit, TurnConfig, TurnEngine
from clutchcall.engine.call import (
    EngineDriver,
    EngineInput,
    MemoryRecorder,
    TeeRecorder,
    compare_steps,
    replay,
    replay_steps,
    split_rows,
)
from clutchcall.engine.errors import LocalProtocolError
from clutchcall.tools.scenario import run_inputs, scripted_call


def test_inputs_are_validated() -> None:
    with pytest.raises(LocalProtocolError):
        EngineInput(kind="nope", time=0.0)
    with pytest.raises(LocalProtocolError):
        EngineInput(kind="timer", time=math.nan)
    with pytest.raises(LocalProtocolError):
        EngineInput(kind="caller_frame", time=0.0, speech=True)  # no duration
    with pytest.raises(LocalProtocolError):
        EngineInput(kind="timer", time=0.0, seq=1)
    f = EngineInput.frame(0.02, speech=True, duration_ms=20, seq=3)
    assert (f.kind, f.seq, f.speech) == ("caller_frame", 3, True)
    assert EngineInput.started(1.0).kind == "agent_audio_started"
    assert EngineInput.finished(1.0).kind == "agent_audio_finished"


def test_driver_records_through_the_recorder_passed_in() -> None:
    a, b = MemoryRecorder(), MemoryRecorder()
    d = EngineDriver(config=TurnConfig(), recorder=TeeRecorder(a, b))
    outs = []
    for k in range(60):
        outs += d.advance((k + 1) * 0.02)
        outs += d.caller_frame((k + 1) * 0.02, speech=k < 40, duration_ms=20)
    outs += d.advance(10.0)
    assert any(isinstance(o, Commit) for o in outs)
    assert a.inputs == b.inputs and a.outs == b.outs == outs
    assert [len(s) for s in a.steps] and sum(len(s) for s in a.steps) == len(outs)
    assert any(i.kind == "timer" for i in a.inputs)


def test_driver_without_a_recorder_drives_the_engine_the_same() -> None:
    """Without a recorder the driver calls the engine directly (no EngineInput built: the
    live edge's per-frame path, issue 17): every input kind gives the outputs the recorded
    path gives, drained after each input."""
    inputs = scripted_call(seed=5, seconds=30)
    rec = MemoryRecorder()
    recorded, bare = EngineDriver(recorder=rec), EngineDriver()
    for inp in inputs:
        for d in (recorded, bare):
            d.advance(inp.time)
        if inp.kind != "caller_frame" and (inp.kind == "agent_audio_started") == (
                recorded.engine.state.value.startswith("agent")):
            continue
        if inp.kind == "caller_frame":
            assert inp.speech is not None and inp.duration_ms is not None
            got = bare.caller_frame(inp.time, speech=inp.speech, duration_ms=inp.duration_ms,
                                    seq=inp.seq, features=inp.features)
        elif inp.kind == "timer":
            got = bare.handle_timer(inp.time)
        elif inp.kind == "agent_audio_started":
            got = bare.agent_audio_started(inp.time)
        else:
            got = bare.agent_audio_finished(inp.time)
        assert got == recorded.feed(inp)
    assert rec.outs and any(i.kind == "agent_audio_started" for i in rec.inputs)
    assert bare.engine.state == recorded.engine.state and bare.get_timer() == recorded.get_timer()


def test_scripted_call_replays_and_a_change_is_found() -> None:
    inputs = scripted_call(seed=3, seconds=30)
    rec = MemoryRecorder()
    outs = run_inputs(TurnEngine(), inputs)
    d = EngineDriver(recorder=rec)
    for inp in inputs:  # the same loop run_inputs uses, recorded
        d.advance(inp.time)
        if inp.kind != "caller_frame" and (inp.kind == "agent_audio_started") == (
                d.engine.state.value.startswith("agent")):
            continue
        d.feed(inp)
    assert replay(None, rec.inputs) == rec.outs
    assert outs  # the plain helper produces the engine's outputs too
    steps = replay_steps(None, rec.inputs)
    assert compare_steps(rec.inputs, rec.steps, steps) is None
    # drop one output: the comparison names where
    i = next(n for n, s in enumerate(rec.steps) if s)
    changed = [list(s) for s in rec.steps]
    changed[i] = changed[i][1:]
    m = compare_steps(rec.inputs, changed, steps)
    assert m is not None and m.input_index == i and m.output_index == 0
    assert str(m).startswith(f"after input {i}")
    with pytest.raises(ValueError):
        compare_steps(rec.inputs, rec.steps[:-1], steps)


def test_split_rows() -> None:
    d = EngineDriver()
    rows: list = []
    for k in range(3):
        inp = EngineInput.frame((k + 1) * 0.02, speech=False, duration_ms=20)
        rows.append(inp)
        rows += d.feed(inp)
    inputs, steps, stray = split_rows(rows)
    assert len(inputs) == 3 and [len(s) for s in steps] == [1, 1, 1] and stray is None
    assert split_rows(rows[1:])[2] is rows[1]
