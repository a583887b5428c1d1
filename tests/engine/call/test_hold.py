"""The media clock and frame hold (engine/call/hold.py), hand-driven clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.call import FrameHold, HoldConfig
from clutchcall.engine.errors import ConfigError

F = 0.02


def drain(h: FrameHold[int], now: float) -> list[tuple[float, int, bool, int]]:
    out = []
    while (d := h.next_due(now)) is not None:
        out.append((d.end, d.duration_ms, d.speech, d.payload))
    return out


def test_frames_placed_on_the_media_clock_by_the_transit_floor() -> None:
    h: FrameHold[int] = FrameHold()
    # frame k (media [k F, (k+1) F]) arrives 30 ms after it ended; frame 2 is 50 ms late
    for k, extra in enumerate([0.0, 0.0, 0.05, 0.0]):
        arrival = (k + 1) * F + 0.03 + extra
        h.push(arrival, [(k, True)], media_end=(k + 1) * F, duration_s=F)
        got = drain(h, arrival)
        # every frame ends at its nominal arrival: media end + the 30 ms floor (+ creep)
        assert [e for e, *_ in got] == pytest.approx([(k + 1) * F + 0.03], abs=1e-4)
        assert [p for *_x, p in got] == [k]
    assert h.lag == pytest.approx(0.0, abs=1e-4)
    assert h.stats.late == 0 and h.stats.frames_fed == 4


def test_late_payload_counted_and_lag_puts_the_engine_behind() -> None:
    h: FrameHold[int] = FrameHold(HoldConfig(late_after_ms=40))
    h.push(0.05, [(0, False)], media_end=0.02, duration_s=F)
    drain(h, 0.05)
    h.push(0.14, [(1, False)], media_end=0.04, duration_s=F)  # 70 ms behind: late
    assert h.stats.late == 1
    assert h.lag == pytest.approx(0.07, abs=1e-4)
    assert h.clock(0.14) == pytest.approx(0.07, abs=1e-4)
    assert drain(h, 0.14)[0][0] == pytest.approx(0.07, abs=1e-4)
    assert h.tick(0.15) == pytest.approx(0.08, abs=1e-4)


def test_frames_laid_end_to_end_are_held_until_due() -> None:
    h: FrameHold[int] = FrameHold()
    # no media time: three speech frames at once are placed at arrival, end to end
    h.push(1.0, [(0, True), (1, True), (2, True)], media_end=None, duration_s=3 * F)
    got = drain(h, 1.0)
    assert [e for e, *_ in got] == pytest.approx([0.96, 0.98, 1.0])
    # a fourth frame right after is held one frame
    h.push(1.0, [(3, True)], media_end=None, duration_s=F)
    assert drain(h, 1.0) == [] and h.get_timer() == pytest.approx(1.02)
    assert len(h) == 1
    assert drain(h, 1.02) == [(pytest.approx(1.02), 20, True, 3)]
    assert h.get_timer() is None


def test_silence_behind_its_nominal_time_is_fed_as_10_ms() -> None:
    h: FrameHold[int] = FrameHold()
    h.push(1.0, [(0, True)], media_end=None, duration_s=F)
    drain(h, 1.0)
    # a silence frame nominally at 1.0 too (a burst): it would be late; it is given as 10 ms
    h.push(1.0, [(1, False)], media_end=None, duration_s=F)
    assert drain(h, 1.01) == [(pytest.approx(1.01), 10, False, 1)]
    assert h.stats.resynced == 1


def test_hold_bound_drops_what_runs_ahead_of_the_media_clock() -> None:
    h: FrameHold[int] = FrameHold(HoldConfig(max_ahead_ms=200))
    assert h.violation is None
    # a sender 10x faster than real time: 30 frames in 60 ms
    dropped = 0
    for k in range(30):
        dropped += h.push(0.002 * k, [(k, True)], media_end=None, duration_s=F)
        drain(h, 0.002 * k)
    assert dropped > 0 and h.stats.dropped_ahead == dropped
    assert len(h) <= 10  # never more than max_ahead_ms of frames held
    assert h.violation == "hold_overflow"
    assert h.stats.frames_in == 30 and h.stats.frames_fed + len(h) + dropped == 30


def test_concealment_capped_per_gap_and_per_second() -> None:
    h: FrameHold[int] = FrameHold(HoldConfig(max_conceal_per_gap=5, max_conceal_per_s=8))
    assert h.admit_conceal(0.0, 0) == 0
    assert h.admit_conceal(0.0, 7) == 5  # per gap
    assert h.stats.conceal_capped == 2 and h.violation is None
    assert h.admit_conceal(0.0, 5) == 3  # 8 per second: 3 left
    assert h.stats.conceal_refused == 2 and h.violation == "conceal_rate"
    assert h.admit_conceal(0.5, 5) == 4  # refilled at 8/s for 0.5 s
    assert h.admit_conceal(10.0, 1) == 1
    assert h.stats.concealed == 13


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        HoldConfig(frame_ms=25)
    with pytest.raises(ConfigError):
        HoldConfig(max_ahead_ms=10)
    with pytest.raises(ConfigError):
        HoldConfig(max_conceal_per_s=-1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.2), st.booleans(), st.booleans()), min_size=1,
                max_size=80))
def test_engine_times_never_go_back_nor_overlap(frames: list[tuple[float, bool, bool]]) -> None:
    """Whatever the arrival jitter, frames reach the engine in order, each ending no earlier
    than the previous end + its own length, and never after the shell's clock."""
    h: FrameHold[int] = FrameHold()
    now = 0.0
    last_end = -1.0
    fed = []
    for k, (extra, speech, media) in enumerate(frames):
        now = max(now, (k + 1) * F + 0.03 + extra)
        h.push(now, [(k, speech)], media_end=(k + 1) * F if media else None, duration_s=F)
        for end, dur, _s, p in drain(h, now):
            assert end >= last_end + dur / 1000 - 1e-9
            assert end <= now - h.lag + 0.0002 + 1e-9
            last_end = end
            fed.append(p)
    t = h.get_timer()
    while t is not None:
        for end, dur, _s, p in drain(h, t):
            assert end >= last_end + dur / 1000 - 1e-9
            last_end = end
            fed.append(p)
        t = h.get_timer()
    assert fed == list(range(len(frames)))
