"""Recorded traces replayed through the simulator reproduce the engine's actions exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from clutchcall.cli import main
from clutchcall.engine import Commit
from clutchcall.sim.calls import synthetic_call
from clutchcall.sim.config import NetConfig, SimConfig
from clutchcall.sim.replay import load_trace, replay_in_sim
from clutchcall.sim.runner import default_corpus
from clutchcall.sim.world import simulate_call
from clutchcall.traces.recorded import RecordedTrace, TraceRecorder

CORPUS_TRACES = sorted(default_corpus().glob("*.parquet"))


@pytest.mark.skipif(not CORPUS_TRACES, reason="no recorded traces in traces/corpus")
@pytest.mark.parametrize("path", CORPUS_TRACES, ids=lambda p: p.stem)
def test_checked_in_traces_replay_exactly(path: Path) -> None:
    res = replay_in_sim(load_trace(path))
    assert res.mismatch is None and res.inputs > 0


def _recorded(loss: float) -> RecordedTrace:
    cfg = SimConfig(net=NetConfig.symmetric(loss=loss, jitter_ms=3.0), seed=4)
    rec = TraceRecorder(call_id="s", codec="pcm16", rate=16000, config=cfg.turn)
    simulate_call(synthetic_call(9, 60), cfg, rec)
    return rec.trace()


def test_a_simulated_call_recorded_and_replayed_is_exact() -> None:
    res = replay_in_sim(_recorded(0.03))
    assert res.mismatch is None
    assert res.actions.get("commit", 0) > 0 and res.actions.get("cancel", 0) > 0


def test_a_tampered_trace_is_caught() -> None:
    trace = _recorded(0.0)
    rows = list(trace.rows)
    i = next(k for k, r in enumerate(rows) if isinstance(r, Commit))
    rows[i] = dataclasses.replace(rows[i], time=rows[i].time + 0.001)
    res = replay_in_sim(RecordedTrace(trace.header, tuple(rows)))
    assert res.mismatch is not None and "commit" in res.mismatch.lower()


def test_cli_on_the_checked_in_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    if not list(default_corpus().glob("*.json")):
        pytest.skip("no checked-in corpus")
    assert main(["eval", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calls"] >= 1 and data["reply_segments"] > 0
    if CORPUS_TRACES:
        assert main(["sim", "replay", *map(str, CORPUS_TRACES)]) == 0


@pytest.mark.skipif(not CORPUS_TRACES, reason="no recorded traces in traces/corpus")
def test_a_recorded_trace_drives_the_caller_over_a_modelled_network(
        capsys: pytest.CaptureFixture[str]) -> None:
    from clutchcall.sim.calls import call_from_trace

    call = call_from_trace(CORPUS_TRACES[0])
    trace = load_trace(CORPUS_TRACES[0])
    assert len(call.speech) == sum(1 for i in trace.inputs if i.kind == "caller_frame")
    assert main(["sim", "run", str(CORPUS_TRACES[0]), "--transport", "tcp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calls"] == 1 and data["reply_segments"] == 0
