"""A corpus directory: labelled calls and recorded traces side by side; validate and count.

Theory of operation: a corpus is a flat directory of labelled calls (``NAME.wav`` +
``NAME.json``), recorded traces (``*.parquet``) and optionally the generator's
``MANIFEST.json``. :func:`validate_dir` reads every file with the format's own readers (so
the checks are the same ones every consumer gets) and returns one
:class:`~clutchcall.traces.errors.TraceFormatError` per bad file, in name order; recorded
traces are also replayed through the turn engine when their header names the policy their
config builds (a custom policy object cannot be rebuilt from the file).
:func:`corpus_stats` counts segments by kind/expect and calls by channel, and summarises
durations; :func:`format_stats` renders that as text.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall.engine.errors import ClutchCallError
from clutchcall.traces.channel import CHANNELS
from clutchcall.traces.errors import TraceFormatError
from clutchcall.traces.generator import MANIFEST
from clutchcall.traces.labels import KINDS, LabelledCall, read_call
from clutchcall.traces.recorded import read_trace
from clutchcall.traces.replay import first_mismatch


def _dir(path: str | Path) -> Path:
    d = Path(path)
    if not d.is_dir():
        raise TraceFormatError(d, "-", "not a directory")
    return d


def validate_dir(path: str | Path, *, replay: bool = True) -> tuple[int, list[TraceFormatError]]:
    """Check every labelled call and recorded trace in directory ``path``.

    Returns ``(files_checked, errors)`` with one error per bad file. Raises
    :class:`TraceFormatError` only if ``path`` is not a directory."""
    d = _dir(path)
    errors: list[TraceFormatError] = []
    checked = 0
    names = sorted(p.name for p in d.iterdir() if p.is_file())
    stems_json = {n[:-5] for n in names if n.endswith(".json") and n != MANIFEST}
    for n in names:
        p = d / n
        if n == MANIFEST:
            checked += 1
            err = _check_manifest(p)
            if err:
                errors.append(err)
        elif n.endswith(".json"):
            checked += 1
            try:
                read_call(p)
            except TraceFormatError as exc:
                errors.append(exc)
        elif n.endswith(".wav"):
            if n[:-4] not in stems_json:
                checked += 1
                errors.append(TraceFormatError(p, "-", f"no labels file {n[:-4]}.json beside it"))
        elif n.endswith(".parquet"):
            checked += 1
            try:
                trace = read_trace(p)
                if replay and trace.header.policy == trace.header.config.policy:
                    mm = first_mismatch(trace)
                    if mm is not None:
                        errors.append(TraceFormatError(p, "rows", f"replay differs: {mm}"))
            except TraceFormatError as exc:
                errors.append(exc)
            except ClutchCallError as exc:  # the engine rejecting the recorded inputs
                errors.append(TraceFormatError(p, "rows", f"replay failed: {type(exc).__name__}: {exc}"))
    return checked, errors


def _check_manifest(p: Path) -> TraceFormatError | None:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return TraceFormatError(p, "-", f"unreadable manifest: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return TraceFormatError(p, "entries", "missing or not a list")
    for i, e in enumerate(data["entries"]):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            return TraceFormatError(p, f"entries[{i}].name", "missing")
        if not (p.parent / f"{e['name']}.json").exists():
            return TraceFormatError(p, f"entries[{i}].name", f"{e['name']}.json is not in the directory")
        if e.get("channel") not in CHANNELS:
            return TraceFormatError(p, f"entries[{i}].channel", f"unknown channel {e.get('channel')!r}")
    return None


def _channel_of(call: LabelledCall, manifest: dict[str, dict[str, Any]]) -> str:
    entry = manifest.get(call.name)
    if entry and entry.get("channel"):
        return str(entry["channel"])
    suffix = call.name.rsplit("_", 1)[-1]
    return suffix if suffix in CHANNELS else f"{call.rate // 1000}k"


def corpus_stats(path: str | Path) -> dict[str, Any]:
    """Return counts and durations for the labelled calls in ``path`` (bad files are skipped
    and counted under ``invalid``): ``calls``, ``invalid``, ``traces``, ``total_s``,
    ``bytes``, ``by_channel``, ``by_kind``, ``by_expect``, ``call_s`` (min/median/max),
    ``segment_ms`` per kind (median/p95), ``agent_s``."""
    d = _dir(path)
    manifest: dict[str, dict[str, Any]] = {}
    if (d / MANIFEST).exists():
        try:
            entries = json.loads((d / MANIFEST).read_text(encoding="utf-8")).get("entries", [])
            manifest = {e["name"]: e for e in entries if isinstance(e, dict) and "name" in e}
        except (json.JSONDecodeError, AttributeError):
            manifest = {}
    durations: list[float] = []
    by_channel: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    by_expect: Counter[str] = Counter()
    seg_ms: dict[str, list[float]] = {k: [] for k in KINDS}
    agent_ms = 0.0
    invalid = 0
    size = 0
    for p in sorted(d.glob("*.json")):
        if p.name == MANIFEST:
            continue
        try:
            call = read_call(p)
        except TraceFormatError:
            invalid += 1
            continue
        size += p.stat().st_size + p.with_suffix(".wav").stat().st_size
        durations.append(call.duration_ms / 1000.0)
        by_channel[_channel_of(call, manifest)] += 1
        for s in call.labels.segments:
            by_kind[s.kind] += 1
            by_expect[s.expect] += 1
            seg_ms[s.kind].append(float(s.end_ms - s.start_ms))
        agent_ms += sum(b - a for a, b in call.labels.agent_speech)
    arr = np.array(durations) if durations else np.zeros(1)
    return {
        "calls": len(durations),
        "invalid": invalid,
        "traces": len(list(d.glob("*.parquet"))),
        "total_s": float(sum(durations)),
        "bytes": size,
        "by_channel": dict(sorted(by_channel.items())),
        "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
        "by_expect": dict(sorted(by_expect.items())),
        "call_s": {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())},
        "segment_ms": {k: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95))}
                       for k, v in seg_ms.items() if v},
        "agent_s": agent_ms / 1000.0,
    }


def format_stats(st: dict[str, Any]) -> str:
    """Render :func:`corpus_stats` output as readable text."""
    lines = [
        f"calls: {st['calls']}  invalid: {st['invalid']}  recorded traces: {st['traces']}",
        (f"audio: {st['total_s']:.1f} s total, per call min {st['call_s']['min']:.1f} / median "
         f"{st['call_s']['median']:.1f} / max {st['call_s']['max']:.1f} s; agent speech "
         f"{st['agent_s']:.1f} s; {st['bytes'] / 1e6:.2f} MB"),
        "calls by channel:",
    ]
    lines += [f"  {k:<10} {v:>5}" for k, v in st["by_channel"].items()]
    lines.append("segments by kind:            count  median ms     p95 ms")
    for k, v in st["by_kind"].items():
        seg = st["segment_ms"].get(k)
        extra = f"  {seg['median']:>9.0f}  {seg['p95']:>9.0f}" if seg else ""
        lines.append(f"  {k:<26} {v:>5}{extra}")
    lines.append("segments by expect:")
    lines += [f"  {k:<10} {v:>5}" for k, v in st["by_expect"].items()]
    return "\n".join(lines)
