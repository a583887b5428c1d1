"""The call core end to end with a hand-driven clock: inputs, transmit(), get_timer()."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import Append, Cancel, Commit, State, TurnConfig
from clutchcall.engine.call import (
    AgentFinished,
    AgentFrame,
    AgentStarted,
    CallCore,
    HoldConfig,
    MemoryRecorder,
    PlayoutCleared,
    ReplyWithoutAudio,
    TurnMeasured,
    UplinkAudio,
    compare_steps,
    replay_steps,
)
from clutchcall.engine.errors import RemoteProtocolError

F = 0.02
OWD = 0.03


class Shell:
    """A minimal shell: the drive loop (docs/architecture.md §2) with a hand-driven clock."""

    def __init__(self, core: CallCore[int, str]) -> None:
        self.core = core
        self.events: list[Any] = []
        self.now = 0.0

    def advance(self, t: float) -> None:
        """Fire the core's timer at each deadline up to ``t``."""
        d = self.core.get_timer()
        while d is not None and d <= t:
            self.now = max(self.now, d)
            self.core.handle_timer(self.now)
            self.events += self.core.transmit()
            d = self.core.get_timer()
        self.now = max(self.now, t)

    def frame(self, k: int, speech: bool, extra: float = 0.0) -> None:
        t = (k + 1) * F + OWD + extra
        self.advance(t)
        self.core.caller_audio(self.now, [(k, speech)], media_end=(k + 1) * F, duration_s=F)
        self.events += self.core.transmit()

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def call(speech: list[bool], **kw: Any) -> Shell:
    rec = MemoryRecorder()
    sh = Shell(CallCore(TurnConfig(), recorder=rec, **kw))
    sh.rec = rec  # type: ignore[attr-defined]
    for k, s in enumerate(speech):
        sh.frame(k, s)
    return sh


def test_a_turn_commits_and_its_latency_is_measured() -> None:
    sh = call([False] * 10 + [True] * 50 + [False] * 40)  # speech 0.2 .. 1.2 s (media)
    commits = sh.of(Commit)
    assert len(commits) == 1
    # the last speech frame was due at 1.2 + 30 ms; commit after 500 ms of silence
    assert commits[0].last_speech_at == pytest.approx(1.23, abs=1e-3)
    assert commits[0].time == pytest.approx(1.73, abs=1e-3)
    # every frame appended, its audio released with it, in order
    appends = sh.of(Append)
    ups = sh.of(UplinkAudio)
    assert [a.seq for a in appends] == [u.seq for u in ups] == list(range(100))
    assert [u.payload for u in ups] == list(range(100))
    # the reply: first chunk read at 2.1, model ttfa 300 ms
    core = sh.core
    sh.advance(2.1)
    assert core.agent_audio(2.1, "r1", "i1", ["a"] * 10, first=True, model_ttfa_s=0.3,
                            received_at=2.1)
    assert core.transmit() == [] and core.get_timer() == pytest.approx(2.1, abs=1e-9)
    n = len(sh.events)
    sh.advance(2.1)
    assert [type(e) for e in sh.events[n:]] == [AgentStarted, TurnMeasured, AgentFrame]
    rec = sh.of(TurnMeasured)[0].record
    assert rec.turn_latency_ms == pytest.approx(870, abs=1)
    assert rec.edge_added_ms == pytest.approx(870 - 500 - 300, abs=1)
    assert rec.downlink_delay_ms == pytest.approx(0.0, abs=1e-6)
    assert core.turns == [rec]
    core.response_done(2.11, "r1")
    sh.events += core.transmit()
    sh.advance(3.0)
    assert len(sh.of(AgentFrame)) == 10
    fin = sh.of(AgentFinished)
    assert len(fin) == 1 and fin[0].time == pytest.approx(2.3)
    assert core.idle() and core.get_timer() is None
    # the recorded inputs replay exactly
    r = sh.rec  # type: ignore[attr-defined]
    assert compare_steps(r.inputs, r.steps, replay_steps(TurnConfig(), r.inputs)) is None


