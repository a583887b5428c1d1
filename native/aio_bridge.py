"""Run asyncio datagram protocols -- aioquic's own ``QuicServer`` included -- over the native
batched datagram I/O (io_uring reactor, AF_XDP or the asyncio fallback).

Theory of operation: an ``asyncio.DatagramProtocol`` only needs ``datagram_received(data,
addr)`` calls and a transport with ``sendto``. :class:`BatchDatagramTransport` is that
transport: ``sendto`` appends to an outgoing batch; the batch goes out with one
``io.send_batch`` at the end of each received batch (so the replies to a burst leave together)
or, for sends made from timers and tasks, from one ``call_soon`` per loop iteration. Received
batches are fed to the protocol one datagram at a time. :func:`serve_quic` is aioquic's
``serve()`` with the socket replaced by such I/O, so the production edge keeps aioquic's
asyncio API (``QuicConnectionProtocol`` subclasses, stream handlers) and gains the reactor.
:func:`use_shard_cids_in_aioquic_server` makes aioquic's ``QuicServer`` create
:class:`~clutchcall.native.shard.ShardQuicConnection` objects (it builds connections through
its module-level ``QuicConnection`` name, which this replaces): call it once in each shard
process, after the fork.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from clutchcall.native.udpio import Addr, Datagram


class BatchDatagramTransport(asyncio.DatagramTransport):
    """An asyncio datagram transport whose sends are batched onto ``io.send_batch``."""

    def __init__(self, io: Any, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self.io = io
        self.protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._out: list[Datagram] = []
        self._scheduled = False
        self._closing = False
        self._in_batch = False

    # Narrower than asyncio's DatagramTransport.sendto (which also allows a str address and
    # any buffer): the native reactors send bytes-like payloads to (host, port) tuples only.
    def sendto(  # type: ignore[override]
            self, data: bytes | bytearray | memoryview, addr: Addr | None = None) -> None:
        if self._closing:
            return
        if addr is None:
            raise ValueError("BatchDatagramTransport needs an address per datagram")
        self._out.append((bytes(data), addr))
        if not self._in_batch and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every queued datagram with one ``send_batch``."""
        self._scheduled = False
        if self._out and not self._closing:
            out, self._out = self._out, []
            self.io.send_batch(out)

    def on_batch(self, batch: list[Datagram]) -> None:
        """Feed a received batch to the protocol, then send its replies as one batch."""
        self._in_batch = True
        try:
            for data, addr in batch:
                self.protocol.datagram_received(data, addr)
        finally:
            self._in_batch = False
        self.flush()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self.io.local_address
        if name == "socket":
            return getattr(self.io, "sock", default)
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self.flush()
        self._closing = True
        self.io.close()
        self._loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return sum(len(d) for d, _ in self._out)


async def serve_protocol(io: Any, protocol: asyncio.DatagramProtocol) -> BatchDatagramTransport:
    """Connect ``protocol`` to ``io`` and start delivering; return the transport."""
    transport = BatchDatagramTransport(io, protocol)
    protocol.connection_made(transport)
    await io.start(transport.on_batch)
    return transport


async def serve_quic(io: Any, *, configuration: Any, create_protocol: Callable[..., Any] | None = None,
                     **server_kwargs: Any) -> Any:
    """aioquic's ``serve()`` over ``io`` (from :func:`~clutchcall.native.udpio.open_udp_io`):
    return the running ``aioquic.asyncio.server.QuicServer``; ``server.close()`` stops it."""
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.asyncio.server import QuicServer

    server = QuicServer(configuration=configuration,
                        create_protocol=create_protocol or QuicConnectionProtocol,
                        **server_kwargs)
    await serve_protocol(io, server)
    return server


def use_shard_cids_in_aioquic_server(shard: int, nshards: int) -> Callable[[], None]:
    """Make aioquic's ``QuicServer`` (in this process) create connections whose host CIDs
    encode ``shard`` of ``nshards``; return a function that undoes it."""
    import aioquic.asyncio.server as srv

    from clutchcall.native.shard import ShardQuicConnection, shard_cid

    shard_cid(shard, nshards)  # validate
    original = srv.QuicConnection

    class _ShardConnection(ShardQuicConnection):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(shard=shard, nshards=nshards, **kwargs)

    # aioquic's server builds connections from this module global: swap in the shard-aware
    # subclass (mypy forbids assigning to a class name); undo() restores it.
    srv.QuicConnection = _ShardConnection  # type: ignore[misc]

    def undo() -> None:
        srv.QuicConnection = original  # type: ignore[misc]

    return undo
