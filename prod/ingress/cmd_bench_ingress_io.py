"""``clutchcall bench ingress-io``: echo round trip through the QUIC ingress on the io_uring
reactor vs asyncio datagram I/O, with tens of concurrent MoQT callers in another process.

Theory of operation: the edge under test is the real :class:`QuicIngress` (MoQT, TLS, aioquic)
with the frame-echo handler (every uplink frame goes straight back as agent audio) and no
uplink jitter-buffer depth (``jitter_depth_ms=0``: a frame is released when it arrives, so the
buffer adds nothing and what is measured is the data plane). It runs in this process; the
callers run in a separate process (``python -m clutchcall.prod.ingress.cmd_bench_ingress_io callers``):
``--calls`` concurrent calls through the caller library's QUIC transport, each sending one
640-byte pcm16 frame every 20 ms (phases spread over the 20 ms) that carries its send time
(``time.monotonic``, shared by both processes). The echo round trip of a frame is its arrival
back at the caller minus that stamp: caller send path + loopback + the edge's whole path
(receive, QUIC, MoQT, call queue, handler, MoQT, QUIC, send) + caller receive path. The
callers are identical for both I/O kinds, so the difference between the kinds is the edge's.
Edge-added latency is measured inside the edge: from the receive batch that carried a caller
frame (when the loop got it from the I/O) to the first send batch after the frame's echo was
queued, i.e. the time spent inside ClutchCall (QUIC, MoQT, call queue, handler, send batching).
The edge's own CPU per datagram (process CPU time of this process during the traffic window /
datagrams received + sent) is reported too. The first 0.5 s of every call is warm-up and not
counted. Runs alternate asyncio / uring ``--repeat`` times; figures are medians over runs, and
ratios are uring / asyncio. Bounded: connect timeout, ``--seconds`` of traffic, a drain time,
a subprocess timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from typing import Any

WARMUP_S = 0.5
KEYS = ("edge_added_ms_p50", "edge_added_ms_p95", "edge_added_ms_p99", "rtt_ms_p50", "rtt_ms_p95",
        "rtt_ms_p99", "edge_us_per_datagram")
FRAME_BYTES = 640


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    parser.add_argument("--calls", type=int, default=40, help="concurrent callers")
    parser.add_argument("--seconds", type=float, default=5.0, help="traffic per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per I/O kind (median)")
    parser.add_argument("--kinds", default="asyncio,uring", help="I/O kinds, comma separated")
    parser.add_argument("--path", choices=("handler", "direct"), default="handler",
                        help="handler: echo through the call's jitter buffer (depth 0), queue and "
                        "handler task; direct: echo from the receive path (the data plane alone)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# ----------------------------------------------------------------------------- callers


async def _one_call(i: int, n: int, port: int, cafile: str, key: bytes, seconds: float,
                    start: asyncio.Event, rtts: list[float], counts: dict[str, int]) -> None:
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.ingress.auth import TokenAuthority

    call_id = f"io-{i}"
    tr = QuicCallerTransport("127.0.0.1", port, token=TokenAuthority(key).issue(call_id, time.time() + 600),
                             call_id=call_id, codec="pcm16", rate=16000, cafile=cafile, timeout_s=20.0)
    t_count_from = 0.0

    def on_audio(payload: bytes) -> None:
        now = time.monotonic()
        sent = struct.unpack_from("<d", payload)[0]
        counts["echoed"] += 1
        if sent >= t_count_from:
            rtts.append((now - sent) * 1000.0)

    tr.on_agent_audio = on_audio
    tr.on_control = lambda event: None
    tr.on_closed = lambda reason: None
    try:
        await tr.connect()
    except Exception:  # noqa: BLE001 - a refused or timed-out call is counted, not fatal
        counts["connect_failed"] += 1
        return
    counts["connected"] += 1
    await start.wait()
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.02 * i / n
    t_count_from = time.monotonic() + WARMUP_S
    pad = bytes(FRAME_BYTES - 8)
    nframes = int(seconds / 0.02)
    for seq in range(nframes):
        delay = t0 + seq * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await tr.send_frame(seq, struct.pack("<d", time.monotonic()) + pad)
        counts["sent"] += 1
    await asyncio.sleep(0.5)  # drain the echoes in flight
    await tr.hangup()


async def _callers(port: int, cafile: str, key: bytes, calls: int, seconds: float) -> dict[str, Any]:
    rtts: list[float] = []
    counts = {"sent": 0, "echoed": 0, "connected": 0, "connect_failed": 0}
    start = asyncio.Event()
    tasks = [asyncio.ensure_future(_one_call(i, calls, port, cafile, key, seconds, start, rtts, counts))
             for i in range(calls)]
    deadline = time.monotonic() + 30
    while counts["connected"] + counts["connect_failed"] < calls and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), seconds + 40)
    return {"rtt_ms_p50": _pct(rtts, 0.5), "rtt_ms_p95": _pct(rtts, 0.95),
            "rtt_ms_p99": _pct(rtts, 0.99), "frames_counted": len(rtts), **counts}


def callers_main(argv: list[str]) -> int:
    """Entry point of the caller process: prints one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args(argv)
    key = os.environ["CLUTCHCALL_BENCH_KEY"].encode()
    out = asyncio.run(_callers(a.port, a.cafile, key, a.calls, a.seconds))
    print(json.dumps(out), flush=True)
    return 0


