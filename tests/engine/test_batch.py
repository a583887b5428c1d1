"""The engine's batch entry point (TurnEngine.caller_frames_quiet, EngineDriver.feed_columns)
gives exactly what feeding the same frames one by one gives: the same outputs in the same
order, the same state afterwards, the same error at the same frame -- on random streams, for
every policy, with and without features, sequence numbers, soft barge-in and speculation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.engine import ClutchCallError, TurnConfig, TurnEngine
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call import EngineDriver, EngineInput, MemoryRecorder
from clutchcall.engine.config import POLICY_NAMES
from clutchcall.tools.scenario import run_columns, run_inputs, scripted_call, to_columns

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

configs = st.builds(
    TurnConfig,
    policy=st.sampled_from(POLICY_NAMES),
    response_min_speech_ms=st.sampled_from([0, 200, 600]),
    barge_confirm_ms=st.sampled_from([0, 100, 300]),
    end_of_turn_silence_ms=st.sampled_from([100, 300, 500]),
    prime_silence_ms=st.sampled_from([0, 60]),
    burst_gap_ms=st.sampled_from([0, 40, 100]),
    barge_yield=st.sampled_from(["none", "duck", "pause"]),
    speculate=st.booleans(),
    speculate_silence_ms=st.sampled_from([20, 80]),
    end_of_turn_rule=st.sampled_from(["fixed", "adaptive", "prosodic"]),
    end_of_turn_min_ms=st.just(60),
    end_of_turn_final_ms=st.sampled_from([60, 200, 500]),
    end_of_turn_max_ms=st.sampled_from([0, 900]),
    end_of_turn_barge_ms=st.sampled_from([0, 0, 800]),
    end_of_turn_held_ms=st.sampled_from([0, 0, 700]),
    evidence_min_snr_db=st.sampled_from([0, 6, 20]),
    gate_bridge_ms=st.sampled_from([0, 0, 100]),
    cancel_answer_window_ms=st.sampled_from([0, 1500]),
)
features = st.one_of(st.none(), st.builds(
    FrameFeatures,
    level_db=st.floats(-90, 0), rel_db=st.floats(-40, 20), snr_db=st.floats(-5, 40),
    agent_edge_ms=st.one_of(st.just(math.inf), st.floats(0, 2000)),
    # voiced or not: the prosodic rule's ring takes voiced speech frames (f0_hz > 0)
    f0_hz=st.one_of(st.just(0.0), st.floats(60, 400)), rel_f0_st=st.floats(-12, 12)))


@st.composite
def streams(draw: Any) -> list[EngineInput]:
    """Runs of caller frames (speech or not, some with features / seqs, rarely a frame that
    overlaps, jumps or goes back in time) with agent audio starting and finishing between."""
    fms = draw(st.sampled_from([10, 20, 30]))
    with_seq = draw(st.booleans())
    feat_mode = draw(st.sampled_from(["none", "all", "some"]))
    t = 0.0
    seq = 0
    out: list[EngineInput] = []
    for speech, n in draw(st.lists(st.tuples(st.booleans(), st.integers(1, 60)), min_size=1,
                                   max_size=25)):
        for _ in range(n):
            t = round(t + fms / 1000.0, 6)
            f = None
            if feat_mode == "all" or (feat_mode == "some" and draw(st.booleans())):
                f = draw(features)
            out.append(EngineInput.frame(t, speech=speech, duration_ms=fms,
                                         seq=seq if with_seq else None, features=f))
            seq += 1
        event = draw(st.sampled_from(["none", "none", "started", "finished", "gap", "bad"]))
        if event == "started":
            out.append(EngineInput.started(t))
        elif event == "finished":
            out.append(EngineInput.finished(t))
        elif event == "gap":
            t = round(t + draw(st.integers(1, 40)) * fms / 1000.0, 6)  # a gap: the timer's
        elif event == "bad":
            t = round(t - draw(st.sampled_from([0.5, 1.0, 3.0])) * fms / 1000.0, 6)
    return out


def _state(e: TurnEngine) -> dict[str, Any]:
    skip = {"policy", "config", "_on_speech", "_on_silence", "_eot_rule", "_evidence", "_out",
            "_prosody"}
    snap = {k: getattr(e, k) for k in TurnEngine.__slots__ if k not in skip}
    ev = e._evidence  # the burst summary is engine state too
    snap["_evidence"] = (ev.frames, ev.rel_sum, ev.edge_ms)
    snap["_on_speech"] = getattr(e._on_speech, "__name__", None)
    snap["_prosody"] = None if e._prosody is None else tuple(e._prosody._ring)
    return snap


def _run(fn: Any, cfg: TurnConfig, items: Any) -> tuple[Any, TurnEngine]:
    e = TurnEngine(cfg)
    try:
        return fn(e, items), e
    except ClutchCallError as exc:
        return type(exc), e


@SETTINGS
@given(cfg=configs, inputs=streams())
def test_batch_path_equals_frame_by_frame(cfg: TurnConfig, inputs: list[EngineInput]) -> None:
    one, e1 = _run(run_inputs, cfg, inputs)
    cols = to_columns(inputs)
    batch, e2 = _run(run_columns, cfg, cols)
    assert batch == one
    assert _state(e2) == _state(e1)


def test_scripted_calls_take_the_batch_path_and_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the benchmark's own scripted calls, for every policy: identical outputs, and most
    frames really went through the batch entry point (the property is not vacuous)."""
    orig = TurnEngine.caller_frames_quiet
    taken = 0

    def counting(self: TurnEngine, *a: Any, **kw: Any) -> int:
        nonlocal taken
        k = orig(self, *a, **kw)
        taken += k
        return k

    for policy in POLICY_NAMES:
        cfg = TurnConfig(policy=policy, barge_yield="pause", speculate=True)
        inputs = scripted_call(seed=3, seconds=120)
        taken = 0

        expect = run_inputs(TurnEngine(cfg), inputs)
        monkeypatch.setattr(TurnEngine, "caller_frames_quiet", counting)
        assert run_columns(TurnEngine(cfg), to_columns(inputs)) == expect
        monkeypatch.undo()
        frames = sum(1 for i in inputs if i.kind == "caller_frame")
        assert taken > 0.8 * frames


