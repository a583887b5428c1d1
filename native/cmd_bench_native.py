"""``clutchcall bench native``: the native data plane's figures, medians of repeated runs.

Theory of operation: every figure is measured in this process against a baseline measured the
same way. Rings: one producer and one (SPSC) or three (1P/3C) consumers, each a C loop called
from its own Python thread (cffi releases the GIL), 32-byte messages in batches of 64; the
consumers are reliable (credit flow control, so every message reaches every consumer); the
1P/3C run is repeated with best-effort consumers, which the producer never waits for (on a
loaded 2-core machine they are mostly lapped: the overrun fraction is reported).

UDP echo on loopback: a C load generator (sendmmsg/recvmmsg, a fixed window of datagrams in
flight) runs in a thread against an echo server on the asyncio loop: asyncio's
``DatagramProtocol`` (baseline), the io_uring reactor with the Python batch callback (what the
edge uses), and the reactor's pure-C echo loop (the ceiling). Packets/s = echoes / time to the
last echo; on a shared 2-core machine that wall-clock figure also pays for the load generator
and other processes, so the echo server's own CPU time per packet (thread CPU time of the
loop's thread) is reported too. On loopback the kernel's own work dominates the io_uring
server's CPU: its sends deliver each datagram into the receiver's socket in softirq on the
sending core (perf: ~58 % of the server's CPU in sendmsg, ~22 % in recvmsg), which is why the
pure-C loop is barely cheaper than the Python batch path. One-way receive: a C sender floods
(no flow control) a receiver that only counts (asyncio ``DatagramProtocol`` vs the reactor's
Python batches, the shape of the edge's uplink audio): datagrams received per second, the
fraction the kernel dropped because the receiver fell behind, and the receiver's CPU per
datagram (the sender's core pays the loopback delivery, so this is the receive path's own cost).

QUIC echo (``--echo-calls``): aioquic calls from a separate load-generator process
(``clutchcall.native.callgen``), each a stream carrying a 160-byte frame every 20 ms, against
the QUIC echo edge on asyncio vs io_uring: echo round trips timed when each echo arrives,
frames/s echoed and the edge's CPU per datagram (the data plane with aioquic, no pipeline).

End to end (``--calls``, default 200): ``clutchcall bench edge`` with ``--io asyncio`` and then
``--io uring``, each in its own processes (model, edge, callers): real QUIC/MoQT callers playing
speech through the production edge to the embedded model; edge-added latency percentiles (the
part of turn latency spent inside ClutchCall), frames lost/late, edge and caller CPU, and
whether the run stayed within the 5 ms p99 goal. ``--capacity`` adds, per io kind, a bounded
search for the most calls whose p99 stays within it. On a 2-core machine the edge, the model
and N aioquic callers share the cores: when a run is over the goal, its CPU figures say which
process saturated. Every loop is bounded in count and by an idle timeout; every subprocess by
a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from clutchcall.native import udpio
from clutchcall.native.rings import Ring, ffi, lib


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--ring-msgs", type=int, default=4_000_000, help="messages per ring run")
    parser.add_argument("--udp-pkts", type=int, default=100_000, help="echoes per UDP run")
    parser.add_argument("--window", type=int, default=256, help="datagrams in flight")
    parser.add_argument("--size", type=int, default=200, help="UDP payload bytes")
    parser.add_argument("--xdp", action="store_true",
                        help="also UDP echo on veth between two netns: AF_XDP vs io_uring vs "
                        "asyncio (root; creates and removes the namespaces)")
    parser.add_argument("--calls", type=int, default=200,
                        help="end to end: real callers through the real edge (clutchcall bench "
                        "edge) with --io asyncio and --io uring (0: skip)")
    parser.add_argument("--call-seconds", type=float, default=10.0, help="length of each call (s)")
    parser.add_argument("--shards", type=int, default=1, help="edge processes in the end-to-end runs")
    parser.add_argument("--capacity", action="store_true",
                        help="also search, per io kind, the most calls whose edge-added p99 stays "
                        "<= 5 ms (bench edge --search; several runs each)")
    parser.add_argument("--rx-pkts", type=int, default=300_000,
                        help="datagrams per one-way receive run (0: skip)")
    parser.add_argument("--echo-calls", type=int, default=200,
                        help="QUIC echo calls against the data plane alone (0: skip)")
    parser.add_argument("--echo-seconds", type=float, default=3.0, help="traffic per QUIC echo run")


def _threads(fns: list[Callable[[], None]]) -> float:
    ts = [threading.Thread(target=f) for f in fns]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return time.perf_counter() - t0


def ring_run(total: int, nconsumers: int, reliable: bool, sz: int = 32,
             batch: int = 64, depth: int = 4096) -> dict[str, Any]:
    """Return one ring measurement: published/s, delivered/s per consumer, overruns."""
    ring = Ring(depth=depth, mtu=64, fseq_slots=nconsumers if reliable else 0)
    cons = [ring.consumer(reliable=reliable) for _ in range(nconsumers)]
    pub = [0]

    def produce() -> None:
        pub[0] = lib.cc_stress_produce(ring.ptr, total, sz, batch, 50_000_000, 0)

    def consumer(c: Any) -> Callable[[], None]:
        return lambda: lib.cc_stress_consume(c._c, total, batch, 5_000_000, 0)

    dt = _threads([consumer(c) for c in cons] + [produce])
    return {
        "published": int(pub[0]), "seconds": dt, "msgs_per_s": pub[0] / dt,
        "delivered_per_s": [c.drained / dt for c in cons],
        "overruns": [c.overruns for c in cons],
    }


def _generate(c_fn: Callable[..., int], what: str, addr: tuple[Any, ...], *args: int,
              bind: str = "127.0.0.1") -> tuple[int, float]:
    """Run the C load generator ``c_fn(fd, sockaddr, len, *args, out_us)`` from a fresh
    non-blocking UDP socket bound on ``bind``; return (its count, its seconds). Raises OSError
    with the generator's errno."""
    cl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cl.bind((bind, 0))
    cl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    cl.setblocking(False)
    sa, salen = udpio.sockaddr_bytes(addr, socket.AF_INET)
    us = ffi.new("uint64_t *")
    try:
        n = c_fn(cl.fileno(), sa, salen, *args, us)
    finally:
        cl.close()
    if n < 0:
        raise OSError(-n, f"udp {what} failed")
    return int(n), us[0] / 1e6