# ----------------------------------------------------------------------------- edge


class _EdgeClock:
    """Edge-added latency inside this process: from the receive batch that carried a caller
    frame to the first send batch after its echo was queued (``time.monotonic``)."""

    def __init__(self) -> None:
        self.batch_t = 0.0
        self.pending: list[float] = []
        self.samples: list[float] = []
        self.recording = False


class _ClockedEchoHandler:
    """The frame-echo handler, noting each frame's receive-batch time for :class:`_EdgeClock`."""

    def __init__(self, clock: _EdgeClock, direct: bool = False) -> None:
        self.clock = clock
        self.direct = direct

    async def on_call(self, call: Any) -> None:
        clock = self.clock
        received: dict[int, float] = {}
        feed = call.feed_uplink
        proto = call._proto
        group = [0]

        def feed_uplink(seq: int, payload: bytes, timestamp_ms: int | None = None) -> None:
            if self.direct:  # echo from the receive path itself: no jitter buffer, no task
                proto.send_agent_frame(group[0], payload)
                group[0] += 1
                if clock.recording:
                    clock.pending.append(clock.batch_t)
                return
            received[seq] = clock.batch_t
            feed(seq, payload, timestamp_ms)

        call.feed_uplink = feed_uplink
        if self.direct:
            await call.wait_closed()
            return
        async for frame in call.frames():
            if frame.concealed:
                continue
            await call.send_agent_audio(frame.payload)
            t = received.pop(frame.seq, None)
            if t is not None and clock.recording:
                clock.pending.append(t)


async def _run_once(kind: str, calls: int, seconds: float, cert_dir: str,
                    direct: bool = False) -> dict[str, Any]:
    from clutchcall.prod.ingress.config import IngressConfig
    from clutchcall.prod.ingress.quic import QuicIngress

    cfg = IngressConfig(cert_dir=cert_dir, io=kind, jitter_depth_ms=0, max_calls=calls + 10)
    clock = _EdgeClock()
    edge = QuicIngress(cfg, _ClockedEchoHandler(clock, direct))
    await edge.start()
    # started above: the server and its native transport exist
    io = edge._server._transport.io
    dg = {"rx": 0, "tx": 0}
    inner_rx, inner_tx = io._on_batch, io.send_batch

    def on_batch(batch: list[Any]) -> None:
        clock.batch_t = time.monotonic()
        dg["rx"] += len(batch)
        inner_rx(batch)

    def send_batch(datagrams: Any) -> int:
        if clock.pending:
            now = time.monotonic()
            clock.samples.extend((now - t) * 1000.0 for t in clock.pending)
            clock.pending.clear()
        n = int(inner_tx(datagrams))
        dg["tx"] += n
        return n

    io._on_batch, io.send_batch = on_batch, send_batch
    env = dict(os.environ, CLUTCHCALL_BENCH_KEY=cfg.auth_key.decode())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clutchcall.prod.ingress.cmd_bench_ingress_io", "callers", "--port", str(edge.port),
        "--cafile", str(edge.cert_path), "--calls", str(calls), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE, env=env)
    cpu = dg0 = t_cpu0 = reactor = None
    try:
        # the traffic window: from when every call has started until the callers stop sending
        t_end = time.monotonic() + 40 + seconds
        while edge.stats["calls_started"] < calls and time.monotonic() < t_end and proc.returncode is None:
            await asyncio.sleep(0.02)
        await asyncio.sleep(WARMUP_S)
        t_cpu0, dg0 = time.process_time(), dict(dg)
        clock.recording = True
        await asyncio.sleep(max(0.1, seconds - WARMUP_S - 0.1))
        cpu = time.process_time() - t_cpu0
        clock.recording = False
        dgn = dg["rx"] + dg["tx"] - dg0["rx"] - dg0["tx"]
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
        reactor = io.stats() if hasattr(io, "stats") else None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await edge.stop()
    res = json.loads(out.decode().strip().splitlines()[-1])
    res.update(edge_added_ms_p50=_pct(clock.samples, 0.5), edge_added_ms_p95=_pct(clock.samples, 0.95),
               edge_added_ms_p99=_pct(clock.samples, 0.99), edge_added_frames=len(clock.samples))
    res.update(io=edge.io_kind, edge_cpu_s=cpu, edge_datagrams=dgn,
               edge_us_per_datagram=(cpu * 1e6 / dgn) if dgn else None,
               calls_started=edge.stats["calls_started"])
    if reactor is not None:
        st = reactor
        res["reactor"] = {k: st[k] for k in ("rx_pkts", "tx_pkts", "tx_gso_sends", "rx_enobufs")}
    return res


