"""End-to-end pairs on a hand-driven clock: inputs, the actions out and get_timer()."""

from __future__ import annotations

import dataclasses

import pytest

from clutchcall.engine import (
    Append,
    Commit,
    ConfigError,
    FrameOutOfOrder,
    InvalidInput,
    LocalProtocolError,
    Prime,
    State,
    TimeWentBackwards,
    TurnConfig,
    TurnEngine,
)
from clutchcall.engine.actions import OUTPUT_TYPES, append_unchecked
from clutchcall.tools.scenario import run_inputs, scripted_call


def test_timer_alone_ends_a_turn_when_frames_stop() -> None:
    """Frames stop after speech (DTX, a stalled uplink): only the timer ends the turn."""
    e = TurnEngine()
    t = 0.0
    for _ in range(40):
        t = round(t + 0.02, 9)
        e.caller_frame(t, speech=True, duration_ms=20)
    e.drain()
    assert e.get_timer() is None
    e.caller_frame(round(t + 0.02, 9), speech=False, duration_ms=20)
    e.drain()
    assert e.get_timer() == pytest.approx(t + 0.2)
    e.handle_timer(e.get_timer())
    got = e.drain()
    assert [type(o) for o in got] == [Prime]
    assert e.get_timer() == pytest.approx(t + 0.5)
    e.handle_timer(t + 0.5)
    got = e.drain()
    assert isinstance(got[0], Commit) and got[0].last_speech_at == pytest.approx(t)
    assert e.get_timer() is None and e.state is State.AWAITING


def test_late_timer_fires_everything_due_in_order() -> None:
    e = TurnEngine()
    for k in range(1, 41):
        e.caller_frame(k * 0.02, speech=True, duration_ms=20)
    e.caller_frame(0.82, speech=False, duration_ms=20)
    e.drain()
    e.handle_timer(5.0)  # very late: both prime and end of turn are due
    assert [o.kind for o in e.drain()] == ["prime", "commit", "end_of_turn"]


def test_spurious_early_timer_is_harmless() -> None:
    e = TurnEngine()
    for k in range(1, 41):
        e.caller_frame(k * 0.02, speech=True, duration_ms=20)
    e.caller_frame(0.82, speech=False, duration_ms=20)
    e.drain()
    e.handle_timer(0.83)
    assert e.drain() == []
    assert e.get_timer() == pytest.approx(1.0)


def test_gap_in_frames_fires_deadlines_before_the_next_frame() -> None:
    """A speech frame arriving after a long gap: the old turn ends first, then a new one opens."""
    e = TurnEngine()
    for k in range(1, 41):
        e.caller_frame(k * 0.02, speech=True, duration_ms=20)
    e.caller_frame(0.82, speech=False, duration_ms=20)
    e.drain()
    e.caller_frame(3.0, speech=True, duration_ms=20)
    kinds = [o.kind for o in e.drain()]
    assert kinds == ["prime", "commit", "end_of_turn", "append"]
    assert e.state is State.AWAITING_SPEECH


def test_errors_leave_state_unchanged() -> None:
    e = TurnEngine()
    e.caller_frame(1.0, speech=True, duration_ms=20, seq=5)
    e.drain()
    snapshot = (e.state, e.get_timer(), e.turn)
    with pytest.raises(TimeWentBackwards):
        e.caller_frame(0.5, speech=True, duration_ms=20)
    with pytest.raises(TimeWentBackwards):
        e.agent_audio_started(0.5)
    with pytest.raises(TimeWentBackwards):
        e.handle_timer(0.9)
    with pytest.raises(FrameOutOfOrder):
        e.caller_frame(1.01, speech=True, duration_ms=20)  # overlaps [0.98, 1.0]
    with pytest.raises(FrameOutOfOrder):
        e.caller_frame(1.02, speech=True, duration_ms=20, seq=5)  # repeated seq
    with pytest.raises(InvalidInput):
        e.caller_frame(1.02, speech=True, duration_ms=25)
    with pytest.raises(TimeWentBackwards):
        e.caller_frame(float("nan"), speech=True, duration_ms=20)
    assert (e.state, e.get_timer(), e.turn) == snapshot
    assert e.drain() == []
    e.caller_frame(1.02, speech=True, duration_ms=20, seq=6)
    assert [o.kind for o in e.drain()] == ["append"]
    assert issubclass(FrameOutOfOrder, LocalProtocolError)


def test_outputs_are_frozen_slotted_and_validated() -> None:
    a = Append(time=1.0, seq=0, duration_ms=20, speech=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.time = 2.0  # type: ignore[misc]
    assert not hasattr(a, "__dict__")
    with pytest.raises(TypeError):
        Append(1.0, 0, 20, True)  # type: ignore[misc]  # keyword-only
    with pytest.raises(LocalProtocolError):
        Append(time=float("inf"), seq=0, duration_ms=20, speech=True)
    with pytest.raises(LocalProtocolError):
        Append(time=1.0, seq=0, duration_ms=15, speech=True)
    with pytest.raises(LocalProtocolError):
        Commit(time=1.0, turn=1, speech_ms=-1, last_speech_at=0.5)
    assert append_unchecked(1.0, 0, 20, True) == a
    assert set(OUTPUT_TYPES) >= {"append", "prime", "commit", "cancel", "barge_armed"}


@pytest.mark.parametrize(
    "changes",
    [
        {"response_min_speech_ms": -1},
        {"barge_confirm_ms": 1.5},
        {"end_of_turn_silence_ms": 0},
        {"prime_silence_ms": 600},
        {"frame_ms": 25},
        {"vad_aggressiveness": 4},
        {"burst_gap_ms": True},
        {"barge_confirm_ms": 120_000},
    ],
)
def test_config_rejects_invalid_values(changes: dict) -> None:
    with pytest.raises(ConfigError) as info:
        TurnConfig(**changes)
    assert next(iter(changes)) in str(info.value)


def test_config_round_trip_and_unknown_keys() -> None:
    c = TurnConfig(barge_confirm_ms=450)
    assert TurnConfig.from_dict(c.to_dict()) == c
    assert c.replace(barge_confirm_ms=200).barge_confirm_ms == 200
    with pytest.raises(ConfigError, match="bogus"):
        TurnConfig.from_dict({"bogus": 1})


def test_scripted_call_replays_identically() -> None:
    inputs = scripted_call(seed=3, seconds=120)
    a = run_inputs(TurnEngine(), inputs)
    b = run_inputs(TurnEngine(), inputs)
    assert a == b and len(a) > 6000
    kinds = {o.kind for o in a}
    assert {"commit", "prime", "cancel", "barge_dismissed", "backchannel_filtered"} <= kinds
