"""A QUIC stream-echo server driven by batched datagram I/O (io_uring or asyncio), and a
small sans-IO QUIC client that can move to a new local port mid-connection.

Theory of operation: :class:`QuicEchoServer` is how the production edge uses the native data
plane: one batch of ``(data, addr)`` from :mod:`clutchcall.native.udpio` is demultiplexed by
destination CID to aioquic ``QuicConnection`` objects (``receive_datagram(data, addr, now)``),
their events are handled (stream data is echoed back on the same stream), and the datagrams
every touched connection wants to send are collected and handed to ``send_batch`` at once.
Each connection's timer is one ``loop.call_at``. Connections are created with a factory, so a
shard passes :func:`clutchcall.native.shard.shard_connection_factory`; the server records which
connections and CIDs it saw so tests can prove steering. Malformed datagrams are counted and
dropped (a peer's bad input never raises out of the batch handler).
:class:`QuicEchoClient` runs one client ``QuicConnection`` over a plain UDP socket; ``rebind()``
switches to a fresh socket (new source port) to exercise connection migration.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from clutchcall.native.udpio import Addr, Datagram, UdpIO

ALPN = ["clutchcall-echo"]


def server_configuration(cert: Any, key: Any) -> QuicConfiguration:
    """Return a server QuicConfiguration with ``cert``/``key`` and the echo ALPN."""
    cfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.certificate = cert
    cfg.private_key = key
    return cfg


def client_configuration() -> QuicConfiguration:
    """Return a client QuicConfiguration for the echo ALPN (certificate not verified: the
    server's is self-signed)."""
    import ssl

    cfg = QuicConfiguration(is_client=True, alpn_protocols=ALPN, server_name="localhost")
    cfg.verify_mode = ssl.CERT_NONE
    return cfg


class QuicEchoServer:
    """Echo every stream back to its sender over ``io`` (see the module docstring)."""

    def __init__(self, io: UdpIO, configuration: QuicConfiguration,
                 connection_factory: Callable[..., QuicConnection] = QuicConnection,
                 name: str = "") -> None:
        self.io = io
        self.configuration = configuration
        self.factory = connection_factory
        self.name = name
        self.conns: dict[bytes, QuicConnection] = {}
        self.connections: list[QuicConnection] = []
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.dropped = 0
        self.peers: dict[int, set[Addr]] = {}  # id(conn) -> addresses seen
        self.handshakes = 0
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def start(self) -> None:
        """Start serving on the running loop."""
        self._loop = asyncio.get_running_loop()
        await self.io.start(self.on_batch)

    def on_batch(self, batch: list[Datagram]) -> None:
        """Feed one batch of datagrams to their connections and send the replies at once."""
        assert self._loop is not None
        if self.closed:
            return
        now = self._loop.time()
        touched: dict[int, QuicConnection] = {}
        cid_len = self.configuration.connection_id_length
        for data, addr in batch:
            self.datagrams_in += 1
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=cid_len)
            except ValueError:
                self.dropped += 1
                continue
            conn = self.conns.get(header.destination_cid)
            if conn is None:
                if header.packet_type != QuicPacketType.INITIAL or len(data) < 1200:
                    self.dropped += 1
                    continue
                conn = self.factory(configuration=self.configuration,
                                    original_destination_connection_id=header.destination_cid)
                self.conns[header.destination_cid] = conn
                self.conns[conn.host_cid] = conn
                self.connections.append(conn)
            self.peers.setdefault(id(conn), set()).add(addr)
            conn.receive_datagram(data, addr, now)
            touched[id(conn)] = conn
        self._service(list(touched.values()), now)

    def _service(self, conns: list[QuicConnection], now: float) -> None:
        out: list[Datagram] = []
        for conn in conns:
            self._handle_events(conn)
            out.extend(conn.datagrams_to_send(now=now))
            self._arm_timer(conn)
        if out:
            self.datagrams_out += len(out)
            self.io.send_batch(out)

    def _handle_events(self, conn: QuicConnection) -> None:
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, events.StreamDataReceived):
                if ev.data or ev.end_stream:
                    conn.send_stream_data(ev.stream_id, ev.data, ev.end_stream)
            elif isinstance(ev, events.ConnectionIdIssued):
                self.conns[ev.connection_id] = conn
            elif isinstance(ev, events.ConnectionIdRetired):
                self.conns.pop(ev.connection_id, None)
            elif isinstance(ev, events.HandshakeCompleted):
                self.handshakes += 1
            elif isinstance(ev, events.ConnectionTerminated):
                for cid in [c for c, v in self.conns.items() if v is conn]:
                    del self.conns[cid]

    def _arm_timer(self, conn: QuicConnection) -> None:
        assert self._loop is not None
        old = self._timers.pop(id(conn), None)
        if old is not None:
            old.cancel()
        t = conn.get_timer()
        if t is not None:
            self._timers[id(conn)] = self._loop.call_at(t, self._on_timer, conn)

    def _on_timer(self, conn: QuicConnection) -> None:
        assert self._loop is not None
        self._timers.pop(id(conn), None)
        if self.closed:
            return
        now = self._loop.time()
        conn.handle_timer(now)
        self._service([conn], now)

    def close(self) -> None:
        """Cancel timers and close the I/O; idempotent."""
        if self.closed:
            return
        self.closed = True
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        self.io.close()


