"""Speculation in the simulator: the reply scoring's definitions on hand-made runs, and a
simulated call where speculation cuts the latency without changing what the engine decides."""

from __future__ import annotations

import math

from clutchcall.engine.config import PRODUCT_TURN
from clutchcall.sim.calls import Call, Segment
from clutchcall.sim.config import SimConfig
from clutchcall.sim.speculation_metrics import score_replies
from clutchcall.sim.world import CallRun, simulate_call


def _turn(end_s: float, heard_s: float) -> dict[str, float]:
    return {"end_of_speech_caller_s": end_s, "first_audio_caller_s": heard_s}


def _call(segments: tuple[Segment, ...]) -> Call:
    # caller speech 1.0-2.0 s, a pause, 2.6-3.5 s (one labelled turn); a backchannel at 6 s
    return Call.from_intervals("c", duration_ms=9000,
                               caller_speech=[(1000, 2000), (2600, 3500), (6000, 6200)],
                               segments=segments)


TURN = Segment(start_ms=1000, end_ms=3500, kind="turn", expect="reply")
BACKCHANNEL = Segment(start_ms=6000, end_ms=6200, kind="backchannel", expect="ignore")


def test_a_reply_released_in_a_mid_turn_pause_is_premature() -> None:
    run = CallRun(call=_call((TURN, BACKCHANNEL)))
    run.turns = [_turn(2.0, 2.5)]  # replied in the pause; the caller goes on at 2.6 s
    counts = score_replies(run)
    assert counts["released_replies"] == 1 and counts["premature_replies"] == 1


def test_a_reply_after_the_turn_is_not_premature_even_if_a_backchannel_follows() -> None:
    run = CallRun(call=_call((TURN, BACKCHANNEL)))
    run.turns = [_turn(3.5, 5.5)]  # the backchannel at 6.0 s is within 1 s, but not pausing
    counts = score_replies(run)
    assert counts["released_replies"] == 1 and counts["premature_replies"] == 0


def test_unheard_replies_and_retracted_speculations_are_not_replies() -> None:
    run = CallRun(call=_call((TURN,)))
    run.turns = [_turn(2.0, math.inf)]  # cancelled before its audio reached the caller
    run.speculation.update(started=2, released=0, retracted=2, wasted_model_s=0.4)
    counts = score_replies(run)
    assert counts["released_replies"] == 0 and counts["premature_replies"] == 0
    assert counts["speculations_retracted"] == 2 and counts["speculation_wasted_model_s"] == 0.4


def test_unlabelled_call_counts_every_new_burst_within_a_second() -> None:
    run = CallRun(call=_call(()))
    run.turns = [_turn(2.0, 2.3)]
    assert score_replies(run)["premature_replies"] == 1
    run.turns = [_turn(3.5, 4.0)]
    assert score_replies(run)["premature_replies"] == 0


def test_speculation_cuts_latency_and_changes_no_decision() -> None:
    seg = Segment(start_ms=1000, end_ms=2400, kind="turn", expect="reply")
    call = Call.from_intervals("s", duration_ms=8000, caller_speech=[(1000, 2400)],
                               agent_speech=[(2700, 4700)], segments=(seg,))
    on = simulate_call(call, SimConfig(turn=PRODUCT_TURN))
    off = simulate_call(call, SimConfig(turn=PRODUCT_TURN.replace(speculate=False)))
    assert [a[1] for a in on.actions] == ["speculate", "release"]
    assert [a[1] for a in off.actions if a[1] != "prime"] == ["commit"]
    assert on.speculation["started"] == on.speculation["released"] == 1
    lat_on = on.turns[0]["first_audio_caller_s"] - on.turns[0]["end_of_speech_caller_s"]
    lat_off = off.turns[0]["first_audio_caller_s"] - off.turns[0]["end_of_speech_caller_s"]
    assert on.turns[0]["speculative"] and not off.turns[0]["speculative"]
    # the model's time to first audio overlapped the end-of-turn silence
    assert lat_on < lat_off - 0.2
