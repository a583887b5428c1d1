"""Speculative commit: transition rows, and hypothesis properties over random calls.

The driver plays a script of VAD frames against the engine with a model of the shell: a
``Speculate`` asks a modelled model for a reply (ready ``ttfa`` later) whose audio is *held*;
``Release`` plays it (agent audio starts at max(release, ready)); ``Retract`` drops it; a plain
``Commit`` plays its reply when ready. Agent audio is fed back to the engine as a shell would.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.engine import (
    Append,
    Cancel,
    Commit,
    EndOfTurn,
    Prime,
    Release,
    Retract,
    Speculate,
    State,
    TurnConfig,
    TurnEngine,
)
from clutchcall.engine.config import PRE_SPECULATION, PRODUCT_TURN
from clutchcall.engine.errors import ConfigError

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

configs = st.builds(
    TurnConfig,
    response_min_speech_ms=st.integers(0, 1200),
    barge_confirm_ms=st.integers(0, 800),
    end_of_turn_silence_ms=st.integers(250, 1200),
    prime_silence_ms=st.sampled_from([0, 100, 200]),
    burst_gap_ms=st.integers(0, 200),
    speculate=st.just(True),
    speculate_silence_ms=st.integers(20, 600),
    speculate_budget_ms=st.sampled_from([0, 500, 3000, 60_000]),
    end_of_turn_rule=st.sampled_from(["fixed", "adaptive"]),
    end_of_turn_min_ms=st.integers(100, 250),
)
frame_ms = st.sampled_from([10, 20, 30])
runs = st.lists(st.tuples(st.booleans(), st.integers(1, 60)), min_size=1, max_size=30)
ttfas = st.lists(st.integers(0, 800), min_size=1, max_size=8)


def drive(config: TurnConfig, fms: int, script: list[tuple[bool, int]], ttfa_ms: list[int],
          reply_ms: int = 400, play: bool = True) -> tuple[list, list[tuple[float, str, object]]]:
    """Return (outputs, shell log). The log has ("play", start, source) per agent audio start,
    where source is the Speculate/Commit output whose reply played. ``play=False``: replies
    never play (the engine's inputs are then the same with speculation on or off)."""
    e = TurnEngine(config)
    outs: list = []
    log: list[tuple[float, str, object]] = []
    pending: dict[str, object] = {}  # "held": speculate out, "ready_at": float, ...
    playing_until: list[float] = []
    k_ttfa = [0]

    def ttfa() -> float:
        v = ttfa_ms[k_ttfa[0] % len(ttfa_ms)] / 1000.0
        k_ttfa[0] += 1
        return v

    def take(now: float) -> None:
        got = e.drain()
        outs.extend(got)
        for o in got:
            if isinstance(o, Speculate):
                assert "source" not in pending
                pending.update(source=o, ready=now + ttfa(), released=False)
            elif isinstance(o, Release):
                assert pending.get("source") is not None
                pending["released"] = True
            elif isinstance(o, Retract):
                pending.clear()
            elif isinstance(o, Commit):
                pending.update(source=o, ready=now + ttfa(), released=True)
            elif isinstance(o, Cancel) and playing_until:
                playing_until.clear()
                e.agent_audio_finished(now)
                take(now)

    def step_shell(now: float) -> None:
        # agent audio ends, or a released / committed reply becomes playable
        if playing_until and playing_until[0] <= now:
            playing_until.clear()
            e.agent_audio_finished(now)
            take(now)
        if play and pending.get("released") and not playing_until and pending["ready"] <= now:  # type: ignore[operator]
            src = pending["source"]
            pending.clear()
            if e.state in (State.AGENT, State.BARGE_PENDING):
                return
            log.append((now, "play", src))
            playing_until.append(now + reply_ms / 1000.0)
            e.agent_audio_started(now)
            take(now)

    t = 0.0
    frames = [sp for sp, n in script for _ in range(n)] + [False] * (2500 // fms + 2)
    for k, sp in enumerate(frames):
        nxt = round((k + 1) * fms / 1000.0, 9)
        deadline = e.get_timer()
        while deadline is not None and deadline <= nxt - fms / 1000.0:
            e.handle_timer(deadline)
            take(deadline)
            step_shell(deadline)
            deadline = e.get_timer()
        t = nxt
        step_shell(round(t - fms / 1000.0, 9))
        e.caller_frame(t, speech=sp, duration_ms=fms)
        take(t)
        step_shell(t)
    return outs, log


def _strip(outs: list) -> list:
    """The speculative run as the off switch would have decided it: no Speculate / Retract,
    Release back to Commit, Appends and Primes dropped (speculation skips some primes)."""
    res = []
    for o in outs:
        if isinstance(o, (Speculate, Retract, Append, Prime)):
            continue
        if isinstance(o, Release):
            o = Commit(time=o.time, turn=o.turn, speech_ms=o.speech_ms, last_speech_at=o.last_speech_at)
        res.append(o)
    return res


@SETTINGS
@given(configs, frame_ms, runs, ttfas)
def test_speculation_lifecycle(config, fms, script, ttfa_ms) -> None:
    outs, log = drive(config, fms, script, ttfa_ms)
    in_flight: Speculate | None = None
    retracted: set[int] = set()  # id() of retracted Speculate outputs
    wasted = 0
    for o in outs:
        if isinstance(o, Speculate):
            assert in_flight is None, "at most one speculation in flight"
            assert o.speech_ms >= config.response_min_speech_ms or config.policy != "threshold"
            in_flight = o
        elif isinstance(o, Release):
            # every release is preceded by its speculate (same turn, not retracted)
            assert in_flight is not None and in_flight.turn == o.turn
            assert o.time - in_flight.time >= -1e-9
            in_flight = None
        elif isinstance(o, Retract):
            assert in_flight is not None and in_flight.turn == o.turn
            retracted.add(id(in_flight))
            wasted += o.held_ms
            in_flight = None
        elif isinstance(o, (Commit, Cancel)):
            assert in_flight is None
    assert in_flight is None, "every speculation is resolved"
    # a retracted speculation never plays audio
    for _t, _kind, src in log:
        assert id(src) not in retracted
    # the budget: a speculation starts only while wasted time is under it
    spent = 0
    for o in outs:
        if isinstance(o, Speculate):
            assert spent < config.speculate_budget_ms
        elif isinstance(o, Retract):
            spent += o.held_ms


@SETTINGS
@given(configs, frame_ms, runs, ttfas)
def test_speculation_never_changes_when_turns_end(config, fms, script, ttfa_ms) -> None:
    # same inputs (no reply audio, which speculation makes earlier on purpose): same decisions
    on, _ = drive(config, fms, script, ttfa_ms, play=False)
    off, _ = drive(config.replace(speculate=False), fms, script, ttfa_ms, play=False)
    assert _strip(on) == _strip(off)


@SETTINGS
@given(configs, frame_ms, runs, ttfas)
def test_off_switch_emits_no_speculation_and_replay_is_exact(config, fms, script, ttfa_ms) -> None:
    off, _ = drive(config.replace(speculate=False), fms, script, ttfa_ms)
    assert not any(isinstance(o, (Speculate, Release, Retract)) for o in off)
    # replaying the recorded inputs reproduces the actions exactly (speculation on)
    import os
    import tempfile

    from clutchcall.engine.call import EngineDriver
    from clutchcall.traces.recorded import TraceRecorder, read_trace
    from clutchcall.traces.replay import first_mismatch

    rec = TraceRecorder(call_id="t", codec="pcm16", rate=16000, config=config)
    eng = EngineDriver(TurnEngine(config), rec)  # feeds, drains and records every input
    _drive_recorded(eng, fms, script)
    assert first_mismatch(rec.trace()) is None
    with tempfile.TemporaryDirectory() as d:  # and through the Parquet file
        path = os.path.join(d, "t.parquet")
        rec.write(path)
        back = read_trace(path)
    assert back.outputs == rec.trace().outputs and first_mismatch(back) is None


def _drive_recorded(eng, fms: int, script: list[tuple[bool, int]]) -> None:
    t = 0.0
    frames = [sp for sp, n in script for _ in range(n)] + [False] * (1500 // fms + 2)
    for k, sp in enumerate(frames):
        nxt = round((k + 1) * fms / 1000.0, 9)
        deadline = eng.get_timer()
        while deadline is not None and deadline <= nxt - fms / 1000.0:
            eng.handle_timer(deadline)
            deadline = eng.get_timer()
        t = nxt
        eng.caller_frame(t, speech=sp, duration_ms=fms)


# ---------------------------------------------------------------- rows, by hand
F = 0.02


def _frames(e: TurnEngine, t: float, n: int, speech: bool) -> tuple[float, list]:
    got: list = []
    for _ in range(n):
        t = round(t + F, 9)
        d = e.get_timer()
        while d is not None and d <= t - F + 1e-9:
            e.handle_timer(d)
            got += e.drain()
            d = e.get_timer()
        e.caller_frame(t, speech=speech, duration_ms=20)
        got += e.drain()
    return t, got


def test_speculate_then_release_at_end_of_turn() -> None:
    cfg = TurnConfig(speculate=True, speculate_silence_ms=100, prime_silence_ms=200)
    e = TurnEngine(cfg)
    t, _ = _frames(e, 0.0, 40, True)  # 800 ms of speech
    t, got = _frames(e, t, 5, False)  # 100 ms of silence
    spec = [o for o in got if isinstance(o, Speculate)]
    assert len(spec) == 1 and abs(spec[0].time - (0.8 + 0.1)) < 1e-6
    assert e.get_timer() is not None and abs(e.get_timer() - 1.3) < 1e-6  # no prime: speculation covers it
    t, got = _frames(e, t, 25, False)
    kinds = [type(o).__name__ for o in got if not isinstance(o, Append)]
    assert kinds == ["Release", "EndOfTurn"]
    rel = got[[type(o) for o in got].index(Release)]
    assert rel.held_ms == 400 and rel.turn == spec[0].turn and e.state is State.AWAITING


def test_retract_when_the_caller_speaks_again() -> None:
    e = TurnEngine(TurnConfig(speculate=True, speculate_silence_ms=100))
    t, _ = _frames(e, 0.0, 40, True)
    t, got = _frames(e, t, 10, False)  # 200 ms: speculated at 100 ms
    assert sum(isinstance(o, Speculate) for o in got) == 1
    t, got = _frames(e, t, 1, True)
    ret = [o for o in got if isinstance(o, Retract)]
    assert len(ret) == 1 and ret[0].reason == "speech" and ret[0].held_ms == 120
    assert e.speculation_wasted_ms == 120 and e.state is State.SPEAKING
    t, got = _frames(e, t, 40, False)
    assert [type(o).__name__ for o in got if not isinstance(o, Append)] == [
        "Speculate", "Release", "EndOfTurn"]


def test_retract_when_other_agent_audio_starts() -> None:
    e = TurnEngine(TurnConfig(speculate=True, speculate_silence_ms=100))
    t, _ = _frames(e, 0.0, 40, True)
    t, _ = _frames(e, t, 6, False)
    e.agent_audio_started(t)
    got = e.drain()
    assert [type(o).__name__ for o in got] == ["Retract", "EndOfTurn"]
    assert got[0].reason == "agent_started" and isinstance(got[1], EndOfTurn) and not got[1].committed


def test_budget_spent_means_plain_commits() -> None:
    e = TurnEngine(TurnConfig(speculate=True, speculate_silence_ms=100, speculate_budget_ms=100))
    t, _ = _frames(e, 0.0, 40, True)
    t, _ = _frames(e, t, 10, False)
    t, got = _frames(e, t, 20, True)  # retract after 120 ms: budget spent
    assert any(isinstance(o, Retract) for o in got)
    t, got = _frames(e, t, 40, False)
    kinds = [type(o).__name__ for o in got if not isinstance(o, Append)]
    assert "Speculate" not in kinds and "Commit" in kinds


def test_no_speculation_on_a_backchannel_or_past_the_end_of_turn() -> None:
    e = TurnEngine(TurnConfig(speculate=True, speculate_silence_ms=100))
    t, _ = _frames(e, 0.0, 10, True)  # 200 ms: below the 600 ms filter
    t, got = _frames(e, t, 40, False)
    assert not any(isinstance(o, Speculate) for o in got)
    e2 = TurnEngine(TurnConfig(speculate=True, speculate_silence_ms=500))  # = end of turn
    t, _ = _frames(e2, 0.0, 40, True)
    t, got = _frames(e2, t, 40, False)
    assert any(isinstance(o, Commit) for o in got) and not any(isinstance(o, Speculate) for o in got)


def test_config_validation_and_defaults() -> None:
    assert TurnConfig().speculate is False and PRODUCT_TURN.speculate is True
    assert TurnConfig.from_legacy_dict(TurnConfig().replace(speculate=True).to_dict()).speculate
    legacy = {k: v for k, v in PRODUCT_TURN.to_dict().items() if k not in PRE_SPECULATION}
    assert TurnConfig.from_legacy_dict(legacy).speculate is False
    for bad in ({"speculate": 1}, {"speculate_silence_ms": 10}, {"end_of_turn_rule": "magic"},
                {"end_of_turn_rule": "adaptive", "end_of_turn_min_ms": 600}, {"speculate_budget_ms": -1}):
        try:
            TurnConfig(**bad)  # type: ignore[arg-type]
        except ConfigError:
            continue
        raise AssertionError(f"accepted {bad}")