def _blast(addr: tuple[Any, ...], total: int, window: int, size: int,
           bind: str = "127.0.0.1") -> tuple[int, float]:
    """Echo load: ``window`` datagrams in flight; return (echoes, seconds to the last)."""
    return _generate(lib.cc_udp_blast, "blast", addr, total, window, size, 500, bind=bind)


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # a datagram endpoint: asyncio hands it a DatagramTransport typed as BaseTransport
        self.t.sendto(data, addr)  # type: ignore[attr-defined]


async def _echo_asyncio(total: int, window: int, size: int) -> tuple[int, float, float]:
    loop = asyncio.get_running_loop()
    sock = udpio.bind_udp("127.0.0.1", 0)
    transport, _ = await loop.create_datagram_endpoint(_Echo, sock=sock)
    cpu0 = time.thread_time()  # the loop's thread: the echo server's own CPU time
    try:
        got, dt = await loop.run_in_executor(None, _blast, sock.getsockname(), total, window,
                                             size)
    finally:
        transport.close()
    return got, dt, time.thread_time() - cpu0


async def _echo_uring(total: int, window: int, size: int) -> tuple[int, float, float]:
    loop = asyncio.get_running_loop()
    io = udpio.UringUdpIO(udpio.bind_udp("127.0.0.1", 0))
    await io.start(io.send_batch)  # echo each batch back in one submission
    cpu0 = time.thread_time()
    try:
        got, dt = await loop.run_in_executor(None, _blast, io.local_address, total, window, size)
    finally:
        io.close()
    return got, dt, time.thread_time() - cpu0


