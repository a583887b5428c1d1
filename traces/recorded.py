"""Recorded traces: what the edge saw on one call, replayable through the turn engine.

Theory of operation: a recorded trace is one Parquet file (written and read with polars).
Its rows are the engine's inputs and outputs in the exact order the shell saw them: each
input row (``dir = "in"``) is followed by the outputs drained after it (``dir = "out"``).
The header (format version, call id, caller codec and rate, the :class:`TurnConfig`, the
policy name, the ClutchCall version, free-form ``extra``) is one JSON document stored in the
Parquet footer's key/value metadata under :data:`META_KEY`.

Columns (see ``traces/FORMAT.md``): ``dir`` (str), ``kind`` (str), ``time`` (float64, s),
``seq`` (int64, null), ``duration_ms`` (int64, null), ``speech`` (bool, null), ``fields``
(str, null: the output's fields other than ``time`` as a JSON object; for a caller frame that
carried acoustic features, ``{"features": {...}}``). Times are float64 so
they round-trip bit-exactly, which is what makes replay (:mod:`clutchcall.traces.replay`) exact.

A shell records with :class:`TraceRecorder`, the :class:`~clutchcall.engine.call.Recorder`
it passes to its :class:`~clutchcall.engine.call.EngineDriver` / call core (one call per
input, one per drain), and writes once at the end of the call. :func:`read_trace` validates
every row before returning. Replaying a trace is :mod:`clutchcall.traces.replay`. Input rows are
:class:`~clutchcall.engine.call.EngineInput` values (``InputEvent`` is its name here).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import polars as pl

from clutchcall import __version__
from clutchcall.engine import TurnConfig
from clutchcall.engine.actions import OUTPUT_TYPES, Output
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call.inputs import INPUT_KINDS, EngineInput
from clutchcall.engine.errors import ClutchCallError
from clutchcall.traces.errors import TraceFormatError

TRACE_FORMAT = "clutchcall.trace"
TRACE_VERSION = 1
META_KEY = "clutchcall.trace"
CODECS = ("pcm16", "opus", "g711_ulaw", "g711_alaw")
SCHEMA: dict[str, pl.DataType] = {
    "dir": pl.String(),
    "kind": pl.String(),
    "time": pl.Float64(),
    "seq": pl.Int64(),
    "duration_ms": pl.Int64(),
    "speech": pl.Boolean(),
    "fields": pl.String(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceHeader:
    """A recorded trace's header (Parquet footer metadata)."""

    call_id: str
    codec: str
    rate: int
    config: TurnConfig
    policy: str = "threshold"
    clutchcall_version: str = __version__
    version: int = TRACE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Return the header as canonical JSON (sorted keys)."""
        return json.dumps({
            "format": TRACE_FORMAT,
            "version": self.version,
            "call_id": self.call_id,
            "codec": self.codec,
            "rate": self.rate,
            "config": self.config.to_dict(),
            "policy": self.policy,
            "clutchcall_version": self.clutchcall_version,
            "extra": self.extra,
        }, sort_keys=True)


InputEvent = EngineInput
"""A trace's input row: the one encoding of engine inputs,
:class:`clutchcall.engine.call.EngineInput` (kind, time, seq, duration_ms, speech)."""


Row: TypeAlias = "InputEvent | Output"


@dataclass(frozen=True, slots=True)
class RecordedTrace:
    """A validated recorded trace: header and rows (inputs and outputs, in order)."""

    header: TraceHeader
    rows: tuple[Row, ...]

    @property
    def inputs(self) -> list[InputEvent]:
        """The input rows, in order."""
        return [r for r in self.rows if isinstance(r, InputEvent)]

    @property
    def outputs(self) -> list[Output]:
        """The output rows, in order."""
        return [r for r in self.rows if isinstance(r, Output)]


class TraceRecorder:
    """Collects one call's engine inputs and outputs as the shell feeds and drains them.

    Call the input method matching each engine input *with the same arguments*, then
    :meth:`outputs` with each drained list, then :meth:`trace` or :meth:`write`."""

    def __init__(self, *, call_id: str, codec: str, rate: int, config: TurnConfig,
                 policy: str | None = None, extra: dict[str, Any] | None = None) -> None:
        # the header's policy names what decided the outputs: by default the config's own
        self.header = TraceHeader(call_id=call_id, codec=codec, rate=rate, config=config,
                                  policy=config.policy if policy is None else policy,
                                  extra=dict(extra or {}))
        _check_header(self.header, "<recorder>")
        self._rows: list[Row] = []

    def input(self, inp: EngineInput) -> None:
        """Record one engine input (the :class:`~clutchcall.engine.call.Recorder` method an
        :class:`~clutchcall.engine.call.EngineDriver` calls)."""
        self._rows.append(inp)

    def caller_frame(self, now: float, *, speech: bool, duration_ms: int, seq: int | None = None) -> None:
        """Record ``engine.caller_frame(now, speech=..., duration_ms=..., seq=...)``."""
        self._rows.append(EngineInput.frame(float(now), speech=bool(speech),
                                            duration_ms=int(duration_ms), seq=seq))

    def agent_audio_started(self, now: float) -> None:
        """Record ``engine.agent_audio_started(now)``."""
        self._rows.append(EngineInput.started(float(now)))

    def agent_audio_finished(self, now: float) -> None:
        """Record ``engine.agent_audio_finished(now)``."""
        self._rows.append(EngineInput.finished(float(now)))

    def timer(self, now: float) -> None:
        """Record ``engine.handle_timer(now)``."""
        self._rows.append(EngineInput.timer(float(now)))

    def outputs(self, outputs: Iterable[Output]) -> None:
        """Record the outputs of one ``engine.drain()`` (call after every input's drain)."""
        self._rows.extend(outputs)

    def trace(self) -> RecordedTrace:
        """Return what was recorded so far as a :class:`RecordedTrace`."""
        return RecordedTrace(self.header, tuple(self._rows))

    def write(self, path: str | Path) -> None:
        """Write the trace to ``path`` (Parquet)."""
        write_trace(path, self.trace())


def _output_fields(out: Output) -> str:
    data = {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if f.name != "time"}
    return json.dumps(data, sort_keys=True)


def _input_fields(inp: InputEvent) -> str | None:
    # a caller frame's acoustic features (issue 15), so that replay is exact; floats go
    # through JSON exactly (repr round-trips; inf as Infinity)
    if inp.features is None:
        return None
    feats = dataclasses.asdict(inp.features)
    if math.isnan(feats.get("turn_end_p", 0.0)):
        del feats["turn_end_p"]  # only a pause's analysed frame carries it (smart-turn)
    return json.dumps({"features": feats}, sort_keys=True)


def _read_features(path: str | Path, where: str, fields: str) -> FrameFeatures:
    try:
        data = json.loads(fields)
        f = data["features"]
        if set(data) != {"features"} or not isinstance(f, dict):
            raise KeyError("features")
        return FrameFeatures(**{k: float(v) for k, v in f.items()})
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TraceFormatError(path, f"{where}.fields",
                               f"a caller frame's fields must be {{\"features\": {{...}}}}: {exc}"
                               ) from exc


def to_frame(trace: RecordedTrace) -> pl.DataFrame:
    """Return the trace's rows as a polars DataFrame with :data:`SCHEMA`."""
    cols: dict[str, list[Any]] = {k: [] for k in SCHEMA}
    for r in trace.rows:
        vals: tuple[object, ...]
        if isinstance(r, InputEvent):
            vals = ("in", r.kind, r.time, r.seq, r.duration_ms, r.speech, _input_fields(r))
        else:
            vals = ("out", r.kind, float(r.time), None, None, None, _output_fields(r))
        for k, v in zip(SCHEMA, vals, strict=True):
            cols[k].append(v)
    return pl.DataFrame(cols, schema=SCHEMA)


def write_trace(path: str | Path, trace: RecordedTrace) -> None:
    """Write ``trace`` to ``path`` as Parquet with the header in the footer metadata."""
    _check_header(trace.header, path)
    to_frame(trace).write_parquet(str(path), metadata={META_KEY: trace.header.to_json()},
                                  statistics=False)


def _check_header(h: TraceHeader, path: str | Path) -> None:
    if h.version != TRACE_VERSION:
        raise TraceFormatError(path, "header.version", f"unsupported version {h.version!r}")
    if not isinstance(h.call_id, str) or not h.call_id:
        raise TraceFormatError(path, "header.call_id", "must be a non-empty string")
    if h.codec not in CODECS:
        raise TraceFormatError(path, "header.codec", f"unknown codec {h.codec!r} (one of {', '.join(CODECS)})")
    if isinstance(h.rate, bool) or not isinstance(h.rate, int) or h.rate not in (8000, 16000, 24000, 48000):
        raise TraceFormatError(path, "header.rate", f"{h.rate!r}; expected 8000, 16000, 24000 or 48000")


def read_header(path: str | Path) -> TraceHeader:
    """Read and validate only the header of trace ``path``; raises :class:`TraceFormatError`."""
    try:
        meta = pl.read_parquet_metadata(str(path))
    except FileNotFoundError as exc:
        raise TraceFormatError(path, "-", "no such file") from exc
    except Exception as exc:  # polars raises several untyped errors for a bad file
        raise TraceFormatError(path, "-", f"not a Parquet file: {exc}") from exc
    if META_KEY not in meta:
        raise TraceFormatError(path, "header", f"no '{META_KEY}' key in the Parquet metadata")
    try:
        data = json.loads(meta[META_KEY])
    except json.JSONDecodeError as exc:
        raise TraceFormatError(path, "header", f"invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise TraceFormatError(path, "header", "expected a JSON object")
    if data.get("format") != TRACE_FORMAT:
        raise TraceFormatError(path, "header.format", f"expected {TRACE_FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != TRACE_VERSION:
        raise TraceFormatError(path, "header.version", f"unsupported version {data.get('version')!r}")
    for key, typ in (("call_id", str), ("codec", str), ("rate", int), ("config", dict),
                     ("policy", str), ("clutchcall_version", str), ("extra", dict)):
        if key not in data:
            raise TraceFormatError(path, f"header.{key}", "missing")
        if not isinstance(data[key], typ) or isinstance(data[key], bool):
            raise TraceFormatError(path, f"header.{key}", f"expected {typ.__name__}, got {data[key]!r}")
    try:
        config = TurnConfig.from_legacy_dict(data["config"])
    except (ClutchCallError, TypeError) as exc:
        raise TraceFormatError(path, "header.config", str(exc)) from exc
    h = TraceHeader(call_id=data["call_id"], codec=data["codec"], rate=data["rate"], config=config,
                    policy=data["policy"], clutchcall_version=data["clutchcall_version"],
                    version=data["version"], extra=data["extra"])
    _check_header(h, path)
    return h


def read_trace(path: str | Path) -> RecordedTrace:
    """Read and validate the recorded trace at ``path``; return :class:`RecordedTrace`.

    Checks the header, the column names and types, and every row (known kinds, finite times,
    inputs in time order, caller frames complete, output fields that build a valid output).
    Raises :class:`TraceFormatError` naming the first problem."""
    header = read_header(path)
    try:
        df = pl.read_parquet(str(path))
    except Exception as exc:  # polars raises several untyped errors for a bad file
        raise TraceFormatError(path, "-", f"cannot read rows: {exc}") from exc
    for name, dtype in SCHEMA.items():
        if name not in df.columns:
            raise TraceFormatError(path, name, "column missing")
        if df.schema[name] != dtype:
            raise TraceFormatError(path, name, f"column has type {df.schema[name]}, expected {dtype}")
    extra = [c for c in df.columns if c not in SCHEMA]
    if extra:
        raise TraceFormatError(path, extra[0], "unknown column")
    rows: list[Row] = []
    last_in = -math.inf
    for i, (d, kind, t, seq, dur, speech, fields) in enumerate(df.select(list(SCHEMA)).iter_rows()):
        where = f"rows[{i}]"
        if t is None or not math.isfinite(t):
            raise TraceFormatError(path, f"{where}.time", f"must be a finite number, got {t!r}")
        if d == "in":
            if kind not in INPUT_KINDS:
                raise TraceFormatError(path, f"{where}.kind", f"unknown input kind {kind!r}")
            if t < last_in:
                raise TraceFormatError(path, f"{where}.time", f"{t!r} is before the previous input ({last_in!r})")
            last_in = t
            if fields is not None and kind != "caller_frame":
                raise TraceFormatError(path, f"{where}.fields", "must be null for this input")
            if kind == "caller_frame":
                if dur not in (10, 20, 30):
                    raise TraceFormatError(path, f"{where}.duration_ms", f"must be 10, 20 or 30, got {dur!r}")
                if speech is None:
                    raise TraceFormatError(path, f"{where}.speech", "missing for caller_frame")
                feats = None if fields is None else _read_features(path, where, fields)
                rows.append(InputEvent(kind=kind, time=t, seq=seq, duration_ms=dur, speech=speech,
                                       features=feats))
            else:
                if seq is not None or dur is not None or speech is not None:
                    raise TraceFormatError(path, where, f"{kind} carries only a time")
                rows.append(InputEvent(kind=kind, time=t))
        elif d == "out":
            cls = OUTPUT_TYPES.get(kind)
            if cls is None:
                raise TraceFormatError(path, f"{where}.kind", f"unknown output kind {kind!r}")
            if fields is None:
                raise TraceFormatError(path, f"{where}.fields", "missing for an output")
            try:
                args = json.loads(fields)
            except json.JSONDecodeError as exc:
                raise TraceFormatError(path, f"{where}.fields", f"invalid JSON: {exc.msg}") from exc
            if not isinstance(args, dict):
                raise TraceFormatError(path, f"{where}.fields", "expected a JSON object")
            want = {f.name for f in dataclasses.fields(cls)} - {"time"}
            if set(args) != want:
                raise TraceFormatError(path, f"{where}.fields",
                                       f"{kind} needs fields {sorted(want)}, got {sorted(args)}")
            try:
                rows.append(cls(time=t, **args))
            except (ClutchCallError, TypeError) as exc:
                raise TraceFormatError(path, f"{where}.fields", str(exc)) from exc
        else:
            raise TraceFormatError(path, f"{where}.dir", f"must be 'in' or 'out', got {d!r}")
    return RecordedTrace(header, tuple(rows))
