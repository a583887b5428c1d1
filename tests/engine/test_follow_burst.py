"""evidence_follow_ms and evidence_soft_yield_ms (issue 15 follow-up).

* evidence_follow_ms: a burst over the agent that starts within that long of the previous
  burst's last speech (that burst dismissed because it ended) adds its speech to it -- "no, |
  wait" split by the VAD is one utterance. Each burst's level evidence stays its own.
* evidence_soft_yield_ms: when a soft (backchannel-like) burst makes the agent yield.
Both 0 in TurnConfig() (the behaviour before); the product sets evidence_soft_yield_ms only
(evidence_follow_ms joined noise and backchannels into false barge-ins on the test split)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import BargeDismissed, Cancel, TurnConfig, TurnEngine
from clutchcall.engine.actions import Pause
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.config import PRODUCT_TURN
from tests.engine.over_agent import QUIET, run_over_agent

LOUD = FrameFeatures(level_db=-20.0, rel_db=8.0, snr_db=60.0)  # raised: never backchannel-like
SOFT = FrameFeatures(level_db=-34.0, rel_db=-10.0, snr_db=40.0)  # soft: backchannel-like

EV = TurnConfig(policy="evidence", barge_confirm_ms=300, evidence_edge_ms=0,
                barge_yield="pause", barge_yield_ms=100)


def _run(config: TurnConfig, script: list[tuple[int, bool, FrameFeatures | None]]
         ) -> list[tuple[float, object]]:
    """Over the agent (it talks throughout): run ``script``; return [(time, output)]."""
    return run_over_agent(config, script, tail=30)


def _first_cancel(out: list[tuple[float, object]]) -> float | None:
    return next((t for t, o in out if isinstance(o, Cancel)), None)


@settings(max_examples=80, deadline=None)
@given(parts=st.lists(st.tuples(st.integers(1, 30), st.integers(6, 30), st.booleans()),
                      min_size=1, max_size=4),
       follow=st.sampled_from([200, 400, 600]))
def test_following_never_delays_or_loses_a_cancel(parts: list[tuple[int, int, bool]], follow: int) -> None:
    """The carried speech only adds: with the same bursts, the first Cancel comes no later
    with evidence_follow_ms on than off, and whenever it comes with it off."""
    script = []
    for speech, gap, loud in parts:
        script += [(speech, True, LOUD if loud else SOFT), (gap, False, QUIET)]
    off = _first_cancel(_run(EV, script))
    on = _first_cancel(_run(EV.replace(evidence_follow_ms=follow), script))
    if off is not None:
        assert on is not None and on <= off


@settings(max_examples=60, deadline=None)
@given(first=st.integers(10, 40), gap=st.integers(6, 40), second=st.integers(10, 40))
def test_a_soft_utterance_split_by_a_pause_confirms_on_its_total_speech(first: int, gap: int,
                                                                        second: int) -> None:
    """Two soft bursts (each < 1 s of speech, the soft confirm) separated by a silence longer
    than the burst gap: joined iff the silence is within evidence_follow_ms."""
    cfg = EV.replace(evidence_follow_ms=400)
    out = _run(cfg, [(first, True, SOFT), (gap, False, QUIET), (second, True, SOFT)])
    joined = gap * 20 <= 400
    cancelled = _first_cancel(out) is not None
    assert cancelled is ((joined and (first + second) * 20 >= cfg.evidence_soft_confirm_ms)
                         or first * 20 >= 1000 or second * 20 >= 1000)
    if not joined:
        assert sum(isinstance(o, BargeDismissed) for _, o in out) >= 1


def test_the_carry_ends_with_the_agents_turn() -> None:
    """A burst after the agent finished and started again does not continue the old one."""
    cfg = EV.replace(evidence_follow_ms=400)
    e = TurnEngine(cfg)
    t = 0.0

    def frames(n: int, speech: bool, f: FrameFeatures) -> list:
        nonlocal t
        got: list = []
        for _ in range(n):
            t = round(t + 0.02, 9)
            e.caller_frame(t, speech=speech, duration_ms=20, features=f)
            got.extend(e.drain())
        return got

    frames(5, False, QUIET)
    e.agent_audio_started(t)
    frames(5, False, QUIET)
    frames(40, True, SOFT)  # 800 ms soft: dismissed, not confirmed
    frames(6, False, QUIET)
    e.agent_audio_finished(t)
    e.agent_audio_started(t)
    got = frames(40, True, SOFT) + frames(30, False, QUIET)
    assert not any(isinstance(o, Cancel) for o in got)


@settings(max_examples=40, deadline=None)
@given(soft_yield=st.sampled_from([0, 300, 700, 900]), n=st.integers(5, 45))
def test_a_soft_burst_yields_only_after_its_soft_yield_speech(soft_yield: int, n: int) -> None:
    cfg = EV.replace(evidence_soft_yield_ms=soft_yield)
    out = _run(cfg, [(n, True, SOFT)])
    need = max(cfg.barge_yield_ms, soft_yield or cfg.evidence_soft_confirm_ms // 2)
    paused = any(isinstance(o, Pause) for _, o in out)
    assert paused is (n * 20 >= need)


def test_off_in_turnconfig_and_follow_off_in_the_product() -> None:
    assert TurnConfig().evidence_follow_ms == 0 and TurnConfig().evidence_soft_yield_ms == 0
    assert PRODUCT_TURN.evidence_follow_ms == 0 and PRODUCT_TURN.evidence_soft_yield_ms == 700
    # off: the split soft utterance (2 x 600 ms, 200 ms apart) is two dismissed bursts
    script = [(30, True, SOFT), (10, False, QUIET), (30, True, SOFT)]
    assert _first_cancel(_run(EV, script)) is None
    assert _first_cancel(_run(EV.replace(evidence_follow_ms=400), script)) is not None