def _echo_uring_c(total: int, window: int, size: int) -> tuple[int, float, float]:
    io = udpio.UringUdpIO(udpio.bind_udp("127.0.0.1", 0))
    res: list[tuple[int, float]] = []
    t = threading.Thread(target=lambda: res.append(_blast(io.local_address, total, window, size)))
    t.start()
    cpu0 = time.thread_time()
    io._lib.cc_uring_echo_loop(io._u, io._cons, total, 1000)
    cpu = time.thread_time() - cpu0
    t.join(60)
    io.close()
    return res[0][0], res[0][1], cpu


def _flood(addr: tuple[Any, ...], total: int, size: int) -> tuple[int, float]:
    """One-way load, no flow control; return (datagrams sent, sending seconds)."""
    return _generate(lib.cc_udp_flood, "flood", addr, total, size)


class _Count:
    """The receive side of the one-way run: counts datagrams and stamps the first and last
    batch (per batch, so the stamping costs both kinds alike and next to nothing)."""

    def __init__(self) -> None:
        self.n = 0
        self.first = 0.0
        self.last = 0.0

    def batch(self, n: int) -> None:
        now = time.perf_counter()
        if not self.n:
            self.first = now
        self.n += n
        self.last = now


class _CountProto(asyncio.DatagramProtocol):
    def __init__(self, count: _Count) -> None:
        self.count = count

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count.batch(1)


async def _rx(kind: str, total: int, size: int) -> tuple[int, float, float, float]:
    """One-way stream into one receiver on the loop: (received, seconds from the first to the
    last datagram received, the loop thread's CPU seconds, the offered datagrams/s)."""
    loop = asyncio.get_running_loop()
    sock = udpio.bind_udp("127.0.0.1", 0)
    count = _Count()
    if kind == "asyncio":
        transport, _ = await loop.create_datagram_endpoint(lambda: _CountProto(count), sock=sock)
        close = transport.close
        addr = sock.getsockname()
    else:
        io = udpio.UringUdpIO(sock)
        await io.start(lambda batch: count.batch(len(batch)))
        close = io.close
        addr = io.local_address
    cpu0 = time.thread_time()
    try:
        sent, send_s = await loop.run_in_executor(None, _flood, addr, total, size)
        seen = -1
        while seen != count.n:  # the receiver is done once 100 ms pass without a datagram
            seen = count.n
            await asyncio.sleep(0.1)
    finally:
        close()
    return (count.n, count.last - count.first, time.thread_time() - cpu0,  # idle waits: ~0 CPU
            sent / send_s if send_s > 0 else 0.0)


def rx_run(kind: str, total: int, size: int) -> dict[str, Any]:
    """Return one one-way receive measurement for kind asyncio / uring: the sender floods
    (cc_udp_flood), the receiver takes what it can; pps = received / receiving time."""
    got, dt, cpu, offered = asyncio.run(_rx(kind, total, size))
    pps = got / dt if dt > 0 else 0.0
    return {"received": got, "seconds": dt, "pps": pps, "offered_pps": offered,
            "loss_fraction": 1 - got / total,
            "receiver_cpu_us_per_packet": cpu * 1e6 / got if got else None}


def udp_run(kind: str, total: int, window: int, size: int) -> dict[str, Any]:
    """Return one UDP echo measurement for kind asyncio / uring / uring_c."""
    if kind == "asyncio":
        got, dt, cpu = asyncio.run(_echo_asyncio(total, window, size))
    elif kind == "uring":
        got, dt, cpu = asyncio.run(_echo_uring(total, window, size))
    else:
        got, dt, cpu = _echo_uring_c(total, window, size)
    pps = got / dt if dt > 0 else 0.0
    return {"echoes": got, "seconds": dt, "pps": pps, "us_per_packet": 1e6 / pps if pps else None,
            "server_cpu_us_per_packet": cpu * 1e6 / got if got else None}


