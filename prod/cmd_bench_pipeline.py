"""``clutchcall bench pipeline``: N concurrent calls through the per-call pipeline.

Theory of operation: the embedded reference model runs in its own process (``clutchcall model
serve``, so its CPU does not share the edge's core); this process runs N
:class:`~clutchcall.prod.pipeline.CallPipeline` instances on one asyncio loop, each fed by an
in-process caller that plays real espeak-ng speech at 1x (20 ms PCM16 frames at 16 kHz: a
question, then silence while the agent answers, in a loop) and a downlink that counts frames.
There is no caller transport here (that is ``bench edge``): the figures are the pipeline's own
cost -- VAD, resampling, the turn engine, the model leg's JSON/base64 WebSocket traffic and the
1x downlink pacer. Reported: turns, turn latency and edge-added latency percentiles (ms), frames
late/lost, model errors, the event loop's lag (a 10 ms ticker's overshoot, p50/p99, under load
and idle before the calls start: the baseline of this machine at that moment), and CPU: the
edge process's CPU per call (% of one core, including the in-process callers) and the model's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from clutchcall.engine.call import TurnRecord
from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model.speech import render_speech_sync
from clutchcall.prod.pipeline import CallerFrame, CallPipeline, PipelineConfig

RATE = 16000
FRAME = RATE // 50
QUESTIONS = ("Where is my order?", "Can I change the delivery address please?",
             "What time do you open tomorrow?")
REPLY = "Sure. It arrives on Friday."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each call (s)")
    parser.add_argument("--ttfa-ms", type=int, default=200, help="model time to first audio (ms)")
    parser.add_argument("--quality", default="auto", choices=("auto", "QQ", "LQ", "MQ", "HQ", "VHQ"),
                        help="soxr quality of the 16 kHz <-> 24 kHz resamplers (default HQ)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class _CountingDownlink:
    def __init__(self) -> None:
        self.frames = 0
        self.clears = 0

    async def send_agent_audio(self, payload: bytes) -> None:
        self.frames += 1

    async def clear_playout(self) -> None:
        self.clears += 1

    async def send_control(self, event: dict[str, Any]) -> None:
        pass


def _script() -> list[np.ndarray]:
    out = []
    for q in QUESTIONS:
        pcm = np.frombuffer(render_speech_sync(q, RATE), dtype="<i2")
        out.append(np.concatenate([np.zeros(RATE * 3 // 10, np.int16), pcm, np.zeros(RATE * 3, np.int16)]))
    return out


async def _caller(script: list[np.ndarray], offset: int, start: float, seconds: float) -> AsyncIterator[CallerFrame]:
    loop = asyncio.get_running_loop()
    pcm = np.concatenate(script[offset % len(script):] + script[: offset % len(script)])
    n = int(seconds * 50)
    for k in range(n):
        delay = start + (k + 1) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        i = (k * FRAME) % (len(pcm) - FRAME)
        yield CallerFrame(pcm[i:i + FRAME].tobytes(), seq=k, ts=k * 0.02)


async def _lag_probe(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - t - 0.01)


def _pct(xs: list[float], q: float) -> float | None:
    return None if not xs else round(float(np.percentile(np.asarray(xs), q)), 6)


async def bench(calls: int, seconds: float, ttfa_ms: int, quality: str = "auto") -> dict[str, Any]:
    """Run the benchmark; return its figures (see the module docstring)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clutchcall.cli", "model", "serve", "--ttfa-ms", str(ttfa_ms),
        "--reply", REPLY, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        url = json.loads(line)["url"]
        script = _script()
        # baseline: how late an idle loop's 10 ms timer wakes on this machine right now
        idle: list[float] = []
        idle_stop = asyncio.Event()
        idle_probe = asyncio.create_task(_lag_probe(idle_stop, idle))
        await asyncio.sleep(2.0)
        idle_stop.set()
        await idle_probe
        metrics = EdgeMetrics()
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.5
        downs = [_CountingDownlink() for _ in range(calls)]
        pipes = [CallPipeline(downs[i], call_id=f"bench-{i}", metrics=metrics, model_url=url,
                              config=PipelineConfig(caller_rate=RATE, drain_timeout_s=0.0,
                                                    resample_quality=quality),
                              record_outputs=False) for i in range(calls)]
        stop = asyncio.Event()
        lags: list[float] = []
        probe = asyncio.create_task(_lag_probe(stop, lags))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(
            p.run(_caller(script, i, t0 + (i % 50) * 0.02 + (i // 50) * 0.0037, seconds))
            for i, p in enumerate(pipes)), return_exceptions=True)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        stop.set()
        await probe
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
    turns: list[TurnRecord] = [t for r in results if isinstance(r, list) for t in r]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    edge = [t.edge_added_ms for t in turns if t.edge_added_ms is not None]
    lat = [t.turn_latency_ms for t in turns if t.turn_latency_ms is not None]
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = wall1 - wall0
    return {
        "calls": calls, "seconds": seconds, "quality": quality, "turns": len(turns),
        "turn_latency_ms_p50": _pct(lat, 50), "turn_latency_ms_p95": _pct(lat, 95),
        "edge_added_ms_p50": _pct(edge, 50), "edge_added_ms_p95": _pct(edge, 95),
        "edge_added_ms_p99": _pct(edge, 99), "edge_added_ms_max": _pct(edge, 100),
        "commit_delay_ms_p50": _pct([t.commit_delay_ms for t in turns if t.commit_delay_ms is not None], 50),
        "commit_delay_ms_p99": _pct([t.commit_delay_ms for t in turns if t.commit_delay_ms is not None], 99),
        "request_delay_ms_p99": _pct([t.request_delay_ms for t in turns if t.request_delay_ms is not None], 99),
        "downlink_delay_ms_p50": _pct([t.downlink_delay_ms for t in turns if t.downlink_delay_ms is not None], 50),
        "downlink_delay_ms_p99": _pct([t.downlink_delay_ms for t in turns if t.downlink_delay_ms is not None], 99),
        "uplink_hold_ms_p99": _pct([t.uplink_hold_ms for t in turns if t.uplink_hold_ms is not None], 99),
        "frames_late": metrics.value("clutchcall_frames_late_total"),
        "frames_lost": metrics.value("clutchcall_frames_lost_total"),
        "model_errors": sum(s.value for m in metrics.model_errors.collect() for s in m.samples
                            if s.name.endswith("_total")),
        "agent_frames": sum(d.frames for d in downs),
        "failed_calls": sum(1 for p in pipes if p.failed) + len(errors),
        # _pct returns None only for an empty list, which the conditionals exclude
        "loop_lag_ms_p50": None if not lags else round(_pct(lags, 50) * 1000, 3),  # type: ignore[operator]
        "loop_lag_ms_p99": None if not lags else round(_pct(lags, 99) * 1000, 3),  # type: ignore[operator]
        "idle_loop_lag_ms_p50": None if not idle else round(_pct(idle, 50) * 1000, 3),  # type: ignore[operator]
        "idle_loop_lag_ms_p99": None if not idle else round(_pct(idle, 99) * 1000, 3),  # type: ignore[operator]
        "edge_cpu_pct_per_call": round(100 * (cpu1 - cpu0) / wall / calls, 3),
        "edge_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "model_cpu_pct": round(100 * (child.ru_utime + child.ru_stime) / wall, 1),
        "errors": errors[:3],
    }


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures; returns the exit code."""
    if args.calls < 1 or args.seconds <= 0:
        print("--calls must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    logging.getLogger("clutchcall").setLevel(logging.ERROR)
    res = asyncio.run(bench(args.calls, args.seconds, args.ttfa_ms, args.quality))
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>24}  {v}")
    return 0
