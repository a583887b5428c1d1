"""``clutchcall bench edge``: N concurrent real callers against the edge and the embedded model.

Theory of operation: three processes, so each one's CPU is its own. The embedded reference
model runs as ``clutchcall model serve``; the edge runs as ``clutchcall serve`` pointed at it
(no traces, logs at error level, ``--summary-json`` so the turn records come back exactly);
this process runs N real callers (:class:`~clutchcall.prod.caller.client.Caller`) over QUIC/MoQT
(PCM16 16 kHz) or WebSocket/TLS (G.711 8 kHz), each playing real espeak-ng speech at 1x for
``--seconds`` (a question, then silence while the agent answers, repeated), with starts spread
over ``--ramp-s`` (1 s) and frame phases at random. Per run it reports: committed turns, the edge's turn latency and
edge-added latency percentiles (ms; edge-added = turn latency - end-of-turn silence - the
model's own time to first audio, measured inside the edge), frames lost and late at the edge,
the edge process's CPU (from ``/proc/PID/stat``) as % of one core per call, and this caller
process's CPU (when callers saturate their core, their 1x clock slips and that shows up as held
frames; the figure says when a run is caller-bound rather than edge-bound).

``--search`` runs a bounded step search (doubling, then bisection, at most ``--max-runs``
runs) for the largest N whose edge-added p99 stays <= ``--p99-ms`` (5 ms). ``--profile`` adds
one cProfile run of the edge at N and prints its top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall.prod.pipeline_bench import QUESTIONS, REPLY  # the same script as bench pipeline
from clutchcall.progress import add_flag, bar, wanted


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--calls", type=int, default=20, help="concurrent callers (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each call (s)")
    parser.add_argument("--transport", choices=("quic", "ws"), default="quic")
    parser.add_argument("--ttfa-ms", type=int, default=200, help="model time to first audio (ms)")
    parser.add_argument("--io", choices=("asyncio", "uring", "auto"), default="asyncio",
                        help="the edge's QUIC datagram I/O (serve --io)")
    parser.add_argument("--shards", type=int, default=1, help="edge processes (serve --shards)")
    parser.add_argument("--ramp-s", type=float, default=1.0,
                        help="call starts are spread over this many seconds (default 1)")
    parser.add_argument("--search", action="store_true", help="step-search the largest N with p99 <= --p99-ms")
    parser.add_argument("--max-calls", type=int, default=1000, help="search bound (default 1000)")
    parser.add_argument("--max-runs", type=int, default=5, help="search runs at most (default 5)")
    parser.add_argument("--p99-ms", type=float, default=5.0, help="edge-added p99 goal (default 5 ms)")
    parser.add_argument("--profile", action="store_true", help="profile the edge (cProfile) in one extra run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_flag(parser)


def _pct(xs: list[float], q: float) -> float | None:
    return None if not xs else round(float(np.percentile(np.asarray(xs), q)), 3)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _script(rate: int, seconds: float, offset: int) -> bytes:
    from clutchcall.prod.model.speech import render_speech_sync

    parts = []
    for k in range(len(QUESTIONS)):
        q = QUESTIONS[(k + offset) % len(QUESTIONS)]
        parts += [bytes(rate * 2 * 3 // 10), render_speech_sync(q, rate), bytes(rate * 2 * 3)]
    pcm = b"".join(parts)
    n = int(seconds * rate) * 2
    while len(pcm) < n:
        pcm += pcm
    return pcm[:n]


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def _start_model(ttfa_ms: int) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clutchcall.cli", "model", "serve", "--ttfa-ms", str(ttfa_ms),
        "--reply", REPLY, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    return proc, json.loads(line)["url"]


async def run_once(calls: int, seconds: float, transport: str, model_url: str,
                   workdir: str, profile: str | None = None, io: str = "asyncio",
                   shards: int = 1, ramp_s: float = 1.0) -> dict[str, Any]:
    """One load run with ``calls`` callers; return its figures (module docstring)."""
    from clutchcall.prod.caller.client import Caller, QuicCallerTransport, WsCallerTransport

    summary_path = Path(workdir) / f"summary-{calls}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "clutchcall.cli", "serve", "--quic-port", "0", "--ws-port", "0",
           "--metrics-port", "-1", "--ready-json", "--no-trace", "--model-url", model_url,
           "--log-level", "error", "--call-id", "bench", "--tokens", str(calls),
           "--cert-dir", str(Path(workdir) / "tls"), "--summary-json", str(summary_path),
           "--idle-timeout", "30", "--grace", "2", "--io", io, "--shards", str(shards)]
    if profile:
        cmd += ["--profile", profile]
    edge = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    assert edge.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(edge.stdout.readline(), 60))
        pids = ready.get("pids") or [edge.pid]
        codec, rate = ("pcm16", 16000) if transport == "quic" else ("g711_ulaw", 8000)
        scripts = [_script(rate, seconds, k) for k in range(len(QUESTIONS))]
        loop = asyncio.get_running_loop()

        phases = np.random.default_rng(calls).uniform(0.0, 0.02, calls)

        async def one(i: int) -> Any:
            # starts spread over the ramp, frame phases at random (as real callers')
            await asyncio.sleep(ramp_s * i / max(calls, 1) + float(phases[i]))
            cid = f"bench-{i}"
            tok = ready["tokens"][cid]
            if transport == "quic":
                tr: Any = QuicCallerTransport("127.0.0.1", ready["quic_port"], token=tok, call_id=cid,
                                              codec=codec, rate=rate, cafile=ready["cert"], timeout_s=20)
            else:
                tr = WsCallerTransport(f"wss://localhost:{ready['ws_port']}/media", token=tok, call_id=cid,
                                       cafile=ready["cert"])
            return await Caller(tr, call_id=cid, codec=codec, rate=rate, tail_s=0.5).run(scripts[i % len(scripts)])

        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = sum(_cpu_s(p) for p in pids), loop.time()
        results = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        cpu1, wall1 = sum(_cpu_s(p) for p in pids), loop.time()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        with contextlib.suppress(ProcessLookupError):
            edge.terminate()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(edge.communicate(), 60)
        if edge.returncode is None:
            edge.kill()
            await edge.wait()
    doc: dict[str, Any] = {"calls": [], "metrics": ""}
    for part in [summary_path] + sorted(summary_path.parent.glob(summary_path.name + ".*")):
        if part.exists():
            d = json.loads(part.read_text())
            doc["calls"] += d["calls"]
            doc["metrics"] += d["metrics"]
    turns = [t for c in doc["calls"] for t in c["turns"]]
    added = [t["edge_added_ms"] for t in turns if t["edge_added_ms"] is not None]
    lat = [t["turn_latency_ms"] for t in turns if t["turn_latency_ms"] is not None]
    holds = [t["uplink_hold_ms"] for t in turns if t.get("uplink_hold_ms") is not None]
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    wall = wall1 - wall0
    caller_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {
        "calls": calls, "seconds": seconds, "transport": transport, "io": ready.get("io"),
        "shards": shards, "turns": len(turns),
        "calls_completed": len(ok), "calls_failed": len(errors) + sum(1 for c in doc["calls"] if c["failed"]),
        "edge_added_ms_p50": _pct(added, 50), "edge_added_ms_p95": _pct(added, 95),
        "edge_added_ms_p99": _pct(added, 99), "edge_added_ms_max": _pct(added, 100),
        "turn_latency_ms_p50": _pct(lat, 50), "turn_latency_ms_p99": _pct(lat, 99),
        "uplink_hold_ms_p99": _pct(holds, 99),
        "frames_sent": sum(r.frames_sent for r in ok),
        "frames_lost": _metric(doc["metrics"], "clutchcall_frames_lost_total"),
        "frames_late": _metric(doc["metrics"], "clutchcall_frames_late_total"),
        "agent_frames_received": sum(r.agent_frames_received for r in ok),
        "model_errors": _metric(doc["metrics"], "clutchcall_model_errors_total"),
        "edge_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "edge_cpu_pct_per_call": round(100 * (cpu1 - cpu0) / wall / calls, 3),
        "edge_cpu_ms_per_call_second": round(1000 * (cpu1 - cpu0) / calls / wall, 3),
        "caller_cpu_pct": round(100 * caller_cpu / wall, 1),
        "wall_s": round(wall, 2), "errors": errors[:3],
    }


def _by_part(profile: str) -> dict[str, float]:
    """Own time by part of the stack (% of profiled time, idle epoll wait separated)."""
    st = pstats.Stats(profile)
    # Stats.total_tt and Stats.stats are pstats' own (undocumented) tables: typeshed omits them.
    total = st.total_tt or 1.0  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    for (file, _line, fn), (_cc, _nc, tt, _ct, _) in st.stats.items():  # type: ignore[attr-defined]
        if "epoll" in fn or ("select" in fn and file == "~"):
            key = "idle (epoll wait)"
        elif "aioquic" in file:
            key = "aioquic (QUIC/TLS in Python)"
        elif "websockets" in file:
            key = "websockets (model leg, WS ingress)"
        elif "clutchcall" in file or "/prod/" in file or "/engine/" in file:
            key = "clutchcall (pipeline, engine, MoQT, ingress)"
        elif "asyncio" in file:
            key = "asyncio event loop"
        elif file == "~" and ("sendto" in fn or "recv" in fn or "send" in fn):
            key = "socket syscalls"
        else:
            key = "other (json, base64, numpy, soxr, ...)"
        parts[key] = parts.get(key, 0.0) + tt
    return {k: round(100 * v / total, 1) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}


def _top(profile: str, n: int = 15) -> list[dict[str, Any]]:
    st = pstats.Stats(profile)
    # Stats.total_tt and Stats.stats are pstats' own (undocumented) tables: typeshed omits them.
    rows = []
    total = st.total_tt or 1.0  # type: ignore[attr-defined]
    for (file, line, fn), (_cc, nc, tt, ct, _) in sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:n]:  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({fn})", "calls": nc,
                     "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3), "pct_own": round(100 * tt / total, 1)})
    return rows


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark (one run, or the search); return the report."""
    model, url = await _start_model(args.ttfa_ms)
    runs: list[dict[str, Any]] = []
    profile_top = None
    profile_parts = None
    try:
        with tempfile.TemporaryDirectory(prefix="clutchcall-bench-edge-") as work:
            def ok(r: dict[str, Any]) -> bool:
                p99 = r["edge_added_ms_p99"]
                return p99 is not None and p99 <= args.p99_ms and r["calls_failed"] == 0
            n = args.calls
            best: int | None = None
            worst: int | None = None
            prog = bar((args.max_runs if args.search else 1) + bool(args.profile), "bench edge",
                       enabled=wanted(args), unit="run")
            for _ in range(args.max_runs if args.search else 1):
                r = await run_once(n, args.seconds, args.transport, url, work, io=args.io, shards=args.shards,
                                   ramp_s=args.ramp_s)
                runs.append(r)
                prog.update(1)
                line = (f"  {n:>5} calls: edge-added p50 {r['edge_added_ms_p50']} p99 {r['edge_added_ms_p99']} ms, "
                        f"edge CPU {r['edge_cpu_pct']}% ({r['edge_cpu_pct_per_call']}%/call), "
                        f"callers CPU {r['caller_cpu_pct']}%, lost {r['frames_lost']:.0f}")
                if not prog.disable:
                    prog.write(line, file=sys.stderr)
                elif not (getattr(args, "no_progress", False) or args.json):  # run log, as before
                    print(line, file=sys.stderr, flush=True)
                if ok(r):
                    best = max(best or 0, n)
                else:
                    worst = n if worst is None else min(worst, n)
                nxt = (n * 2 if worst is None else (best + worst) // 2) if best is not None else n // 2
                nxt = min(nxt, args.max_calls)
                if nxt < 1 or nxt in (best, worst, n) or any(x["calls"] == nxt for x in runs):
                    break
                if best is not None and worst is not None and worst - best <= max(1, best // 10):
                    break
                n = nxt
            if args.profile:
                prof = str(Path(work) / "edge.pstats")
                await run_once(args.calls, args.seconds, args.transport, url, work, profile=prof,
                               io=args.io, shards=1, ramp_s=args.ramp_s)
                if os.path.exists(prof):  # noqa: ASYNC240 -- one stat after the run
                    profile_top = _top(prof)
                    profile_parts = _by_part(prof)
                prog.update(1)
            prog.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            model.terminate()
        await model.wait()
    main = runs[0]
    return {**main, "p99_goal_ms": args.p99_ms,
            "largest_calls_p99_ok": best if (args.search or ok(main)) else None,
            "smallest_calls_p99_over": worst,
            "searched": args.search, "runs": runs if len(runs) > 1 else None, "profile_top": profile_top,
            "profile_parts_pct": profile_parts}


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures; returns the exit code."""
    if args.calls < 1 or args.seconds <= 0 or args.max_runs < 1 or args.ramp_s < 0:
        print("--calls >= 1, --seconds > 0, --max-runs >= 1, --ramp-s >= 0", file=sys.stderr)
        return 2
    logging.getLogger("clutchcall").setLevel(logging.ERROR)
    res = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(res))
        return 0
    for k, v in res.items():
        if k in ("runs", "profile_top", "profile_parts_pct") or v is None:
            continue
        print(f"{k:>30}  {v}")
    if res["profile_parts_pct"]:
        print("\nedge profile (cProfile), own time by part: "
              + ", ".join(f"{k} {v}%" for k, v in res["profile_parts_pct"].items()))
    if res["profile_top"]:
        print("\nedge profile (cProfile, top functions by own time):")
        for row in res["profile_top"]:
            print(f"  {row['pct_own']:>5}%  {row['tottime_s']:>8}s own  {row['cumtime_s']:>8}s cum  {row['function']}")
    return 0