def measure(calls: int, seconds: float, repeat: int, kinds: list[str],
            direct: bool = False) -> dict[str, Any]:
    """Run the benchmark; return the figures (medians per kind, ratios uring/asyncio)."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for kind in kinds:
                runs[kind].append(asyncio.run(_run_once(kind, calls, seconds, tmp, direct)))
    out: dict[str, Any] = {"calls": calls, "seconds": seconds, "repeat": repeat,
                           "path": "direct" if direct else "handler", "runs": runs}
    for kind, rs in runs.items():
        for key in KEYS:
            vals = [r[key] for r in rs if r.get(key) is not None]
            out[f"{kind}_{key}"] = statistics.median(vals) if vals else None
        out[f"{kind}_echoed_fraction"] = statistics.median(
            [r["echoed"] / r["sent"] if r["sent"] else 0.0 for r in rs])
    if "uring" in runs and "asyncio" in runs:
        for key in KEYS:
            a, u = out.get(f"asyncio_{key}"), out.get(f"uring_{key}")
            out[f"uring_vs_asyncio_{key}_ratio"] = (u / a) if a and u is not None else None
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``clutchcall bench ingress-io``; print figures; return 0."""
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    res = measure(args.calls, args.seconds, args.repeat, kinds, args.path == "direct")
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"QUIC ingress echo ({args.path} path), {args.calls} concurrent MoQT callers (separate process), "
          f"{args.seconds:.0f} s x {args.repeat} runs per kind, medians:")
    for kind in kinds:
        print(f"  {kind:8s} edge-added p50 {res[f'{kind}_edge_added_ms_p50']:.3f} ms  p95 "
              f"{res[f'{kind}_edge_added_ms_p95']:.3f}  p99 {res[f'{kind}_edge_added_ms_p99']:.3f} | "
              f"round trip p50 {res[f'{kind}_rtt_ms_p50']:.2f} ms  p95 {res[f'{kind}_rtt_ms_p95']:.2f}  "
              f"p99 {res[f'{kind}_rtt_ms_p99']:.2f} | edge CPU "
              f"{res[f'{kind}_edge_us_per_datagram']:.1f} us/datagram | echoed "
              f"{100 * res[f'{kind}_echoed_fraction']:.1f}%")
    if "uring_vs_asyncio_rtt_ms_p50_ratio" in res:
        print("  uring / asyncio: edge-added p50 {:.2f} p95 {:.2f} | round trip p50 {:.2f} p95 {:.2f}"
              " | CPU/datagram {:.2f}".format(
                  res["uring_vs_asyncio_edge_added_ms_p50_ratio"],
                  res["uring_vs_asyncio_edge_added_ms_p95_ratio"],
                  res["uring_vs_asyncio_rtt_ms_p50_ratio"], res["uring_vs_asyncio_rtt_ms_p95_ratio"],
                  res["uring_vs_asyncio_edge_us_per_datagram_ratio"]))
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "callers":
    sys.exit(callers_main(sys.argv[2:]))
