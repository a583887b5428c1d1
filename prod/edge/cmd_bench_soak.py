"""``clutchcall bench soak``: N concurrent real calls for S seconds against a real ``serve`` with
traces on; frames lost, and the edge's memory and open files over time.

Theory of operation: starts ``clutchcall serve`` as a child process (embedded model, traces to
a temporary directory, ``--summary-json``; the same :class:`~clutchcall.prod.edge.served.ServedEdge`
as ``bench hostile``), then places ``--calls`` real calls
(:class:`~clutchcall.prod.caller.client.Caller`, real espeak-ng speech at 1x: a question, then
silence while the agent answers, repeated) of ``--seconds`` each, all at once, over QUIC/MoQT
(PCM16 16 kHz), WebSocket/TLS (G.711 8 kHz) or both alternately (``--transport mixed``). Every
``--sample-s`` it reads the edge process's resident memory (``VmRSS``) and open file
descriptors (``/proc/PID/fd``); after the calls end it waits ``--settle-s`` and samples again.

Figures (one JSON object with ``--json``), each defined where it is computed:

* ``frames_sent``: caller frames the callers sent; ``frames_received``: caller frames the edge
  took in (sum of its call summaries' ``frames``); ``frames_lost``: the edge's
  ``clutchcall_frames_lost_total`` (sequence gaps and concealments, definition in
  prod/metrics.py) plus frames sent but never received (``frames_sent - frames_received``:
  refused by the caller leg's bounded queue, ``frames_dropped_ingress_queue``, or still
  unprocessed when the edge stops ``--settle-s`` after the last caller -- nonzero only when the
  edge runs behind real time, e.g. on a CPU-starved machine);
* ``rss_kb`` / ``fds``: ``start`` (before the first call), ``peak`` (largest sample while the
  calls ran), ``end`` (after the calls and ``--settle-s``), and ``timeline``: ``[t_s, rss_kb,
  fds]`` per sample;
* ``end_reasons`` / ``failed_reasons``: how the edge's calls ended (counts per reason);
* ``traces``: non-empty trace files written (one per call expected), ``calls_failed``: calls
  that raised at the caller or ended ``failed`` at the edge; ``turns``: committed turns.

Bounded: ``--calls`` 1..200, ``--seconds`` 1..1800; the child is stopped (SIGTERM, then SIGKILL)
at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from clutchcall.prod.edge.served import ServedEdge, open_fds, rss_kb


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each call (s)")
    parser.add_argument("--transport", choices=("quic", "ws", "mixed"), default="mixed")
    parser.add_argument("--sample-s", type=float, default=1.0, help="sampling period (s)")
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="wait after the calls before the end sample (s)")
    parser.add_argument("--edge-pythonpath", default=None,
                        help="PYTHONPATH of the served edge (default: this one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


async def soak(edge: ServedEdge, calls: int, seconds: float, transport: str, sample_s: float,
               settle_s: float) -> dict[str, Any]:
    """Place the calls against ``edge`` while sampling it; return the caller-side figures and
    the samples (module docstring)."""
    from clutchcall.prod.caller.client import Caller
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.caller.ws_transport import WsCallerTransport
    from clutchcall.prod.edge.bench_callers import caller_script

    ready = edge.ready
    pid = edge.proc.pid
    t0 = time.monotonic()
    timeline: list[list[float]] = []

    def sample() -> None:
        timeline.append([round(time.monotonic() - t0, 2), rss_kb(pid), open_fds(pid)])

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(sample_s)

    scripts = {rate: [caller_script(rate, seconds, k) for k in range(3)] for rate in (8000, 16000)}

    async def one(i: int) -> Any:
        await asyncio.sleep(0.05 * i)  # starts spread (a 20-call soak ramps over 1 s)
        cid = f"soak-{i}"
        tok = ready["tokens"][cid]
        quic = transport == "quic" or (transport == "mixed" and i % 2 == 0)
        codec, rate = ("pcm16", 16000) if quic else ("g711_ulaw", 8000)
        if quic:
            tr: Any = QuicCallerTransport("127.0.0.1", ready["quic_port"], token=tok, call_id=cid,
                                          codec=codec, rate=rate, cafile=ready["cert"], timeout_s=20)
        else:
            tr = WsCallerTransport(f"wss://localhost:{ready['ws_port']}/media", token=tok,
                                   call_id=cid, cafile=ready["cert"])
        return await Caller(tr, call_id=cid, codec=codec, rate=rate, tail_s=0.5).run(
            scripts[rate][i % 3])

    sample()
    start = timeline[-1]
    task = asyncio.ensure_future(sampler())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True),
            seconds + 60 + 0.05 * calls)
        peak_rss = max(s[1] for s in timeline[1:] or timeline)
        peak_fds = max(s[2] for s in timeline[1:] or timeline)
        await asyncio.sleep(settle_s)
    finally:
        task.cancel()
    sample()
    ok = [r for r in results if not isinstance(r, BaseException)]
    return {
        "calls": calls, "seconds": seconds, "transport": transport,
        "frames_sent": sum(r.frames_sent for r in ok),
        "agent_frames_received": sum(r.agent_frames_received for r in ok),
        "caller_errors": [repr(r) for r in results if isinstance(r, BaseException)][:3],
        "rss_kb": {"start": start[1], "peak": max(peak_rss, timeline[-1][1]), "end": timeline[-1][1]},
        "fds": {"start": start[2], "peak": max(peak_fds, timeline[-1][2]), "end": timeline[-1][2]},
        "timeline": timeline,
    }


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def run_soak(calls: int, seconds: float, transport: str = "mixed", sample_s: float = 1.0,
             settle_s: float = 2.0, edge_pythonpath: str | None = None) -> dict[str, Any]:
    """Serve, soak, stop; return the figures (module docstring). Raises ValueError for
    out-of-range arguments, RuntimeError if ``serve`` does not start."""
    if not 1 <= calls <= 200 or not 1 <= seconds <= 1800 or not 0.05 <= sample_s <= 60:
        raise ValueError("--calls 1..200, --seconds 1..1800, --sample-s 0.05..60")
    with tempfile.TemporaryDirectory(prefix="cc-soak-") as tmp:
        traces = Path(tmp) / "traces"
        summary = Path(tmp) / "summary.json"
        edge = ServedEdge(edge_pythonpath, trace_dir=str(traces), extra=[
            "--call-id", "soak", "--tokens", str(calls), "--summary-json", str(summary),
            "--idle-timeout", "30", "--grace", "2"])
        try:
            res = asyncio.run(soak(edge, calls, seconds, transport, sample_s, settle_s))
        finally:
            edge.stop()
        doc: dict[str, Any] = (json.loads(summary.read_text()) if summary.exists()
                               else {"calls": [], "metrics": ""})
        written = [p for p in traces.glob("*.parquet") if p.stat().st_size > 0]
    edge_calls = [c for c in doc["calls"] if c["call_id"].startswith("soak-")]
    received = sum(c["frames"] for c in edge_calls)
    gaps = _metric(doc["metrics"], "clutchcall_frames_lost_total")
    res.update(
        frames_received=received,
        frames_lost=int(gaps + max(0, res["frames_sent"] - received)),
        frames_lost_at_edge=int(gaps),
        frames_dropped_ingress_queue=sum(int(c.get("uplink_dropped", 0)) for c in edge_calls),
        traces=len(written),
        turns=sum(len(c["turns"]) for c in edge_calls),
        calls_failed=len(res["caller_errors"]) + sum(1 for c in edge_calls if c["failed"]),
        end_reasons=dict(Counter(f"{c['transport']}: {str(c['end_reason'])[:80]}" for c in edge_calls)),
        failed_reasons=dict(Counter(str(c["failed"])[:160] for c in edge_calls if c["failed"])),
    )
    return res


def run(args: argparse.Namespace) -> int:
    """Run the soak; print the figures; return the exit code."""
    try:
        res = run_soak(args.calls, args.seconds, args.transport, args.sample_s, args.settle_s,
                       args.edge_pythonpath)
    except ValueError as exc:
        print(f"clutchcall bench soak: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    else:
        tl = res.pop("timeline")
        for k, v in res.items():
            print(f"{k}: {v}")
        print(f"samples: {len(tl)} (every {args.sample_s:g} s)")
    return 0 if res["calls_failed"] == 0 else 1

