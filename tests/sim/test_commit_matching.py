"""Which labelled segment a commit closed (sim/metrics.py ``_match_commit``): the tight rule,
then the run-on rule (the turn's speech ran on past the segment's end, e.g. over line noise
that passed the VAD and the gate: the caller was answered, late)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clutchcall.sim.calls import Segment, segment_for_commit
from clutchcall.sim.metrics import RUN_ON_MS, _match_commit

SEGS = (Segment(start_ms=1000.0, end_ms=1400.0, kind="short_answer", expect="reply"),
        Segment(start_ms=3000.0, end_ms=4000.0, kind="backchannel", expect="ignore"),
        Segment(start_ms=4800.0, end_ms=6000.0, kind="turn", expect="reply"))


@given(st.floats(0.0, 9000.0))
def test_tight_rule_first(t: float) -> None:
    tight = segment_for_commit(SEGS, t)
    if tight >= 0:
        assert _match_commit(SEGS, t) == tight


def test_run_on_matches_the_segment_it_ran_from() -> None:
    assert segment_for_commit(SEGS, 1900.0) == -1  # 500 ms past the end: tight rule misses
    assert _match_commit(SEGS, 1900.0) == 0
    assert _match_commit(SEGS, 1400.0 + RUN_ON_MS) == 0
    assert _match_commit(SEGS, 1400.0 + RUN_ON_MS + 20) == -1  # too far: unlabelled
    assert _match_commit(SEGS, 500.0) == -1  # before any segment
    # a backchannel's run-on commit woke the model: it is matched too
    assert _match_commit(SEGS, 4600.0) == 1


@given(st.floats(4740.0, 9000.0))
def test_never_reaches_back_past_a_later_segment(t: float) -> None:
    # once the third segment has started, nothing earlier can be matched
    assert _match_commit(SEGS, t) in (2, -1)
