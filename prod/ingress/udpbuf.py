"""UDP socket receive-buffer sizing for the QUIC legs.

Theory of operation
-------------------
One edge UDP socket carries every QUIC call's datagrams (~50 frames/s per call plus ACKs). The
kernel's default receive buffer (``net.core.rmem_default``, 208 KiB) holds only ~90 small
loopback datagrams (each costs its skb truesize, ~2.3 KiB), i.e. ~60 ms of traffic at 30
calls. When the edge's event loop is descheduled or busy for longer than that (2 cores shared
by edge, callers and model), the kernel drops datagrams (``RcvbufErrors`` in /proc/net/snmp).
QUIC treats them as congestion loss: the senders' congestion windows fall to the minimum
(2 packets), pacing spaces packets 30-60 ms apart, every caller's 20 ms frames queue behind
it and arrive late, and the uplink jitter buffers conceal / re-anchor: the collapse measured
past ~25 calls. A deep receive buffer turns a scheduling stall into a short queue instead of
loss. :func:`ensure_rcvbuf` raises a socket's buffer (never lowers it), using
``SO_RCVBUFFORCE`` when allowed (root) so ``net.core.rmem_max`` does not cap it.
``native.udpio.bind_udp`` (the edge's socket since IngressConfig.io) asks for 4 MiB with
plain ``SO_RCVBUF`` (capped by rmem_max); the edge re-checks it here, the callers use it
for their own sockets. Deeper is not better past this: at 40 calls on 2 cores a 16 MiB
queue let the srtt estimates grow to 1-2 s, and aioquic's pacing (cwnd / srtt) then
throttled each sender to ~15 packets/s.
"""

from __future__ import annotations

import socket

#: default receive buffer for the edge's shared QUIC socket (bytes)
EDGE_RCVBUF_BYTES = 4 << 20
#: default receive buffer for one caller's QUIC socket (bytes)
CALLER_RCVBUF_BYTES = 1 << 20

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def ensure_rcvbuf(sock: socket.socket | None, nbytes: int) -> int:
    """Raise ``sock``'s receive buffer to at least ``nbytes`` (kernel doubles the request).

    Returns the effective size the kernel reports (0 for ``None`` or a socket without the
    option). Never raises for an unsupported socket: the buffer stays as it was.
    """
    if sock is None:
        return 0
    try:
        cur = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0
    if cur >= nbytes:
        return int(cur)
    for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, nbytes)
            break
        except OSError:
            continue
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return int(cur)
