"""Hypothesis properties over random frame sequences and agent timelines (docs/architecture.md §2)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from clutchcall.engine import (
    Append,
    BargeArmed,
    Cancel,
    ClutchCallError,
    Commit,
    InvalidInput,
    State,
    TurnConfig,
    TurnEngine,
    TurnStarted,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

configs = st.builds(
    TurnConfig,
    response_min_speech_ms=st.integers(0, 1500),
    barge_confirm_ms=st.integers(0, 1000),
    end_of_turn_silence_ms=st.integers(250, 1500),
    prime_silence_ms=st.sampled_from([0, 100, 200]),
    burst_gap_ms=st.integers(0, 200),
)
frame_ms = st.sampled_from([10, 20, 30])
# a script: runs of (speech?, frames) and agent toggles at frame indices
runs = st.lists(st.tuples(st.booleans(), st.integers(1, 80)), min_size=1, max_size=30)
toggles = st.lists(st.integers(0, 2400), max_size=12, unique=True).map(sorted)


def drive(config: TurnConfig, fms: int, script: list[tuple[bool, int]], agent_toggles: list[int]):
    """Play a script through an engine; return (outputs, log) where log records, per output,
    whether agent audio was playing, plus timer checks."""
    e = TurnEngine(config)
    outs: list = []
    playing_at: list[bool] = []
    toggles_set = set(agent_toggles)
    playing = False
    t = 0.0
    frames = [sp for sp, n in script for _ in range(n)]

    def take(now: float) -> None:
        nonlocal playing
        got = e.drain()
        outs.extend(got)
        playing_at.extend([playing] * len(got))
        timer = e.get_timer()
        assert timer is None or timer > now, (timer, now)
        if playing and any(isinstance(o, Cancel) for o in got):
            # like a shell: a Cancel clears the caller's playout, so agent audio stops now
            e.agent_audio_finished(now)
            playing = False
            take(now)

    for k, sp in enumerate(frames):
        if k in toggles_set:
            if playing:
                e.agent_audio_finished(t)
                playing = False
            elif e.state not in (State.AGENT, State.BARGE_PENDING):
                e.agent_audio_started(t)
                playing = True
            take(t)
        nxt = round((k + 1) * fms / 1000.0, 9)
        deadline = e.get_timer()
        while deadline is not None and deadline <= nxt - fms / 1000.0:
            e.handle_timer(deadline)
            take(deadline)
            deadline = e.get_timer()
        t = nxt
        e.caller_frame(t, speech=sp, duration_ms=fms)
        take(t)
    # trailing silence long enough to end any turn
    for _ in range(2000 // fms + 2):
        t = round(t + fms / 1000.0, 9)
        e.caller_frame(t, speech=False, duration_ms=fms)
        take(t)
    return outs, playing_at


@SETTINGS
@given(configs, frame_ms, runs, toggles)
def test_commit_needs_min_speech_and_follows_its_appends(config, fms, script, agent_toggles) -> None:
    outs, _ = drive(config, fms, script, agent_toggles)
    committed_turns: set[int] = set()
    current_turn = 0
    last_append_time = -math.inf
    for o in outs:
        if isinstance(o, Append):
            last_append_time = o.time
        if isinstance(o, TurnStarted):
            current_turn = o.turn
        if isinstance(o, Commit):
            # the backchannel filter: never a Commit under response_min_speech_ms
            assert o.speech_ms >= config.response_min_speech_ms
            # at most once per turn
            assert o.turn not in committed_turns
            committed_turns.add(o.turn)
            # every frame of the turn was appended before the commit
            assert last_append_time >= o.last_speech_at
            assert o.turn == current_turn


@SETTINGS
@given(configs, frame_ms, st.integers(1, 200), st.integers(0, 50))
def test_isolated_short_burst_never_commits(config, fms, burst_frames, lead) -> None:
    if burst_frames * fms >= config.response_min_speech_ms:
        burst_frames = max(0, (config.response_min_speech_ms - 1) // fms)
    if burst_frames == 0:
        return
    outs, _ = drive(config, fms, [(False, lead + 1), (True, burst_frames), (False, 5)], [])
    assert not any(isinstance(o, Commit) for o in outs)


@SETTINGS
@given(configs, frame_ms, st.integers(1, 100), st.integers(1, 60))
def test_short_speech_over_agent_never_cancels(config, fms, burst_frames, agent_lead) -> None:
    if burst_frames * fms >= config.barge_confirm_ms:
        burst_frames = (config.barge_confirm_ms - 1) // fms
    if burst_frames <= 0:
        return
    script = [(False, agent_lead), (True, burst_frames), (False, 400)]
    outs, _ = drive(config, fms, script, [0])
    assert not any(isinstance(o, Cancel) for o in outs)


@SETTINGS
@given(configs, frame_ms, st.integers(1, 60))
def test_sustained_speech_cancels_confirm_ms_after_onset(config, fms, agent_lead) -> None:
    confirm_frames = max(1, math.ceil(config.barge_confirm_ms / fms))
    script = [(False, agent_lead), (True, confirm_frames + 20), (False, 5)]
    outs, _ = drive(config, fms, script, [0])
    armed = [o for o in outs if isinstance(o, BargeArmed)]
    cancels = [o for o in outs if isinstance(o, Cancel)]
    assert len(armed) == 1 and len(cancels) == 1
    onset = armed[0].onset
    assert abs(cancels[0].time - (onset + config.barge_confirm_ms / 1000.0)) <= fms / 1000.0 + 1e-9
    assert cancels[0].time >= onset + config.barge_confirm_ms / 1000.0 - 1e-9
    assert cancels[0].agent_played_ms == round((cancels[0].time - 0.0) * 1000)


@SETTINGS
@given(configs, frame_ms, runs, toggles)
def test_no_cancel_without_agent_audio(config, fms, script, agent_toggles) -> None:
    outs, playing_at = drive(config, fms, script, agent_toggles)
    for o, playing in zip(outs, playing_at):
        if isinstance(o, Cancel):
            assert playing


@SETTINGS
@given(configs, frame_ms, runs, toggles)
def test_cancel_needs_confirm_ms_of_speech_over_agent(config, fms, script, agent_toggles) -> None:
    outs, playing_at = drive(config, fms, script, agent_toggles)
    speech_over_agent: list[Append] = []
    onset = math.inf
    for o, playing in zip(outs, playing_at):
        if isinstance(o, BargeArmed):
            onset = o.onset
        if isinstance(o, Append) and o.speech and playing:
            speech_over_agent.append(o)
        if isinstance(o, Cancel):
            over = sum(a.duration_ms for a in speech_over_agent if a.time - a.duration_ms / 1000 >= onset - 1e-9)
            assert over >= config.barge_confirm_ms


@SETTINGS
@given(configs, frame_ms, runs, toggles)
def test_determinism(config, fms, script, agent_toggles) -> None:
    a, _ = drive(config, fms, script, agent_toggles)
    b, _ = drive(config, fms, script, agent_toggles)
    assert a == b
    assert repr(a) == repr(b)


class EngineMachine(RuleBasedStateMachine):
    """Random inputs, including misuse: typed errors leave the state unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.e = TurnEngine()
        self.t = 0.0
        self.appended = 0
        self.playing = False

    def _drain(self) -> None:
        for o in self.e.drain():
            if isinstance(o, Append):
                self.appended += 1
            if isinstance(o, Cancel):
                assert self.playing
                self.playing = False  # the shell clears playout

    @rule(speech=st.booleans(), d=st.sampled_from([10, 20, 30]), gap=st.sampled_from([0, 0, 0, 10, 200]))
    def frame(self, speech: bool, d: int, gap: int) -> None:
        self.t = round(self.t + (d + gap) / 1000.0, 9)
        self.e.caller_frame(self.t, speech=speech, duration_ms=d)
        self._drain()

    @rule(back=st.integers(1, 100), speech=st.booleans())
    def frame_backwards(self, back: int, speech: bool) -> None:
        if self.appended == 0:
            return
        before = (self.e.state, self.e.get_timer(), self.e.turn)
        try:
            self.e.caller_frame(self.t - back / 1000.0, speech=speech, duration_ms=20)
        except ClutchCallError:
            pass
        else:
            raise AssertionError("an overlapping frame was accepted")
        assert (self.e.state, self.e.get_timer(), self.e.turn) == before
        assert self.e.drain() == []

    @rule(d=st.integers(-5, 40).filter(lambda x: x not in (10, 20, 30)))
    def bad_duration(self, d: int) -> None:
        before = self.e.state
        try:
            self.e.caller_frame(self.t + 1.0, speech=True, duration_ms=d)
        except InvalidInput:
            pass
        assert self.e.state is before

    @precondition(lambda self: not self.playing)
    @rule()
    def agent_start(self) -> None:
        if self.e.state in (State.AGENT, State.BARGE_PENDING):
            return
        self.e.agent_audio_started(self.t)
        self.playing = True
        self._drain()

    @rule()
    def agent_finish(self) -> None:
        self.e.agent_audio_finished(self.t)
        self.playing = False
        self._drain()

    @rule(dt=st.integers(0, 1000))
    def timer(self, dt: int) -> None:
        deadline = self.e.get_timer()
        if deadline is None:
            return
        self.t = max(self.t, deadline) + dt / 1000.0
        self.e.handle_timer(self.t)
        self._drain()

    @invariant()
    def timer_not_in_past(self) -> None:
        deadline = self.e.get_timer()
        assert deadline is None or deadline > self.t


EngineMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=60, deadline=None)
TestEngineMachine = EngineMachine.TestCase