class QuicEchoClient:
    """One aioquic client connection over a plain non-blocking UDP socket on the running loop."""

    def __init__(self, server_addr: Addr, configuration: QuicConfiguration | None = None,
                 bind_host: str = "127.0.0.1") -> None:
        self.server_addr = server_addr
        self.bind_host = bind_host
        self.conn = QuicConnection(configuration=configuration or client_configuration())
        self.sock: socket.socket | None = None
        self.received: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.handshake_done = asyncio.Event()
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.on_stream_data: Callable[[int, float], None] | None = None
        """Called as ``on_stream_data(stream_id, t)`` after stream data arrived (already in
        ``received``); ``t`` is the loop time the datagram carrying it was read."""
        self._rx_time = 0.0

    def _open(self) -> None:
        s = socket.socket(socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET,
                          socket.SOCK_DGRAM)
        s.bind((self.bind_host, 0))
        s.setblocking(False)
        self.sock = s
        self._loop.add_reader(s.fileno(), self._readable, s)

    def _close_sock(self) -> None:
        if self.sock is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    @property
    def local_address(self) -> Addr:
        assert self.sock is not None
        return self.sock.getsockname()

    def connect(self) -> None:
        """Open the socket and start the handshake."""
        self._open()
        self.conn.connect(self.server_addr, now=self._loop.time())
        self._flush()

    def rebind(self) -> None:
        """Move the connection to a new socket (new source port); the next packets come from
        there, as after a NAT rebinding."""
        self._close_sock()
        self._open()
        self.conn.send_ping(0)
        self._flush()

    def _readable(self, s: socket.socket) -> None:
        now = self._rx_time = self._loop.time()
        for _ in range(64):
            try:
                data, addr = s.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            self.conn.receive_datagram(data, addr, now)
        self._process()

    def _process(self) -> None:
        while (ev := self.conn.next_event()) is not None:
            if isinstance(ev, events.HandshakeCompleted):
                self.handshake_done.set()
            elif isinstance(ev, events.StreamDataReceived):
                self.received.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                if ev.end_stream:
                    self.ended.add(ev.stream_id)
                if self.on_stream_data is not None:
                    self.on_stream_data(ev.stream_id, self._rx_time)
            self._changed.set()
        self._flush()

    def _flush(self) -> None:
        if self.sock is None:
            return
        for data, addr in self.conn.datagrams_to_send(now=self._loop.time()):
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                pass
        if self._timer is not None:
            self._timer.cancel()
        t = self.conn.get_timer()
        self._timer = self._loop.call_at(t, self._on_timer) if t is not None else None

    def _on_timer(self) -> None:
        self._timer = None
        self.conn.handle_timer(self._loop.time())
        self._process()

    async def echo(self, payload: bytes, timeout: float = 5.0) -> bytes:
        """Send ``payload`` on a new stream with FIN; return what the server echoed back.
        Raises TimeoutError."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_stream_data(sid, payload, end_stream=True)
        self._flush()
        async with asyncio.timeout(timeout):
            while sid not in self.ended:
                self._changed.clear()
                await self._changed.wait()
        return bytes(self.received[sid])

    def close(self) -> None:
        """Close the connection (CONNECTION_CLOSE sent) and the socket."""
        self.conn.close()
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
        self._close_sock()
