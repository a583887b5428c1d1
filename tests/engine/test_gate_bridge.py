"""gate_bridge_ms: inside a pending barge-in, frames the VAD calls speech but the evidence
policy's noise gate drops (a VAD hangover on a digitally silent line) hold the burst open for
up to that long after its last speech; they count neither as speech nor as silence. Off in
the product (it did not help on the train split, sim/README.md) and in TurnConfig()."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import BargeDismissed, Cancel, TurnConfig, TurnEngine
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.config import PRODUCT_TURN

LOUD = FrameFeatures(level_db=-20.0, rel_db=8.0, snr_db=60.0)  # raised: never backchannel-like
QUIET = FrameFeatures(level_db=-90.0, rel_db=-70.0, snr_db=0.0)  # digital silence


def _run(config: TurnConfig, first: int, hang: int, second: int) -> list:
    """Over the agent: ``first`` loud speech frames, ``hang`` frames the VAD calls speech on a
    digitally silent line, ``second`` loud speech frames; return the outputs."""
    e = TurnEngine(config)
    t = 0.0
    out: list = []

    def frames(n: int, speech: bool, f: FrameFeatures) -> None:
        nonlocal t
        for _ in range(n):
            t = round(t + 0.02, 9)
            e.caller_frame(t, speech=speech, duration_ms=20, features=f)
            out.extend(e.drain())

    frames(5, False, QUIET)
    e.agent_audio_started(t)
    frames(20, False, QUIET)
    frames(first, True, LOUD)
    frames(hang, True, QUIET)
    frames(second, True, LOUD)
    frames(30, False, QUIET)
    return out


EV = TurnConfig(policy="evidence", barge_confirm_ms=300, evidence_edge_ms=0)


@settings(max_examples=60, deadline=None)
@given(first=st.integers(3, 13), hang=st.integers(5, 15), second=st.integers(3, 13),
       bridge=st.sampled_from([0, 200, 300]))
def test_gated_hangover_joins_the_burst(first: int, hang: int, second: int, bridge: int) -> None:
    out = _run(EV.replace(gate_bridge_ms=bridge), first, hang, second)
    # bridged frames end ``bridge`` after the last speech at most; the usual 100 ms burst gap
    # then runs from the last bridged frame
    joined = bridge > 0 and hang * 20 < bridge + 100
    cancelled = any(isinstance(o, Cancel) for o in out)
    dismissed = sum(isinstance(o, BargeDismissed) for o in out)
    # each part alone is under 300 ms of speech; joined, the speech adds up (gated frames
    # never count as speech)
    assert cancelled is (joined and (first + second) * 20 >= 300)
    if not joined:  # the gap (> 100 ms burst gap) split it: two dismissed bursts
        assert dismissed == 2 and not cancelled


def test_off_by_default_and_in_the_product() -> None:
    assert TurnConfig().gate_bridge_ms == 0 and PRODUCT_TURN.gate_bridge_ms == 0
    out = _run(EV, 10, 8, 10)
    assert not any(isinstance(o, Cancel) for o in out)
