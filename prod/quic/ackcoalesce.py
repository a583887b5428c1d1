"""ACKs for received audio ride the next send (both legs, both QUIC cores).

Theory of operation
-------------------
Audio is a steady flow of small ack-eliciting packets, one every 20 ms per call and direction.
qh3's native core arms a 1 ms ACK timer after every packet it receives (aioquic waits its
``_ack_delay``, see :mod:`clutchcall.prod.ingress.ackdelay`), so the core protocol's
``datagram_received`` -- receive, then ``transmit()`` -- sends a separate ACK-only packet for
almost every audio frame, which the peer must receive, decrypt and process.

:class:`AckCoalescing` (a mixin in front of the core's ``QuicConnectionProtocol``: the edge's
``EdgeSession`` and the caller's ``CallerSession``) receives a datagram without transmitting
when the datagram carried received audio only (the session's ``quic_event_received`` leaves
``_rx_media_only`` set; anything else -- control, handshake, stream credit, a close -- clears
it, as does every ``transmit()``). The ACK then leaves with the connection's next send (the
endpoint's own audio frame of the next 20 ms tick, which carries it: qh3 puts a pending ACK in
every packet, aioquic only a due one, so ``transmit()`` brings aioquic's forward, see
``QuicCore.ack_with_next_send``) or, when there is none,
when the connection's timer fires: the timer as it was before the datagram, brought forward to
``now +`` :data:`ACK_COALESCE_MS` = 23 ms at the latest. The timer then runs the core's
``handle_timer`` and ``transmit()``, which sends the ACK that is by then due (the core's own
ACK timer, 1 ms for qh3, <= 20 ms for aioquic, has passed).

RFC 9000 §13.2.1: an endpoint must acknowledge ack-eliciting 1-RTT packets within the
``max_ack_delay`` it advertised; both cores advertise the default 25 ms (§18.2), and 23 ms
leaves 2 ms for the loop to run the timer late. 23 ms is above the 20 ms frame interval, so
while the other direction is silent one ACK covers two received frames (§13.2.2 asks for an
ACK at least every second ack-eliciting packet; the core's own bookkeeping still decides what
the ACK frame lists). Loss recovery on the peer is unaffected: its RTT samples subtract the
ack delay we report, and its PTO includes our max_ack_delay.

How the timer is kept is the session's business (:meth:`AckCoalescing._pending_timer` /
:meth:`AckCoalescing._arm_ack_timer`): here the core protocol's own loop timer (the caller);
the edge's batched call loop keeps it as a deadline of its ``CallScheduler``.
"""

from __future__ import annotations

from typing import Any

ACK_COALESCE_MS = 23.0
"""The longest the ACK of a datagram of received audio waits for the connection's next send
(ms): under the 25 ms ``max_ack_delay`` both QUIC cores advertise (RFC 9000 §18.2 default),
above the 20 ms frame interval (so one ACK covers two frames while the other side is silent)."""


class AckCoalescing:
    """Mixin for a session on a core's ``QuicConnectionProtocol`` (see module docstring).

    The session sets ``self._rx_media_only = False`` (or calls ``transmit()``) for every
    received event that needs an answer now, and calls :meth:`_receive_coalescing_ack`
    from its ``datagram_received`` / ``datagrams_received`` when coalescing applies."""

    core: Any
    _quic: Any
    _loop: Any
    _timer: Any
    _timer_at: Any
    _process_events: Any
    _handle_timer: Any
    _rx_media_only = False  # the datagram being received carried received audio only (so far)
    acks_deferred = 0
    """Datagrams whose ACK was left to the next send or the coalescing timer."""

    def transmit(self) -> None:
        """The core protocol's ``transmit``, carrying any ACK the connection owes."""
        self._rx_media_only = False
        self.core.ack_with_next_send(self._quic, self._loop.time())
        super().transmit()  # type: ignore[misc]

    def _receive_coalescing_ack(self, data: bytes | list[bytes], addr: Any) -> bool:
        """Feed ``data`` (one datagram, or a batch on qh3) from ``addr`` to the core and process
        its events; transmit at once unless they were received audio only, else leave the ACK
        to the next send, at most :data:`ACK_COALESCE_MS` away. Return False if the core
        refused the datagram (``QuicConnectionError``, qh3 on a closed connection), else True."""
        now = self._loop.time()
        quic = self._quic
        try:
            if isinstance(data, list):
                quic.receive_many_datagrams(data, addr, now=now)
            else:
                self.core.receive_datagram(quic, data, addr, now)
        except self.core.QuicConnectionError:
            return False
        self._rx_media_only = True
        self._process_events()
        if not self._rx_media_only:
            self.transmit()
            return True
        # the connection's timer as it was before this datagram stands (the core's new one is
        # its ACK timer), brought forward to the longest wait for the ACK
        self.acks_deferred += 1
        deadline = now + ACK_COALESCE_MS / 1000
        pending = self._pending_timer()
        if pending is not None and pending < deadline:
            deadline = pending
        self._arm_ack_timer(deadline)
        return True

    def _pending_timer(self) -> float | None:
        """The connection's pending timer (loop time), or None: the core protocol's loop timer."""
        return self._timer_at if self._timer is not None else None

    def _arm_ack_timer(self, deadline: float) -> None:
        """Make ``deadline`` the connection's one timer: the core protocol's loop timer, which
        runs its ``_handle_timer`` (the core's ``handle_timer``, then ``transmit()``)."""
        if self._timer is not None:
            if self._timer_at == deadline:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._handle_timer)
        self._timer_at = deadline
