"""``clutchcall bench audio``: real-time factor and calls per core of the audio paths.

Three per-call paths are timed at 20 ms frames, each with ``--calls`` concurrent call states
served round-robin by one thread (the process pins itself to one CPU), the way one core of
the edge would serve them:

* ``pstn_uplink``: G.711 mu-law 8 kHz payload -> decode -> webrtcvad (VadFramer at 8 kHz)
  -> soxr 8 -> 24 kHz -> PCM16 LE bytes for the model leg;
* ``opus_uplink``: Opus packet from a 48 kHz browser encoder -> libopus decode straight at
  24 kHz (see :class:`~clutchcall.engine.audio.codec.Transcoder`: no soxr stage) -> webrtcvad
  (VadFramer at 24 kHz, judged at 16 kHz) -> PCM16 LE bytes;
* ``pstn_downlink``: model PCM16 24 kHz bytes -> soxr 24 -> 8 kHz -> 20 ms frames -> mu-law;
* ``pstn_uplink_hq`` / ``pstn_downlink_hq`` (or ``_ll``): the same PSTN paths with the other
  resampler -- soxr "HQ" when the run uses the Transcoder default "auto" (= the low-latency
  polyphase "LL" for these pairs), "LL" otherwise.

The input is real speech (espeak-ng, falling back to a synthetic voiced signal if espeak-ng is
missing), encoded beforehand so only the path itself is timed. For each path we report the
median over ``--runs`` runs of CPU microseconds per frame (this thread's CPU time, so time
spent descheduled on a shared machine does not count; wall time is reported beside it), the
real-time factor (processing time / audio time, for one stream) and calls per core = 20 ms / (time per frame), i.e. how many
calls one core keeps up with at 100 % load (the best run is given too: on a shared machine
other processes inflate some runs). The default ``--calls 500`` is the goal itself, so the
call states' combined working set (soxr filter state, libopus state) is what the cache sees. A baseline runs in the same process: the same
PSTN uplink built from the stdlib's ``audioop`` (``ulaw2lin`` + ``ratecv``, linear
interpolation) plus the same VAD. The latency each resampler adds is measured per pair, for
soxr "HQ" and for "LL" (:func:`clutchcall.engine.audio.resample.measure_delay`). This module reads the clock; the
core modules of the package do not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

from clutchcall.engine.audio.codec import Codec, Transcoder
from clutchcall.engine.audio.g711 import ulaw_encode
from clutchcall.engine.audio.metrics import frames_of
from clutchcall.engine.audio.opus import OpusEncoder, opus_version
from clutchcall.engine.audio.resample import LOW_LATENCY, measure_delay
from clutchcall.engine.audio.vad import VadFramer

FRAME_MS = 20
TEXT = (
    "Hello, I would like to change the delivery address for my order, please. "
    "It should go to forty two Baker Street, not the old office. Yes, that is right."
)
DELAY_PAIRS = [(8000, 24000), (24000, 8000), (16000, 24000), (24000, 16000), (48000, 24000),
               (24000, 48000), (8000, 16000), (48000, 16000)]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=500, help="concurrent call states per path")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio seconds per call per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per path (the median is reported)")
    parser.add_argument("--quality", default="auto",
                        help="resampler quality: auto (LL where possible; the Transcoder default),"
                             " LL, or a soxr recipe (HQ, LQ, ...)")
    parser.add_argument("--aggressiveness", type=int, default=2, help="webrtcvad mode 0-3")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _speech(rates: tuple[int, ...]) -> tuple[dict[int, npt.NDArray[np.int16]], str]:
    """Speech at each rate: espeak-ng if installed, else a synthetic voiced signal."""
    src: npt.NDArray[np.float64]
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-w", str(path), TEXT], check=True, capture_output=True,
                           timeout=60)
            with wave.open(str(path), "rb") as w:
                src_rate = w.getframerate()
                src = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        source = "espeak-ng"
    else:  # pragma: no cover - CI installs espeak-ng
        src_rate = 16000
        t = np.arange(src_rate * 5) / src_rate
        f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / src_rate
        voiced = np.zeros_like(t)
        for k in range(1, 20):
            voiced += np.sin(k * phase) / k
        src = voiced * (np.sin(2 * np.pi * 2 * t) > -0.3)
        source = "synthetic"
    src *= 16384.0 / np.max(np.abs(src))
    out = {}
    for r in rates:
        y = soxr.resample(src, src_rate, r, quality="VHQ")
        out[r] = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
    return out, source


def _frames(pcm: npt.NDArray[np.int16], rate: int, seconds: float) -> list[npt.NDArray[np.int16]]:
    n = rate * FRAME_MS // 1000
    count = int(seconds * 1000 / FRAME_MS)
    return frames_of(np.resize(pcm, count * n), n)


def _time_round_robin(
    make: Callable[[], Callable[[bytes], object]], payloads: list[bytes], calls: int
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to push every payload through ``calls`` fresh call
    states, round-robin."""
    steps = [make() for _ in range(calls)]
    c0, t0 = time.thread_time(), time.perf_counter()
    for p in payloads:
        for step in steps:
            step(p)
    return time.thread_time() - c0, time.perf_counter() - t0