def test_recorder_sees_every_frame() -> None:
    inputs = [i for i in scripted_call(seed=5, seconds=20) if i.kind == "caller_frame"]
    rec = MemoryRecorder()
    drv = EngineDriver(TurnEngine(), rec)
    outs = drv.feed_columns([i.time for i in inputs], [bool(i.speech) for i in inputs], 20)
    ref = MemoryRecorder()
    ref_drv = EngineDriver(TurnEngine(), ref)
    expect = []
    for i in inputs:
        expect += ref_drv.advance(i.time)
        expect += ref_drv.feed(i)
    assert outs == expect == rec.outs
    assert rec.inputs == ref.inputs and rec.steps == ref.steps


def test_quiet_refuses_what_it_cannot_take() -> None:
    e = TurnEngine()
    assert e.caller_frames_quiet([0.02], [False], 25, 0, 1) == 0  # bad duration: nothing
    assert e.caller_frames_quiet([0.02, 0.04], [False, False], 20, 0, 2) == 2
    assert e.caller_frames_quiet([0.03, 0.06], [False, False], 20, 0, 2) == 0  # overlaps
    assert e.caller_frames_quiet([0.06, math.nan], [False, False], 20, 0, 2) == 1  # NaN stops
    assert e.caller_frames_quiet([0.08], [True], 20, 0, 1) == 0  # speech opens a turn
    assert len(e.drain()) == 3
    with pytest.raises(ClutchCallError):
        e.caller_frame(math.nan, speech=False, duration_ms=20)
