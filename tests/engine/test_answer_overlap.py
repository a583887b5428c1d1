"""answer_overlap_ms: a short answer that starts over the agent's last syllable (a terminal
overlap) is still an answer; one that starts earlier is speech over the agent (a barge-in
candidate) and, if short, filtered. The seed (TurnConfig()) and answer_overlap_ms = 0 keep
the old rule exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import Commit, TurnConfig, TurnEngine


def _run(config: TurnConfig, lead_frames: int) -> bool:
    """The agent talks 2 s; the caller says a 300 ms "yes" starting ``lead_frames`` frames
    before the agent's end; return whether the turn was committed."""
    e = TurnEngine(config)
    t = 0.0
    out: list = []

    def frames(n: int, speech: bool) -> None:
        nonlocal t
        for _ in range(n):
            t = round(t + 0.02, 9)
            e.caller_frame(t, speech=speech, duration_ms=20)
            out.extend(e.drain())

    frames(5, False)
    e.agent_audio_started(t)
    frames(100 - lead_frames, False)
    frames(lead_frames, True)
    e.agent_audio_finished(t)
    out.extend(e.drain())
    frames(15 - lead_frames, True)
    frames(40, False)
    return any(isinstance(o, Commit) for o in out)


@settings(max_examples=30, deadline=None)
@given(lead=st.integers(1, 14), overlap=st.sampled_from([0, 100, 200, 300]))
def test_terminal_overlap_is_an_answer(lead: int, overlap: int) -> None:
    cfg = TurnConfig(policy="answer_aware", answer_overlap_ms=overlap)
    # the burst starts lead*20 ms before the agent finished: an answer iff within the overlap
    assert _run(cfg, lead) is (lead * 20 <= overlap)


def test_seed_unchanged() -> None:
    assert TurnConfig().answer_overlap_ms == 0
    assert _run(TurnConfig(), 5) is False  # threshold: a 300 ms turn is a backchannel anyway
