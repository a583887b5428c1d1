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
The edge's socket is made by ``native.udpio.bind_udp``, which sizes it when it binds it
(4 MiB); the callers' sockets are made by aioquic, so the caller raises them here. One
function does both (``native.udpio.raise_rcvbuf``). Deeper is not better past this: at 40 calls on 2 cores a 16 MiB
queue let the srtt estimates grow to 1-2 s, and aioquic's pacing (cwnd / srtt) then
throttled each sender to ~15 packets/s.
"""

from __future__ import annotations

from clutchcall.native.udpio import raise_rcvbuf

#: default receive buffer for the edge's shared QUIC socket (bytes)
EDGE_RCVBUF_BYTES = 4 << 20
#: default receive buffer for one caller's QUIC socket (bytes)
CALLER_RCVBUF_BYTES = 1 << 20

#: raise a socket's receive buffer, never lower it (forced past rmem_max where allowed)
ensure_rcvbuf = raise_rcvbuf
