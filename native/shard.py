"""Shard-per-core on one UDP port: shard-encoding QUIC connection IDs and a classic-BPF
SO_REUSEPORT program that steers each datagram to its shard's socket by its DCID.

Theory of operation: N sockets are bound to the same (host, port) with SO_REUSEPORT, in shard
order, by one process (:func:`bind_shard_sockets`); the kernel numbers the members of a
reuseport group in the order they joined, so socket k has index k. A classic BPF program
attached with SO_ATTACH_REUSEPORT_CBPF returns that index for every datagram; it sees the UDP
payload and computes ``dcid[0] % N``: the DCID starts at byte 1 in a short-header packet and at
byte 6 in a long-header one (after flags, version and the DCID length). The servers' connection
IDs encode the shard in their first byte (``cid[0] % N == shard``, the rest random, see
:func:`shard_cid`), so once the client uses a server-chosen CID every packet of the connection
reaches the shard that owns it, whatever the client's address or port. A client's first
Initial carries a DCID the client chose at random: it lands on ``dcid[0] % N`` too, and that
shard then owns the connection (all of the client's Initials repeat the same DCID).
:class:`ShardQuicConnection` is aioquic's ``QuicConnection`` with every host CID made by
:func:`shard_cid` (aioquic draws them with ``os.urandom`` in ``__init__`` and in
``_replenish_connection_ids``; the subclass replaces both). After binding, the N sockets can be
handed to N processes (fork); closing one socket reorders the group, so shards keep theirs open.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from aioquic.quic.connection import QuicConnection, QuicConnectionId

from clutchcall.engine.errors import ConfigError

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)

# classic BPF opcodes
_BPF_LD_B_ABS = 0x30
_BPF_JMP_JSET_K = 0x45
_BPF_JMP_JA = 0x05
_BPF_ALU_MOD_K = 0x94
_BPF_RET_A = 0x16


def shard_cid(shard: int, nshards: int, length: int = 8) -> bytes:
    """Return a random connection ID of ``length`` bytes whose first byte is ``shard``
    modulo ``nshards``. Raises ConfigError for a bad shard, count or length."""
    if not 1 <= nshards <= 256 or not 0 <= shard < nshards:
        raise ConfigError(f"shard {shard} of {nshards}: need 0 <= shard < nshards <= 256")
    if not 1 <= length <= 20:
        raise ConfigError(f"connection ID length must be 1..20, got {length}")
    rnd = os.urandom(length)
    slots = 256 // nshards  # first bytes b < slots * nshards with b % nshards == shard
    first = (rnd[0] % slots) * nshards + shard
    return bytes([first]) + rnd[1:]


def shard_of_datagram(data: bytes, nshards: int) -> int:
    """Return the shard the BPF program steers ``data`` (a UDP payload) to: the Python mirror
    of :func:`reuseport_cbpf`, for tests and for shards double-checking a packet."""
    if not data:
        return 0
    if data[0] & 0x80:
        return data[6] % nshards if len(data) > 6 else 0
    return data[1] % nshards if len(data) > 1 else 0


def reuseport_cbpf(nshards: int) -> list[tuple[int, int, int, int]]:
    """Return the classic BPF program (list of (code, jt, jf, k)) steering by DCID."""
    if not 1 <= nshards <= 256:
        raise ConfigError(f"nshards must be 1..256, got {nshards}")
    return [
        (_BPF_LD_B_ABS, 0, 0, 0),        # 0: A = payload[0] (QUIC flags byte)
        (_BPF_JMP_JSET_K, 2, 0, 0x80),   # 1: long header? -> 4
        (_BPF_LD_B_ABS, 0, 0, 1),        # 2: short header: A = dcid[0] at byte 1
        (_BPF_JMP_JA, 0, 0, 1),          # 3: -> 5
        (_BPF_LD_B_ABS, 0, 0, 6),        # 4: long header: A = dcid[0] at byte 6
        (_BPF_ALU_MOD_K, 0, 0, nshards),  # 5: A %= nshards
        (_BPF_RET_A, 0, 0, 0),           # 6: return A (the socket index in the group)
    ]


def attach_reuseport_cbpf(sock: socket.socket, nshards: int) -> None:
    """Attach the DCID-steering program to ``sock``'s reuseport group (any member will do).
    Raises OSError if the kernel refuses it."""
    import ctypes

    prog = reuseport_cbpf(nshards)
    insns = b"".join(struct.pack("=HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def bind_shard_sockets(host: str, port: int, nshards: int,
                       rcvbuf: int = 4 << 20) -> list[socket.socket]:
    """Return ``nshards`` UDP sockets bound to (host, port) with SO_REUSEPORT, in shard order,
    with the steering program attached (port 0: the first picks a free port, the others join
    it). Raises OSError on failure (the sockets made so far are closed)."""
    from clutchcall.native.udpio import bind_udp

    socks: list[socket.socket] = []
    try:
        for _ in range(nshards):
            s = bind_udp(host, port, reuseport=True, rcvbuf=rcvbuf)
            port = s.getsockname()[1]
            socks.append(s)
        attach_reuseport_cbpf(socks[0], nshards)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


class ShardQuicConnection(QuicConnection):
    """aioquic's QuicConnection whose host connection IDs all encode ``shard`` (of
    ``nshards``). Use only server-side; pass ``shard`` and ``nshards`` as keywords."""

    def __init__(self, *, shard: int, nshards: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cc_shard = shard
        self._cc_nshards = nshards
        length = self._configuration.connection_id_length
        first = self._host_cids[0]
        first.cid = shard_cid(shard, nshards, length)
        self.host_cid = first.cid
        self._local_initial_source_connection_id = first.cid

    def _replenish_connection_ids(self) -> None:
        length = self._configuration.connection_id_length
        while len(self._host_cids) < min(8, self._remote_active_connection_id_limit):
            self._host_cids.append(
                QuicConnectionId(
                    cid=shard_cid(self._cc_shard, self._cc_nshards, length),
                    sequence_number=self._host_cid_seq,
                    stateless_reset_token=os.urandom(16),
                )
            )
            self._host_cid_seq += 1

    def host_cids(self) -> list[bytes]:
        """Return every host connection ID this connection has issued so far."""
        return [c.cid for c in self._host_cids]


def shard_connection_factory(shard: int, nshards: int) -> Callable[..., QuicConnection]:
    """Return a ``QuicConnection``-compatible factory (keyword arguments as aioquic's) whose
    connections use shard-encoding host CIDs."""
    shard_cid(shard, nshards)  # validate now

    def factory(**kwargs: Any) -> QuicConnection:
        return ShardQuicConnection(shard=shard, nshards=nshards, **kwargs)

    return factory
