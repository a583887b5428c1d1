"""The strict interruption score (sim/metrics.py, issue 15 follow-up 3): only a Cancel, or the
agent running out of audio on its own before the grace point, counts as the agent having
yielded to an interruption; a pause or duck that is still open at the grace point (or was
resumed) does not, and the yield latency is the yield the Cancel closed."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from clutchcall.sim.calls import Call, Segment
from clutchcall.sim.config import SimConfig
from clutchcall.sim.metrics import MISSED_BARGE_GRACE_MS, score_call
from clutchcall.sim.world import CallRun

CFG = SimConfig(agent="scripted")
OWD = CFG.net.downlink.one_way_s
START, END = 1000.0, 3000.0  # the interruption (ms, caller clock)
CALL = Call.from_intervals(
    "c", duration_ms=6000, caller_speech=[(START, END)], agent_speech=[(0.0, 5000.0)],
    segments=[Segment(start_ms=START, end_ms=END, kind="interruption", expect="yield")])


def _yield(at_ms: float, end_ms: float, outcome: str) -> dict[str, Any]:
    # decided by the caller frame ending 40 ms before it is heard
    return {"kind": "pause", "seq": int((at_ms - 40.0) // 20) - 1, "audible_caller_s": at_ms / 1000.0,
            "end_caller_s": end_ms / 1000.0, "outcome": outcome}


def _cancel(at_ms: float) -> dict[str, Any]:
    return {"cancel_edge_s": at_ms / 1000.0 - OWD, "cancel_seq": int((at_ms - 40.0) // 20) - 1,
            "agent_played_ms": 0, "agent_stop_caller_s": at_ms / 1000.0}


def _score(yields: list[dict[str, Any]], cancels: list[dict[str, Any]],
           playing_until_ms: float = 5000.0) -> tuple[dict[str, Any], dict[str, Any]]:
    run = CallRun(call=CALL, yields=yields, cancels=cancels,
                  agent_playing=[[0.0, playing_until_ms / 1000.0 - OWD]])
    _turns, segs, row = score_call(run, CFG)
    return segs[0], row


def test_pause_open_at_grace_without_cancel_is_missed() -> None:
    seg, row = _score([_yield(1250.0, math.inf, "")], [])
    assert seg["outcome"] == "missed_barge_in" and row["missed_barge_ins"] == 1
    assert math.isnan(seg["yield_latency_ms"])  # never yielded for good


def test_pause_is_missed_even_if_playout_stops_counting_it() -> None:
    # the playout's "playing" stretch ends inside the pause (a shell that reports a paused
    # agent as finished): the open yield still holds audio at the grace point
    seg, _ = _score([_yield(1250.0, 2600.0, "resume")], [], playing_until_ms=1300.0)
    assert seg["outcome"] == "missed_barge_in"


def test_resumed_pause_then_cancel_counts_the_cancel() -> None:
    seg, row = _score([_yield(1250.0, 1500.0, "resume")], [_cancel(2000.0)])
    assert seg["outcome"] == "ok" and row["missed_barge_ins"] == 0
    assert seg["yield_latency_ms"] == 1000.0  # the cancel, not the resumed pause
    assert row["interruptions_resumed"] == 1


def test_pause_closed_by_cancel_is_the_yield() -> None:
    seg, row = _score([_yield(1250.0, 1900.0, "cancel")], [_cancel(1900.0)])
    assert seg["outcome"] == "ok" and seg["yield_latency_ms"] == 250.0
    assert seg["barge_latency_ms"] == 900.0 and row["interruptions_resumed"] == 0


def test_agent_finishing_on_its_own_is_not_missed() -> None:
    seg, _ = _score([], [], playing_until_ms=START + MISSED_BARGE_GRACE_MS - 100.0)
    assert seg["outcome"] == "ok"


@given(st.floats(START + 60.0, START + 3000.0), st.floats(10.0, 3000.0),
       st.sampled_from(["resume", "restore", ""]))
def test_a_yield_alone_never_catches_an_interruption(at: float, length: float, outcome: str) -> None:
    end = math.inf if outcome == "" else at + length
    seg, _ = _score([_yield(at, end, outcome)], [])
    # the agent holds audio until 5 s: without a Cancel it is missed, wherever the yield falls
    assert seg["outcome"] == "missed_barge_in"
    assert math.isnan(seg["yield_latency_ms"])
