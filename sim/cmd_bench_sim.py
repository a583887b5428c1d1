"""``clutchcall bench sim``: simulated call-seconds per wall-second.

Three figures, each the median of several runs in this process, on generated labelled calls
(:func:`clutchcall.sim.calls.synthetic_call`) over a 50 ms RTT path with 1 % loss and 2 ms
mean jitter:

* ``engine_only`` -- the engine inputs recorded from a simulated call, replayed through a fresh
  :class:`~clutchcall.engine.TurnEngine` with a drain after each (no simpy, no network): the
  cost of the turn decisions alone. Goal >= 10,000x.
* ``fast_quic`` / ``fast_tcp`` -- the whole world (simpy, jitter buffer, engine, model, agent
  audio, downlink) with the fast packet-level transport models. Goal >= 1,000x.
* ``exact_quic`` -- the same with aioquic's real QuicConnection pair per direction (real TLS
  1.3, real ACK/loss/PTO machinery): whatever aioquic allows.

``ratio_*`` compare each against ``engine_only`` measured in the same process;
``*_per_cpu_second`` give the same figures per CPU-second of this process (steadier than
wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from clutchcall.engine.call import MemoryRecorder, replay
from clutchcall.sim.calls import synthetic_call
from clutchcall.sim.config import NetConfig, SimConfig
from clutchcall.sim.world import simulate_call


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="call length (fast runs)")
    parser.add_argument("--exact-seconds", type=float, default=60.0, help="call length (exact)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


_CPU: dict[int, float] = {}


def _median_speed(fn: Callable[[], object], seconds: float, runs: int) -> float:
    """Return call-seconds per wall-second (median); the CPU-time figure goes to _CPU."""
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    _CPU[id(fn)] = seconds / max(statistics.median(cpu), 1e-9)
    return seconds / statistics.median(times)


def measure(seconds: float = 600.0, exact_seconds: float = 60.0, runs: int = 5) -> dict[str, float]:
    """Return the benchmark figures (call-seconds per wall-second, and ratios)."""
    call = synthetic_call(11, seconds)
    short = synthetic_call(12, exact_seconds)

    def cfg(transport: str) -> SimConfig:
        return SimConfig(net=NetConfig.symmetric(transport=transport, rtt_ms=50, loss=0.01,
                                                 jitter_ms=2.0))

    log = MemoryRecorder()
    simulate_call(call, cfg("quic"), log)
    turn = cfg("quic").turn
    res: dict[str, float] = {"call_seconds": seconds, "frames": len(call.speech),
                             "engine_inputs": len(log.inputs)}
    jobs: dict[str, tuple[Callable[[], object], float, int]] = {
        "engine_only": (lambda: replay(turn, log.inputs), seconds, runs),
        "fast_quic": (lambda: simulate_call(call, cfg("quic")), seconds, runs),
        "fast_tcp": (lambda: simulate_call(call, cfg("tcp")), seconds, runs),
        "exact_quic": (lambda: simulate_call(short, cfg("quic-exact")), exact_seconds,
                       max(1, min(runs, 3))),
    }
    for name, (fn, secs, n) in jobs.items():
        res[name] = _median_speed(fn, secs, n)
        res[name + "_per_cpu_second"] = _CPU[id(fn)]
    for k in ("fast_quic", "fast_tcp", "exact_quic"):
        res[f"ratio_{k}_to_engine_only"] = res[k] / res["engine_only"]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}


def run(args: argparse.Namespace) -> int:
    res = measure(args.seconds, args.exact_seconds, args.runs)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"simulated call-seconds per second (median of {args.runs} runs; "
          f"{args.seconds:g} s call, exact mode on {args.exact_seconds:g} s)")
    goals = {"engine_only": "goal >= 10,000x", "fast_quic": "goal >= 1,000x",
             "fast_tcp": "goal >= 1,000x", "exact_quic": "aioquic: what it allows"}
    print(f"  {'':<12} {'per wall-s':>11} {'per CPU-s':>11}")
    for k, goal in goals.items():
        ratio = "" if k == "engine_only" else \
            f"; {res['ratio_' + k + '_to_engine_only']:.3f} of engine-only"
        print(f"  {k:<12} {res[k]:>10.0f}x {res[k + '_per_cpu_second']:>10.0f}x   ({goal}{ratio})")
    return 0
