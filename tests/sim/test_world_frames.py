"""The simulator refuses caller frames the engine cannot take, with the engine's typed error."""

from __future__ import annotations

import dataclasses

import pytest

from clutchcall.engine.errors import InvalidInput
from clutchcall.sim.calls import Call, synthetic_call
from clutchcall.sim.config import SimConfig
from clutchcall.sim.world import simulate_call


@pytest.mark.parametrize("frame_ms", [25, 40, -20])
def test_a_call_with_frames_the_vad_does_not_make_is_refused(frame_ms: int) -> None:
    call = dataclasses.replace(synthetic_call(3, 10), frame_ms=frame_ms)
    with pytest.raises(InvalidInput, match="10, 20 or 30"):
        simulate_call(call, SimConfig())


def test_vad_frame_sizes_still_run() -> None:
    for frame_ms in (10, 20, 30):
        call = Call.from_intervals("ok", duration_ms=3000, caller_speech=[(500, 1500)],
                                   frame_ms=frame_ms)
        assert simulate_call(call, SimConfig()).call.name == "ok"


def test_the_frame_size_does_not_change_when_the_turn_ends() -> None:
    # the call core holds and plays at the call's own frame size: 10 and 30 ms frames are not
    # re-timed as the turn config's 20 ms (10 ms frames used to commit a second late)
    commits = {}
    for frame_ms in (10, 20, 30):
        call = Call.from_intervals("t", duration_ms=6000, caller_speech=[(480, 2490)],
                                   frame_ms=frame_ms)
        run = simulate_call(call, SimConfig(agent="reactive"))
        commits[frame_ms] = run.turns[0]["commit_s"] - run.turns[0]["end_of_speech_caller_s"]
    assert max(commits.values()) - min(commits.values()) <= 0.031, commits
