"""The call's context on top of the end-of-turn rule (engine/endpoint.py CallContext): a
longer wait for the first pause after a barge-in, and per-caller adaptation once the caller
has resumed a turn after a hold. Never shorter than the rule's choice; off by default."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import TurnConfig, TurnEngine
from clutchcall.engine.endpoint import CallContext, PauseEvidence

FRAME = 0.02


@settings(max_examples=300, deadline=None)
@given(barge=st.integers(0, 5000), held=st.integers(0, 5000), ms=st.integers(1, 5000),
       barged=st.booleans(), pauses=st.integers(0, 5), holds=st.integers(0, 5))
def test_context_only_lengthens_and_only_when_its_evidence_is_there(
        barge: int, held: int, ms: int, barged: bool, pauses: int, holds: int) -> None:
    ctx = CallContext.of(TurnConfig(end_of_turn_barge_ms=barge, end_of_turn_held_ms=held))
    ev = PauseEvidence(turn_speech_ms=2000, burst_ms=2000, answer=False, pauses=pauses,
                       longest_pause_ms=0, barged=barged, holds=holds)
    out = ctx.silence_ms(ev, ms)
    assert out >= ms
    want = ms
    if barged and pauses == 0:
        want = max(want, barge)
    if holds:
        want = max(want, held)
    assert out == want
    assert ctx.active == bool(barge or held)


def _feed(e: TurnEngine, t: float, speech: bool, n: int) -> float:
    for _ in range(n):
        t = round(t + FRAME, 6)
        e.caller_frame(t, speech=speech, duration_ms=20)
        e.handle_timer(t)
    return t


@settings(max_examples=100, deadline=None)
@given(pause_frames=st.integers(10, 40), held=st.integers(600, 2000))
def test_a_caller_who_resumed_after_a_hold_gets_the_longer_wait(pause_frames: int, held: int) -> None:
    cfg = TurnConfig(end_of_turn_held_ms=held, end_of_turn_silence_ms=1000, prime_silence_ms=0)
    e = TurnEngine(cfg)
    t = _feed(e, 0.0, True, 50)  # 1 s of speech
    t = _feed(e, t, False, 1)
    assert e.end_of_turn_ms == 1000  # no hold yet: the rule's wait
    t = _feed(e, t, False, pause_frames - 1)  # a pause of pause_frames frames, then more speech
    t = _feed(e, t, True, 30)
    t = _feed(e, t, False, 1)
    hold = pause_frames * 20 >= CallContext.HOLD_MIN_MS
    assert e.end_of_turn_ms == (max(1000, held) if hold else 1000)
    assert e.get_timer() == pytest.approx(t - FRAME + e.end_of_turn_ms / 1000.0)


def test_off_by_default_and_the_fixed_rule_stays_on_its_fast_path() -> None:
    e = TurnEngine(TurnConfig())
    assert e._ctx is None and e._eot_rule is None
    e2 = TurnEngine(TurnConfig(end_of_turn_barge_ms=800))
    assert e2._ctx is not None and e2._eot_rule is not None


def test_first_pause_after_a_barge_in_waits_longer_later_ones_do_not() -> None:
    cfg = TurnConfig(end_of_turn_barge_ms=800, prime_silence_ms=0, barge_confirm_ms=100,
                     response_min_speech_ms=200)
    e = TurnEngine(cfg)
    t = _feed(e, 0.0, False, 5)
    e.agent_audio_started(t)
    t = _feed(e, t, True, 30)  # a barge-in: confirmed after 100 ms, the turn goes on
    assert e._turn_cancel
    t = _feed(e, t, False, 1)
    assert e.end_of_turn_ms == 800  # the interrupter's first pause
    t = _feed(e, t, False, 15)  # 320 ms: the caller goes on ("no, wait -- I said Tuesday")
    t = _feed(e, t, True, 40)
    t = _feed(e, t, False, 1)
    assert e.end_of_turn_ms == 500  # later pauses: the rule's wait


def test_knobs_are_validated() -> None:
    from clutchcall.engine.errors import ConfigError

    for name in ("end_of_turn_barge_ms", "end_of_turn_held_ms"):
        with pytest.raises(ConfigError):
            TurnConfig(**{name: -1})
        with pytest.raises(ConfigError):
            TurnConfig(**{name: 70_000})
