"""Exact QUIC mode: aioquic's real sans-IO ``QuicConnection`` pair over the modelled links.

Theory of operation
-------------------
aioquic never reads a clock: every method that depends on time takes ``now``
(``connect(addr, now)``, ``receive_datagram(data, addr, now)``, ``datagrams_to_send(now)``,
``handle_timer(now)``) and ``get_timer()`` returns the next deadline. :class:`QuicPair` runs a
client (the sender of one direction's media) and a server (its receiver) over two
:class:`~clutchcall.sim.link.Link` objects with a small event loop on virtual time: pending
application sends, datagrams in flight (arrival time from the link, or dropped) and the two
connections' timers, processed in time order by :meth:`QuicPair.run_until`. TLS 1.3 is real:
the server's certificate is a self-signed ECDSA P-256 certificate made in memory with the
``cryptography`` package at start-up; the client skips verification (no CA in a simulation).

Media are sent as the production edge sends them: each audio frame on a new unidirectional
stream (one MoQT object per stream), ended with FIN, delivered when its stream completes;
control messages on one long-lived unidirectional stream, delivered in order as their bytes
arrive. Everything else -- ACK policy, loss detection, PTO, congestion control, pacing,
retransmission -- is aioquic's own, so the fast model (:class:`~clutchcall.sim.transport.
QuicModel`) can be checked against it.

Differences from the production shape (documented, intended): each direction runs on its own
connection (the uplink's ACKs are not piggybacked on downlink media); the handshake is run
once per connection at time 0. The world drives the uplink as one batch (the caller's
schedule is known) and the downlink incrementally from simpy (:class:`ExactDownlink`), never
ahead of ``env.now``, so a cancel truncates exactly the frames not yet sent.
"""

from __future__ import annotations

import datetime
import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from clutchcall.native.tlscert import make_certificate
from clutchcall.sim.link import Link
from clutchcall.sim.transport import CONTROL

_CERT: tuple[Any, Any] | None = None
_ADDR_C = ("198.18.0.1", 40000)
_ADDR_S = ("198.18.0.2", 443)


def self_signed_cert() -> tuple[Any, Any]:
    """Return (certificate, private key): a self-signed ECDSA P-256 cert made in memory
    (cached for the process)."""
    global _CERT
    if _CERT is None:
        start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
        cert, key = make_certificate("sim.clutchcall.test", not_before=start,
                                     not_after=start + datetime.timedelta(days=36500), serial=1)
        _CERT = (cert, key)
    return _CERT


