"""``clutchcall native echo``: run the shard-per-core QUIC echo service (the native data
plane's runnable demonstration) and optionally drive it with QUIC clients.

Theory of operation: forks ``--shards`` processes on one UDP port (SO_REUSEPORT + DCID
steering), each with ``--io`` datagram I/O; with ``--clients K`` it then runs K aioquic clients
that echo a message, rebind to a new port and echo again, prints each shard's report and
exits; without it, it serves for ``--seconds`` (bounded) and prints the reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from clutchcall.native.quic_echo import QuicEchoClient
from clutchcall.native.shard_server import ShardedEchoService


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--io", choices=["uring", "asyncio", "auto"], default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--clients", type=int, default=0, help="self-test with K clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="serve time without clients")


async def _drive(addr: tuple, n: int) -> list[bool]:
    clients = [QuicEchoClient(addr) for _ in range(n)]
    ok: list[bool] = []
    try:
        for c in clients:
            c.connect()
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.handshake_done.wait() for c in clients))
            for i, c in enumerate(clients):
                a = await c.echo(b"hello %d" % i)
                c.rebind()
                b = await c.echo(b"again %d" % i)
                ok.append(a == b"hello %d" % i and b == b"again %d" % i)
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(0.05)
    return ok


def run(args: argparse.Namespace) -> int:
    """Serve (and self-test); print the shards' reports; return 0 if every echo matched."""
    svc = ShardedEchoService(args.shards, args.host, args.port, kind=args.io)
    svc.start()
    ok: list[bool] = []
    try:
        print(f"serving QUIC echo on {svc.address[0]}:{svc.address[1]} with {args.shards} "
              f"shards, io={','.join(svc.io_kinds)}", flush=True)
        if args.clients:
            ok = asyncio.run(_drive(svc.address, args.clients))
        else:
            deadline = time.monotonic() + max(0.0, args.seconds)
            try:
                while time.monotonic() < deadline:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
    finally:
        reports = svc.stop()
    for r in reports:
        print(json.dumps({k: r[k] for k in ("shard", "pid", "io", "handshakes",
                                            "datagrams_in", "dropped")}))
    if args.clients:
        print(f"{sum(ok)}/{args.clients} clients echoed before and after rebinding")
        return 0 if all(ok) and len(ok) == args.clients else 1
    return 0
