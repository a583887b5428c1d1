"""The call core's hold of a speculative reply (engine/call/speculation.py), hand-driven clock:
held until Release, released at max(release, ready), dropped on Retract, and -- over random
calls and model timings -- a retracted reply never reaches the caller and replay stays exact."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.engine import Release, Retract, Speculate, TurnConfig
from clutchcall.engine.call import (
    AgentFrame,
    AgentStarted,
    CallCore,
    MemoryRecorder,
    ReplyWithoutAudio,
    TurnMeasured,
    compare_steps,
    replay_steps,
)

F = 0.02
OWD = 0.03
SPEC = TurnConfig(speculate=True, speculate_silence_ms=120)


class Shell:
    """The drive loop with a hand-driven clock (as tests/engine/call/test_core.py)."""

    def __init__(self, config: TurnConfig = SPEC) -> None:
        self.rec = MemoryRecorder()
        self.core: CallCore[int, str] = CallCore(config, recorder=self.rec)
        self.events: list[Any] = []
        self.now = 0.0
        self.k = 0

    def take(self) -> None:
        self.events += self.core.transmit()

    def advance(self, t: float) -> None:
        d = self.core.get_timer()
        while d is not None and d <= t:
            self.now = max(self.now, d)
            self.core.handle_timer(self.now)
            self.take()
            d = self.core.get_timer()
        self.now = max(self.now, t)

    def frames(self, n: int, speech: bool) -> None:
        for _ in range(n):
            k = self.k
            self.k += 1
            self.advance((k + 1) * F + OWD)
            self.core.caller_audio(self.now, [(k, speech)], media_end=(k + 1) * F, duration_s=F)
            self.take()

    def audio(self, t: float, rid: str, n: int = 10, **kw: Any) -> bool:
        self.advance(t)
        ok = self.core.agent_audio(t, rid, "i" + rid, [rid] * n, first=True, model_ttfa_s=0.2,
                                   received_at=t, **kw)
        self.take()
        self.advance(t)
        return ok

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    def replays(self) -> bool:
        cfg = self.core.turn_config
        return compare_steps(self.rec.inputs, self.rec.steps,
                             replay_steps(cfg, self.rec.inputs)) is None


def test_held_until_release_then_played_at_once_and_measured() -> None:
    sh = Shell()
    sh.frames(10, False)
    sh.frames(50, True)  # speech 0.2 .. 1.2 s media, last frame due at 1.23
    sh.frames(8, False)  # up to media 1.36: speculated at 1.23 + 0.12
    spec = sh.of(Speculate)
    assert len(spec) == 1 and spec[0].time == pytest.approx(1.35, abs=1e-3)
    # the reply is ready at 1.5 (ttfa 150 ms after the request): held, nothing plays
    assert sh.audio(1.5, "r1", speculative=True)
    sh.frames(10, False)  # media 1.56, edge 1.59
    assert sh.of(AgentFrame) == [] and sh.of(AgentStarted) == []
    sh.frames(10, False)  # past the end of turn at 1.73
    rel = sh.of(Release)
    assert len(rel) == 1 and rel[0].time == pytest.approx(1.73, abs=1e-3)
    frames = sh.of(AgentFrame)
    assert frames and frames[0].time == pytest.approx(1.73, abs=1e-3)  # at once, no model wait
    rec = sh.of(TurnMeasured)[0].record
    assert rec.turn_latency_ms == pytest.approx(500, abs=1)
    assert rec.speculative_silence_ms == pytest.approx(120, abs=1)
    assert rec.released_at == pytest.approx(1.73, abs=1e-3)
    assert rec.performed_at == pytest.approx(1.35, abs=1e-3)
    # floor = max(500, 120 + 200): nothing added by the edge
    assert rec.edge_added_ms == pytest.approx(0, abs=1)
    assert rec.downlink_delay_ms == pytest.approx(0, abs=1e-3)
    assert sh.core.speculation.released == 1 and sh.replays()


def test_released_before_ready_plays_when_it_comes() -> None:
    sh = Shell()
    sh.frames(50, True)
    sh.frames(30, False)  # speculated at 1.15, released at 1.53
    assert len(sh.of(Release)) == 1 and sh.of(AgentFrame) == []
    assert sh.audio(1.7, "r1", speculative=True)
    frames = sh.of(AgentFrame)
    assert frames[0].time == pytest.approx(1.7, abs=1e-3)
    rec = sh.of(TurnMeasured)[0].record
    # the model's wait ended last: 120 ms + ttfa 200 ms < 550 ms (the request left at 1.15)
    assert rec.turn_latency_ms == pytest.approx(1700 - 1030, abs=1)
    assert rec.edge_added_ms == pytest.approx(670 - 500, abs=1)


def test_retract_drops_the_held_reply_and_its_late_audio() -> None:
    sh = Shell()
    sh.frames(50, True)
    sh.frames(8, False)  # speculated
    assert sh.audio(1.3, "r1", speculative=True)  # held
    sh.frames(20, True)  # the caller goes on: retracted
    ret = sh.of(Retract)
    assert len(ret) == 1 and ret[0].reason == "speech"
    assert not sh.core.agent_audio(sh.now, "r1", "ir1", ["late"], speculative=True)
    sh.frames(40, False)  # the turn ends again: a second speculation, released
    assert len(sh.of(Speculate)) == 2 and len(sh.of(Release)) == 1
    assert sh.audio(sh.now + 0.01, "r2", speculative=True)
    assert {f.response_id for f in sh.of(AgentFrame)} == {"r2"}
    assert sh.core.speculation.retracted == 1 and sh.replays()


def test_retracted_before_its_audio_came_its_late_audio_is_dropped() -> None:
    sh = Shell()
    sh.frames(50, True)
    sh.frames(8, False)
    sh.frames(5, True)  # retracted, no audio yet
    assert len(sh.of(Retract)) == 1
    assert not sh.core.agent_audio(sh.now, "r1", "ir1", ["late"] * 5, speculative=True)
    sh.core.response_done(sh.now, "r1", speculative=True)
    sh.take()
    sh.advance(sh.now + 1.0)
    assert sh.of(AgentFrame) == [] and sh.of(ReplyWithoutAudio) == []


def test_a_speculative_reply_without_audio_ends_the_wait_at_release() -> None:
    sh = Shell()
    sh.frames(50, True)
    sh.frames(8, False)
    sh.core.response_done(sh.now, "", "failed", speculative=True)  # the model refused
    sh.take()
    assert sh.of(ReplyWithoutAudio) == []  # not yet: the turn is not over
    sh.frames(30, False)
    assert len(sh.of(Release)) == 1
    rwa = sh.of(ReplyWithoutAudio)
    assert len(rwa) == 1 and rwa[0].status == "failed" and sh.core.book.pending is None


def test_off_switch_plays_as_before() -> None:
    sh = Shell(SPEC.replace(speculate=False))
    sh.frames(50, True)
    sh.frames(30, False)
    assert sh.of(Speculate) == [] and sh.core.book.pending is not None
    assert sh.audio(1.8, "r1")
    assert sh.of(AgentFrame)[0].time == pytest.approx(1.8, abs=1e-3)


# ---------------------------------------------------------------- properties
scripts = st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=20)
ttfas = st.lists(st.integers(0, 900), min_size=1, max_size=6)
configs = st.builds(TurnConfig, speculate=st.just(True),
                    speculate_silence_ms=st.integers(20, 500),
                    end_of_turn_silence_ms=st.integers(250, 900),
                    response_min_speech_ms=st.integers(0, 800),
                    end_of_turn_rule=st.sampled_from(["fixed", "adaptive"]),
                    end_of_turn_min_ms=st.integers(100, 250))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, scripts, ttfas)
def test_a_retracted_reply_never_plays_and_replay_is_exact(config: TurnConfig,
                                                            script: list[tuple[bool, int]],
                                                            ttfa_ms: list[int]) -> None:
    """A modelled model answers every Speculate / Commit after a drawn time (speculative audio
    marked so; a retracted reply's audio not yet read is dropped, as the model leg does); the
    core never sends a frame of a retracted reply (held when it was retracted), never sends a
    speculative reply's frame before its Release, and the recorded inputs replay exactly."""
    sh = Shell(config)
    pending: list[tuple[float, str, bool]] = []  # (ready at, response id, speculative)
    retracted: set[str] = set()
    released_at: dict[str, int] = {}
    spec_rid: list[str] = []
    n = 0
    seen = 0

    def model() -> None:
        nonlocal n, seen
        for i, ev in enumerate(sh.events[seen:], start=seen):
            if isinstance(ev, (Speculate, Release, Retract)) or type(ev).__name__ == "Commit":
                if isinstance(ev, Release):
                    released_at[spec_rid[-1]] = i  # its index in the event order
                    continue
                if isinstance(ev, Retract):
                    # as the model leg does: a retracted reply's audio not yet read is dropped
                    retracted.add(spec_rid[-1])
                    pending[:] = [p for p in pending if p[1] != spec_rid[-1]]
                    continue
                n += 1
                rid = f"r{n}"
                ttfa = ttfa_ms[n % len(ttfa_ms)] / 1000.0
                pending.append((sh.now + ttfa, rid, isinstance(ev, Speculate)))
                if isinstance(ev, Speculate):
                    spec_rid.append(rid)
        seen = len(sh.events)

    frames = [sp for sp, k in script for _ in range(k)] + [False] * 60
    for sp in frames:
        sh.frames(1, sp)
        model()
        t = sh.now
        for item in [p for p in pending if p[0] <= t]:
            pending.remove(item)
            _, rid, spec = item
            sh.core.agent_audio(t, rid, "i" + rid, [rid] * 5, first=True, speculative=spec)
            sh.core.response_done(t, rid, speculative=spec)
            sh.take()
            model()
    sh.advance(sh.now + 3.0)
    for i, f in enumerate(sh.events):
        if isinstance(f, AgentFrame):
            assert f.response_id not in retracted
            if f.response_id in spec_rid:  # a speculative reply: only after its Release
                assert i > released_at[f.response_id]
    assert sh.replays()
