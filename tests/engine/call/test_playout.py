"""The downlink playout (engine/call/playout.py): 1x pacing, started/finished, clear, hooks."""

from __future__ import annotations

import pytest

from clutchcall.engine.call import Playout, PlayoutConfig
from clutchcall.engine.errors import ConfigError

F = 0.02


def kinds(sigs: list) -> list[str]:  # type: ignore[type-arg]
    return [s.kind for s in sigs]


def test_frames_go_out_at_1x_and_audio_finishes_after_the_last_plays() -> None:
    p: Playout[int] = Playout()
    assert p.get_timer() is None and p.poll(0.0) == []
    p.push(1.0, "r1", "i1", range(4))
    p.done("r1")
    assert p.get_timer() == 1.0  # due now
    sigs = p.poll(1.0)
    assert kinds(sigs) == ["started", "response", "frame"] and sigs[2].payload == 0
    assert p.playing and p.get_timer() == pytest.approx(1.02)
    assert p.poll(1.01) == []
    for k in (1, 2, 3):
        got = p.poll(1.0 + k * F)
        assert kinds(got) == ["frame"] and got[0].payload == k
    assert p.get_timer() == pytest.approx(1.08)  # the last frame has played out
    assert kinds(p.poll(1.08)) == ["finished"] and not p.playing
    assert p.sent_ms == {"i1": 80} and p.frames_sent == 4 and p.get_timer() is None


def test_a_late_poll_catches_up_on_the_schedule() -> None:
    p: Playout[int] = Playout()
    p.push(0.0, "r", "i", range(10))
    p.poll(0.0)
    got = p.poll(0.065)  # frames due at 0.02, 0.04 and 0.06: all out now
    assert kinds(got) == ["frame"] * 3
    assert p.get_timer() == pytest.approx(0.08)


def test_a_starved_queue_restarts_the_schedule() -> None:
    p: Playout[int] = Playout()
    p.push(0.0, "r", "i", [0])
    p.poll(0.0)
    assert p.poll(0.02) == []  # nothing queued; not done: still playing (underrun)
    p.push(0.1, "r", "i", [1, 2])
    assert kinds(p.poll(0.1)) == ["frame"]
    assert p.get_timer() == pytest.approx(0.12)  # from now, not from the old schedule


def test_an_underrun_longer_than_the_grace_finishes_the_audio() -> None:
    p: Playout[int] = Playout(PlayoutConfig(underrun_finish_ms=100))
    p.push(0.0, "r", "i", [0])
    p.poll(0.0)
    assert p.get_timer() == pytest.approx(0.12)  # played out at 0.02, + 100 ms grace
    assert p.poll(0.11) == []
    assert kinds(p.poll(0.12)) == ["finished"]


def test_a_response_following_another_is_one_run() -> None:
    p: Playout[int] = Playout()
    p.push(0.0, "r1", "i1", [0])
    p.push(0.0, "r2", "i2", [1])
    assert kinds(p.poll(0.0)) == ["started", "response", "frame"]
    got = p.poll(0.02)
    assert kinds(got) == ["response", "frame"] and got[0].response_id == "r2"
    assert p.playing_item == "i2"


def test_clear_drops_the_queue_and_later_chunks() -> None:
    p: Playout[int] = Playout()
    p.push(0.0, "r", "i", range(10))
    p.poll(0.0)
    p.poll(0.02)
    c = p.clear()
    assert (c.item_id, c.sent_ms, c.was_playing) == ("i", 40, True)
    assert not p.playing and len(p) == 0 and p.get_timer() is None
    assert p.is_dropped("r") and p.push(0.05, "r", "i", [1]) == 0
    assert p.clear().was_playing is False


def test_item_defaults_to_the_one_queued_or_playing() -> None:
    p: Playout[int] = Playout()
    p.push(0.0, "r", "i7", [0])
    p.push(0.0, "r", None, [1])
    p.poll(0.0)
    p.poll(0.02)
    assert p.sent_ms == {"i7": 40}
    assert p.has_audio("r") and not p.has_audio("x")


def test_pause_resume_hold_release_retract() -> None:
    p: Playout[int] = Playout()
    p.push(0.0, "r", "i", range(5))
    p.poll(0.0)
    p.pause()
    assert p.get_timer() is None and p.poll(0.5) == []
    p.resume(0.5)
    assert kinds(p.poll(0.5)) == ["frame"] and p.get_timer() == pytest.approx(0.52)
    # a held (speculative) reply waits, then goes on release or vanishes on retract
    q: Playout[int] = Playout()
    q.hold("s")
    q.push(0.0, "s", "i", [0, 1])
    assert q.poll(0.0) == [] and q.get_timer() is None
    q.release("s")
    assert kinds(q.poll(0.1)) == ["started", "response", "frame"]
    q.hold("t")
    q.push(0.1, "t", "j", [2])
    q.retract("t")
    assert q.is_dropped("t") and [s.payload for s in q.poll(0.12) if s.kind == "frame"] == [1]


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        PlayoutConfig(underrun_finish_ms=5)
