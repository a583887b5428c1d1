"""The transition table, row by row, through the engine's public methods.

Each test puts a fresh engine into one state with a short, explicit input sequence on a
hand-driven clock, applies one input and checks the outputs, the next state and the timer.
"""

from __future__ import annotations

import pytest

from clutchcall.engine import (
    TRANSITIONS,
    Append,
    BackchannelFiltered,
    BargeArmed,
    BargeConfirmed,
    BargeDismissed,
    Cancel,
    Commit,
    EndOfTurn,
    Input,
    InvalidInput,
    Prime,
    State,
    TurnConfig,
    TurnEngine,
    TurnStarted,
)

F = 0.02  # 20 ms frames


class Clock:
    """Feeds 20 ms frames back to back and fires the engine's timer like a shell would."""

    def __init__(self, engine: TurnEngine) -> None:
        self.e = engine
        self.t = 0.0
        self.out: list = []

    def frames(self, n: int, speech: bool) -> list:
        got = []
        for _ in range(n):
            self.t = round(self.t + F, 9)
            self.e.caller_frame(self.t, speech=speech, duration_ms=20)
            got += self.e.drain()
        self.out += got
        return got

    def agent_start(self) -> list:
        self.e.agent_audio_started(self.t)
        got = self.e.drain()
        self.out += got
        return got

    def agent_finish(self) -> list:
        self.e.agent_audio_finished(self.t)
        got = self.e.drain()
        self.out += got
        return got


def kinds(outs: list) -> list[str]:
    return [o.kind for o in outs if not isinstance(o, Append)]


def at(state: State) -> Clock:
    """Return a clock whose engine is in ``state`` (built through public inputs only)."""
    c = Clock(TurnEngine(TurnConfig()))
    if state is State.LISTENING:
        c.frames(3, False)
    elif state is State.SPEAKING:
        c.frames(3, False)
        c.frames(40, True)
    elif state is State.PAUSED:
        c.frames(3, False)
        c.frames(40, True)
        c.frames(2, False)
    elif state in (State.AWAITING, State.AWAITING_SPEECH):
        c.frames(3, False)
        c.frames(40, True)
        c.frames(25, False)
        if state is State.AWAITING_SPEECH:
            c.frames(2, True)
    elif state in (State.AGENT, State.BARGE_PENDING):
        c.frames(1, False)
        c.agent_start()
        c.frames(3, False)
        if state is State.BARGE_PENDING:
            c.frames(2, True)
    assert c.e.state is state
    return c


def test_every_state_is_reachable_and_table_covers_frames() -> None:
    for state in State:
        assert (state, Input.SPEECH) in TRANSITIONS
        assert (state, Input.SILENCE) in TRANSITIONS
        assert (state, Input.AGENT_FINISHED) in TRANSITIONS
        at(state)


# --- LISTENING ---------------------------------------------------------------------------
def test_listening_speech_opens_turn() -> None:
    c = at(State.LISTENING)
    got = c.frames(1, True)
    assert isinstance(got[0], Append) and got[0].speech
    assert isinstance(got[1], TurnStarted) and got[1].turn == 1
    assert got[1].onset == pytest.approx(c.t - F)
    assert c.e.state is State.SPEAKING and c.e.get_timer() is None


def test_listening_silence_nothing() -> None:
    c = at(State.LISTENING)
    assert kinds(c.frames(5, False)) == []
    assert c.e.state is State.LISTENING and c.e.get_timer() is None


def test_listening_agent_started_greeting() -> None:
    c = at(State.LISTENING)
    assert c.agent_start() == []
    assert c.e.state is State.AGENT


def test_listening_agent_finished_ignored() -> None:
    c = at(State.LISTENING)
    assert c.agent_finish() == []
    assert c.e.state is State.LISTENING


# --- SPEAKING ----------------------------------------------------------------------------
def test_speaking_silence_pauses_and_arms_timers() -> None:
    c = at(State.SPEAKING)
    last = c.t
    assert kinds(c.frames(1, False)) == []
    assert c.e.state is State.PAUSED
    assert c.e.get_timer() == pytest.approx(last + 0.2)  # prime first


def test_speaking_agent_started_ends_turn_and_arms_barge() -> None:
    c = at(State.SPEAKING)
    got = c.agent_start()
    assert kinds(got) == ["end_of_turn", "barge_armed"]
    assert isinstance(got[0], EndOfTurn) and got[0].reason == "agent_started" and not got[0].committed
    assert isinstance(got[1], BargeArmed) and got[1].onset == c.t
    assert c.e.state is State.BARGE_PENDING
    # the overlap clock starts at agent start: 300 ms of further speech confirms
    got = c.frames(14, True)
    assert "cancel" not in kinds(got)
    got = c.frames(1, True)
    assert kinds(got) == ["barge_confirmed", "cancel", "turn_started"]


