"""The load generator of ``clutchcall bench edge``: many real callers per process, in processes
of their own.

Theory of operation: ``bench edge`` starts ``--caller-procs`` worker processes
(``python -m clutchcall.prod.edge.bench_callers``), so the callers' CPU is neither the edge's
nor the bench process's and is measured on its own (``caller_cpu_pct``). Each worker reads one
JSON spec line on stdin (its calls with their tokens, the edge's ports and certificate, the
transport, the QUIC core, the audio transport, the call length, each call's start offset),
renders its speech scripts, prints ``{"ready": true}`` and waits for one ``{"t0": T}`` line:
T is a ``time.monotonic()`` instant (the clock every process on the machine shares) at which
the ramp starts. Every call then runs as a real
:class:`~clutchcall.prod.caller.client.Caller` on the worker's one event loop, and the worker
prints one JSON line with each call's counters (or its error) and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def caller_script(rate: int, seconds: float, offset: int) -> bytes:
    """Return ``seconds`` of caller speech at ``rate`` (PCM16): the bench's questions (the same
    as ``bench pipeline``'s), each after 0.3 s and before 3 s of silence, starting at question
    ``offset``, repeated to length. Shared by ``bench edge``'s callers and ``bench soak``."""
    from clutchcall.prod.cmd_bench_pipeline import QUESTIONS
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


async def _one(spec: dict[str, Any], call: dict[str, Any], pcm: bytes, t0: float) -> dict[str, Any]:
    from clutchcall.prod.caller.client import Caller
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.caller.ws_transport import WsCallerTransport

    delay = t0 + float(call["start_s"]) - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    cid, tok = call["call_id"], call["token"]
    codec, rate = spec["codec"], spec["rate"]
    if spec["transport"] == "quic":
        tr: Any = QuicCallerTransport("127.0.0.1", spec["quic_port"], token=tok, call_id=cid, codec=codec,
                                      rate=rate, cafile=spec["cert"], timeout_s=20,
                                      quic_core=spec["quic_core"], audio_transport=spec["audio_transport"])
    else:
        tr = WsCallerTransport(f"wss://localhost:{spec['ws_port']}/media", token=tok, call_id=cid,
                               cafile=spec["cert"])
    try:
        r = await Caller(tr, call_id=cid, codec=codec, rate=rate, tail_s=0.5).run(pcm)
    except Exception as exc:  # noqa: BLE001 -- a failed call is a figure, not a crash of the others
        return {"call_id": cid, "error": repr(exc)[:300]}
    proto = getattr(tr, "proto", None)
    return {"call_id": cid, "frames_sent": r.frames_sent, "agent_frames_received": r.agent_frames_received,
            "audio_transport": proto.audio_transport() if proto is not None else "stream",
            "mouth_to_ear_ms": [t.latency_ms for t in r.turns if t.latency_ms is not None]}


async def _main() -> int:
    spec = json.loads(sys.stdin.readline())
    scripts = {k: caller_script(spec["rate"], spec["seconds"], k) for k in sorted({c["script"] for c in spec["calls"]})}
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    go = await loop.run_in_executor(None, sys.stdin.readline)
    t0 = float(json.loads(go)["t0"])
    results = await asyncio.gather(*(_one(spec, c, scripts[c["script"]], t0) for c in spec["calls"]))
    print(json.dumps({"results": results}), flush=True)
    return 0


if __name__ == "__main__":
    import logging

    logging.getLogger("clutchcall").setLevel(logging.ERROR)
    logging.getLogger("quic").setLevel(logging.ERROR)
    sys.exit(asyncio.run(_main()))
