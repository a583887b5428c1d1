"""Labelled calls: a caller-channel WAV plus its ground-truth JSON (format v1).

Theory of operation: a labelled call ``NAME`` is two files side by side. ``NAME.wav`` holds
the caller channel only (mono, 16-bit PCM, 8/16/24/48 kHz); the agent's audio is never in it,
its timing is listed in ``NAME.json``::

    {"version": 1,
     "agent_speech": [[start_ms, end_ms], ...],
     "segments": [{"start_ms": .., "end_ms": .., "kind": .., "expect": ..}, ...]}

``kind`` is one of :data:`KINDS` and ``expect`` (what an ideal agent does) one of
:data:`EXPECTS`. The JSON is kept exactly so because tools outside the project write it too;
``traces/FORMAT.md`` is its specification. Readers validate everything (syntax, types,
ranges, ordering, and the labels against the audio's duration) and raise
:class:`~clutchcall.traces.errors.TraceFormatError` naming file, field and problem before
returning anything. Writers produce byte-identical files for identical inputs.
"""

from __future__ import annotations

import json
import math
import wave
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall.traces.errors import TraceFormatError

LABEL_VERSION = 1
KINDS = ("turn", "short_answer", "backchannel", "interruption", "noise")
EXPECTS = ("reply", "ignore", "yield")
RATES = (8000, 16000, 24000, 48000)
# What the generator labels each kind with (an ideal agent's behaviour); the format itself
# allows any kind/expect pair, since outside labellers may judge a case differently.
DEFAULT_EXPECT = {
    "turn": "reply",
    "short_answer": "reply",
    "backchannel": "ignore",
    "interruption": "yield",
    "noise": "ignore",
}

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One labelled stretch of the caller channel, ``[start_ms, end_ms)`` from the call start."""

    start_ms: float
    end_ms: float
    kind: str
    expect: str

    def to_dict(self) -> dict[str, Any]:
        """Return the segment as the JSON object of the format (key order fixed)."""
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "kind": self.kind,
                "expect": self.expect}


@dataclass(frozen=True, slots=True, kw_only=True)
class Labels:
    """The contents of ``NAME.json``: agent speech intervals and caller segments (ms)."""

    agent_speech: tuple[Interval, ...]
    segments: tuple[Segment, ...]
    version: int = LABEL_VERSION
    agent_pauses: tuple[Interval, ...] = ()
    """Optional: the silent gaps between the agent's phrases *inside* its ``agent_speech``
    intervals (its phrase boundaries); written only when non-empty."""

    def to_json(self) -> str:
        """Return the canonical JSON text (one segment per line, trailing newline)."""
        agent = ", ".join(f"[{_num(a)}, {_num(b)}]" for a, b in self.agent_speech)
        segs = ",\n    ".join(json.dumps(s.to_dict()) for s in self.segments)
        body = f'{{"version": {self.version},\n  "agent_speech": [{agent}],\n'
        if self.agent_pauses:
            pauses = ", ".join(f"[{_num(a)}, {_num(b)}]" for a, b in self.agent_pauses)
            body += f'  "agent_pauses": [{pauses}],\n'
        body += '  "segments": ['
        body += f"\n    {segs}\n  ]}}\n" if segs else "]}\n"
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledCall:
    """A validated labelled call: its name, sample rate, caller PCM (int16) and labels."""

    name: str
    rate: int
    pcm: np.ndarray
    labels: Labels

    @property
    def duration_ms(self) -> float:
        """The caller channel's duration in milliseconds."""
        return len(self.pcm) * 1000.0 / self.rate