async def _quic_calls(kind: str, calls: int, seconds: float) -> dict[str, Any]:
    from clutchcall.native.quic_echo import QuicEchoServer, server_configuration
    from clutchcall.native.tlscert import make_certificate

    io = udpio.open_udp_io(kind, "127.0.0.1", 0)
    server = QuicEchoServer(io, server_configuration(*make_certificate()))
    await server.start()
    cpu0 = time.thread_time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clutchcall.native.callgen",
        "--addr", f"127.0.0.1:{io.local_address[1]}", "--calls", str(calls),
        "--seconds", str(seconds), stdout=subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()
    cpu = time.thread_time() - cpu0
    res: dict[str, Any] = json.loads(out)
    res["server_cpu_us_per_datagram"] = cpu * 1e6 / max(1, server.datagrams_in)
    res["frames_per_s"] = res["frames"] / seconds
    return res


def e2e_run(io: str, calls: int, seconds: float, shards: int = 1,
            search: bool = False) -> dict[str, Any]:
    """Run ``clutchcall bench edge`` (edge, embedded model and callers in three processes; the
    native layer does not import the production edge, it runs it) with ``--io io``; return its
    JSON report. Raises RuntimeError with the tool's error output if it fails."""
    cmd = [sys.executable, "-m", "clutchcall", "bench", "edge", "--calls", str(calls),
           "--seconds", str(seconds), "--io", io, "--shards", str(shards), "--json"]
    runs = 1
    if search:
        runs = 6
        cmd += ["--search", "--max-runs", str(runs)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                          timeout=runs * (180 + 8 * seconds + calls))
    if proc.returncode != 0:
        raise RuntimeError(f"bench edge --io {io} failed: {proc.stderr.strip()[-400:]}")
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


E2E_KEYS = ("edge_added_ms_p50", "edge_added_ms_p95", "edge_added_ms_p99", "edge_added_ms_max",
            "turn_latency_ms_p50", "turns", "calls_completed", "calls_failed", "frames_sent",
            "frames_lost", "frames_late", "edge_cpu_pct", "edge_cpu_ms_per_call_second",
            "caller_cpu_pct", "wall_s")
"""The keys of one ``bench edge`` run kept as ``e2e_<io>_<key>``."""


