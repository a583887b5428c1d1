"""Test support: burst scripts played over a talking agent, frame by frame.

Shared by the barge-in evidence tests (test_follow_burst.py, test_mid_confirm.py): 5 quiet
frames, the agent starts, 20 quiet frames, the script, then ``tail`` quiet frames. Every
decision these tests look at is taken on a caller frame, so no timer is fired.
"""

from __future__ import annotations

from clutchcall.engine import TurnConfig, TurnEngine
from clutchcall.engine.audio.features import FrameFeatures

QUIET = FrameFeatures(level_db=-90.0, rel_db=-70.0, snr_db=0.0)  # digital silence


def run_over_agent(config: TurnConfig, script: list[tuple[int, bool, FrameFeatures | None]],
                   tail: int = 30) -> list[tuple[float, object]]:
    """Run ``script`` = [(frames, speech, features)] of 20 ms caller frames over the agent
    (it talks throughout); return [(time, output)]."""
    e = TurnEngine(config)
    t = 0.0
    out: list[tuple[float, object]] = []

    def frames(n: int, speech: bool, f: FrameFeatures | None) -> None:
        nonlocal t
        for _ in range(n):
            t = round(t + 0.02, 9)
            e.caller_frame(t, speech=speech, duration_ms=20, features=f)
            out.extend((t, o) for o in e.drain())

    frames(5, False, QUIET)
    e.agent_audio_started(t)
    frames(20, False, QUIET)
    for n, speech, f in script:
        frames(n, speech, f)
    frames(tail, False, QUIET)
    return out
