"""Shard-per-core QUIC echo service: N processes, one UDP port, DCID steering.

Theory of operation: the parent binds N SO_REUSEPORT sockets in shard order and attaches the
DCID-steering classic BPF program (:mod:`clutchcall.native.shard`), then runs one process per
shard with :class:`~clutchcall.native.shard_procs.ShardProcesses` (fork, ready, stop, reports);
shard k keeps socket k (so the group's numbering never changes), opens its own datagram I/O
(io_uring reactor or asyncio) and event loop, and serves QUIC with connections whose host CIDs
encode k. A datagram for a connection therefore always reaches the process that holds its
state, even after the client's address changes. On stop each shard reports what it served
(handshakes, connection IDs, peer addresses per connection, I/O kind). This is the shape
``clutchcall serve --shards N`` uses; the echo service is its runnable demonstration.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any, Self

from clutchcall.native.quic_echo import QuicEchoServer, server_configuration
from clutchcall.native.shard import (
    ShardQuicConnection,
    bind_shard_sockets,
    shard_connection_factory,
)
from clutchcall.native.shard_procs import ShardContext, ShardProcesses
from clutchcall.native.tlscert import make_certificate
from clutchcall.native.udpio import open_udp_io


def _echo_shard(ctx: ShardContext, *, kind: str, cert: Any, key: Any) -> dict[str, Any]:
    """Body of one shard: serve QUIC echo on the shard's socket until asked to stop; return
    what it served."""

    async def main() -> dict[str, Any]:
        io = open_udp_io(kind, sock=ctx.sockets[0])
        server = QuicEchoServer(io, server_configuration(cert, key),
                                shard_connection_factory(ctx.shard, ctx.nshards),
                                name=f"shard{ctx.shard}")
        await server.start()
        ctx.ready({"io": io.kind})
        await ctx.wait_stop_async()
        report = {
            "shard": ctx.shard, "pid": os.getpid(), "io": io.kind,
            "handshakes": server.handshakes, "datagrams_in": server.datagrams_in,
            "dropped": server.dropped,
            "connections": [
                {"host_cids": [c.hex() for c in conn.host_cids()]
                 if isinstance(conn, ShardQuicConnection) else [conn.host_cid.hex()],
                 "peers": sorted(str(p) for p in server.peers.get(id(conn), ()))}
                for conn in server.connections],
        }
        server.close()
        return report

    return asyncio.run(main())


class ShardedEchoService:
    """N forked shard processes serving QUIC echo on one port; use as a context manager.

    Raises OSError if the sockets cannot be bound; ``start`` raises ShardStartError (a
    RuntimeError) if a shard fails to start (every shard is stopped then).
    """

    def __init__(self, nshards: int, host: str = "127.0.0.1", port: int = 0,
                 kind: str = "auto") -> None:
        self.nshards = nshards
        self.kind = kind
        self.cert, self.key = make_certificate()
        socks = bind_shard_sockets(host, port, nshards)
        self.address = socks[0].getsockname()
        self._procs = ShardProcesses(
            nshards, functools.partial(_echo_shard, kind=kind, cert=self.cert, key=self.key),
            [(s,) for s in socks], name="echo-shard")
        self.io_kinds: list[str] = []
        self.reports: list[dict[str, Any]] = []

    def start(self, timeout: float = 20.0) -> None:
        """Fork the shards and wait until each is serving. Raises ShardStartError."""
        ready = self._procs.start(timeout)
        self.io_kinds = [ready[k]["io"] for k in range(self.nshards)]

    def stop(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Stop every shard; return their reports in shard order (one per shard that
        answered; one that did not stop within ``timeout`` is killed)."""
        reports = self._procs.stop(timeout)
        self.reports = [reports[k] for k in sorted(reports)]
        return self.reports

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._procs.running:
            self.stop()
