"""Load generator for the QUIC echo edge: N concurrent calls, each one bidirectional stream
carrying a fixed-size frame every ``frame_ms`` (like 20 ms voice frames); prints one JSON line
with the round-trip times (ms) of every echoed frame: p50 / p95 / p99 and counts.

Theory of operation: runs as its own process (``python -m clutchcall.native.callgen``) so the
edge under test keeps its own core. Each frame carries its send time (loop clock, 8 bytes) and
the stream is cut into frames of ``size`` bytes again on the way back. Bounded: connect
timeout, ``seconds`` of traffic, a drain timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys

from clutchcall.native.quic_echo import QuicEchoClient


async def _call(client: QuicEchoClient, seconds: float, frame_ms: float, size: int,
                rtts: list[float]) -> int:
    loop = asyncio.get_running_loop()
    sid = client.conn.get_next_available_stream_id()
    sent = 0
    seen = 0

    def on_data(stream_id: int, t_rx: float) -> None:  # RTT at the echo's arrival
        nonlocal seen
        buf = client.received.get(stream_id, b"")
        while (seen + 1) * size <= len(buf):
            (t,) = struct.unpack_from("!d", buf, seen * size)
            rtts.append((t_rx - t) * 1000.0)
            seen += 1

    client.on_stream_data = on_data
    t_end = loop.time() + seconds
    nxt = loop.time()
    pad = b"\0" * (size - 8)
    while loop.time() < t_end:
        client.conn.send_stream_data(sid, struct.pack("!d", loop.time()) + pad)
        client._flush()
        sent += 1
        nxt += frame_ms / 1000.0
        await asyncio.sleep(max(0.0, nxt - loop.time()))
    deadline = loop.time() + 2.0
    while seen < sent and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return sent - seen


async def _main(args: argparse.Namespace) -> dict[str, object]:
    host, port = args.addr.rsplit(":", 1)
    clients = [QuicEchoClient((host, int(port))) for _ in range(args.calls)]
    for c in clients:
        c.connect()
    async with asyncio.timeout(30):
        await asyncio.gather(*(c.handshake_done.wait() for c in clients))
    rtts: list[float] = []
    lost = await asyncio.gather(*(_call(c, args.seconds, args.frame_ms, args.size, rtts)
                                  for c in clients))
    for c in clients:
        c.close()
    rtts.sort()

    def pct(p: float) -> float | None:
        return rtts[min(len(rtts) - 1, int(p * len(rtts)))] if rtts else None

    return {"calls": args.calls, "frames": len(rtts), "unanswered": sum(lost),
            "rtt_ms_p50": pct(0.50), "rtt_ms_p95": pct(0.95), "rtt_ms_p99": pct(0.99)}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the calls, print the JSON result; return 0."""
    p = argparse.ArgumentParser(prog="python -m clutchcall.native.callgen")
    p.add_argument("--addr", required=True, help="host:port of the QUIC echo edge")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--frame-ms", type=float, default=20.0)
    p.add_argument("--size", type=int, default=160)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(_main(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
