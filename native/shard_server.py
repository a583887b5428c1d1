"""Shard-per-core QUIC echo service: N processes, one UDP port, DCID steering.

Theory of operation: the parent binds N SO_REUSEPORT sockets in shard order and attaches the
DCID-steering classic BPF program (:mod:`clutchcall.native.shard`), then forks one process per
shard; shard k keeps socket k (so the group's numbering never changes), opens its own datagram
I/O (io_uring reactor or asyncio) and event loop, and serves QUIC with connections whose host
CIDs encode k. A datagram for a connection therefore always reaches the process that holds its
state, even after the client's address changes. On stop each shard reports what it served
(handshakes, connection IDs, peer addresses per connection, I/O kind) over a pipe. This is the
shape ``clutchcall serve --shards N`` uses; the echo service is its runnable demonstration.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import socket
from typing import Any, Self

from clutchcall.native.quic_echo import QuicEchoServer, make_certificate, server_configuration
from clutchcall.native.shard import (
    ShardQuicConnection,
    bind_shard_sockets,
    shard_connection_factory,
)
from clutchcall.native.udpio import open_udp_io


def _shard_main(shard: int, nshards: int, sock: socket.socket, kind: str, pipe: Any,
                stop: Any, cert: Any, key: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`

    async def main() -> None:
        io = open_udp_io(kind, sock=sock)
        server = QuicEchoServer(io, server_configuration(cert, key),
                                shard_connection_factory(shard, nshards), name=f"shard{shard}")
        await server.start()
        pipe.send(("ready", shard, io.kind))
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, stop.wait, 0.1):
            pass
        report = {
            "shard": shard, "pid": os.getpid(), "io": io.kind,
            "handshakes": server.handshakes, "datagrams_in": server.datagrams_in,
            "dropped": server.dropped,
            "connections": [
                {"host_cids": [c.hex() for c in conn.host_cids()]
                 if isinstance(conn, ShardQuicConnection) else [conn.host_cid.hex()],
                 "peers": sorted(str(p) for p in server.peers.get(id(conn), ()))}
                for conn in server.connections],
        }
        pipe.send(("report", report))
        server.close()

    asyncio.run(main())


class ShardedEchoService:
    """N forked shard processes serving QUIC echo on one port; use as a context manager.

    Raises OSError if the sockets cannot be bound, RuntimeError if a shard fails to start.
    """

    def __init__(self, nshards: int, host: str = "127.0.0.1", port: int = 0,
                 kind: str = "auto") -> None:
        self.nshards = nshards
        self.kind = kind
        self.socks = bind_shard_sockets(host, port, nshards)
        self.address = self.socks[0].getsockname()
        self.cert, self.key = make_certificate()
        self._ctx = mp.get_context("fork")
        self._stop = self._ctx.Event()
        self._procs: list[Any] = []
        self._pipes: list[Any] = []
        self.io_kinds: list[str] = []
        self.reports: list[dict[str, Any]] = []

    def start(self, timeout: float = 20.0) -> None:
        """Fork the shards and wait until each is serving."""
        for k, s in enumerate(self.socks):
            parent, child = self._ctx.Pipe()
            p = self._ctx.Process(target=_shard_main, daemon=True,
                                  args=(k, self.nshards, s, self.kind, child, self._stop,
                                        self.cert, self.key))
            p.start()
            self._procs.append(p)
            self._pipes.append(parent)
        for k, pipe in enumerate(self._pipes):
            if not pipe.poll(timeout):
                self.stop()
                raise RuntimeError(f"shard {k} did not start")
            msg = pipe.recv()
            self.io_kinds.append(msg[2])

    def stop(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Stop every shard; return their reports (one per shard that answered)."""
        self._stop.set()
        self.reports = []
        for pipe in self._pipes:
            try:
                if pipe.poll(timeout):
                    kind, rep = pipe.recv()
                    if kind == "report":
                        self.reports.append(rep)
            except (EOFError, OSError):
                pass
        for p in self._procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(2)
        for s in self.socks:
            s.close()
        self._procs.clear()
        self._pipes.clear()
        return self.reports

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._procs:
            self.stop()


class ShardProcesses:
    """Generic shard-per-core runner for the production edge: binds ``nshards`` steered
    SO_REUSEPORT sockets, then forks one process per shard running
    ``target(shard, nshards, sock, stop_event)``; the target opens its own I/O on ``sock``
    (``open_udp_io(kind, sock=sock)``), its own event loop and its own calls, and should
    return soon after ``stop_event`` (a multiprocessing Event) is set.
    Raises OSError if binding fails.
    """

    def __init__(self, nshards: int, host: str, port: int,
                 target: Any, daemon: bool = True) -> None:
        self.nshards = nshards
        self.socks = bind_shard_sockets(host, port, nshards)
        self.address = self.socks[0].getsockname()
        self._ctx = mp.get_context("fork")
        self.stop_event = self._ctx.Event()
        self._target = target
        self._daemon = daemon
        self.procs: list[Any] = []

    def start(self) -> None:
        """Fork the shard processes."""
        for k, s in enumerate(self.socks):
            p = self._ctx.Process(target=self._target, daemon=self._daemon,
                                  args=(k, self.nshards, s, self.stop_event))
            p.start()
            self.procs.append(p)

    def stop(self, timeout: float = 10.0) -> list[int | None]:
        """Set the stop event, join (kill after ``timeout``); return the exit codes."""
        self.stop_event.set()
        codes: list[int | None] = []
        for p in self.procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(2)
            codes.append(p.exitcode)
        for s in self.socks:
            s.close()
        self.procs.clear()
        return codes