def test_barge_in_cancels_clears_the_playout_and_drops_the_reply() -> None:
    sh = call([False] * 10 + [True] * 40 + [False] * 40)
    core = sh.core
    t = sh.now
    core.agent_audio(t, "r1", "i1", ["a"] * 200, first=True, model_ttfa_s=0.3)
    core.response_done(t, "r1")  # services the call: the first frame goes out now
    sh.events += core.transmit()
    start = sh.of(AgentStarted)[0].time
    # the caller talks over the agent from 0.5 s into it, for 0.6 s
    k0 = len(sh.of(Append))
    for k in range(k0, k0 + 100):
        media = (k + 1) * F
        speech = start + 0.5 <= media + OWD < start + 1.1
        sh.frame(k, speech)
    cancels = sh.of(Cancel)
    assert len(cancels) == 1
    cleared = sh.of(PlayoutCleared)
    assert len(cleared) == 1 and cleared[0].item_id == "i1" and cleared[0].was_playing
    assert cleared[0].sent_ms == pytest.approx(cancels[0].agent_played_ms, abs=40)
    assert 750 <= cancels[0].agent_played_ms <= 900  # 0.5 s + barge_confirm 300 ms
    fin = sh.of(AgentFinished)
    assert len(fin) == 1 and fin[0].time == cleared[0].time
    sent = len(sh.of(AgentFrame))
    assert sent < 200 and not core.playout.playing
    assert not core.agent_audio(sh.now, "r1", "i1", ["late"])
    sh.advance(sh.now + 1.0)
    assert len(sh.of(AgentFrame)) == sent


def test_a_reply_without_audio_ends_the_wait() -> None:
    sh = call([True] * 40 + [False] * 40)
    core = sh.core
    assert core.book.pending is not None
    core.response_done(sh.now, "r9", "failed")
    out = core.transmit()
    assert [type(e) for e in out][:2] == [ReplyWithoutAudio, AgentFinished]
    assert out[0].status == "failed" and core.book.pending is None
    assert core.engine.state is State.LISTENING


def test_sequence_numbers_gaps_and_going_back() -> None:
    core: CallCore[int, str] = CallCore()
    assert core.caller_seq(None) == 0
    assert core.caller_seq(5) == 0
    assert core.caller_seq(8) == 2
    with pytest.raises(RemoteProtocolError):
        core.caller_seq(8)
    assert core.admit_conceal(0.0, 2) == 2 and core.stats.concealed == 2


def test_violation_is_exposed_for_the_shell() -> None:
    core: CallCore[int, str] = CallCore(hold=HoldConfig(max_ahead_ms=100))
    for k in range(50):  # 50 frames in 50 ms: 20x real time
        core.caller_audio(0.001 * k, [(k, False)], media_end=None, duration_s=F)
    assert core.violation == "hold_overflow"
    assert core.stats.dropped_ahead > 0
    core.close()
    assert core.get_timer() is None
    core.caller_audio(1.0, [(99, True)], media_end=None, duration_s=F)  # ignored
    assert core.stats.frames_in == 50


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 0.15)), min_size=5, max_size=150),
       st.integers(0, 149), st.integers(1, 80))
def test_any_arrival_pattern_replays_exactly(frames: list[tuple[bool, float]], reply_at: int,
                                              reply_len: int) -> None:
    """Jittered arrivals, a reply at some point: the engine never sees time go back (it would
    raise), and the recorded inputs replay to the same outputs."""
    rec = MemoryRecorder()
    sh = Shell(CallCore(TurnConfig(), recorder=rec))
    for k, (speech, extra) in enumerate(frames):
        sh.frame(k, speech, extra)
        if k == reply_at:
            sh.core.agent_audio(sh.now, "r", "i", ["x"] * reply_len, first=True)
            sh.core.response_done(sh.now, "r")
            sh.events += sh.core.transmit()
    sh.advance(sh.now + 5.0)
    times = [i.time for i in rec.inputs]
    assert times == sorted(times)
    assert compare_steps(rec.inputs, rec.steps, replay_steps(TurnConfig(), rec.inputs)) is None
    assert sum(isinstance(e, AgentStarted) for e in sh.events) >= sum(
        isinstance(e, AgentFinished) for e in sh.events) - 1
