"""Admission control: what a connection that has not authenticated may cost the edge.

Theory of operation
-------------------
A connection costs memory from its first packet, long before its token is checked: a TLS
connection on the WebSocket port (asyncio allocates a 256 KiB read buffer per TLS connection),
an aioquic connection with its TLS state on the QUIC port. Until it has authenticated (a
``start`` with an accepted token; a CLIENT_SETUP with an accepted token) it is *pending*.

* :class:`PendingGate` counts pending connections of one ingress against a cap
  (``IngressConfig.max_unauthenticated``). ``admit()`` returns False (and counts the refusal)
  at the cap; a slot is released once, when the connection authenticates or ends.
* WebSocket/TLS: :func:`gated_listener` turns the listening TCP socket into one whose
  ``accept()`` takes a slot per connection, and closes a connection at once (before any TLS
  work or buffer) when the gate is full. The accepted socket releases its slot when closed;
  the ingress releases it earlier, on a good ``start``. :data:`TLS_READ_BUFFER` shrinks
  asyncio's per-connection TLS read buffer from 256 KiB to 32 KiB (it is a read chunk size:
  a larger message is read in several chunks).
* QUIC: :func:`install_quic_admission` wraps the aioquic server's ``datagram_received``. Only a
  long-header packet that would create a connection is inspected (1-RTT media packets pass
  untouched): at the cap it is dropped; from ``retry_above`` pending handshakes on, an Initial
  without a token gets a QUIC Retry (address validation, RFC 9000 §8.1: a spoofed source
  address cannot complete it, so it creates no state) and an Initial carrying a Retry token is
  validated; below that, handshakes go ahead without the extra round trip.
"""

from __future__ import annotations

import asyncio.sslproto
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

TLS_READ_BUFFER = 32 * 1024
"""asyncio's TLS read buffer per connection (the stdlib default is 256 KiB)."""


def shrink_tls_read_buffer(size: int = TLS_READ_BUFFER) -> None:
    """Make asyncio's TLS protocol allocate ``size`` bytes of read buffer per connection
    (process-wide; it is the chunk size of TLS reads, not a message limit). Returns None."""
    asyncio.sslproto.SSLProtocol.max_size = size


class PendingGate:
    """Counts pending (unauthenticated) connections against ``cap`` (module docstring)."""

    def __init__(self, cap: int, stats: Counter[str] | None = None, name: str = "") -> None:
        self.cap = cap
        self.pending = 0
        self.peak = 0
        self.stats = stats if stats is not None else Counter()
        self.name = name

    def admit(self) -> bool:
        """Take a slot; return False (counted as ``refused_unauthenticated_cap``) if full."""
        if self.pending >= self.cap:
            self.stats["refused_unauthenticated_cap"] += 1
            return False
        self.pending += 1
        self.peak = max(self.peak, self.pending)
        return True

    def release(self) -> None:
        """Give a slot back (call once per admitted connection)."""
        self.pending = max(0, self.pending - 1)


class _GatedConn(socket.socket):
    """An accepted TCP connection holding a gate slot until released or closed."""

    _gate: PendingGate | None = None

    def release_slot(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release()

    def close(self) -> None:
        self.release_slot()
        super().close()


class _GatedListener(socket.socket):
    """A listening socket whose ``accept()`` refuses connections beyond the gate."""

    _gate: PendingGate

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            fd, addr = self._accept()  # type: ignore[attr-defined]
            conn = _GatedConn(self.family, self.type, self.proto, fileno=fd)
            if self._gate.admit():
                conn._gate = self._gate
                return conn, addr
            conn.close()  # over the cap: no TLS, no buffers; the next one may fit


def gated_listener(sock: socket.socket, gate: PendingGate) -> socket.socket:
    """Return a listening socket on the same file description as ``sock`` (a dup; ``sock``
    stays its owner's) whose accepted connections take ``gate`` slots."""
    import os

    lst = _GatedListener(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    lst._gate = gate
    return lst


def release_connection(transport: Any) -> None:
    """The connection on ``transport`` authenticated: give its gate slot back now (no-op for a
    connection that holds none). Returns None."""
    raw = transport.get_extra_info("socket") if transport is not None else None
    raw = getattr(raw, "_sock", raw)
    if isinstance(raw, _GatedConn):
        raw.release_slot()


def install_quic_admission(server: Any, gate: PendingGate, retry_above: int,
                           on_refused: Callable[[str], None] | None = None) -> None:
    """Wrap aioquic ``server``'s ``datagram_received`` with the QUIC admission rules of the
    module docstring. ``gate.pending`` must be kept by the connections (taken when one is
    created, released when it authenticates or ends). Returns None."""
    import importlib

    from aioquic.buffer import Buffer
    from aioquic.quic.packet import QuicPacketType, pull_quic_header

    # the Retry token handler of the QUIC core the server is from (aioquic or qh3: same API)
    roots = [c.__module__.split(".")[0] for c in type(server).__mro__]
    core = next((r for r in roots if r in ("aioquic", "qh3")), "aioquic")
    retry_mod = importlib.import_module(f"{core}.quic.retry")
    handler = retry_mod.QuicRetryTokenHandler()
    inner = server.datagram_received
    cid_len = server._configuration.connection_id_length
    stats = gate.stats

    protocols = server._protocols
    dcid_end = 1 + cid_len

    def datagram_received(data: bytes, addr: Any) -> None:
        if not data or not data[0] & 0x80:  # short header: an established connection
            # the server's own lookup by destination CID (both cores' QuicServer: a short
            # header has no version, so no version negotiation; an unknown CID, a short
            # datagram or a clear fixed bit is dropped there), without parsing the header
            # into objects once per audio frame
            proto = (protocols.get(data[1:dcid_end])
                     if len(data) >= dcid_end and data[0] & 0x40 else None)
            if proto is not None:
                proto.datagram_received(data, addr)
            else:
                inner(data, addr)
            return
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=cid_len)
        except ValueError:
            return
        if header.packet_type != QuicPacketType.INITIAL or header.destination_cid in server._protocols:
            server._retry = None
            inner(data, addr)
            return
        if gate.pending >= gate.cap:
            stats["refused_unauthenticated_cap"] += 1
            if on_refused is not None:
                on_refused("cap")
            return
        if header.token:
            server._retry = handler  # validate the Retry token we issued
        elif gate.pending >= retry_above:
            server._retry = handler  # under load: answer with a Retry, keep no state
            stats["quic_retries_sent"] += 1
        else:
            server._retry = None
        try:
            inner(data, addr)
        finally:
            server._retry = None

    server.datagram_received = datagram_received
