"""Recorded traces (Parquet): exact round trip, replay through the engine, rejection of bad files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl
import pytest

from clutchcall.cli import main
from clutchcall.engine import TurnConfig, TurnEngine
from clutchcall.engine.actions import Cancel, Commit
from clutchcall.engine.call import EngineDriver
from clutchcall.tools.scenario import scripted_call
from clutchcall.traces.errors import TraceFormatError
from clutchcall.traces.recorded import (
    META_KEY,
    InputEvent,
    RecordedTrace,
    TraceRecorder,
    read_header,
    read_trace,
    to_frame,
    write_trace,
)
from clutchcall.traces.replay import first_mismatch, replay


def record(seed: int = 3, seconds: float = 40.0, config: TurnConfig | None = None) -> tuple[RecordedTrace, list]:
    """Drive a real engine through a scripted call with the drive loop (docs/architecture.md §2), recording
    every input and drain; return the trace and every output the engine produced."""
    cfg = config or TurnConfig()
    eng = TurnEngine(cfg)
    rec = TraceRecorder(call_id=f"scripted-{seed}", codec="g711_ulaw", rate=8000, config=cfg,
                        extra={"source": "scripted_call"})
    outs: list = []

    def drain() -> None:
        got = eng.drain()
        rec.outputs(got)
        outs.extend(got)

    playing = False
    # a clock that starts at a time not round in binary, so the float64 round trip is tested
    base = 1000.0 / 3.0
    for i, inp in enumerate(scripted_call(seed, seconds)):
        now = base + inp.time
        deadline = eng.get_timer()
        while deadline is not None and deadline <= now:
            eng.handle_timer(deadline)
            rec.timer(deadline)
            drain()
            deadline = eng.get_timer()
        if inp.kind == "caller_frame":
            assert inp.speech is not None and inp.duration_ms is not None
            eng.caller_frame(now, speech=inp.speech, duration_ms=inp.duration_ms, seq=i)
            rec.caller_frame(now, speech=inp.speech, duration_ms=inp.duration_ms, seq=i)
        elif inp.kind == "agent_audio_started" and not playing:
            eng.agent_audio_started(now)
            rec.agent_audio_started(now)
            playing = True
        elif inp.kind == "agent_audio_finished" and playing:
            eng.agent_audio_finished(now)
            rec.agent_audio_finished(now)
            playing = False
        else:
            continue
        drain()
    return rec.trace(), outs


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RecordedTrace, list]:
    trace, outs = record()
    path = tmp_path_factory.mktemp("trace") / "call.parquet"
    write_trace(path, trace)
    return path, trace, outs


def test_round_trip_is_exact(recorded: tuple[Path, RecordedTrace, list]) -> None:
    path, trace, outs = recorded
    back = read_trace(path)
    assert back.header == trace.header
    assert back.rows == trace.rows  # dataclass equality: every float time bit-exact
    assert back.outputs == outs
    assert all(a.time == b.time for a, b in zip(back.rows, trace.rows, strict=True))
    kinds = {o.kind for o in outs}
    assert {"append", "commit", "prime", "cancel", "backchannel_filtered"} <= kinds
    assert {i.kind for i in back.inputs} == {"caller_frame", "agent_audio_started",
                                             "agent_audio_finished", "timer"}
    meta = pl.read_parquet_metadata(str(path))
    header = json.loads(meta[META_KEY])
    assert header["format"] == "clutchcall.trace" and header["version"] == 1
    assert header["config"] == TurnConfig().to_dict() and header["codec"] == "g711_ulaw"
    assert read_header(path) == trace.header


def test_replay_reproduces_the_recorded_outputs(recorded: tuple[Path, RecordedTrace, list]) -> None:
    path, _, outs = recorded
    trace = read_trace(path)
    assert replay(trace) == outs
    assert first_mismatch(trace) is None


def test_replay_finds_the_first_difference(recorded: tuple[Path, RecordedTrace, list]) -> None:
    _, trace, _ = recorded
    rows = list(trace.rows)
    i = next(k for k, r in enumerate(rows) if isinstance(r, Commit))
    rows[i] = dataclasses.replace(rows[i], time=rows[i].time + 1e-6)
    mm = first_mismatch(RecordedTrace(trace.header, tuple(rows)))
    assert mm is not None and isinstance(mm.recorded, Commit) and isinstance(mm.replayed, Commit)
    assert mm.recorded.time == mm.replayed.time + 1e-6
    # a dropped Cancel: the replay has an output the recording lacks
    j = next(k for k, r in enumerate(rows) if isinstance(r, Cancel))
    dropped = RecordedTrace(trace.header, tuple(trace.rows[:j] + trace.rows[j + 1:]))
    mm = first_mismatch(dropped)
    assert mm is not None and mm.recorded is not None and isinstance(mm.replayed, Cancel)
    # a different config in the header changes the decisions
    other = dataclasses.replace(trace.header, config=TurnConfig(response_min_speech_ms=2000))
    assert first_mismatch(RecordedTrace(other, trace.rows)) is not None


def test_trace_show_prints_header_and_decisions(recorded: tuple[Path, RecordedTrace, list],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, trace, _ = recorded
    assert main(["trace", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "call_id: scripted-3  codec: g711_ulaw @ 8000 Hz" in out
    assert "response_min_speech_ms=600" in out
    assert " commit " in out and "caller_frame" in out and "last_speech_at=" in out
    n_frames = sum(1 for r in trace.rows if isinstance(r, InputEvent) and r.kind == "caller_frame")
    assert f"caller_frame {n_frames}" in out
    assert main(["trace", "show", str(path), "--all", "--limit", "5"]) == 0
    assert capsys.readouterr().out.count(" append ") <= 5


# ------------------------------------------------------------------ rejection of bad files
def _rewrite(src: Path, dst: Path, df: pl.DataFrame | None = None, meta: dict | str | None = "keep") -> Path:
    frame = pl.read_parquet(str(src)) if df is None else df
    if meta == "keep":
        meta = {META_KEY: pl.read_parquet_metadata(str(src))[META_KEY]}
    frame.write_parquet(str(dst), metadata=meta)
    return dst


def _header(src: Path, **changes: object) -> dict:
    h = json.loads(pl.read_parquet_metadata(str(src))[META_KEY])
    h.update(changes)
    return {META_KEY: json.dumps(h)}


def _frame(src: Path) -> pl.DataFrame:
    return pl.read_parquet(str(src))


def _set(df: pl.DataFrame, row: int, col: str, value: object) -> pl.DataFrame:
    values = df[col].to_list()
    values[row] = value
    return df.with_columns(pl.Series(col, values, dtype=df.schema[col]))


def _first(df: pl.DataFrame, kind: str) -> int:
    return df["kind"].to_list().index(kind)


BAD_TRACES = [
    ("no-metadata", lambda s: (None, None), "header", "no 'clutchcall.trace' key"),
    ("header-not-json", lambda s: (None, {META_KEY: "{nope"}), "header", "invalid JSON"),
    ("header-version", lambda s: (None, _header(s, version=9)), "header.version", "unsupported version 9"),
    ("header-format", lambda s: (None, _header(s, format="other")), "header.format", "expected 'clutchcall.trace'"),
    ("header-no-codec", lambda s: (None, {META_KEY: json.dumps({k: v for k, v in json.loads(
        pl.read_parquet_metadata(str(s))[META_KEY]).items() if k != "codec"})}), "header.codec", "missing"),
    ("header-bad-codec", lambda s: (None, _header(s, codec="mp3")), "header.codec", "unknown codec 'mp3'"),
    ("header-bad-rate", lambda s: (None, _header(s, rate=44100)), "header.rate", "44100"),
    ("header-bad-config", lambda s: (None, _header(s, config={"barge_confirm_ms": -1})),
     "header.config", "barge_confirm_ms"),
    ("header-unknown-config", lambda s: (None, _header(s, config={"warp": 1})), "header.config", "warp"),
    ("missing-column", lambda s: (_frame(s).drop("speech"), "keep"), "speech", "column missing"),
    ("wrong-dtype", lambda s: (_frame(s).with_columns(pl.col("time").cast(pl.Float32)), "keep"),
     "time", "expected Float64"),
    ("extra-column", lambda s: (_frame(s).with_columns(pl.lit(1).alias("x")), "keep"), "x", "unknown column"),
    ("bad-dir", lambda s: (_set(_frame(s), 3, "dir", "sideways"), "keep"), "rows[3].dir", "'in' or 'out'"),
    ("unknown-input", lambda s: (_set(_frame(s), 0, "kind", "caller_sneeze"), "keep"), "rows[0].kind",
     "unknown input kind"),
    ("nan-time", lambda s: (_set(_frame(s), 0, "time", float("nan")), "keep"), "rows[0].time", "finite"),
    ("time-backwards", lambda s: (_set(_frame(s), 2, "time", -1.0), "keep"), "rows[2].time",
     "before the previous input"),
    ("frame-duration", lambda s: (_set(_frame(s), 0, "duration_ms", 25), "keep"), "rows[0].duration_ms",
     "10, 20 or 30"),
    ("frame-no-speech", lambda s: (_set(_frame(s), 0, "speech", None), "keep"), "rows[0].speech", "missing"),
    ("unknown-output", lambda s: (_set(_frame(s), 1, "kind", "teleport"), "keep"), "rows[1].kind",
     "unknown output kind"),
    ("fields-not-json", lambda s: (_set(_frame(s), 1, "fields", "{oops"), "keep"), "rows[1].fields",
     "invalid JSON"),
    ("fields-missing-key", lambda s: (_set(_frame(s), _first(_frame(s), "commit"), "fields", '{"turn": 1}'), "keep"),
     "fields", "commit needs fields"),
    ("fields-invalid-value", lambda s: (_set(_frame(s), _first(_frame(s), "cancel"), "fields",
                                             '{"agent_played_ms": -5}'), "keep"), "fields", "agent_played_ms"),
]


@pytest.mark.parametrize(("name", "make", "field", "problem"), BAD_TRACES, ids=[b[0] for b in BAD_TRACES])
def test_bad_traces_are_rejected_naming_file_field_problem(
    recorded: tuple[Path, RecordedTrace, list], tmp_path: Path, name: str, make, field: str, problem: str
) -> None:
    src = recorded[0]
    df, meta = make(src)
    path = _rewrite(src, tmp_path / f"{name}.parquet", df, meta)
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    err = info.value
    assert err.path == str(path)
    assert err.field.endswith(field), err
    assert problem in err.problem, err


def test_not_parquet_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(TraceFormatError, match=r"junk.parquet: -: not a Parquet file"):
        read_trace(junk)
    with pytest.raises(TraceFormatError, match="no such file"):
        read_trace(tmp_path / "nope.parquet")


def test_recorder_rejects_a_bad_header_up_front() -> None:
    with pytest.raises(TraceFormatError, match=r"header.codec"):
        TraceRecorder(call_id="x", codec="mp3", rate=8000, config=TurnConfig())
    with pytest.raises(TraceFormatError, match=r"header.rate"):
        TraceRecorder(call_id="x", codec="pcm16", rate=11025, config=TurnConfig())


def test_frame_has_the_documented_schema(recorded: tuple[Path, RecordedTrace, list]) -> None:
    _, trace, _ = recorded
    df = to_frame(trace)
    assert df.schema == pl.Schema({"dir": pl.String, "kind": pl.String, "time": pl.Float64,
                                   "seq": pl.Int64, "duration_ms": pl.Int64, "speech": pl.Boolean,
                                   "fields": pl.String})
    first = df.row(0, named=True)
    assert first["dir"] == "in" and first["kind"] == "caller_frame" and first["fields"] is None
    second = df.row(1, named=True)
    assert second["dir"] == "out" and second["kind"] == "append"
    assert json.loads(second["fields"]) == {"duration_ms": 20, "seq": 0, "speech": first["speech"]}


def test_the_driver_records_what_it_feeds(recorded: tuple[Path, RecordedTrace, list]) -> None:
    """The recorder is passed in: an EngineDriver records each input and its drain."""
    _, trace, outs = recorded
    rec = TraceRecorder(call_id="again", codec="g711_ulaw", rate=8000, config=trace.header.config)
    eng = EngineDriver(config=trace.header.config, recorder=rec)
    got: list = []
    for inp in trace.inputs:
        if inp.kind == "timer":
            assert eng.get_timer() is not None
        got.extend(eng.feed(inp))
    assert got == outs
    assert rec.trace().rows == trace.rows


def test_trace_show_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage")
    assert main(["trace", "show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: -: not a Parquet file") and len(err.strip().splitlines()) == 1
