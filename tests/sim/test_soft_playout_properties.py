"""Soft barge-in in a simulated call (hypothesis): the call core's playout, driven by the
simulator as production drives it, never loses agent audio to a pause, always closes a duck
or pause, and the recorded engine inputs replay exactly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.engine import TurnConfig
from clutchcall.engine.call import MemoryRecorder, replay
from clutchcall.sim.calls import Call
from clutchcall.sim.config import SimConfig
from clutchcall.sim.world import _World

AGENT = [(1000.0, 4000.0), (6000.0, 9000.0)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bursts=st.lists(st.tuples(st.integers(1000, 8600), st.integers(60, 900)), max_size=4),
       mode=st.sampled_from(["pause", "duck"]), confirm=st.sampled_from([400, 5000]))
def test_yields_close_and_a_pause_loses_no_audio(bursts: list[tuple[int, int]], mode: str,
                                                 confirm: int) -> None:
    caller = sorted((float(a), float(a + d)) for a, d in bursts)
    merged: list[tuple[float, float]] = []
    for a, b in caller:  # non-overlapping caller intervals
        if merged and a <= merged[-1][1] + 40:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    call = Call.from_intervals("p", duration_ms=12000, caller_speech=merged, agent_speech=AGENT)
    turn = TurnConfig(barge_yield=mode, barge_yield_ms=100, barge_confirm_ms=confirm)
    cfg = SimConfig(turn=turn, agent="scripted")
    rec = MemoryRecorder()
    w = _World(call, cfg, rec)
    run = w.simulate()
    kinds = [k for _t, k in run.events if k in ("duck", "pause", "restore", "resume", "cancel")]
    # every duck / pause is closed by its restore / resume or a cancel, and the playout ends
    # neither paused nor ducked
    for y in run.yields:
        assert y["outcome"] in (("restore", "cancel") if mode == "duck" else ("resume", "cancel"))
    assert len(run.yields) == sum(k in ("duck", "pause") for k in kinds)
    assert not w.core.playout.paused and w.core.playout.gain == 1.0
    if "cancel" not in kinds:
        # nothing was cancelled: every agent frame queued was sent (a pause only delays)
        queued = sum(info[0] for info in w.replies.values())
        assert w.core.playout.frames_sent == queued
    assert replay(turn, rec.inputs) == rec.outs
