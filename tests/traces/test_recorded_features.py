"""Recorded traces keep each caller frame's acoustic features (issue 15), bit-exactly, so a
trace of the ``evidence`` policy replays to the same outputs; a malformed features field is a
clear TraceFormatError."""

from __future__ import annotations

import math

import polars as pl
import pytest

from clutchcall.engine import TurnConfig
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call import EngineDriver, EngineInput
from clutchcall.tools.scenario import scripted_call
from clutchcall.traces.errors import TraceFormatError
from clutchcall.traces.recorded import TraceRecorder, read_trace
from clutchcall.traces.replay import first_mismatch


def _with_features(inputs: list[EngineInput]) -> list[EngineInput]:
    out = []
    for k, i in enumerate(inputs):
        if i.kind == "caller_frame":
            f = FrameFeatures(level_db=-20.0 - (k % 7) / 3, rel_db=-(k % 11) * 0.7,
                              snr_db=3.0 + k % 13,
                              agent_edge_ms=math.inf if k % 3 else 123.456)
            i = EngineInput.frame(i.time, speech=bool(i.speech), duration_ms=20, features=f)
        out.append(i)
    return out


def test_features_round_trip_and_replay_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = TurnConfig(policy="evidence", barge_yield="pause", barge_yield_ms=200)
    rec = TraceRecorder(call_id="f1", codec="pcm16", rate=16000, config=cfg)
    driver = EngineDriver(config=cfg, recorder=rec)
    inputs = _with_features(scripted_call(seed=3, seconds=40))
    for inp in inputs:
        driver.advance(inp.time)
        driver.feed(inp)
    path = tmp_path / "f1.parquet"
    rec.write(path)
    trace = read_trace(path)
    frames = [i for i in trace.inputs if i.kind == "caller_frame"]
    assert [i.features for i in frames] == [i.features for i in inputs if i.kind == "caller_frame"]
    assert any(i.features is not None and math.isinf(i.features.agent_edge_ms) for i in frames)
    assert any(o.kind in ("pause", "resume", "cancel") for o in trace.outputs)
    assert first_mismatch(trace) is None
    # a caller frame's fields that are not {"features": {...}} are refused by name
    df = pl.read_parquet(path)
    bad = df.with_columns(pl.when(pl.col("kind") == "caller_frame").then(pl.lit('{"x": 1}'))
                          .otherwise(pl.col("fields")).alias("fields"))
    meta = pl.read_parquet_metadata(str(path))
    bad.write_parquet(str(tmp_path / "bad.parquet"), metadata=meta)
    with pytest.raises(TraceFormatError, match="fields"):
        read_trace(tmp_path / "bad.parquet")