def test_speaking_agent_finished_ignored() -> None:
    c = at(State.SPEAKING)
    assert c.agent_finish() == []
    assert c.e.state is State.SPEAKING


# --- PAUSED ------------------------------------------------------------------------------
def test_paused_speech_continues_turn() -> None:
    c = at(State.PAUSED)
    assert kinds(c.frames(1, True)) == []
    assert c.e.state is State.SPEAKING and c.e.get_timer() is None
    assert c.e.turn == 1


def test_paused_prime_then_commit_at_end_of_turn_silence() -> None:
    c = at(State.PAUSED)  # 2 silent frames already
    last_speech = round(c.t - 2 * F, 9)
    got = c.frames(8, False)  # 200 ms after last speech
    assert kinds(got) == ["prime"]
    prime = next(o for o in got if isinstance(o, Prime))
    assert prime.time == pytest.approx(last_speech + 0.2) and prime.speech_ms == 800
    got = c.frames(15, False)  # 500 ms after last speech
    assert kinds(got) == ["commit", "end_of_turn"]
    commit = next(o for o in got if isinstance(o, Commit))
    assert commit.time == pytest.approx(last_speech + 0.5)
    assert commit.last_speech_at == pytest.approx(last_speech)
    assert commit.speech_ms == 800
    assert c.e.state is State.AWAITING and c.e.get_timer() is None


def test_paused_short_turn_is_filtered() -> None:
    c = Clock(TurnEngine())
    c.frames(2, False)
    c.frames(25, True)  # 500 ms < 600
    got = c.frames(30, False)
    assert kinds(got) == ["backchannel_filtered", "end_of_turn"]
    bf = next(o for o in got if isinstance(o, BackchannelFiltered))
    assert bf.speech_ms == 500 and not bf.over_agent
    assert c.e.state is State.LISTENING
    assert "prime" not in kinds(c.out)  # a backchannel is never primed


def test_paused_agent_started_ends_turn_uncommitted() -> None:
    c = at(State.PAUSED)
    got = c.agent_start()
    assert kinds(got) == ["end_of_turn"]
    assert c.e.state is State.AGENT and c.e.get_timer() is None


def test_paused_agent_finished_ignored() -> None:
    c = at(State.PAUSED)
    assert c.agent_finish() == []
    assert c.e.state is State.PAUSED


# --- AWAITING ----------------------------------------------------------------------------
def test_awaiting_agent_started() -> None:
    c = at(State.AWAITING)
    assert c.agent_start() == []
    assert c.e.state is State.AGENT


def test_awaiting_agent_finished_without_audio() -> None:
    c = at(State.AWAITING)
    assert c.agent_finish() == []
    assert c.e.state is State.LISTENING


def test_awaiting_speech_is_held() -> None:
    c = at(State.AWAITING)
    assert kinds(c.frames(1, True)) == []
    assert c.e.state is State.AWAITING_SPEECH


def test_awaiting_silence_nothing() -> None:
    c = at(State.AWAITING)
    assert kinds(c.frames(10, False)) == []
    assert c.e.state is State.AWAITING


# --- AWAITING_SPEECH ---------------------------------------------------------------------
def test_awaiting_speech_short_burst_ends_filtered() -> None:
    c = at(State.AWAITING_SPEECH)
    got = c.frames(5, False)  # burst gap 100 ms
    assert kinds(got) == ["backchannel_filtered"]
    assert c.e.state is State.AWAITING


def test_awaiting_speech_long_burst_ends_silently() -> None:
    c = at(State.AWAITING_SPEECH)
    c.frames(40, True)
    got = c.frames(5, False)
    assert kinds(got) == []
    assert c.e.state is State.AWAITING


def test_awaiting_speech_never_cancels_without_agent_audio() -> None:
    c = at(State.AWAITING_SPEECH)
    assert "cancel" not in kinds(c.frames(100, True))


def test_awaiting_speech_agent_started_arms_barge_from_agent_start() -> None:
    c = at(State.AWAITING_SPEECH)
    got = c.agent_start()
    assert kinds(got) == ["barge_armed"]
    start = c.t
    got = c.frames(15, True)
    cancel = next(o for o in got if isinstance(o, Cancel))
    assert cancel.time == pytest.approx(start + 0.3)
    assert cancel.agent_played_ms == 300