def _path_stats(elapsed: list[tuple[float, float]], frames: int, calls: int) -> dict[str, float]:
    cpu = [c for c, _ in elapsed]
    med = statistics.median(cpu)
    per_frame = med / (frames * calls)
    best = min(cpu) / (frames * calls)
    wall = statistics.median(w for _, w in elapsed) / (frames * calls)
    return {
        "us_per_frame": round(per_frame * 1e6, 2),
        "rtf": round(per_frame / (FRAME_MS / 1000), 5),
        "calls_per_core": round((FRAME_MS / 1000) / per_frame),
        "best_us_per_frame": round(best * 1e6, 2),
        "best_calls_per_core": round((FRAME_MS / 1000) / best),
        "spread_pct": round(100 * (max(cpu) - min(cpu)) / med, 1),
        "wall_us_per_frame": round(wall * 1e6, 2),
    }


def measure(
    calls: int = 500, seconds: float = 2.0, runs: int = 7, quality: str = "auto", aggressiveness: int = 2
) -> dict[str, object]:
    """Run the benchmark and return its figures as a dict (see the module docstring)."""
    speech, source = _speech((8000, 24000, 48000))
    ulaw_payloads = [ulaw_encode(f).tobytes() for f in _frames(speech[8000], 8000, seconds)]
    enc = OpusEncoder(48000, FRAME_MS)
    opus_payloads = [enc.encode(f) for f in _frames(speech[48000], 48000, seconds)]
    model_chunks = [f.astype("<i2").tobytes() for f in _frames(speech[24000], 24000, seconds)]
    frames = len(ulaw_payloads)

    def pstn_uplink_q(q: str) -> Callable[[], Callable[[bytes], object]]:
        def make() -> Callable[[bytes], object]:
            tr = Transcoder(Codec.G711_ULAW, 8000, 24000, FRAME_MS, q)
            vf = VadFramer(8000, FRAME_MS, aggressiveness)
            decode, to_model, push = tr.decode_caller, tr.to_model, vf.push

            def step(p: bytes) -> object:
                pcm = decode(p)
                return push(pcm), to_model(pcm)
            return step
        return make

    def pstn_downlink_q(q: str) -> Callable[[], Callable[[bytes], object]]:
        def make() -> Callable[[bytes], object]:
            return Transcoder(Codec.G711_ULAW, 8000, 24000, FRAME_MS, q).downlink
        return make

    def opus_uplink() -> Callable[[bytes], object]:
        tr = Transcoder(Codec.OPUS, 48000, 24000, FRAME_MS, quality)
        vf = VadFramer(tr.codec_rate, FRAME_MS, aggressiveness)
        decode, to_model, push = tr.decode_caller, tr.to_model, vf.push

        def step(p: bytes) -> object:
            pcm = decode(p)
            return push(pcm), to_model(pcm)
        return step

    def audioop_baseline() -> Callable[[bytes], object]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
        vf = VadFramer(8000, FRAME_MS, aggressiveness)
        state: list[tuple[int, tuple[tuple[int, int], ...]] | None] = [None]

        def step(p: bytes) -> object:
            lin = audioop.ulaw2lin(p, 2)
            pcm = np.frombuffer(lin, dtype=np.int16)
            up, state[0] = audioop.ratecv(lin, 2, 1, 8000, 24000, state[0])
            return vf.push(pcm), up
        return step

    paths: dict[str, tuple[Callable[[], Callable[[bytes], object]], list[bytes]]] = {
        "pstn_uplink": (pstn_uplink_q(quality), ulaw_payloads),
        "opus_uplink": (opus_uplink, opus_payloads),
        "pstn_downlink": (pstn_downlink_q(quality), model_chunks),
        "baseline_audioop_pstn_uplink": (audioop_baseline, ulaw_payloads),
    }
    # the same PSTN paths with the other resampler, for comparison
    other = "HQ" if Transcoder(Codec.G711_ULAW, 8000, quality=quality).quality == LOW_LATENCY else LOW_LATENCY
    paths[f"pstn_uplink_{other.lower()}"] = (pstn_uplink_q(other), ulaw_payloads)
    paths[f"pstn_downlink_{other.lower()}"] = (pstn_downlink_q(other), model_chunks)
    elapsed: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
    for _ in range(runs):  # interleave the paths so drift hits them alike
        for name, (make, payloads) in paths.items():
            elapsed[name].append(_time_round_robin(make, payloads, calls))
    stats = {name: _path_stats(e, frames, calls) for name, e in elapsed.items()}

    # stage costs of the PSTN uplink, one call state, same frames
    tr = Transcoder(Codec.G711_ULAW, 8000, 24000, FRAME_MS, quality)
    vf = VadFramer(8000, FRAME_MS, aggressiveness)
    pcms = [tr.decode_caller(p) for p in ulaw_payloads]
    stages: dict[str, Callable[[], object]] = {
        "ulaw_decode": lambda: [tr.decode_caller(p) for p in ulaw_payloads],
        "vad_8k": lambda: [vf.push(x) for x in pcms],
        "resample_8k_24k": lambda: [tr.to_model(x) for x in pcms],
    }
    stage_us: dict[str, float] = {}
    for name, fn in stages.items():
        ts = []
        for _ in range(runs):
            t0 = time.thread_time()
            for _ in range(10):
                fn()
            ts.append(time.thread_time() - t0)
        stage_us[name] = round(statistics.median(ts) / (10 * frames) * 1e6, 2)

    delays: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in DELAY_PAIRS:
        per_q = {}
        for q in ("HQ", LOW_LATENCY):
            r = measure_delay(a, b, quality=q, chunk_ms=FRAME_MS, clicks=8)
            per_q[q] = {
                "added_latency_ms": round(r.added_latency_ms, 2),
                "buffering_mean_ms": round(r.buffering_mean_ms, 2),
                "buffering_max_ms": round(r.buffering_max_ms, 2),
                "group_delay_ms": round(r.group_delay_ms, 2),
            }
        delays[f"{a // 1000}k_{b // 1000}k"] = per_q
    base = stats["baseline_audioop_pstn_uplink"]["us_per_frame"]
    return {
        "pstn_uplink_calls_per_core": stats["pstn_uplink"]["calls_per_core"],
        "opus_uplink_calls_per_core": stats["opus_uplink"]["calls_per_core"],
        "pstn_downlink_calls_per_core": stats["pstn_downlink"]["calls_per_core"],
        "paths": stats,
        "pstn_uplink_over_audioop_baseline": round(stats["pstn_uplink"]["us_per_frame"] / base, 2),
        "pstn_uplink_stage_us_per_frame": stage_us,
        "resampler_delay_ms": delays,
        "frame_ms": FRAME_MS,
        "calls": calls,
        "frames_per_call": frames,
        "runs": runs,
        "quality": quality,
        "vad_aggressiveness": aggressiveness,
        "speech": source,
        "libopus": opus_version(),
        "pinned_cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``clutchcall bench audio``; print a table or (``--json``) one JSON object."""
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
    res = measure(args.calls, args.seconds, args.runs, args.quality, args.aggressiveness)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"audio paths at {FRAME_MS} ms frames, {res['calls']} concurrent calls x "
          f"{res['frames_per_call']} frames, median of {res['runs']} runs, one CPU "
          f"{res['pinned_cpu']}, resampler quality {res['quality']}, {res['libopus']}, speech: {res['speech']}")
    paths = res["paths"]
    assert isinstance(paths, dict)
    for name, s in paths.items():
        print(f"  {name:30s} {s['us_per_frame']:8.2f} us/frame  RTF {s['rtf']:.5f}  "
              f"{s['calls_per_core']:6d} calls/core  (best run {s['best_calls_per_core']}, "
              f"spread {s['spread_pct']}%, wall {s['wall_us_per_frame']} us/frame)")
    print(f"  PSTN uplink / audioop baseline: {res['pstn_uplink_over_audioop_baseline']}x")
    print(f"  PSTN uplink stages (us/frame): {res['pstn_uplink_stage_us_per_frame']}")
    print("  resampler latency at 20 ms chunks, ms: added (= worst buffering + group delay)"
          " [buffering mean / max, group delay]")
    delays = res["resampler_delay_ms"]
    assert isinstance(delays, dict)
    for pair, per_q in delays.items():
        cells = "   ".join(
            f"{q}: {d['added_latency_ms']:6.2f} [{d['buffering_mean_ms']:.1f} / "
            f"{d['buffering_max_ms']:.0f}, {d['group_delay_ms']:.2f}]" for q, d in per_q.items()
        )
        print(f"    {pair:9s} {cells}")
    return 0
