"""``clutchcall bench vad``: CPU cost per 20 ms frame of each VAD backend (engine/audio/vad.py).

Each backend's framer (:func:`~clutchcall.engine.audio.vad.make_vad_framer`) is fed one
corpus call's caller audio (``traces/corpus``, or ``--call``) 20 ms frame by 20 ms frame, as
the edge's pipeline feeds it, at the call's own rate (8 kHz PSTN, 16 kHz clean, 48 kHz Opus:
Silero resamples 48 kHz to 16 kHz with the polyphase resampler, webrtcvad judges 48 kHz
directly). Reported per backend and rate: the median over ``--runs`` runs of this thread's CPU
microseconds per frame (``us_per_frame``; CPU time, so time descheduled on a shared machine
does not count), and the share of one core a call's VAD takes (``core_share`` = us per frame /
20 000 us). A framer is built before its run starts: model loading is not timed. A backend
that is not installed is reported as ``null`` with the reason. This module reads the clock;
the core modules do not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from clutchcall.engine.audio.vad import VAD_BACKENDS, VadBackendUnavailable, make_vad_framer

CORPUS = Path(__file__).resolve().parents[2] / "traces" / "corpus"
DEFAULT_CALLS = ("call0000_pstn8", "call0001_clean16", "call0005_opus48")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--call", action="append", default=None, metavar="STEM",
                        help="labelled call(s) to use (default: one 8, 16 and 48 kHz corpus call)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds per run")
    parser.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _audio(stem: str, seconds: float) -> tuple[np.ndarray, int]:
    from clutchcall.traces.labels import read_call

    p = Path(stem)
    lc = read_call(p if p.parent != Path(".") else CORPUS / stem)
    pcm = np.asarray(lc.pcm, dtype=np.int16)[: int(seconds * lc.rate)]
    return pcm, int(lc.rate)


def measure(stems: list[str], seconds: float = 10.0, runs: int = 5) -> dict[str, object]:
    """Return ``{backend: {rate: {us_per_frame, core_share, speech_share}}}`` (see the
    module docstring); an unavailable backend maps to ``{"error": reason}``."""
    out: dict[str, object] = {}
    for backend in VAD_BACKENDS:
        per_rate: dict[str, object] = {}
        for stem in stems:
            pcm, rate = _audio(stem, seconds)
            n = rate // 50
            frames = [np.ascontiguousarray(pcm[k * n:(k + 1) * n]) for k in range(len(pcm) // n)]
            times = []
            speech = 0
            try:
                for _ in range(runs):
                    framer = make_vad_framer(rate, 20, 2, backend)
                    t0 = time.thread_time()
                    speech = sum(s for f in frames for _, s in framer.push(f))
                    times.append(time.thread_time() - t0)
            except VadBackendUnavailable as exc:
                out[backend] = {"error": str(exc)}
                break
            us = statistics.median(times) / len(frames) * 1e6
            per_rate[str(rate)] = {"call": Path(stem).name, "frames": len(frames),
                                   "us_per_frame": round(us, 1),
                                   "core_share": round(us / 20000.0, 4),
                                   "speech_share": round(speech / len(frames), 3)}
        else:
            out[backend] = per_rate
    return out


def run(args: argparse.Namespace) -> int:
    res = measure(list(args.call or DEFAULT_CALLS), args.seconds, args.runs)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"VAD cost per 20 ms frame (CPU time, median of {args.runs} runs, {args.seconds:g} s of audio)")
    for backend, per in res.items():
        assert isinstance(per, dict)
        if "error" in per:
            print(f"  {backend:7s} unavailable: {per['error']}")
            continue
        for rate, r in per.items():
            print(f"  {backend:7s} {int(rate) // 1000:2d} kHz  {r['us_per_frame']:8.1f} us/frame  "
                  f"{100 * r['core_share']:6.2f} % of a core per call  ({r['call']})")
    return 0
