"""Property tests: any valid labels and any recorded rows survive write -> read unchanged."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import TurnConfig
from clutchcall.engine.actions import Cancel, Commit, EndOfTurn, Prime
from clutchcall.traces.labels import EXPECTS, KINDS, Labels, Segment, read_labels, write_labels
from clutchcall.traces.recorded import (
    InputEvent,
    RecordedTrace,
    TraceHeader,
    read_trace,
    write_trace,
)

ms = st.one_of(st.integers(0, 10**7), st.floats(0, 1e7, allow_nan=False, allow_infinity=False))


@st.composite
def intervals(draw: st.DrawFn, n_max: int = 6) -> list[tuple[float, float]]:
    cuts = sorted(draw(st.lists(ms, min_size=0, max_size=2 * n_max, unique=True)))
    pairs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    return [(a, b) for a, b in pairs if b > a]


@st.composite
def labels(draw: st.DrawFn) -> Labels:
    agent = draw(intervals())
    segs = [Segment(start_ms=a, end_ms=b, kind=draw(st.sampled_from(KINDS)), expect=draw(st.sampled_from(EXPECTS)))
            for a, b in draw(intervals())]
    return Labels(agent_speech=tuple(agent), segments=tuple(segs))


@settings(max_examples=60, deadline=None)
@given(labels())
def test_any_valid_labels_round_trip(lab: Labels) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.json"
        write_labels(p, lab)
        back = read_labels(p)
        assert back == lab
        assert all(type(a) is type(b) for s, t in zip(back.segments, lab.segments, strict=True)
                   for a, b in ((s.start_ms, t.start_ms), (s.end_ms, t.end_ms)))


times = st.floats(-1e6, 1e9, allow_nan=False, allow_infinity=False)


@st.composite
def rows(draw: st.DrawFn) -> tuple:
    base = sorted(draw(st.lists(times, min_size=1, max_size=30)))
    out: list = []
    for i, t in enumerate(base):
        kind = draw(st.sampled_from(["caller_frame", "agent_audio_started", "agent_audio_finished", "timer"]))
        if kind == "caller_frame":
            out.append(InputEvent(kind=kind, time=t, seq=draw(st.one_of(st.none(), st.integers(0, 2**62))),
                                  duration_ms=draw(st.sampled_from([10, 20, 30])), speech=draw(st.booleans())))
        else:
            out.append(InputEvent(kind=kind, time=t))
        x = draw(times)
        out.append(draw(st.sampled_from([
            Commit(time=t, turn=i, speech_ms=i * 20, last_speech_at=x),
            Prime(time=t, turn=i, speech_ms=i),
            Cancel(time=t, agent_played_ms=i),
            EndOfTurn(time=t, turn=i, speech_ms=0, committed=bool(i % 2), reason="silence"),
        ])))
    return tuple(out)


@settings(max_examples=40, deadline=None)
@given(rows())
def test_any_recorded_rows_round_trip_bit_exactly(rs: tuple) -> None:
    header = TraceHeader(call_id="p", codec="opus", rate=48000, config=TurnConfig(barge_confirm_ms=250),
                         extra={"k": [1, "two"]})
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.parquet"
        write_trace(p, RecordedTrace(header, rs))
        back = read_trace(p)
    assert back.header == header and back.rows == rs
    for a, b in zip(back.rows, rs, strict=True):
        assert math.copysign(1.0, a.time) == math.copysign(1.0, b.time) and a.time.hex() == float(b.time).hex()
