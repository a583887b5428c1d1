"""``clutchcall trace show FILE``: print a recorded trace's header, counts and rows readably."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter

from clutchcall.traces.errors import TraceFormatError
from clutchcall.traces.recorded import InputEvent, RecordedTrace, read_trace

FRAME_KINDS = ("caller_frame", "append")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("file", help="recorded trace (.parquet)")
    parser.add_argument("--all", action="store_true",
                        help="also list every caller_frame and append row (hidden by default)")
    parser.add_argument("--limit", type=int, default=None, help="list at most this many rows")


def _details(row: object) -> str:
    if isinstance(row, InputEvent):
        if row.kind != "caller_frame":
            return ""
        seq = "-" if row.seq is None else str(row.seq)
        return f"seq={seq} {row.duration_ms}ms {'speech' if row.speech else 'silence'}"
    # every other row is one of the engine's output dataclasses
    return " ".join(f"{f.name}={getattr(row, f.name)!r}" for f in dataclasses.fields(row)  # type: ignore[arg-type]
                    if f.name != "time")


def render(trace: RecordedTrace, path: str, show_all: bool = False, limit: int | None = None) -> str:
    """Return the text ``trace show`` prints for ``trace``."""
    h = trace.header
    ins = Counter(r.kind for r in trace.rows if isinstance(r, InputEvent))
    outs = Counter(r.kind for r in trace.rows if not isinstance(r, InputEvent))
    speech = sum(1 for r in trace.rows if isinstance(r, InputEvent) and r.kind == "caller_frame" and r.speech)
    cfg = " ".join(f"{k}={v}" for k, v in h.config.to_dict().items())
    times = [r.time for r in trace.rows]
    span = f"{min(times):.3f}-{max(times):.3f} s" if times else "empty"
    lines = [
        f"trace {path}",
        f"  format: clutchcall.trace v{h.version}  recorded by clutchcall {h.clutchcall_version}",
        f"  call_id: {h.call_id}  codec: {h.codec} @ {h.rate} Hz  policy: {h.policy}",
        f"  config: {cfg}",
    ]
    if h.extra:
        lines.append(f"  extra: {h.extra}")
    lines.append(f"rows: {len(trace.rows)} spanning {span}")
    lines.append("  inputs:  " + ", ".join(f"{k} {v}" for k, v in sorted(ins.items()))
                 + f" (speech frames {speech})")
    lines.append("  outputs: " + ", ".join(f"{k} {v}" for k, v in sorted(outs.items())))
    lines.append(f"{'time s':>12}  dir  {'kind':<22} details"
                 + ("" if show_all else "   (caller_frame/append rows hidden; --all shows them)"))
    shown = 0
    for r in trace.rows:
        if not show_all and r.kind in FRAME_KINDS:
            continue
        if limit is not None and shown >= limit:
            lines.append("  ...")
            break
        d = "in " if isinstance(r, InputEvent) else "out"
        lines.append(f"{r.time:>12.6f}  {d}  {r.kind:<22} {_details(r)}")
        shown += 1
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the trace; return 0, or 1 with one error line if the file is malformed."""
    try:
        trace = read_trace(args.file)
    except TraceFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(trace, args.file, args.all, args.limit))
    return 0
