"""``clutchcall bench hostile``: attack a real ``serve`` on loopback and measure what it costs.

Theory of operation: starts ``clutchcall serve`` as a child process (its own PYTHONPATH may be
another checkout, ``--edge-pythonpath``, to measure a before/after), waits for its ready line,
then runs one bounded attack and samples the edge process's resident memory (``VmRSS`` from
``/proc/PID/status``) and open file descriptors every 100 ms:

* ``bare-tcp``: ``--n`` TCP connections to the WebSocket/TLS port that never send a byte, held
  ``--hold`` seconds; reports memory per connection (peak - start) / n and how many the edge
  accepted (still open after 1 s).
* ``quic-handshake``: ``--n`` QUIC Initial packets from one UDP socket, each a new connection
  (a fresh aioquic client), never continued (Retry and server flights are ignored); reports
  memory per abandoned handshake and the edge's counters.
* ``ws-flood``: one authenticated Twilio call sending valid 20 ms media messages at ``--rate``
  messages/s for ``--seconds`` (faster than real time), ``ws-jump``: the same with chunk
  numbers jumping by 100 per message. Reports RSS start/peak/end, how the call ended (close
  code) and a legitimate call's frames placed concurrently (``--with-call``).

Every loop is bounded in count and time; the child is stopped (SIGTERM, then SIGKILL) at the
end, also on failure. Results are one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import socket
import ssl
import sys
import time
from typing import Any

from clutchcall.prod.edge.served import Sampler, ServedEdge


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--attack", required=True,
                        choices=("bare-tcp", "quic-handshake", "ws-flood", "ws-jump"))
    parser.add_argument("--n", type=int, default=1000, help="connections / handshakes (bare-tcp, quic-handshake)")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds the connections are held")
    parser.add_argument("--rate", type=int, default=10000, help="media messages per second (ws-flood/-jump)")
    parser.add_argument("--seconds", type=float, default=5.0, help="flood duration")
    parser.add_argument("--edge-pythonpath", default=None,
                        help="PYTHONPATH of the served edge (default: this one), e.g. another checkout")
    parser.add_argument("--json", action="store_true")


async def bare_tcp(edge: ServedEdge, n: int, hold: float) -> dict[str, Any]:
    """Open ``n`` idle TCP connections to the WebSocket port; hold them ``hold`` s."""
    port = edge.ready["ws_port"]
    samp = Sampler(edge.proc.pid)
    samp.start()
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            socks.append(s)
            if len(socks) % 50 == 0:
                await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        alive = 0
        for s in socks:  # a connection the edge closed reads EOF
            try:
                alive += s.recv(1) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        await asyncio.sleep(max(0.0, hold - 1.0))
    finally:
        for s in socks:
            s.close()
    await asyncio.sleep(1.0)
    res = await samp.stop()
    res.update(connections=n, held_by_edge=alive,
               kb_per_connection=round((res["rss_peak_kb"] - res["rss_start_kb"]) / max(1, n), 1))
    return res


async def quic_handshakes(edge: ServedEdge, n: int, hold: float) -> dict[str, Any]:
    """Send ``n`` first flights of new QUIC connections, never continued."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    addr = ("127.0.0.1", edge.ready["quic_port"])
    samp = Sampler(edge.proc.pid)
    samp.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for i in range(n):
            conn = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["moq-00"],
                                                                  server_name="localhost"))
            conn.connect(addr, now=time.monotonic())
            for data, _ in conn.datagrams_to_send(now=time.monotonic()):
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(data, addr)
            if i % 50 == 49:
                await asyncio.sleep(0.01)
                with contextlib.suppress(BlockingIOError, OSError):
                    while sock.recv(65536):
                        pass
        await asyncio.sleep(hold)
    finally:
        sock.close()
    await asyncio.sleep(1.0)
    res = await samp.stop()
    res.update(handshakes=n,
               kb_per_handshake=round((res["rss_peak_kb"] - res["rss_start_kb"]) / max(1, n), 1))
    return res


