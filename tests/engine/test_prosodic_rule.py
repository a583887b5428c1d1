"""The prosodic end-of-turn rule (engine/endpoint.py ProsodicRule, ProsodyTrack): its wait is
always within its bounds, a final fall says "end" and a plateau/rise says "hold", and the
engine arms the pause with the rule's answer."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import TurnConfig, TurnEngine
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.endpoint import (
    FinalProsody,
    PauseEvidence,
    ProsodicRule,
    ProsodyTrack,
    make_end_of_turn_rule,
)
from clutchcall.engine.errors import ConfigError

finals = st.one_of(st.none(), st.builds(
    FinalProsody, slope_st_per_s=st.floats(-1e6, 1e6), rel_f0_st=st.floats(-1e3, 1e3),
    rel_db=st.floats(-1e3, 1e3), drop_st=st.floats(-1e3, 1e3), tail_ms=st.integers(0, 10_000),
    voiced=st.integers(3, 40)))


@settings(max_examples=300, deadline=None)
@given(base=st.integers(1, 3000), lo=st.integers(1, 3000), fin=st.integers(0, 5000),
       hi=st.integers(0, 5000), final=finals, answer=st.booleans(),
       speech=st.integers(0, 10_000), burst=st.integers(0, 10_000))
def test_wait_is_always_within_min_and_max(base: int, lo: int, fin: int, hi: int,
                                           final: FinalProsody | None, answer: bool,
                                           speech: int, burst: int) -> None:
    lo = min(lo, base)
    cfg = TurnConfig(end_of_turn_rule="prosodic", end_of_turn_silence_ms=base, end_of_turn_min_ms=lo,
                     end_of_turn_final_ms=fin, end_of_turn_max_ms=hi, prime_silence_ms=0)
    rule = make_end_of_turn_rule(cfg)
    assert isinstance(rule, ProsodicRule)
    ms = rule.silence_ms(PauseEvidence(turn_speech_ms=speech, burst_ms=burst, answer=answer,
                                       pauses=0, longest_pause_ms=0, final=final))
    assert isinstance(ms, int)
    assert lo <= ms <= max(base, hi)
    if (final is None or speech < 1200) and not (answer and final is not None and speech < 1200):
        assert ms == base  # no prosody, or a short turn that is no voiced answer: the fixed rule


def _voiced(f0: float, rel_db: float = -3.0) -> FrameFeatures:
    return FrameFeatures(level_db=-25.0, rel_db=rel_db, snr_db=30.0, voicing=0.8, f0_hz=f0,
                         rel_f0_st=0.0)


def _final(contour: list[float], rel_db: float = -3.0) -> FinalProsody:
    t = ProsodyTrack()
    for k, f0 in enumerate(contour):
        t.add(0.02 * (k + 1), _voiced(f0, rel_db))
    out = t.final(0.0, 0.02 * len(contour) + 0.1)
    assert out is not None
    return out


def test_final_fall_says_end_and_plateau_says_hold() -> None:
    rule = ProsodicRule(TurnConfig(end_of_turn_rule="prosodic", end_of_turn_final_ms=350))
    flat = [140.0] * 40
    fall = [140.0] * 25 + [140.0 * 2 ** (-k / 36) for k in range(1, 16)]  # -5 st over 300 ms
    rise = [140.0] * 25 + [140.0 * 2 ** (k / 60) for k in range(1, 16)]
    f_fall, f_flat, f_rise = _final(fall, -8.0), _final(flat, 0.0), _final(rise, 0.0)
    assert f_fall.slope_st_per_s < -10.0 and f_fall.drop_st < -2.0
    assert abs(f_flat.slope_st_per_s) < 1e-6 and f_flat.tail_ms == 100
    assert rule.p_end(f_fall) > 0.9 > rule.p_end(f_flat) > rule.p_end(f_rise)
    ev = {"turn_speech_ms": 2000, "burst_ms": 2000, "answer": False, "pauses": 0, "longest_pause_ms": 0}
    assert rule.silence_ms(PauseEvidence(**ev, final=f_fall)) == 350
    assert rule.silence_ms(PauseEvidence(**ev, final=f_rise)) == 1000
    # a short answer to the agent ends after end_of_turn_min_ms unless it ends on continuation
    # prosody ("yes, and ..."); another short turn is outside the model's domain: the fixed
    # silence
    assert rule.silence_ms(PauseEvidence(**{**ev, "answer": True, "turn_speech_ms": 400},
                                         final=f_fall)) == 250
    assert rule.silence_ms(PauseEvidence(**{**ev, "answer": True, "turn_speech_ms": 400},
                                         final=f_rise)) == 500
    assert rule.silence_ms(PauseEvidence(**{**ev, "answer": True, "turn_speech_ms": 400},
                                         final=f_flat)) == 500
    # a level ending (a plateau) is a hold even where the model's P(end) is not low
    assert rule.plateau(f_flat) and not rule.plateau(f_fall) and not rule.plateau(f_rise)
    assert rule.silence_ms(PauseEvidence(**ev, final=f_flat)) == 1000
    assert rule.silence_ms(PauseEvidence(**{**ev, "turn_speech_ms": 400}, final=f_rise)) == 500
    assert rule.silence_ms(PauseEvidence(**{**ev, "turn_speech_ms": 400}, final=f_fall)) == 500
    # an unvoiced burst right after the agent (a knock) is no answer
    assert rule.silence_ms(PauseEvidence(**{**ev, "answer": True, "turn_speech_ms": 160}, final=None)) == 500


def test_too_few_voiced_frames_or_an_octave_jump_are_handled() -> None:
    t = ProsodyTrack()
    t.add(0.02, _voiced(120.0))
    t.add(0.04, FrameFeatures(level_db=-30.0, rel_db=-5.0, snr_db=20.0))  # unvoiced: not kept
    assert t.final(0.0, 0.1) is None
    jump = [140.0] * 30 + [280.0] + [140.0] * 5  # one octave error is dropped
    assert abs(_final(jump).slope_st_per_s) < 1e-6


def test_engine_arms_the_pause_with_the_rules_wait() -> None:
    cfg = TurnConfig(end_of_turn_rule="prosodic", end_of_turn_max_ms=900, prime_silence_ms=0)
    e = TurnEngine(cfg)
    t = 0.0
    for k in range(60):  # 1.2 s of speech ending on a rise: continuation evidence
        t = round(t + 0.02, 6)
        e.caller_frame(t, speech=True, duration_ms=20, features=_voiced(140.0 * 2 ** (k / 120)))
    e.caller_frame(round(t + 0.02, 6), speech=False, duration_ms=20,
                   features=FrameFeatures(level_db=-60.0, rel_db=-30.0, snr_db=0.0))
    assert e.end_of_turn_ms == 900
    assert e.get_timer() == pytest.approx(t + 0.9)


def test_fixed_stays_fixed_and_bad_knobs_are_typed_errors() -> None:
    e = TurnEngine(TurnConfig(end_of_turn_rule="fixed"))
    assert e._prosody is None
    with pytest.raises(ConfigError):
        TurnConfig(end_of_turn_rule="prosodic", end_of_turn_max_ms=70_000)
    with pytest.raises(ConfigError):
        TurnConfig(end_of_turn_rule="prosodic", end_of_turn_final_ms=-1)
    assert not math.isnan(ProsodicRule(TurnConfig()).p_end(_final([150.0] * 10)))


@settings(max_examples=200, deadline=None)
@given(contour=st.lists(st.floats(100.0, 145.0), min_size=3, max_size=40))  # no octave jumps
def test_plateau_means_a_level_ending_of_enough_voiced_frames(contour: list[float]) -> None:
    f = _final(contour)
    kept = [12.0 * math.log2(x / 100.0) for x in contour]
    assert f.range_st >= 0.0
    assert f.range_st <= max(kept) - min(kept) + 1e-9
    if ProsodicRule.plateau(f):
        assert f.voiced >= ProsodyTrack.PLATEAU_FRAMES
        assert f.range_st <= ProsodicRule.PLATEAU_ST and abs(f.drop_st) <= ProsodicRule.PLATEAU_DROP_ST
    # a level contour is a plateau once it has enough voiced frames
    level = _final([contour[0]] * len(contour))
    assert ProsodicRule.plateau(level) == (len(contour) >= ProsodyTrack.PLATEAU_FRAMES)


_EV = {"turn_speech_ms": 2000, "burst_ms": 2000, "answer": False, "pauses": 0, "longest_pause_ms": 0}


@settings(max_examples=300, deadline=None)
@given(base=st.integers(1, 3000), lo=st.integers(1, 3000), fin=st.integers(0, 5000),
       hi=st.integers(0, 5000), neu=st.integers(0, 5000), pct=st.integers(1, 100),
       final=finals, answer=st.booleans(), speech=st.integers(0, 10_000))
def test_asymmetric_wait_stays_within_bounds_and_neutral_zero_is_the_old_rule(
        base: int, lo: int, fin: int, hi: int, neu: int, pct: int, final: FinalProsody | None,
        answer: bool, speech: int) -> None:
    """With the neutral wait and the final tier's threshold as knobs the wait stays within
    [min, max(silence, max)]; neutral 0 means the silence (the rule as it was); a final fall
    confident enough (P(end) >= pct %) gets the final wait, a neutral one the neutral wait."""
    lo = min(lo, base)
    kw = {"end_of_turn_rule": "prosodic", "end_of_turn_silence_ms": base, "end_of_turn_min_ms": lo,
          "end_of_turn_final_ms": fin, "end_of_turn_max_ms": hi, "prime_silence_ms": 0,
          "end_of_turn_final_pct": pct}
    rule = ProsodicRule(TurnConfig(**kw, end_of_turn_neutral_ms=neu))
    old = ProsodicRule(TurnConfig(**kw, end_of_turn_neutral_ms=0))
    same = ProsodicRule(TurnConfig(**kw, end_of_turn_neutral_ms=base))
    ev = PauseEvidence(**{**_EV, "turn_speech_ms": speech, "answer": answer}, final=final)
    ms = rule.silence_ms(ev)
    assert lo <= ms <= max(base, hi)
    assert old.silence_ms(ev) == same.silence_ms(ev)
    if speech >= 1200 and final is not None and not rule.continues(final):
        if rule.p_end(final) >= pct / 100.0:
            assert ms == min(base, max(lo, fin))
        else:
            assert ms == min(max(base, hi), max(lo, neu or base))
    else:  # the neutral wait and the threshold change nothing else
        assert ms == old.silence_ms(ev)


@settings(max_examples=200, deadline=None)
@given(final=finals, a=st.integers(1, 100), b=st.integers(1, 100), neu=st.integers(500, 1000),
       fin=st.integers(250, 500))
def test_a_stricter_final_tier_never_shortens_a_wait(final: FinalProsody | None, a: int, b: int,
                                                      neu: int, fin: int) -> None:
    """Raising ``end_of_turn_final_pct`` moves pauses from the final tier (<= silence) to the
    neutral one (>= silence here): no pause waits less."""
    lo, hi = min(a, b), max(a, b)
    kw = {"end_of_turn_rule": "prosodic", "end_of_turn_final_ms": fin, "end_of_turn_neutral_ms": neu}
    ev = PauseEvidence(**_EV, final=final)
    assert (ProsodicRule(TurnConfig(**kw, end_of_turn_final_pct=lo)).silence_ms(ev)
            <= ProsodicRule(TurnConfig(**kw, end_of_turn_final_pct=hi)).silence_ms(ev))


def test_neutral_and_final_tiers_and_bad_percent() -> None:
    cfg = TurnConfig(end_of_turn_rule="prosodic", end_of_turn_final_ms=350,
                     end_of_turn_neutral_ms=800, end_of_turn_final_pct=70)
    rule = ProsodicRule(cfg)
    fall = _final([140.0] * 25 + [140.0 * 2 ** (-k / 36) for k in range(1, 16)], -8.0)
    gentle = _final([140.0] * 25 + [140.0 * 2 ** (-k / 80) for k in range(1, 16)], 4.0)
    assert rule.p_end(fall) >= 0.7 > rule.p_end(gentle) > ProsodicRule.P_HOLD
    assert not rule.continues(gentle)
    assert rule.silence_ms(PauseEvidence(**_EV, final=fall)) == 350
    assert rule.silence_ms(PauseEvidence(**_EV, final=gentle)) == 800
    assert rule.silence_ms(PauseEvidence(**_EV, final=None)) == 500  # no prosody: the silence
    for bad in (0, 101):
        with pytest.raises(ConfigError):
            TurnConfig(end_of_turn_rule="prosodic", end_of_turn_final_pct=bad)


@settings(max_examples=200, deadline=None)
@given(rule_name=st.sampled_from(["adaptive", "prosodic"]), answer_min=st.integers(0, 1200),
       speech=st.integers(0, 1199), final=finals)
def test_a_turn_too_short_to_answer_is_never_ended_early(rule_name: str, answer_min: int,
                                                         speech: int,
                                                         final: FinalProsody | None) -> None:
    """The short-answer shortcut (``end_of_turn_min_ms``) only ends a turn the policy could
    reply to: one with at least ``answer_min_speech_ms`` of speech. A knock or a click right
    after the agent's question (under it) waits the full silence, so the caller's real "yes"
    that follows joins the same turn instead of finding the answer window spent (corpus v3 and
    v2 test split, call0068: a 180 ms knock ended after 250 ms, then "yes" needed the
    backchannel filter's 600 ms and was missed)."""
    cfg = TurnConfig(end_of_turn_rule=rule_name, answer_min_speech_ms=answer_min, prime_silence_ms=0)
    rule = make_end_of_turn_rule(cfg)
    ms = rule.silence_ms(PauseEvidence(turn_speech_ms=speech, burst_ms=speech, answer=True,
                                       pauses=0, longest_pause_ms=0, final=final))
    if speech < answer_min:
        assert ms == cfg.end_of_turn_silence_ms
    else:
        assert ms >= cfg.end_of_turn_min_ms
