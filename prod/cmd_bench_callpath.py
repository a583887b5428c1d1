"""``clutchcall bench callpath``: the edge's per-frame compute path alone, on a virtual clock.

Theory of operation: ``bench edge`` measures the whole edge (QUIC, MoQT, asyncio, the model
leg's WebSocket) and is noisy on a shared box; this benchmark isolates the compute side of each
caller frame (issue 17) and makes it deterministic. N real
:class:`~clutchcall.prod.pipeline.CallPipeline` objects (``PRODUCT_TURN``: evidence policy,
speculation, caller features; ``record_outputs`` off as in ``serve``) are driven by one event
heap on a virtual clock: every caller frame (PCM16 16 kHz, the ``bench edge`` callers'
script: questions between 0.3 s and 3 s of digital silence, optionally under a noise floor
``--noise-db``) is pushed at its 20 ms slot plus a small jitter, each core deadline fires
through a shard-scheduler stand-in at its time, and a model stand-in answers every commit /
speculation like the embedded model's echo mode (a fixed 24 kHz reply after 200 ms, 100 ms
chunks every 50 ms, ``response.done``; a cancel or retraction stops it). What runs is the
product's code from the decoded payload to the downlink frame: decode, VAD, features, the
call core and turn engine, uplink batching and resampling, downlink resampling, framing and
encoding. What does not: sockets, the asyncio loop, the model leg's JSON / base64 (the
pipeline's I/O seams -- its loop clock, model leg and downlink queue -- are replaced by the
stand-ins above).

Reported: ``us_per_frame`` = this process's CPU time (``time.process_time``) over the drive
loop divided by the caller frames pushed; ``turns`` and ``agent_frames`` sent; ``digest`` = a
SHA-1 over every call's downlink (agent frame bytes, control events, clears) and turn records:
the same figures and digest before and after a change mean the change altered no decision,
no timing and no audio (the clock is virtual, so the digest does not depend on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from clutchcall.engine.config import PRODUCT_TURN
from clutchcall.prod.model.client import AudioChunk, ModelLegConfig
from clutchcall.prod.pipeline import CallerFrame, CallPipeline, PipelineConfig

RATE = 16000
FRAME = RATE // 50
REPLY = "Sure. It arrives on Friday."
TTFA_S = 0.2
CHUNK_S = 0.1
CHUNK_EVERY_S = 0.05


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each call (s)")
    parser.add_argument("--noise-db", type=float, default=None,
                        help="add white noise at this dBFS RMS to the caller audio (a line with a "
                             "noise floor: every frame's features are analysed); default none")
    parser.add_argument("--runs", type=int, default=3, help="runs (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class _Events:
    """The virtual clock and its event heap (time, order of scheduling)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), fn, args))

    def run(self) -> None:
        heap = self._heap
        while heap:
            t, _, fn, args = heapq.heappop(heap)
            if t > self.now:
                self.now = t
            fn(*args)


class _Scheduler:
    """The shard scheduler's contract (``arm`` / ``cancel``; one deadline per call) on the heap."""

    def __init__(self, ev: _Events) -> None:
        self.ev = ev
        self.due: dict[int, float] = {}

    def arm(self, call: CallPipeline, deadline: float | None) -> None:
        key = id(call)
        if deadline is None:
            self.due.pop(key, None)
        elif self.due.get(key) != deadline:
            self.due[key] = deadline
            self.ev.at(deadline, self._fire, call, deadline)

    def cancel(self, call: CallPipeline) -> None:
        self.due.pop(id(call), None)

    def _fire(self, call: CallPipeline, deadline: float) -> None:
        if self.due.get(id(call)) == deadline:
            del self.due[id(call)]
            call.on_deadline(deadline)


class _Model:
    """The model leg's contract as the pipeline uses it, answering like the echo model."""

    def __init__(self, ev: _Events, reply: bytes) -> None:
        self.ev = ev
        self.reply = reply
        self.config = ModelLegConfig()
        self.pipe: CallPipeline | None = None
        self.speculating = False
        self.speculative_response_id: str | None = None
        self.active: str | None = None
        self.appended = 0
        self._n = 0

    def append(self, pcm: bytes) -> None:
        self.appended += len(pcm)

    def prime(self) -> bool:
        return True

    def backchannel_filtered(self) -> bool:
        return True

    def _respond(self) -> str:
        self._n += 1
        rid = f"resp_{self._n}"
        self.active = rid
        step = int(CHUNK_S * 24000) * 2
        t = self.ev.now + TTFA_S
        chunks = [self.reply[i:i + step] for i in range(0, len(self.reply), step)]
        for k, c in enumerate(chunks):
            self.ev.at(t + CHUNK_EVERY_S * k, self._chunk, rid, c, k == 0)
        self.ev.at(t + CHUNK_EVERY_S * len(chunks), self._done, rid)
        return rid

    def _chunk(self, rid: str, pcm: bytes, first: bool) -> None:
        if self.active == rid and self.pipe is not None:
            self.pipe._on_model_audio(AudioChunk(rid, "item_" + rid, pcm, self.ev.now, first,
                                                 TTFA_S if first else None))

    def _done(self, rid: str) -> None:
        if self.active == rid and self.pipe is not None:
            self.active = None
            self.pipe._on_response_done(rid, "completed")

    def commit(self) -> None:
        self._respond()

    def speculate(self) -> None:
        self.speculating = True
        self.speculative_response_id = self._respond()

    def release(self) -> None:
        self.speculating = False
        self.speculative_response_id = None

    def retract(self) -> None:
        self.active = None
        self.release()

    def cancel(self, played_ms: int, item_id: str | None = None, sent_ms: int | None = None) -> int:
        self.active = None
        return played_ms

    async def close(self) -> None:
        return None


