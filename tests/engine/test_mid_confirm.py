"""evidence_mid_confirm_ms: cancel when sure (issue 15 follow-up 3).

A burst over the agent that is neither backchannel-like (soft, or at a phrase end) nor raised
(mean level at least +evidence_edge_db re the caller's) still makes the agent yield after
barge_yield_ms, but is confirmed (Cancel) only after evidence_mid_confirm_ms of speech;
raised bursts keep barge_confirm_ms. 0 in TurnConfig() (= barge_confirm_ms, the behaviour
before); the product sets 600 (with burst_gap_ms 200)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import Cancel, TurnConfig
from clutchcall.engine.actions import Pause, Resume
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.config import PRODUCT_TURN
from tests.engine.over_agent import QUIET, run_over_agent

LOUD = FrameFeatures(level_db=-20.0, rel_db=8.0, snr_db=60.0)  # raised
MID = FrameFeatures(level_db=-29.0, rel_db=-1.0, snr_db=50.0)  # neither soft nor raised
SOFT = FrameFeatures(level_db=-34.0, rel_db=-10.0, snr_db=40.0)  # backchannel-like
KINDS = {"loud": LOUD, "mid": MID, "soft": SOFT}

EV = TurnConfig(policy="evidence", barge_confirm_ms=300, evidence_edge_ms=0, evidence_edge_db=2,
                barge_yield="pause", barge_yield_ms=100)


def _run(config: TurnConfig, script: list[tuple[int, bool, FrameFeatures | None]]
         ) -> list[tuple[float, object]]:
    """Over the agent (it talks throughout): run ``script``; return [(time, output)]."""
    return run_over_agent(config, script, tail=40)


def _first(out: list[tuple[float, object]], kind: type | tuple[type, ...]) -> float | None:
    return next((t for t, o in out if isinstance(o, kind)), None)


BURSTS = st.lists(st.tuples(st.integers(1, 50), st.integers(1, 30), st.sampled_from(sorted(KINDS))),
                  min_size=1, max_size=4)


def _script(parts: list[tuple[int, int, str]]) -> list[tuple[int, bool, FrameFeatures | None]]:
    script: list[tuple[int, bool, FrameFeatures | None]] = []
    for speech, gap, kind in parts:
        script += [(speech, True, KINDS[kind]), (gap, False, QUIET)]
    return script


@settings(max_examples=80, deadline=None)
@given(parts=BURSTS, mid=st.sampled_from([300, 500, 600, 900]))
def test_mid_confirm_only_delays_cancels_never_yields(parts: list[tuple[int, int, str]], mid: int) -> None:
    """The agent's first audible reaction (Pause or Cancel) comes at the same time with the
    knob on as off (where off cancels at once, on pauses); the first Cancel never earlier;
    and a Cancel with it on also comes with it off (the knob spares, never adds)."""
    script = _script(parts)
    off = _run(EV, script)
    on = _run(EV.replace(evidence_mid_confirm_ms=mid), script)
    assert _first(on, (Pause, Cancel)) == _first(off, (Pause, Cancel))
    if _first(off, Pause) is not None:
        assert _first(on, Pause) == _first(off, Pause)
    c_on, c_off = _first(on, Cancel), _first(off, Cancel)
    if c_on is not None:
        assert c_off is not None and c_on >= c_off


@settings(max_examples=60, deadline=None)
@given(frames=st.integers(1, 60), kind=st.sampled_from(sorted(KINDS)))
def test_one_burst_confirms_at_its_tier(frames: int, kind: str) -> None:
    """One burst of ``frames`` speech frames: loud confirms at barge_confirm_ms (300), mid at
    evidence_mid_confirm_ms (600), soft at evidence_soft_confirm_ms (1000); a mid burst that
    ends first is paused then resumed, never cancelled."""
    cfg = EV.replace(evidence_mid_confirm_ms=600)
    out = _run(cfg, [(frames, True, KINDS[kind])])
    need = {"loud": 300, "mid": 600, "soft": 1000}[kind]
    cancel = _first(out, Cancel)
    if frames * 20 >= need:
        assert cancel is not None and round((cancel - 0.5) * 1000) == need  # speech began at 0.5 s
    else:
        assert cancel is None
        if kind == "mid" and frames * 20 >= 100:
            pause, resume = _first(out, Pause), _first(out, Resume)
            assert pause is not None and resume is not None and resume > pause


@settings(max_examples=40, deadline=None)
@given(parts=BURSTS)
def test_without_features_the_knob_changes_nothing(parts: list[tuple[int, int, str]]) -> None:
    """A shell that sends no features: no level is known, every burst counts as raised."""
    script = [(n, speech, None) for n, speech, _f in _script(parts)]
    cfg = EV.replace(evidence_mid_confirm_ms=600)
    assert [(t, repr(o)) for t, o in _run(cfg, script)] == [(t, repr(o)) for t, o in _run(EV, script)]


def test_product_joins_no_wait_and_still_cancels() -> None:
    """The product (mid 600, burst gap 200): "no," (300 ms) | 160 ms | "wait," (320 ms) at a
    normal level is one burst: it cancels once 600 ms of speech are in, and the agent stays
    paused across the gap; the same "no," alone is paused and resumed."""
    cfg = PRODUCT_TURN.replace(evidence_edge_ms=0)
    out = _run(cfg, [(15, True, MID), (8, False, QUIET), (16, True, MID)])
    cancel = _first(out, Cancel)
    assert cancel is not None and _first(out, Resume) is None
    assert round((cancel - 0.5) * 1000) == 300 + 160 + 300  # the 600th ms of speech
    alone = _run(cfg, [(15, True, MID)])
    assert _first(alone, Cancel) is None and _first(alone, Pause) is not None
    assert _first(alone, Resume) is not None
