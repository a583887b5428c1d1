"""Coroutines that exercise the harness: an asyncio UDP echo "edge" and a UDP "caller".

Theory of operation: they are the smallest real pair of the shape the twin check runs
through :func:`clutchcall.netem.harness.run_pair` and :mod:`clutchcall.netem.runner`: the edge
binds, calls ``signal_ready``, serves until its ``stop`` event is set (SIGTERM from the
harness) and returns its counters; each caller does a bounded ping-pong exchange with the
edge's address (``CLUTCHCALL_NETEM_EDGE_ADDR``) and returns its RTTs. Both return JSON-ready
dicts.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from clutchcall.netem.runner import signal_ready

__all__ = ["udp_client", "udp_echo_server"]


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a datagram endpoint: asyncio hands it a DatagramTransport typed as BaseTransport
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def udp_echo_server(*, port: int, stop: asyncio.Event, max_seconds: float = 30.0
                          ) -> dict[str, Any]:
    """Echo UDP datagrams on ``port`` until ``stop`` is set or ``max_seconds`` pass.

    Returns ``{"echoed": n}``.
    """
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Echo, local_addr=("0.0.0.0", port))
    signal_ready(port=port)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    transport.close()
    return {"echoed": proto.count}


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def udp_client(*, port: int, count: int = 5, tag: int = 0, timeout: float = 1.0
                     ) -> dict[str, Any]:
    """Ping the edge (``CLUTCHCALL_NETEM_EDGE_ADDR``:``port``) ``count`` times, one at a time.

    Returns ``{"tag", "received", "rtt_ms": [...], "netns_addr"}`` (our local address).
    """
    loop = asyncio.get_running_loop()
    edge = os.environ["CLUTCHCALL_NETEM_EDGE_ADDR"]
    transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=(edge, port))
    rtts = []
    try:
        for i in range(count):
            msg = f"{tag}:{i}".encode()
            t0 = time.monotonic()
            transport.sendto(msg)
            try:
                while (await asyncio.wait_for(proto.queue.get(), timeout)) != msg:
                    pass
            except TimeoutError:
                continue
            rtts.append((time.monotonic() - t0) * 1000.0)
        local = transport.get_extra_info("sockname")[0]
    finally:
        transport.close()
    return {"tag": tag, "received": len(rtts), "rtt_ms": rtts, "netns_addr": local}