def _num(x: float) -> str:
    return json.dumps(x)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_labels(data: Any, path: str | Path) -> Labels:
    """Validate decoded JSON ``data`` of labels file ``path``; return :class:`Labels`.

    Raises :class:`TraceFormatError` for a wrong shape, unknown or missing key, wrong type,
    unknown kind/expect, negative or empty interval, or intervals out of order / overlapping.
    """
    if not isinstance(data, dict):
        raise TraceFormatError(path, "-", f"expected a JSON object, got {type(data).__name__}")
    for key in ("version", "agent_speech", "segments"):
        if key not in data:
            raise TraceFormatError(path, key, "missing")
    unknown = sorted(set(data) - {"version", "agent_speech", "agent_pauses", "segments"})
    if unknown:
        raise TraceFormatError(path, unknown[0], "unknown key (allowed: version, agent_speech, "
                               "agent_pauses, segments)")
    version = data["version"]
    if isinstance(version, bool) or version != LABEL_VERSION or not isinstance(version, int):
        raise TraceFormatError(path, "version", f"unsupported version {version!r} (expected 1)")

    agent = _parse_intervals(data["agent_speech"], "agent_speech", path)

    segs_raw = data["segments"]
    if not isinstance(segs_raw, list):
        raise TraceFormatError(path, "segments", "expected a list of objects")
    segments: list[Segment] = []
    keys = {"start_ms", "end_ms", "kind", "expect"}
    for i, item in enumerate(segs_raw):
        field = f"segments[{i}]"
        if not isinstance(item, dict):
            raise TraceFormatError(path, field, f"expected an object, got {item!r}")
        for key in ("start_ms", "end_ms", "kind", "expect"):
            if key not in item:
                raise TraceFormatError(path, f"{field}.{key}", "missing")
        extra = sorted(set(item) - keys)
        if extra:
            raise TraceFormatError(path, f"{field}.{extra[0]}",
                                   "unknown key (allowed: start_ms, end_ms, kind, expect)")
        start, end = item["start_ms"], item["end_ms"]
        _check_interval(path, field, start, end)
        if item["kind"] not in KINDS:
            raise TraceFormatError(path, f"{field}.kind",
                                   f"unknown kind {item['kind']!r} (one of {', '.join(KINDS)})")
        if item["expect"] not in EXPECTS:
            raise TraceFormatError(path, f"{field}.expect",
                                   f"unknown expect {item['expect']!r} (one of {', '.join(EXPECTS)})")
        if segments and start < segments[-1].end_ms:
            raise TraceFormatError(path, f"{field}.start_ms",
                                   f"{start} is before the previous segment's end "
                                   f"({segments[-1].end_ms}): segments must be sorted and not overlap")
        segments.append(Segment(start_ms=start, end_ms=end, kind=item["kind"], expect=item["expect"]))
    pauses = _parse_pauses(data.get("agent_pauses", []), agent, path)
    return Labels(agent_speech=tuple(agent), segments=tuple(segments), agent_pauses=pauses)


def _parse_intervals(raw: Any, name: str, path: str | Path) -> list[Interval]:
    """Validate a list of ``[start_ms, end_ms]`` intervals (field ``name``): finite numbers,
    start <= end, sorted and not overlapping."""
    if not isinstance(raw, list):
        raise TraceFormatError(path, name, "expected a list of [start_ms, end_ms]")
    out: list[Interval] = []
    for i, item in enumerate(raw):
        field = f"{name}[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise TraceFormatError(path, field, f"expected [start_ms, end_ms], got {item!r}")
        start, end = item
        _check_interval(path, field, start, end)
        if out and start < out[-1][1]:
            raise TraceFormatError(path, field, f"starts at {start} before the previous interval ends "
                                   f"({out[-1][1]}): intervals must be sorted and not overlap")
        out.append((start, end))
    return out


def _parse_pauses(raw: Any, agent: list[Interval], path: str | Path) -> tuple[Interval, ...]:
    """Validate the optional ``agent_pauses``: sorted, non-overlapping intervals, each inside
    one ``agent_speech`` interval."""
    pauses = _parse_intervals(raw, "agent_pauses", path)
    for i, (start, end) in enumerate(pauses):
        if not any(a <= start and end <= b for a, b in agent):
            raise TraceFormatError(path, f"agent_pauses[{i}]",
                                   "a pause must lie inside an agent_speech interval")
    return tuple(pauses)


def _check_interval(path: str | Path, field: str, start: Any, end: Any) -> None:
    if not _is_num(start):
        raise TraceFormatError(path, f"{field}.start_ms" if "segments" in field else field,
                               f"start must be a finite number of ms, got {start!r}")
    if not _is_num(end):
        raise TraceFormatError(path, f"{field}.end_ms" if "segments" in field else field,
                               f"end must be a finite number of ms, got {end!r}")
    if start < 0:
        raise TraceFormatError(path, f"{field}.start_ms" if "segments" in field else field,
                               f"start {start} is negative")
    if end <= start:
        raise TraceFormatError(path, f"{field}.end_ms" if "segments" in field else field,
                               f"end {end} is not after start {start}")