def _start_msg(token: str, sid: str) -> str:
    return json.dumps({"event": "start", "streamSid": sid, "start": {
        "streamSid": sid, "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


async def ws_flood(edge: ServedEdge, rate: int, seconds: float, jump: int) -> dict[str, Any]:
    """One authenticated Twilio call flooding media at ``rate``/s, chunks advancing by ``jump``,
    while a second call sends at 1x; returns memory and how each call ended."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    uri = f"wss://localhost:{edge.ready['ws_port']}/media"
    ctx = ssl.create_default_context(cafile=edge.ready["cert"])
    tokens = list(edge.ready["tokens"].values())
    payload = base64.b64encode(b"\xff" * 160).decode()
    samp = Sampler(edge.proc.pid)
    samp.start()
    result: dict[str, Any] = {}

    async def flood() -> None:
        sent = 0
        try:
            async with connect(uri, ssl=ctx, max_size=1 << 20) as ws:
                await ws.send(_start_msg(tokens[0], "MZflood"))
                t0 = time.monotonic()
                chunk = 1
                while time.monotonic() - t0 < seconds:
                    for _ in range(max(1, rate // 100)):
                        await ws.send(json.dumps({"event": "media", "media": {
                            "chunk": str(chunk), "timestamp": str(20 * (chunk - 1)), "payload": payload}}))
                        chunk += jump
                        sent += 1
                    await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
                await ws.close()
                result["flood_close"] = "client"
        except ConnectionClosed as exc:
            result["flood_close"] = exc.rcvd.code if exc.rcvd else None
            result["flood_close_reason"] = exc.rcvd.reason if exc.rcvd else ""
        result["flood_messages_sent"] = sent

    async def legit() -> None:
        got = 0
        try:
            async with connect(uri, ssl=ctx) as ws:
                await ws.send(_start_msg(tokens[1], "MZlegit"))
                t0 = time.monotonic()
                n = int(seconds * 50)
                for i in range(n):
                    await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
                    await ws.send(json.dumps({"event": "media", "media": {
                        "chunk": str(i + 1), "timestamp": str(20 * i), "payload": payload}}))
                result["legit_frames_sent"] = n
                await ws.send(json.dumps({"event": "stop"}))
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    while True:
                        await asyncio.wait_for(ws.recv(), 2)
                        got += 1
                result["legit_close"] = ws.close_code
        except ConnectionClosed as exc:
            result["legit_close"] = exc.rcvd.code if exc.rcvd else None

    await asyncio.wait_for(asyncio.gather(flood(), legit()), seconds + 30)
    await asyncio.sleep(2.0)
    res = await samp.stop()
    res.update(result, rate=rate, seconds=seconds, chunk_jump=jump)
    return res


async def _attack(args: argparse.Namespace, edge: ServedEdge) -> dict[str, Any]:
    if args.attack == "bare-tcp":
        return await bare_tcp(edge, args.n, args.hold)
    if args.attack == "quic-handshake":
        return await quic_handshakes(edge, args.n, args.hold)
    return await ws_flood(edge, args.rate, args.seconds, 100 if args.attack == "ws-jump" else 1)


def run(args: argparse.Namespace) -> int:
    """Run the attack; print the figures; return the exit code."""
    if not 1 <= args.n <= 20000 or not 0 < args.seconds <= 60 or not 0 < args.hold <= 60:
        print("clutchcall bench hostile: --n 1..20000, --seconds and --hold 0..60", file=sys.stderr)
        return 2
    edge = ServedEdge(args.edge_pythonpath)
    try:
        res = asyncio.run(_attack(args, edge))
    finally:
        stopped = edge.stop()
    res["attack"] = args.attack
    res["edge_counters"] = {k: v for k, v in {**stopped.get("quic", {}), **{
        f"ws_{k}": v for k, v in stopped.get("ws", {}).items()}}.items()
        if k.startswith(("refused", "ws_refused", "quic_retries", "closed_", "ws_calls", "ws_auth"))}
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>24}: {v}")
    return 0
