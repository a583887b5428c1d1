"""Uplink jitter buffer: reordering, late-frame policy, concealment, counters (hand-driven clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.call.jitter import JitterBuffer
from clutchcall.engine.errors import ConfigError, LocalProtocolError


def jb(**kw):  # type: ignore[no-untyped-def]
    return JitterBuffer(frame_ms=20, depth_ms=40, conceal=lambda seq: b"C%d" % seq, **kw)


def test_in_order_released_at_playout_time() -> None:
    b = jb()
    b.push(0.0, 0, b"a")
    assert b.pop(0.0) == [] and b.get_timer() == pytest.approx(0.04)
    out = b.pop(0.04)
    assert [f.seq for f in out] == [0] and out[0].payload == b"a" and not out[0].concealed
    assert b.get_timer() is None


def test_reorders() -> None:
    b = jb()
    b.push(0.0, 0, b"0")
    b.push(0.021, 2, b"2")
    b.push(0.025, 1, b"1")
    out = b.pop(0.1)
    assert [f.seq for f in out] == [0, 1, 2] and b.stats.lost == 0


def test_gap_concealed_only_with_evidence_and_late_frame_dropped() -> None:
    b = jb()
    b.push(0.0, 0, b"0")
    assert [f.seq for f in b.pop(0.04)] == [0]
    # seq 1 missing; nothing later yet: a pause, not a loss
    assert b.pop(0.2) == [] and b.stats.lost == 0
    b.push(0.2, 2, b"2")
    out = b.pop(0.2)
    assert [(f.seq, f.concealed, f.payload) for f in out] == [(1, True, b"C1"), (2, False, b"2")]
    assert b.stats.lost == 1
    b.push(0.21, 1, b"1")  # arrives after its slot was concealed
    assert b.stats.late == 1 and len(b) == 0
    b.push(0.21, 3, b"3")
    b.push(0.21, 3, b"3")
    assert b.stats.duplicates == 1


def test_long_gap_skipped_not_concealed() -> None:
    b = jb(max_conceal=3)
    b.push(0.0, 0, b"0")
    b.pop(0.04)
    b.push(0.5, 20, b"20")
    out = b.pop(0.5)
    assert [f.seq for f in out] == [20]
    assert b.stats.skipped == 19 and b.stats.lost == 19


def test_overflow_releases() -> None:
    b = jb(max_frames=5)
    for i in range(8):
        b.push(0.0, i, b"x")
    out = b.pop(0.0)
    assert len(out) >= 3 and b.stats.overflow >= 1


def test_bad_use() -> None:
    with pytest.raises(ConfigError):
        JitterBuffer(frame_ms=0)
    b = jb()
    b.push(1.0, 0, b"")
    with pytest.raises(LocalProtocolError):
        b.pop(0.5)


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(30))), st.lists(st.floats(0, 0.1), min_size=30, max_size=30),
       st.sets(st.integers(1, 28), max_size=5))
def test_property_order_and_accounting(order, jitter, drop) -> None:  # type: ignore[no-untyped-def]
    """Whatever the arrival order, output is strictly increasing and every seq is accounted for."""
    b = jb()
    events = sorted((0.02 * s + j, s) for s, j in zip(order, jitter) if s not in drop)
    released = []
    for t, s in events:
        b.push(t, s, b"%d" % s)
        released += b.pop(t)
    released += b.pop(events[-1][0] + 10) if events else []
    seqs = [f.seq for f in released]
    assert seqs == sorted(set(seqs))
    real = {f.seq for f in released if not f.concealed}
    assert len(real) + b.stats.late + b.stats.duplicates == b.stats.received - len(b)
    assert b.stats.lost == sum(1 for f in released if f.concealed) + b.stats.skipped
