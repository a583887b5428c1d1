"""``clutchcall bench edge``: N concurrent real callers against the edge and the embedded model.

Theory of operation: separate processes, so each one's CPU is its own. The embedded reference
model runs as ``clutchcall model serve``; the edge runs as ``clutchcall serve`` pointed at it
(no traces, logs at error level, ``--summary-json`` so the turn records come back exactly);
caller workers run N real callers (:class:`~clutchcall.prod.caller.client.Caller`) over QUIC/MoQT
(PCM16 16 kHz) or WebSocket/TLS (G.711 8 kHz), each playing real espeak-ng speech at 1x for
``--seconds`` (a question, then silence while the agent answers, repeated), with starts spread
over ``--ramp-s`` (1 s) and frame phases at random. Per run it reports: committed turns, the edge's turn latency and
edge-added latency percentiles (ms; edge-added = turn latency - end-of-turn silence - the
model's own time to first audio, measured inside the edge), frames lost and late at the edge,
the edge process's CPU (from ``/proc/PID/stat``) as % of one core per call
(``edge_cpu_pct_per_call``) and per caller frame it processed (``edge_cpu_us_per_frame``), and
the caller workers' CPU (``caller_cpu_pct``: when callers saturate their core, their 1x clock
slips and that shows up as held frames; the figure says when a run is caller-bound rather
than edge-bound). The callers run in ``--caller-procs`` worker processes of their own, many
calls each (:mod:`clutchcall.prod.edge.bench_callers`), on the same QUIC core as the edge
(``--quic-core``) with audio in DATAGRAMs where negotiated (``--audio-transport``); the
model is the embedded reference model (``--model-mode speak``, or the cheap ``echo``). QUIC
runs also report ``packets_per_frame_up`` / ``_down``: UDP datagrams the edge received / sent
per caller frame it received (one caller frame = one 20 ms tick of one call). ``--call-loop``
(``call_loop``) is the edge's call loop: ``batched`` (one scheduler per shard) or ``per-call``;
``--call-loop-slack-ms`` (``call_loop_slack_ms``) its pass slack (serve's flag: deadlines up to
that far apart share a pass, each up to that much later; default 0).

``--search`` runs a bounded step search (doubling, then bisection, at most ``--max-runs``
runs) for the largest N whose edge-added p99 stays <= ``--p99-ms`` (5 ms), once per leg of
``--legs`` (QUIC on each core, and WebSocket): ``largest_calls_p99_ok_by_leg``. ``--profile`` adds
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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from clutchcall.prod.cmd_bench_pipeline import QUESTIONS, REPLY  # the same script as bench pipeline
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
    parser.add_argument("--quic-core", choices=("aioquic", "qh3"), default=None,
                        help="QUIC core of the edge and the callers (default: the edge's default core)")
    parser.add_argument("--audio-transport", choices=("auto", "stream"), default="auto",
                        help="auto: audio in QUIC DATAGRAMs (negotiated); stream: subgroup streams")
    parser.add_argument("--caller-procs", type=int, default=0,
                        help="caller worker processes (default: one per 50 calls)")
    parser.add_argument("--call-loop", choices=("batched", "per-call"), default="batched",
                        help="the edge's call loop (serve --call-loop): one scheduler per shard "
                             "(default) or a loop timer per call")
    parser.add_argument("--call-loop-slack-ms", type=float, default=0.0,
                        help="the batched loop's pass slack (serve --call-loop-slack-ms, 0..2; default 0)")
    parser.add_argument("--model-mode", choices=("speak", "echo"), default="speak",
                        help="embedded model: espeak replies (default) or the cheap echo of the turn")
    parser.add_argument("--legs", default="qh3,aioquic,ws",
                        help="with --search: the legs searched, comma list of QUIC cores and ws "
                             "(default qh3,aioquic,ws)")
    add_flag(parser)


def _pct(xs: list[float], q: float) -> float | None:
    return None if not xs else round(float(np.percentile(np.asarray(xs), q)), 3)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def _start_model(ttfa_ms: int, mode: str = "speak") -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clutchcall.cli", "model", "serve", "--ttfa-ms", str(ttfa_ms),
        "--reply", REPLY, "--mode", mode, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    return proc, json.loads(line)["url"]


async def _start_callers(n_procs: int, spec: dict[str, Any], calls: list[dict[str, Any]]
                         ) -> list[asyncio.subprocess.Process]:
    """Start ``n_procs`` caller workers (prod.edge.bench_callers), hand each its share of
    ``calls``, and return them once every one has said it is ready."""
    procs = []
    for k in range(n_procs):
        mine = calls[k::n_procs]
        if not mine:
            continue
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clutchcall.prod.edge.bench_callers", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, limit=1 << 24)
        assert proc.stdin is not None
        proc.stdin.write((json.dumps({**spec, "calls": mine}) + "\n").encode())
        await proc.stdin.drain()
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError("a caller worker exited before it was ready")
    return procs


def _packets(stopped: dict[str, Any]) -> dict[str, int]:
    """Sum the edge's (or every shard's) ``quic_packets`` counters from its stop line."""
    parts = stopped.get("shards") if isinstance(stopped.get("shards"), list) else [stopped]
    out: dict[str, int] = {}
    for part in parts or []:
        for k, v in (part.get("quic_packets") or {}).items():
            out[k] = out.get(k, 0) + int(v)
    return out


def _call_loop(stopped: dict[str, Any]) -> dict[str, int]:
    """Sum the batched call loop's scheduler counters (passes, fired) of the edge or its shards."""
    parts = stopped.get("shards") if isinstance(stopped.get("shards"), list) else [stopped]
    out = {"passes": 0, "fired": 0}
    for part in parts or []:
        for k in out:
            out[k] += int((part.get("call_loop") or {}).get(k, 0))
    return out