class _Downlink:
    """Hashes what the pipeline sends, in order (its ``_send``: no sender task)."""

    def __init__(self) -> None:
        self.frames = 0
        self.h = hashlib.sha1()

    def take(self, kind: str, arg: Any) -> None:
        if kind == "audio":
            self.frames += 1
            self.h.update(arg)
        elif kind == "control":
            self.h.update(json.dumps(arg, sort_keys=True).encode())
        else:
            self.h.update(b"clear")

    async def send_agent_audio(self, payload: bytes) -> None:  # the Downlink protocol
        self.take("audio", payload)

    async def clear_playout(self) -> None:
        self.take("clear", None)

    async def send_control(self, event: dict[str, Any]) -> None:
        self.take("control", event)


async def _run(calls: int, seconds: float, noise_db: float | None,
               scripts: dict[int, bytes], reply: bytes) -> dict[str, Any]:
    ev = _Events()
    sched = _Scheduler(ev)
    pipes: list[tuple[CallPipeline, _Downlink]] = []
    frames = 0
    for c in range(calls):
        down = _Downlink()
        pipe = CallPipeline(down, call_id=f"bench-{c}", turn_config=PRODUCT_TURN,
                            config=PipelineConfig(caller_rate=RATE), record_outputs=False,
                            scheduler=sched,  # type: ignore[arg-type]
                            model_url="ws://127.0.0.1:9/unused")
        model = _Model(ev, reply)
        model.pipe = pipe
        # the I/O seams: virtual clock, model stand-in, downlink without a sender task
        pipe.loop = ev  # type: ignore[assignment]
        pipe.model = model  # type: ignore[assignment]
        pipe._send = down.take  # type: ignore[method-assign]
        pipes.append((pipe, down))
        pcm = np.frombuffer(scripts[c % len(scripts)], dtype=np.int16)
        if noise_db is not None:
            rng = np.random.default_rng(c)
            noise = rng.standard_normal(len(pcm)) * (32768.0 * 10.0 ** (noise_db / 20.0))
            pcm = np.clip(np.rint(pcm + noise), -32768, 32767).astype(np.int16)
        t0 = ev.now + (c % 50) * 0.0004 + c * 0.0001
        for k in range(len(pcm) // FRAME):
            fr = CallerFrame(pcm[k * FRAME:(k + 1) * FRAME].tobytes(), seq=k, ts=k * 0.02)
            ev.at(t0 + 0.02 * k + 0.0005 * ((k * 7 + c) % 5), pipe.push, fr)
            frames += 1
    c0 = time.process_time()
    ev.run()
    cpu = time.process_time() - c0
    h = hashlib.sha1()
    turns = 0
    for pipe, down in pipes:
        h.update(down.h.digest())
        for t in pipe.turns:
            turns += 1
            h.update(repr(t).encode())
    return {"frames": frames, "cpu_s": round(cpu, 4), "us_per_frame": round(1e6 * cpu / max(frames, 1), 1),
            "turns": turns, "agent_frames": sum(d.frames for _, d in pipes), "digest": h.hexdigest()}


def bench(calls: int, seconds: float, noise_db: float | None = None, runs: int = 3) -> dict[str, Any]:
    """Run the benchmark ``runs`` times; return the median run's figures (module docstring)."""
    from clutchcall.prod.edge.bench_callers import caller_script
    from clutchcall.prod.model.speech import render_speech_sync

    scripts = {k: caller_script(RATE, seconds, k) for k in range(3)}
    reply = render_speech_sync(REPLY, 24000)
    res = [asyncio.run(_run(calls, seconds, noise_db, scripts, reply)) for _ in range(max(1, runs))]
    if len({r["digest"] for r in res}) != 1:
        raise RuntimeError("bench callpath: runs differ (the path is not deterministic)")
    res.sort(key=lambda r: r["us_per_frame"])
    out = dict(res[len(res) // 2])
    out.update(calls=calls, seconds=seconds, noise_db=noise_db, runs=len(res),
               us_per_frame_runs=[r["us_per_frame"] for r in res])
    return out


def run(args: argparse.Namespace) -> int:
    """Entry point: print the figures (one JSON object with ``--json``)."""
    res = bench(args.calls, args.seconds, args.noise_db, args.runs)
    if args.json:
        print(json.dumps(res))
    else:
        noise = "" if res["noise_db"] is None else f", noise floor {res['noise_db']} dBFS"
        print(f"{res['calls']} calls x {res['seconds']} s{noise}: {res['us_per_frame']} us CPU per "
              f"caller frame (runs {res['us_per_frame_runs']}), {res['turns']} turns, "
              f"{res['agent_frames']} agent frames, digest {res['digest'][:16]}")
    return 0