class QuicPair:
    """A client -> server aioquic connection over (fwd, rev) links on virtual time."""

    _SEND, _DGRAM = 0, 1

    def __init__(self, fwd: Link, rev: Link, *, seed: int = 0) -> None:
        import ssl

        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection

        cert, key = self_signed_cert()
        ccfg = QuicConfiguration(is_client=True, alpn_protocols=["clutchcall-sim"],
                                 idle_timeout=3600.0, server_name="sim.clutchcall.test")
        ccfg.verify_mode = ssl.CERT_NONE
        scfg = QuicConfiguration(is_client=False, alpn_protocols=["clutchcall-sim"],
                                 idle_timeout=3600.0)
        scfg.certificate = cert
        scfg.private_key = key
        # aioquic draws connection ids with os.urandom; timing does not depend on them.
        self.client = QuicConnection(configuration=ccfg)
        self._scfg = scfg
        self.server: Any = None  # made on the first Initial, as a server's listener does
        self.fwd, self.rev = fwd, rev
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._ctr = 0
        self._control_stream: int | None = None
        self._stream_msg: dict[int, tuple[int, Callable[[float], None]]] = {}
        self._control_queue: list[tuple[int, Callable[[float], None]]] = []
        self._control_rx = 0
        self._control_need = 0
        self.handshake_done: float | None = None
        self.retransmissions = 0
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ loop
    def _push(self, t: float, kind: int, payload: Any) -> None:
        self._ctr += 1
        heapq.heappush(self._heap, (t, self._ctr, kind, payload))

    def _flush(self, now: float) -> None:
        for data, _addr in self.client.datagrams_to_send(now):
            arr = self.fwd.transmit(now, len(data) + 28)
            if arr is not None:
                self._push(arr, self._DGRAM, (True, data))
        if self.server is None:
            return
        for data, _addr in self.server.datagrams_to_send(now):
            arr = self.rev.transmit(now, len(data) + 28)
            if arr is not None:
                self._push(arr, self._DGRAM, (False, data))

    def _events(self, now: float) -> None:
        from aioquic.quic import events as ev

        while (e := self.client.next_event()) is not None:
            if isinstance(e, ev.HandshakeCompleted) and self.handshake_done is None:
                self.handshake_done = now
        while self.server is not None and (e := self.server.next_event()) is not None:
            if isinstance(e, ev.StreamDataReceived):
                if e.stream_id == self._control_stream:
                    self._control_rx += len(e.data)
                    while self._control_queue and self._control_rx >= self._control_queue[0][0]:
                        _need, cb = self._control_queue.pop(0)
                        cb(now)
                elif e.end_stream and e.stream_id in self._stream_msg:
                    _size, cb = self._stream_msg.pop(e.stream_id)
                    cb(now)

    def next_time(self) -> float:
        """Return the time of the next thing the pair must do (inf if idle)."""
        t = self._heap[0][0] if self._heap else math.inf
        for conn in (self.client, self.server):
            d = conn.get_timer() if conn is not None else None
            if d is not None and d < t:
                t = d
        return t

    def run_until(self, limit: float) -> None:
        """Process, in time order, everything due at or before ``limit``."""
        while True:
            t = self.next_time()
            if t > limit or t == math.inf:
                break
            now = max(t, self.now)
            self.now = now
            if self._heap and self._heap[0][0] == t:
                _t, _c, kind, payload = heapq.heappop(self._heap)
                if kind == self._SEND:
                    self._send(now, *payload)
                else:
                    to_server, data = payload
                    if to_server:
                        if self.server is None:
                            self._accept(data)
                        self.server.receive_datagram(data, _ADDR_C, now)
                    else:
                        self.client.receive_datagram(data, _ADDR_S, now)
            else:
                # 1 ns past the deadline: aioquic compares sent_time + loss_delay with now
                # in floating point, and at exactly the deadline the rounding can leave the
                # packet "not yet lost" with the same deadline (a busy loop).
                now = self.now = now + 1e-9
                for conn in (self.client, self.server):
                    d = conn.get_timer() if conn is not None else None
                    if d is not None and d <= now:
                        conn.handle_timer(now)
            self._events(now)
            self._flush(now)

    def _accept(self, data: bytes) -> None:
        from aioquic.buffer import Buffer
        from aioquic.quic.connection import QuicConnection
        from aioquic.quic.packet import pull_quic_header

        header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        self.server = QuicConnection(configuration=self._scfg,
                                     original_destination_connection_id=header.destination_cid)

    def _send(self, now: float, size: int, stream: int, cb: Callable[[float], None]) -> None:
        payload = bytes(size)
        if stream == CONTROL:
            if self._control_stream is None:
                self._control_stream = self.client.get_next_available_stream_id(True)
            self._control_need += size
            self._control_queue.append((self._control_need, cb))
            self.client.send_stream_data(self._control_stream, payload, end_stream=False)
        else:
            sid = self.client.get_next_available_stream_id(True)
            self._stream_msg[sid] = (size, cb)
            self.client.send_stream_data(sid, payload, end_stream=True)

    # ------------------------------------------------------------------ API
    def handshake(self, t0: float) -> float:
        """Run the handshake from t0; return when the client may send 1-RTT data."""
        self.now = t0
        self.client.connect(_ADDR_S, t0)
        self._flush(t0)
        while self.handshake_done is None:
            t = self.next_time()
            if t == math.inf or t > t0 + 120:
                return math.inf
            self.run_until(t)
        # let the handshake's last flights (HANDSHAKE_DONE, ACKs) settle like the first
        # media would see them
        return self.handshake_done

    def send(self, t: float, size: int, stream: int, cb: Callable[[float], None]) -> None:
        """Queue a message of ``size`` bytes sent at ``t``; ``cb(delivered_at)`` is called
        when the receiving application has it."""
        self._push(t, self._SEND, (size, stream, cb))

    def drop_pending(self, after: float) -> None:
        """Forget queued sends later than ``after`` (a cancel stopped that audio)."""
        keep = [e for e in self._heap if not (e[2] == self._SEND and e[0] > after)]
        if len(keep) != len(self._heap):
            self._heap = keep
            heapq.heapify(self._heap)


class ExactQuicTransport:
    """The exact mode behind the same interface as the fast models (see module doc)."""

    name = "quic-exact"

    def __init__(self, fwd: Link, rev: Link) -> None:
        self.fwd = fwd
        self.rev = rev
        self.conn = QuicPair(fwd, rev)
        self.ready_at = self.conn.handshake(0.0)
        self.retransmissions = 0

    @classmethod
    def pair(cls, net: Any, rngs: dict[str, np.random.Generator]
             ) -> tuple[ExactQuicTransport, ExactQuicTransport]:
        """Return (uplink, downlink) exact transports for ``net`` (a NetConfig)."""
        up = cls(Link(net.uplink, rngs["uplink"]), Link(net.downlink, rngs["uplink_ack"]))
        down = cls(Link(net.downlink, rngs["downlink"]), Link(net.uplink, rngs["downlink_ack"]))
        return up, down

    def handshake(self, t0: float) -> float:
        """Return the handshake time measured at construction (run from t = 0)."""
        return self.ready_at + t0

    def deliver(self, times: Sequence[float], sizes: Sequence[int],
                streams: Sequence[int] | None = None) -> list[float]:
        """Batch interface (the uplink): run the pair until every message is delivered or
        the connection has nothing left to do; return the delivery times."""
        n = len(times)
        out = [math.inf] * n
        start = self.conn.now
        for i in range(n):
            def cb(t: float, i: int = i) -> None:
                out[i] = t
            t = max(times[i], start)
            self.conn.send(t, sizes[i], streams[i] if streams is not None else 0, cb)
        horizon = (times[-1] if n else start) + 120.0
        self.conn.run_until(horizon)
        return out