def _audio_modes(stopped: dict[str, Any]) -> dict[str, int]:
    parts = stopped.get("shards") if isinstance(stopped.get("shards"), list) else [stopped]
    out: dict[str, int] = {}
    for part in parts or []:
        for k, v in (part.get("quic") or {}).items():
            if k.startswith("audio_transport_"):
                out[k[16:]] = out.get(k[16:], 0) + int(v)
    return out


async def run_once(calls: int, seconds: float, transport: str, model_url: str,
                   workdir: str, profile: str | None = None, io: str = "asyncio",
                   shards: int = 1, ramp_s: float = 1.0, quic_core: str | None = None,
                   audio_transport: str = "auto", caller_procs: int = 0,
                   call_loop: str = "batched", call_loop_slack_ms: float = 0.0) -> dict[str, Any]:
    """One load run with ``calls`` callers in ``caller_procs`` worker processes (0: one per 50
    calls); return its figures (module docstring)."""
    from clutchcall.prod.quic.core import default_quic_core

    core = quic_core or default_quic_core()
    summary_path = Path(workdir) / f"summary-{calls}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "clutchcall.cli", "serve", "--quic-port", "0", "--ws-port", "0",
           # no browser caller (--web-port -1): the bench does not use it, and its fixed
           # default port 4433 made a run fail while any other serve on the box held it
           "--metrics-port", "-1", "--web-port", "-1", "--ready-json", "--no-trace", "--model-url", model_url,
           "--log-level", "error", "--call-id", "bench", "--tokens", str(calls),
           "--cert-dir", str(Path(workdir) / "tls"), "--summary-json", str(summary_path),
           "--idle-timeout", "30", "--grace", "2", "--io", io, "--shards", str(shards),
           "--quic-core", core, "--audio-transport", audio_transport, "--call-loop", call_loop,
           "--call-loop-slack-ms", str(call_loop_slack_ms)]
    if profile:
        cmd += ["--profile", profile]
    edge = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL, limit=1 << 24)
    assert edge.stdout is not None
    workers: list[asyncio.subprocess.Process] = []
    stopped: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    try:
        ready = json.loads(await asyncio.wait_for(edge.stdout.readline(), 60))
        pids = ready.get("pids") or [edge.pid]
        codec, rate = ("pcm16", 16000) if transport == "quic" else ("g711_ulaw", 8000)
        # starts spread over the ramp, frame phases at random (as real callers')
        phases = np.random.default_rng(calls).uniform(0.0, 0.02, calls)
        plan = [{"call_id": f"bench-{i}", "token": ready["tokens"][f"bench-{i}"],
                 "start_s": ramp_s * i / max(calls, 1) + float(phases[i]), "script": i % len(QUESTIONS)}
                for i in range(calls)]
        spec = {"transport": transport, "codec": codec, "rate": rate, "seconds": seconds,
                "quic_port": ready["quic_port"], "ws_port": ready["ws_port"], "cert": ready["cert"],
                "quic_core": core, "audio_transport": audio_transport}
        n_procs = caller_procs or max(1, -(-calls // 50))
        workers = await _start_callers(n_procs, spec, plan)
        loop = asyncio.get_running_loop()
        t0 = time.monotonic() + 0.2
        for w in workers:
            assert w.stdin is not None
            w.stdin.write((json.dumps({"t0": t0}) + "\n").encode())
            await w.stdin.drain()
        cpu0, ccpu0, wall0 = sum(_cpu_s(p) for p in pids), sum(_cpu_s(w.pid) for w in workers), loop.time()
        cpu1 = ccpu1 = None
        for w in workers:
            assert w.stdout is not None
            line = await asyncio.wait_for(w.stdout.readline(), seconds + 120)
            if line:
                results += json.loads(line)["results"]
            else:
                results.append({"call_id": "?", "error": "caller worker died"})
        wall1 = loop.time()
        cpu1 = sum(_cpu_s(p) for p in pids)
        ccpu1 = 0.0
        for w in workers:
            with contextlib.suppress(OSError):
                ccpu1 += _cpu_s(w.pid)
    finally:
        for w in workers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(w.wait(), 10)
            if w.returncode is None:
                w.kill()
                await w.wait()
        with contextlib.suppress(ProcessLookupError):
            edge.terminate()
        out = b""
        with contextlib.suppress(asyncio.TimeoutError):
            out, _ = await asyncio.wait_for(edge.communicate(), 60)
        if edge.returncode is None:
            edge.kill()
            await edge.wait()
        for out_line in (out or b"").decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out_doc = json.loads(out_line)
                if isinstance(out_doc, dict) and out_doc.get("stopped"):
                    stopped = out_doc
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
    ok = [r for r in results if not r.get("error")]
    errors = [r["error"] for r in results if r.get("error")]
    wall = wall1 - wall0
    # the caller workers' CPU over the run (their start-up, imports and speech rendering excluded)
    caller_cpu = (ccpu1 or 0.0) - ccpu0
    pk = _packets(stopped)
    modes = _audio_modes(stopped)
    up_frames = pk.get("uplink_frames", 0)
    return {
        "calls": calls, "seconds": seconds, "transport": transport, "io": ready.get("io"),
        "shards": shards, "quic_core": core if transport == "quic" else None, "call_loop": call_loop,
        "call_loop_slack_ms": call_loop_slack_ms if call_loop == "batched" else None,
        # what the calls actually used (the edge's per-session decision): datagram if any did
        "audio_transport": (("datagram" if modes.get("datagram") else "stream") if transport == "quic"
                            else "stream"),
        "audio_transport_sessions": modes if transport == "quic" else None,
        "turns": len(turns),
        "calls_completed": len(ok), "calls_failed": len(errors) + sum(1 for c in doc["calls"] if c["failed"]),
        "edge_added_ms_p50": _pct(added, 50), "edge_added_ms_p95": _pct(added, 95),
        "edge_added_ms_p99": _pct(added, 99), "edge_added_ms_max": _pct(added, 100),
        "turn_latency_ms_p50": _pct(lat, 50), "turn_latency_ms_p99": _pct(lat, 99),
        "uplink_hold_ms_p99": _pct(holds, 99),
        "frames_sent": sum(r["frames_sent"] for r in ok),
        "frames_lost": _metric(doc["metrics"], "clutchcall_frames_lost_total"),
        "frames_late": _metric(doc["metrics"], "clutchcall_frames_late_total"),
        "agent_frames_received": sum(r["agent_frames_received"] for r in ok),
        "model_errors": _metric(doc["metrics"], "clutchcall_model_errors_total"),
        # UDP datagrams per caller audio frame at the edge, each way (QUIC only): up = datagrams
        # the edge received / caller frames it received; down = datagrams the edge sent / the
        # same caller frames (one caller frame = one 20 ms tick of a call: agent audio while the
        # agent talks, ACKs, control). Ideal up 1.0; down = agent-talk share + ACK share.
        "packets_per_frame_up": round(pk["udp_rx_datagrams"] / up_frames, 3) if up_frames else None,
        "packets_per_frame_down": round(pk["udp_tx_datagrams"] / up_frames, 3) if up_frames else None,
        "quic_packets": pk or None,
        # batched call loop: call deadlines (call core + uplink jitter buffer) run per timer
        # pass of the shard's one scheduler (None with --call-loop per-call: one per timer)
        "call_loop_calls_per_pass": (round(cl["fired"] / cl["passes"], 2)
                                     if (cl := _call_loop(stopped))["passes"] else None),
        "edge_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "edge_cpu_pct_per_call": round(100 * (cpu1 - cpu0) / wall / calls, 3),
        "edge_cpu_ms_per_call_second": round(1000 * (cpu1 - cpu0) / calls / wall, 3),
        # edge CPU per caller frame the edge actually processed (QUIC; us): the cost figure that
        # stays honest on a shared, oversubscribed box, where a starved edge falls behind and
        # processes fewer frames in the window (which makes the per-call % look cheaper)
        "edge_cpu_us_per_frame": round(1e6 * (cpu1 - cpu0) / up_frames, 1) if up_frames else None,
        "caller_cpu_pct": round(100 * caller_cpu / wall, 1),
        "caller_procs": len(workers),
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
        elif "qh3" in file:
            key = "qh3 (Python shell + native core calls)"
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


def _leg(name: str) -> tuple[str, str | None]:
    """Return (transport, QUIC core) of a ``--legs`` entry: "ws" or a QUIC core's name."""
    from clutchcall.prod.quic.core import QUIC_CORES

    if name == "ws":
        return "ws", None
    if name in QUIC_CORES:
        return "quic", name
    raise ValueError(f"--legs: ws or one of {', '.join(QUIC_CORES)}, got {name!r}")


async def _search(args: argparse.Namespace, url: str, work: str, transport: str, core: str | None,
                  prog: Any = None) -> tuple[list[dict[str, Any]], int | None, int | None]:
    """Step-search one leg: return (runs, largest N with p99 ok, smallest N over)."""
    runs: list[dict[str, Any]] = []
    n = args.calls
    best: int | None = None
    worst: int | None = None
    for _ in range(args.max_runs if args.search else 1):
        r = await run_once(n, args.seconds, transport, url, work, io=args.io, shards=args.shards,
                           ramp_s=args.ramp_s, quic_core=core, audio_transport=args.audio_transport,
                           caller_procs=args.caller_procs, call_loop=args.call_loop,
                           call_loop_slack_ms=args.call_loop_slack_ms)
        runs.append(r)
        leg = core or transport
        line = (f"  {leg:>8} {n:>5} calls: edge-added p50 {r['edge_added_ms_p50']} p99 {r['edge_added_ms_p99']} ms, "
                f"edge CPU {r['edge_cpu_pct']}% ({r['edge_cpu_pct_per_call']}%/call), "
                f"callers CPU {r['caller_cpu_pct']}%, lost {r['frames_lost']:.0f}, "
                f"pkts/frame up {r['packets_per_frame_up']} down {r['packets_per_frame_down']}")
        if prog is not None:
            prog.update(1)
        if prog is not None and not prog.disable:
            prog.write(line, file=sys.stderr)
        elif not (getattr(args, "no_progress", False) or args.json):  # run log, as before
            print(line, file=sys.stderr, flush=True)
        if _ok(r, args.p99_ms):
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
    return runs, best, worst


def _ok(r: dict[str, Any], p99_ms: float) -> bool:
    p99 = r["edge_added_ms_p99"]
    return p99 is not None and p99 <= p99_ms and r["calls_failed"] == 0


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark (one run, or the search of every leg); return the report."""
    model, url = await _start_model(args.ttfa_ms, args.model_mode)
    profile_top = None
    profile_parts = None
    legs = ([_leg(x.strip()) for x in args.legs.split(",") if x.strip()] if args.search
            else [(args.transport, args.quic_core if args.transport == "quic" else None)])
    by_leg: dict[str, Any] = {}
    all_runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="clutchcall-bench-edge-") as work:
            first: tuple[list[dict[str, Any]], int | None, int | None] | None = None
            prog = bar(len(legs) * (args.max_runs if args.search else 1) + bool(args.profile),
                       "bench edge", enabled=wanted(args), unit="run")
            for transport, core in legs:
                res = await _search(args, url, work, transport, core, prog)
                first = first or res
                all_runs += res[0]
                by_leg[core or transport] = {"largest_calls_p99_ok": res[1], "smallest_calls_p99_over": res[2],
                                             "quic_core": res[0][0]["quic_core"]}
            if args.profile:
                prof = str(Path(work) / "edge.pstats")
                await run_once(args.calls, args.seconds, args.transport, url, work, profile=prof,
                               io=args.io, shards=1, ramp_s=args.ramp_s, quic_core=args.quic_core,
                               audio_transport=args.audio_transport, caller_procs=args.caller_procs,
                               call_loop=args.call_loop, call_loop_slack_ms=args.call_loop_slack_ms)
                if os.path.exists(prof):  # noqa: ASYNC240 -- one stat after the run
                    profile_top = _top(prof)
                    profile_parts = _by_part(prof)
                prog.update(1)
            prog.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            model.terminate()
        await model.wait()
    assert first is not None
    runs, best, worst = first
    main = runs[0]
    return {**main, "p99_goal_ms": args.p99_ms, "model_mode": args.model_mode,
            "largest_calls_p99_ok": best if (args.search or _ok(main, args.p99_ms)) else None,
            "smallest_calls_p99_over": worst,
            "largest_calls_p99_ok_by_leg": by_leg if args.search else None,
            "searched": args.search, "runs": all_runs if len(all_runs) > 1 else None, "profile_top": profile_top,
            "profile_parts_pct": profile_parts}


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures; returns the exit code."""
    if args.calls < 1 or args.seconds <= 0 or args.max_runs < 1 or args.ramp_s < 0 or args.caller_procs < 0:
        print("--calls >= 1, --seconds > 0, --max-runs >= 1, --ramp-s >= 0, --caller-procs >= 0", file=sys.stderr)
        return 2
    try:
        [_leg(x.strip()) for x in args.legs.split(",") if x.strip()]
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    logging.getLogger("clutchcall").setLevel(logging.ERROR)
    res = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(res))
        return 0
    for k, v in res.items():
        if k in ("runs", "profile_top", "profile_parts_pct", "largest_calls_p99_ok_by_leg") or v is None:
            continue
        print(f"{k:>30}  {v}")
    if res["largest_calls_p99_ok_by_leg"]:
        print("\nlargest calls with edge-added p99 <= goal, by leg: "
              + ", ".join(f"{k} {v['largest_calls_p99_ok']}" for k, v in res["largest_calls_p99_ok_by_leg"].items()))
    if res["profile_parts_pct"]:
        print("\nedge profile (cProfile), own time by part: "
              + ", ".join(f"{k} {v}%" for k, v in res["profile_parts_pct"].items()))
    if res["profile_top"]:
        print("\nedge profile (cProfile, top functions by own time):")
        for row in res["profile_top"]:
            print(f"  {row['pct_own']:>5}%  {row['tottime_s']:>8}s own  {row['cumtime_s']:>8}s cum  {row['function']}")
    return 0