def read_labels(path: str | Path) -> Labels:
    """Read and validate ``NAME.json``; return :class:`Labels`. Raises :class:`TraceFormatError`
    (unreadable file, invalid JSON, or any problem :func:`parse_labels` finds)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceFormatError(path, "-", f"cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(path, "-", f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                               f"{exc.msg}") from exc
    return parse_labels(data, path)


def write_labels(path: str | Path, labels: Labels) -> None:
    """Write ``labels`` as canonical JSON to ``path`` (byte-identical for equal labels)."""
    parse_labels(json.loads(labels.to_json()), path)  # never write what we could not read
    Path(path).write_text(labels.to_json(), encoding="utf-8")


def read_wav(path: str | Path, *, rates: Collection[int] | None = RATES) -> tuple[int, np.ndarray]:
    """Read a mono 16-bit PCM WAV at one of ``rates`` (default 8/16/24/48 kHz, the format's;
    ``None``: any rate); return ``(rate, int16 samples)``. The one WAV reader of the project.

    Raises :class:`TraceFormatError` if the file is not such a WAV, is empty or truncated."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if w.getcomptype() != "NONE":
                raise TraceFormatError(path, "format", f"compressed WAV ({w.getcomptype()}); expected PCM")
            if channels != 1:
                raise TraceFormatError(path, "channels", f"{channels} channels; expected mono")
            if width != 2:
                raise TraceFormatError(path, "sample_width", f"{8 * width}-bit samples; expected 16-bit PCM")
            if rates is not None and rate not in rates:
                raise TraceFormatError(path, "rate", f"{rate} Hz; expected one of {', '.join(map(str, rates))}")
            raw = w.readframes(n)
    except TraceFormatError:
        raise
    except (OSError, EOFError, wave.Error) as exc:
        raise TraceFormatError(path, "-", f"not a readable PCM WAV file: {exc}") from exc
    if n == 0:
        raise TraceFormatError(path, "data", "no samples")
    if len(raw) != 2 * n:
        raise TraceFormatError(path, "data", f"truncated: header says {n} samples, file holds {len(raw) // 2}")
    return rate, np.frombuffer(raw, dtype="<i2").astype(np.int16)


def write_wav(path: str | Path, rate: int, pcm: np.ndarray) -> None:
    """Write int16 ``pcm`` as a mono 16-bit WAV at ``rate`` (byte-identical for equal input)."""
    if rate not in RATES:
        raise TraceFormatError(path, "rate", f"{rate} Hz; expected one of {', '.join(map(str, RATES))}")
    if pcm.dtype != np.int16 or pcm.ndim != 1 or len(pcm) == 0:
        raise TraceFormatError(path, "data", "expected a non-empty 1-D int16 array")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def call_paths(path: str | Path) -> tuple[Path, Path]:
    """Return ``(NAME.wav, NAME.json)`` for a path naming either file or the bare stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".wav", ".json") else p
    return stem.with_name(stem.name + ".wav"), stem.with_name(stem.name + ".json")


def read_call(path: str | Path) -> LabelledCall:
    """Read and validate one labelled call (``NAME``, ``NAME.wav`` or ``NAME.json``).

    Besides each file's own checks, every segment and agent interval must end within the
    audio. Returns :class:`LabelledCall`; raises :class:`TraceFormatError` (a missing partner
    file included) before returning anything."""
    wav_path, json_path = call_paths(path)
    if not json_path.exists():
        raise TraceFormatError(json_path, "-", f"missing (the labels of {wav_path.name})")
    if not wav_path.exists():
        raise TraceFormatError(wav_path, "-", f"missing (the audio of {json_path.name})")
    labels = read_labels(json_path)
    rate, pcm = read_wav(wav_path)
    duration = len(pcm) * 1000.0 / rate
    for i, (_, end) in enumerate(labels.agent_speech):
        if end > duration:
            raise TraceFormatError(json_path, f"agent_speech[{i}]",
                                   f"ends at {end} ms, after the audio ends ({duration:g} ms)")
    for i, seg in enumerate(labels.segments):
        if seg.end_ms > duration:
            raise TraceFormatError(json_path, f"segments[{i}].end_ms",
                                   f"{seg.end_ms} ms is after the audio ends ({duration:g} ms)")
    return LabelledCall(name=wav_path.stem, rate=rate, pcm=pcm, labels=labels)


def write_call(directory: str | Path, name: str, rate: int, pcm: np.ndarray, labels: Labels) -> None:
    """Write ``NAME.wav`` and ``NAME.json`` into ``directory`` (deterministic bytes)."""
    d = Path(directory)
    write_wav(d / f"{name}.wav", rate, pcm)
    write_labels(d / f"{name}.json", labels)