def veth_run(total: int, window: int, size: int) -> dict[str, dict[str, Any]]:
    """UDP echo across a veth pair between two namespaces for each io kind; return
    {kind: {"pps", "server_cpu_us_per_packet", ...}}. Namespaces are removed at the end."""
    from clutchcall.native.netns import VethPair
    from clutchcall.native.xdp import XDP_BUILT, compile_program

    kinds = ["asyncio"] + (["uring"] if udpio.URING_BUILT else []) + (["xdp"] if XDP_BUILT else [])
    if XDP_BUILT:
        compile_program()
    res: dict[str, dict[str, Any]] = {}
    env = dict(__import__("os").environ, LIBXDP_SKIP_DISPATCHER="1")
    with VethPair() as v:
        for k in kinds:
            srv = subprocess.Popen(
                ["ip", "netns", "exec", v.ns_edge, sys.executable, "-m", "clutchcall.native.xdp",
                 "udp-echo", "--io", k, "--iface", v.if_edge, "--ip", v.edge_ip, "--port", "4433",
                 "--seconds", "60", "--idle", "0.7"],
                stdout=subprocess.PIPE, text=True, env=env)
            try:
                assert srv.stdout is not None
                if srv.stdout.readline().strip() != "READY":
                    raise RuntimeError(f"{k} echo server did not start")
                cli = subprocess.run(
                    ["ip", "netns", "exec", v.ns_caller, sys.executable, "-m",
                     "clutchcall.native.cmd_bench_native", "--blast", f"{v.edge_ip}:4433", str(total),
                     str(window), str(size), v.caller_ip],
                    capture_output=True, text=True, timeout=120, env=env, check=True)
                got, dt = json.loads(cli.stdout)
                out, _ = srv.communicate(timeout=30)
            finally:
                if srv.poll() is None:
                    srv.kill()
                    srv.wait(5)
            rep = json.loads(out.strip().splitlines()[-1])
            res[k] = {"pps": got / dt if dt else 0.0, "echoes": got,
                      "server_cpu_us_per_packet": rep["server_cpu_us_per_packet"]}
    return res


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every figure ``args.repeat`` times; return the JSON-ready result with medians."""
    rep = max(1, args.repeat)
    med = statistics.median
    spsc = [ring_run(args.ring_msgs, 1, True) for _ in range(rep)]
    mc = [ring_run(args.ring_msgs, 3, True) for _ in range(rep)]
    mc_be = [ring_run(args.ring_msgs, 3, False) for _ in range(rep)]
    out: dict[str, Any] = {
        "ring_msgs_per_s": med(r["msgs_per_s"] for r in spsc),
        "ring_spsc_msgs_per_s": med(r["msgs_per_s"] for r in spsc),
        "ring_1p3c_publish_msgs_per_s": med(r["msgs_per_s"] for r in mc),
        "ring_1p3c_delivered_msgs_per_s_per_consumer": med(
            statistics.mean(r["delivered_per_s"]) for r in mc),
        "ring_1p3c_best_effort_publish_msgs_per_s": med(r["msgs_per_s"] for r in mc_be),
        "ring_1p3c_best_effort_overrun_fraction": med(
            sum(r["overruns"]) / (3 * r["published"]) for r in mc_be),
        "ring_message_bytes": 32,
    }
    udp: dict[str, list[dict[str, Any]]] = {"asyncio": [], "uring": [], "uring_c": []}
    kinds = ["asyncio"] + (["uring", "uring_c"] if udpio.URING_BUILT else [])
    for _ in range(rep):
        for k in kinds:  # interleaved so drift hits every kind alike
            udp[k].append(udp_run(k, args.udp_pkts, args.window, args.size))
    for k in kinds:
        pps = med(r["pps"] for r in udp[k])
        out[f"udp_echo_{k}_pps"] = pps
        out[f"udp_echo_{k}_us_per_packet"] = 1e6 / pps if pps else None
        out[f"udp_echo_{k}_server_cpu_us_per_packet"] = med(
            r["server_cpu_us_per_packet"] for r in udp[k])
    out["uring_vs_asyncio_pps_ratio"] = (
        out["udp_echo_uring_pps"] / out["udp_echo_asyncio_pps"] if udpio.URING_BUILT else None)
    out["uring_vs_asyncio_server_cpu_ratio"] = (
        out["udp_echo_asyncio_server_cpu_us_per_packet"]
        / out["udp_echo_uring_server_cpu_us_per_packet"] if udpio.URING_BUILT else None)
    out["uring_c_vs_asyncio_pps_ratio"] = (
        out["udp_echo_uring_c_pps"] / out["udp_echo_asyncio_pps"] if udpio.URING_BUILT else None)
    if args.rx_pkts > 0:
        rx: dict[str, list[dict[str, Any]]] = {"asyncio": [], "uring": []}
        for _ in range(rep):
            for k in kinds[:2]:
                rx[k].append(rx_run(k, args.rx_pkts, args.size))
        for k in kinds[:2]:
            out[f"udp_rx_{k}_pps"] = med(r["pps"] for r in rx[k])
            out[f"udp_rx_{k}_offered_pps"] = med(r["offered_pps"] for r in rx[k])
            out[f"udp_rx_{k}_loss_fraction"] = med(r["loss_fraction"] for r in rx[k])
            out[f"udp_rx_{k}_cpu_us_per_packet"] = med(r["receiver_cpu_us_per_packet"] for r in rx[k])
        if udpio.URING_BUILT:
            out["uring_vs_asyncio_rx_cpu_ratio"] = (out["udp_rx_asyncio_cpu_us_per_packet"]
                                                    / out["udp_rx_uring_cpu_us_per_packet"])
    if args.echo_calls > 0:
        for k in ["asyncio"] + (["uring"] if udpio.URING_BUILT else []):
            q = asyncio.run(_quic_calls(k, args.echo_calls, args.echo_seconds))
            for key in ("rtt_ms_p50", "rtt_ms_p95", "rtt_ms_p99", "frames_per_s", "unanswered",
                        "server_cpu_us_per_datagram"):
                out[f"quic_{k}_{key}"] = q[key]
        out["quic_calls"] = args.echo_calls
        if udpio.URING_BUILT and out["quic_uring_rtt_ms_p50"]:
            out["quic_uring_vs_asyncio_rtt_p50_ratio"] = (
                out["quic_asyncio_rtt_ms_p50"] / out["quic_uring_rtt_ms_p50"])
    if args.calls > 0:
        for k in ["asyncio"] + (["uring"] if udpio.URING_BUILT else []):
            r = e2e_run(k, args.calls, args.call_seconds, args.shards)
            for key in E2E_KEYS:
                out[f"e2e_{k}_{key}"] = r[key]
            out[f"e2e_{k}_io"] = r["io"]
            # bench edge's own verdict (p99 within its goal, no failed call) at these calls
            out[f"e2e_{k}_within_goal"] = r["largest_calls_p99_ok"] == args.calls
            if args.capacity:
                c = e2e_run(k, 20, args.call_seconds, args.shards, search=True)
                out[f"e2e_{k}_capacity_calls"] = c["largest_calls_p99_ok"]
                out[f"e2e_{k}_capacity_runs"] = [
                    {x: run[x] for x in ("calls", "edge_added_ms_p50", "edge_added_ms_p99",
                                         "frames_lost", "edge_cpu_pct", "caller_cpu_pct")}
                    for run in (c["runs"] or [c])]
        out["e2e_calls"] = args.calls
        out["e2e_seconds"] = args.call_seconds
        out["e2e_shards"] = args.shards
        if udpio.URING_BUILT:
            for pct in ("p50", "p99"):
                a, u = (out[f"e2e_asyncio_edge_added_ms_{pct}"],
                        out[f"e2e_uring_edge_added_ms_{pct}"])
                out[f"e2e_uring_vs_asyncio_edge_added_{pct}_ratio"] = a / u if a and u else None
    if args.xdp:
        veth = [veth_run(args.udp_pkts, args.window, args.size) for _ in range(rep)]
        for k in veth[0]:
            out[f"veth_udp_echo_{k}_pps"] = med(r[k]["pps"] for r in veth)
            out[f"veth_udp_echo_{k}_server_cpu_us_per_packet"] = med(
                r[k]["server_cpu_us_per_packet"] for r in veth)
        if "xdp" in veth[0]:
            out["xdp_vs_asyncio_veth_pps_ratio"] = (
                out["veth_udp_echo_xdp_pps"] / out["veth_udp_echo_asyncio_pps"])
    out["udp_payload_bytes"] = args.size
    out["udp_window"] = args.window
    out["repeat"] = rep
    out["uring_built"] = udpio.URING_BUILT
    return out


def run(args: argparse.Namespace) -> int:
    """Measure and print; return 0 (2 for bad arguments)."""
    if (args.repeat < 1 or args.ring_msgs < 1 or args.udp_pkts < 1 or args.window < 1
            or not 8 <= args.size <= 1400 or min(args.calls, args.rx_pkts, args.echo_calls) < 0
            or args.call_seconds <= 0 or args.echo_seconds <= 0 or args.shards < 1):
        print("bench native: --repeat/--ring-msgs/--udp-pkts/--window/--shards >= 1, "
              "8 <= --size <= 1400, --calls/--rx-pkts/--echo-calls >= 0, seconds > 0",
              file=sys.stderr)
        return 2
    res = measure(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"ring SPSC (reliable, 32 B):    {res['ring_spsc_msgs_per_s'] / 1e6:8.1f} M msgs/s")
    print(f"ring 1P/3C (reliable):         {res['ring_1p3c_publish_msgs_per_s'] / 1e6:8.1f} M msgs/s"
          f" to each of 3 consumers")
    print(f"ring 1P/3C (best effort):      "
          f"{res['ring_1p3c_best_effort_publish_msgs_per_s'] / 1e6:8.1f} M msgs/s published, "
          f"overrun {res['ring_1p3c_best_effort_overrun_fraction']:.1%}")
    for k in ("asyncio", "uring", "uring_c"):
        if f"udp_echo_{k}_pps" in res:
            print(f"udp echo {k:8s}: {res[f'udp_echo_{k}_pps'] / 1e3:9.1f} k pkts/s  "
                  f"{res[f'udp_echo_{k}_us_per_packet']:6.2f} us/pkt wall, server CPU "
                  f"{res[f'udp_echo_{k}_server_cpu_us_per_packet']:6.2f} us/pkt")
    for k in ("asyncio", "uring"):
        if f"quic_{k}_rtt_ms_p50" in res:
            print(f"QUIC {res['quic_calls']} calls, 20 ms frames, {k:7s}: echo RTT p50/p95/p99 "
                  f"{res[f'quic_{k}_rtt_ms_p50']:.1f}/{res[f'quic_{k}_rtt_ms_p95']:.1f}/"
                  f"{res[f'quic_{k}_rtt_ms_p99']:.1f} ms, {res[f'quic_{k}_frames_per_s']:.0f} "
                  f"frames/s echoed, edge CPU {res[f'quic_{k}_server_cpu_us_per_datagram']:.0f}"
                  f" us/datagram")
    for k in ("asyncio", "uring"):
        if f"udp_rx_{k}_pps" in res:
            print(f"udp one-way rx {k:8s}: {res[f'udp_rx_{k}_pps'] / 1e3:9.1f} k pkts/s received of "
                  f"{res[f'udp_rx_{k}_offered_pps'] / 1e3:.1f} k offered "
                  f"(lost {res[f'udp_rx_{k}_loss_fraction']:.1%}), receiver CPU "
                  f"{res[f'udp_rx_{k}_cpu_us_per_packet']:6.2f} us/pkt")
    for k in ("asyncio", "uring"):
        if f"e2e_{k}_edge_added_ms_p50" in res:
            print(f"edge end to end, {res['e2e_calls']} QUIC calls, --io {k:7s}: edge-added p50/p95/p99 "
                  f"{res[f'e2e_{k}_edge_added_ms_p50']}/{res[f'e2e_{k}_edge_added_ms_p95']}/"
                  f"{res[f'e2e_{k}_edge_added_ms_p99']} ms, {res[f'e2e_{k}_turns']} turns, frames lost "
                  f"{res[f'e2e_{k}_frames_lost']:.0f} / late {res[f'e2e_{k}_frames_late']:.0f} of "
                  f"{res[f'e2e_{k}_frames_sent']}, edge CPU {res[f'e2e_{k}_edge_cpu_pct']}%, callers "
                  f"CPU {res[f'e2e_{k}_caller_cpu_pct']}%"
                  + ("" if res[f"e2e_{k}_within_goal"] else "  [over the 5 ms p99 goal]"))
            if f"e2e_{k}_capacity_calls" in res:
                print(f"  most calls with edge-added p99 <= 5 ms, --io {k}: "
                      f"{res[f'e2e_{k}_capacity_calls']}")
    for k in ("asyncio", "uring", "xdp"):
        if f"veth_udp_echo_{k}_pps" in res:
            print(f"veth udp echo {k:8s}: {res[f'veth_udp_echo_{k}_pps'] / 1e3:9.1f} k pkts/s, "
                  f"server CPU {res[f'veth_udp_echo_{k}_server_cpu_us_per_packet']:6.2f} us/pkt")
    if res["uring_vs_asyncio_pps_ratio"] is not None:
        print(f"io_uring / asyncio: {res['uring_vs_asyncio_pps_ratio']:.2f}x packets/s, "
              f"{res['uring_vs_asyncio_server_cpu_ratio']:.2f}x less server CPU per packet  "
              f"(C echo loop: {res['uring_c_vs_asyncio_pps_ratio']:.2f}x packets/s)")
    return 0


if __name__ == "__main__":  # the benchmark's load generator inside a namespace
    if len(sys.argv) == 7 and sys.argv[1] == "--blast":
        _host, _port = sys.argv[2].rsplit(":", 1)
        print(json.dumps(_blast((_host, int(_port)), int(sys.argv[3]), int(sys.argv[4]),
                                int(sys.argv[5]), bind=sys.argv[6])))
        sys.exit(0)
    sys.exit(2)
