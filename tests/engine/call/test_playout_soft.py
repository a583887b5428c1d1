"""The call core's soft barge-in playout (issue 15), driven by hand: duck / restore gain
ramps on the frames sent, pause / resume of the pacing, and a far end that buffers audio
(Twilio): a reported played position makes a pause take back the unplayed frames and a
Cancel truncate at what was heard."""

from __future__ import annotations

import pytest

from clutchcall.engine.call.playout import Playout, PlayoutConfig
from clutchcall.engine.errors import ConfigError


def _frames(p: Playout[int], now: float) -> list[tuple[int, float, float]]:
    return [(int(s.payload), s.gain_start, s.gain) for s in p.poll(now)  # type: ignore[arg-type]
            if s.kind == "frame"]


def test_duck_ramps_down_over_the_ramp_then_restore_ramps_back() -> None:
    p: Playout[int] = Playout(PlayoutConfig(frame_ms=20))
    p.push(0.0, "r", "i", range(10))
    assert _frames(p, 0.0) == [(0, 1.0, 1.0)]
    p.duck(0.25, 40)  # two frames of ramp
    got = _frames(p, 0.02) + _frames(p, 0.04) + _frames(p, 0.06)
    assert [g for _k, _a, g in got] == pytest.approx([0.625, 0.25, 0.25])
    assert got[0][1] == 1.0 and got[1][1] == pytest.approx(0.625)
    p.restore(20)
    (k, g0, g1), = _frames(p, 0.08)
    assert (k, g0, g1) == (4, 0.25, 1.0)
    with pytest.raises(ConfigError):
        p.duck(1.5, 20)


def test_pause_holds_the_queue_and_resume_plays_on() -> None:
    p: Playout[int] = Playout(PlayoutConfig(frame_ms=20))
    p.push(0.0, "r", "i", range(5))
    p.done("r")
    assert len(_frames(p, 0.0)) == 1
    p.pause()
    assert p.poll(1.0) == [] and p.get_timer() is None and p.playing
    p.resume(1.0)
    assert [k for k, _a, _b in _frames(p, 1.0)] == [1]
    assert [k for k, _a, _b in _frames(p, 1.02)] == [2]


def test_far_end_buffer_is_rewound_on_pause_and_cancel_truncates_at_heard() -> None:
    p: Playout[int] = Playout(PlayoutConfig(frame_ms=20))
    p.push(0.0, "r", "i", range(50))
    p.played(0.0, 0)  # the shell reports played positions from now on
    sent = []
    for k in range(10):
        sent += _frames(p, k * 0.02)
    assert p.frames_sent == 10 and p.sent_ms["i"] == 200
    p.played(0.1, 5)  # at 0.1 s the far end had played 5 frames
    # at 0.14 s it has played ~7 (1x since the confirmation): 3 are still buffered there
    assert p.far_buffered(0.14) == 3
    assert p.heard_ms(0.14, "i") == 140
    p.pause()
    assert p.rewind(0.14) == 3
    assert p.frames_sent == 7 and p.sent_ms["i"] == 140 and len(p) == 43
    p.resume(0.5)
    assert [k for k, _a, _b in _frames(p, 0.5)] == [7]  # the first unplayed frame again
    assert [k for k, _a, _b in _frames(p, 0.52)] == [8]
    # at 0.53 s frame 7 has played (0.50-0.52), frame 8 is still playing at the far end
    cleared = p.clear(0.53)
    assert cleared.sent_ms == 180 and cleared.heard_ms == 160
    assert not p.paused and p.gain == 1.0
    with pytest.raises(ConfigError):
        p.played(0.6, 10_000)
