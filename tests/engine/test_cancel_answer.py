"""cancel_answer_window_ms: after a false barge-in (a short burst cancelled the agent, then
was filtered as a backchannel) the caller's next short turn answers the agent, so the call
does not fall into dead air. Off in TurnConfig() (the seed) and answer_overlap-style knobs
keep their meaning; on in the product config."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine import BackchannelFiltered, Cancel, Commit, TurnConfig, TurnEngine
from clutchcall.engine.config import PRODUCT_TURN


def _run(config: TurnConfig, burst: int, gap: int, answer: int, *, agent_back: bool = False) -> list:
    """The agent talks; the caller makes a ``burst``-frame burst over it (20 ms frames);
    the playout is cleared at once if it cancels; after ``gap`` silent frames from the
    burst's end the caller says an ``answer``-frame "yes". Return every output."""
    e = TurnEngine(config)
    t = 0.0
    out: list = []

    def frames(n: int, speech: bool) -> None:
        nonlocal t
        for _ in range(n):
            t = round(t + 0.02, 9)
            e.caller_frame(t, speech=speech, duration_ms=20)
            got = e.drain()
            out.extend(got)
            if any(isinstance(o, Cancel) for o in got):
                e.agent_audio_finished(t)  # the shell clears the playout
                out.extend(e.drain())
        e.handle_timer(t)
        out.extend(e.drain())

    frames(5, False)
    e.agent_audio_started(t)
    frames(50, False)
    frames(burst, True)
    frames(gap, False)
    if agent_back:  # the agent speaks again before the caller answers
        e.agent_audio_started(t)
        frames(5, False)
        e.agent_audio_finished(t)
        out.extend(e.drain())
        frames(100, False)  # well past the answer window
    frames(answer, True)
    frames(40, False)
    return out


def _answered(out: list) -> bool:
    cancel = next(k for k, o in enumerate(out) if isinstance(o, Cancel))
    return any(isinstance(o, Commit) for o in out[cancel:])


AWARE = TurnConfig(policy="answer_aware", cancel_answer_window_ms=1500)


@settings(max_examples=60, deadline=None)
@given(burst=st.integers(16, 28), gap=st.integers(26, 120), answer=st.integers(11, 28),
       window=st.sampled_from([0, 500, 1000, 1500]))
def test_next_turn_after_a_filtered_cancel_is_an_answer(burst: int, gap: int, answer: int,
                                                       window: int) -> None:
    # a 320-560 ms burst over the agent: cancelled at 300 ms, then filtered (< 600 ms speech)
    out = _run(AWARE.replace(cancel_answer_window_ms=window), burst, gap, answer)
    assert any(isinstance(o, Cancel) for o in out)
    assert any(isinstance(o, BackchannelFiltered) for o in out)
    # a short "yes" (220-560 ms): an answer iff it starts within the window after the burst
    assert _answered(out) is (window > 0 and gap * 20 <= window)


@settings(max_examples=20, deadline=None)
@given(burst=st.integers(16, 28), gap=st.integers(26, 60), answer=st.integers(11, 28))
def test_only_answer_aware_policies_and_the_knob_use_it(burst: int, gap: int, answer: int) -> None:
    # the seed keeps its behaviour: knob off, and the threshold policy ignores answers anyway
    assert TurnConfig().cancel_answer_window_ms == 0
    assert not _answered(_run(TurnConfig(), burst, gap, answer))
    assert not _answered(_run(TurnConfig(cancel_answer_window_ms=1500), burst, gap, answer))
    assert not _answered(_run(AWARE.replace(cancel_answer_window_ms=0), burst, gap, answer))
    assert PRODUCT_TURN.cancel_answer_window_ms > 0


def test_agent_audio_in_between_resets_it() -> None:
    # the agent talked again (and finished) after the filtered turn: the usual window applies
    # to its finish, and a turn 2 s later is no answer
    assert not _answered(_run(AWARE, 20, 30, 15, agent_back=True))


def test_a_committed_cancel_turn_leaves_the_next_turn_alone() -> None:
    # a real interruption (700 ms: committed) is the caller's turn; a later short burst with
    # no agent audio in between is no answer
    out = _run(AWARE, 35, 30, 15)
    commits = [o for o in out if isinstance(o, Commit)]
    assert len(commits) == 1