def test_awaiting_speech_agent_finished_opens_turn() -> None:
    c = at(State.AWAITING_SPEECH)
    got = c.agent_finish()
    assert kinds(got) == ["turn_started"]
    assert c.e.state is State.SPEAKING


# --- AGENT -------------------------------------------------------------------------------
def test_agent_speech_arms_barge_at_frame_start() -> None:
    c = at(State.AGENT)
    got = c.frames(1, True)
    assert kinds(got) == ["barge_armed"]
    assert got[1].onset == pytest.approx(c.t - F)
    assert c.e.state is State.BARGE_PENDING


def test_agent_started_twice_is_an_error_and_changes_nothing() -> None:
    for state in (State.AGENT, State.BARGE_PENDING):
        c = at(state)
        with pytest.raises(InvalidInput):
            c.e.agent_audio_started(c.t)
        assert c.e.state is state


def test_agent_finished_returns_to_listening() -> None:
    c = at(State.AGENT)
    assert c.agent_finish() == []
    assert c.e.state is State.LISTENING


def test_agent_silence_nothing() -> None:
    c = at(State.AGENT)
    assert kinds(c.frames(50, False)) == []


# --- BARGE_PENDING -----------------------------------------------------------------------
def test_barge_confirmed_after_confirm_ms_of_speech() -> None:
    c = at(State.AGENT)
    onset = c.t
    got = c.frames(15, True)
    assert kinds(got) == ["barge_armed", "barge_confirmed", "cancel", "turn_started"]
    cancel = next(o for o in got if isinstance(o, Cancel))
    conf = next(o for o in got if isinstance(o, BargeConfirmed))
    assert cancel.time == pytest.approx(onset + 0.3)
    assert conf.speech_ms == 300
    assert cancel.agent_played_ms == 360  # agent started 3 frames before the speech
    assert c.e.state is State.SPEAKING


def test_barge_backchannel_dismissed_agent_keeps_talking() -> None:
    c = at(State.BARGE_PENDING)  # 40 ms of speech so far
    c.frames(8, True)  # 200 ms in all
    got = c.frames(5, False)
    assert kinds(got) == ["barge_dismissed", "backchannel_filtered"]
    d = next(o for o in got if isinstance(o, BargeDismissed))
    assert d.reason == "burst_ended" and d.speech_ms == 200
    assert next(o for o in got if isinstance(o, BackchannelFiltered)).over_agent
    assert c.e.state is State.AGENT


def test_barge_gap_shorter_than_burst_gap_bridges() -> None:
    c = at(State.BARGE_PENDING)  # 40 ms
    c.frames(4, False)  # 80 ms < 100 ms gap
    c.frames(5, True)  # 140 ms
    assert c.e.state is State.BARGE_PENDING
    got = c.frames(8, True)  # 300 ms of speech in all
    assert "cancel" in kinds(got)


def test_barge_agent_finished_first_no_cancel_speech_becomes_turn() -> None:
    c = at(State.BARGE_PENDING)
    got = c.agent_finish()
    assert kinds(got) == ["barge_dismissed", "turn_started"]
    assert got[0].reason == "agent_finished"
    assert c.e.state is State.SPEAKING
    got = c.frames(50, True) + c.frames(30, False)
    assert "cancel" not in kinds(got)
    assert "commit" in kinds(got)


def test_barge_agent_finished_in_gap_pauses() -> None:
    c = at(State.BARGE_PENDING)
    c.frames(2, False)
    c.agent_finish()
    assert c.e.state is State.PAUSED
    got = c.frames(30, False)
    assert kinds(got) == ["backchannel_filtered", "end_of_turn"]


def test_cancel_then_late_agent_finish_ignored() -> None:
    c = at(State.AGENT)
    c.frames(15, True)
    assert c.e.state is State.SPEAKING
    assert c.agent_finish() == []
    assert c.e.state is State.SPEAKING


def test_zero_confirm_cancels_on_first_speech_frame() -> None:
    c = Clock(TurnEngine(TurnConfig(barge_confirm_ms=0)))
    c.frames(1, False)
    c.agent_start()
    got = c.frames(1, True)
    assert kinds(got) == ["barge_armed", "barge_confirmed", "cancel", "turn_started"]


def test_priming_disabled() -> None:
    c = Clock(TurnEngine(TurnConfig(prime_silence_ms=0)))
    c.frames(40, True)
    got = c.frames(30, False)
    assert kinds(got) == ["commit", "end_of_turn"]
