"""Turn policies: the baseline thresholds and the opt-in answer_aware policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import Commit, ConfigError, TurnConfig, TurnEngine
from clutchcall.engine.policy import AnswerAwarePolicy, ThresholdPolicy, make_policy

AWARE = TurnConfig(policy="answer_aware")


class Call:
    def __init__(self, config: TurnConfig) -> None:
        self.e = TurnEngine(config)
        self.t = 0.0
        self.out: list = []

    def frames(self, n: int, speech: bool) -> None:
        for _ in range(n):
            self.t = round(self.t + 0.02, 9)
            self.e.caller_frame(self.t, speech=speech, duration_ms=20)
            self.out += self.e.drain()

    def agent(self, frames: int) -> None:
        self.e.agent_audio_started(self.t)
        self.out += self.e.drain()
        self.frames(frames, False)
        self.e.agent_audio_finished(self.t)
        self.out += self.e.drain()

    def commits(self) -> list[Commit]:
        return [o for o in self.out if isinstance(o, Commit)]


def test_make_policy_and_validation() -> None:
    assert isinstance(make_policy(TurnConfig()), ThresholdPolicy)
    assert isinstance(make_policy(AWARE), AnswerAwarePolicy)
    assert isinstance(TurnEngine(AWARE).policy, AnswerAwarePolicy)
    with pytest.raises(ConfigError, match="policy"):
        TurnConfig(policy="bogus")
    assert TurnConfig.from_dict(AWARE.to_dict()) == AWARE


@pytest.mark.parametrize(("config", "replied"), [(TurnConfig(), False), (AWARE, True)])
def test_short_answer_after_the_agent(config: TurnConfig, replied: bool) -> None:
    c = Call(config)
    c.frames(5, False)
    c.agent(100)  # the agent asks a question
    c.frames(10, False)  # 200 ms gap
    c.frames(15, True)  # "yes": 300 ms
    c.frames(30, False)
    assert bool(c.commits()) is replied


def test_short_burst_without_agent_is_still_filtered() -> None:
    c = Call(AWARE)
    c.frames(5, False)
    c.frames(15, True)
    c.frames(30, False)
    assert not c.commits()


def test_outside_the_answer_window_is_not_an_answer() -> None:
    c = Call(AWARE)
    c.agent(50)
    c.frames(80, False)  # 1.6 s > 1.5 s window
    c.frames(15, True)
    c.frames(30, False)
    assert not c.commits()


def test_speech_over_the_agent_end_is_not_an_answer() -> None:
    c = Call(AWARE)
    c.e.agent_audio_started(c.t)
    c.frames(50, False)
    c.frames(5, True)  # a backchannel starting over the agent ...
    c.e.agent_audio_finished(c.t)  # ... as the agent finishes
    c.frames(10, True)
    c.frames(30, False)
    assert not c.commits()


def test_only_the_first_turn_after_agent_audio_is_an_answer() -> None:
    c = Call(AWARE)
    c.agent(50)
    c.frames(5, False)
    c.frames(15, True)
    c.frames(30, False)  # answered: commit
    c.frames(5, False)
    c.frames(15, True)  # another short burst, no agent audio in between
    c.frames(30, False)
    assert len(c.commits()) == 1


def test_turn_after_a_cancel_is_not_an_answer() -> None:
    c = Call(AWARE)
    c.e.agent_audio_started(c.t)
    c.frames(20, False)
    c.frames(20, True)  # barge-in confirmed at 300 ms: Cancel
    c.e.agent_audio_finished(c.t)  # playout cleared
    c.frames(30, False)  # 400 ms of speech: filtered
    assert any(o.kind == "cancel" for o in c.out)
    assert not c.commits()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 1500), st.integers(0, 1500), st.lists(st.tuples(st.booleans(), st.integers(1, 60)), max_size=25),
       st.lists(st.integers(0, 600), max_size=6, unique=True).map(sorted))
def test_answer_aware_commits_need_the_lower_minimum(rmin: int, amin: int, script, toggles) -> None:
    config = TurnConfig(policy="answer_aware", response_min_speech_ms=rmin, answer_min_speech_ms=amin)
    e = TurnEngine(config)
    t, playing, k, commits = 0.0, False, 0, []
    for speech, n in script:
        for _ in range(n):
            if k in toggles:
                if playing:
                    e.agent_audio_finished(t)
                    playing = False
                elif e.state.value not in ("agent", "barge_pending"):
                    e.agent_audio_started(t)
                    playing = True
            t = round(t + 0.02, 9)
            e.caller_frame(t, speech=speech, duration_ms=20)
            commits += [o for o in e.drain() if isinstance(o, Commit)]
            k += 1
    for c in commits:
        assert c.speech_ms >= min(rmin, amin)
