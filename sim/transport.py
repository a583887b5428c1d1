"""Fast packet-level models of the two caller-leg transports: QUIC and TCP+TLS 1.3.

Theory of operation
-------------------
A transport model turns a *batch* of application messages handed to the sender (send time,
size, stream) into the time each message is *delivered to the receiving application*. The
simulator calls :meth:`TransportModel.deliver` once for the whole uplink of a call (the caller
sends a frame every ``frame_ms`` for the whole call, so its schedule is known up front) and
once per agent reply on the downlink. Inside a batch the model runs its own small
discrete-event loop (a heap of packet arrivals, ACK arrivals and timers) rather than one simpy
event per packet: with the batch's future sends known, every delivery time follows from the
link draws in closed form, and the simpy world only sees one delivery time per message. This
keeps the per-frame cost of the simulator to a few microseconds. State that outlives a batch
(RTT estimator, packet numbers / sequence space, the links' queues and random streams, the
previous batch's deliveries for in-order streams) carries over to the next one.

Both models share the :class:`~clutchcall.sim.link.Link` of each direction: data packets go
over the forward link, ACKs over the reverse link's parameters (with their own random stream).
Congestion control is not modelled: a 20 ms audio frame per packet (<= 100 kbit/s) stays far
below any congestion window after the handshake; the bottleneck queue of the link is modelled.

QUIC (RFC 9000, RFC 9002; one MoQT object per QUIC stream as the production edge sends audio)
    * Every audio frame is its own stream, so a message is delivered when *any* copy of it
      arrives: a lost packet delays only its own frame. Messages on the control stream
      (stream id :data:`CONTROL`) are delivered in order among themselves.
    * Receiver ACK policy (RFC 9000 §13.2): ACK every 2nd ack-eliciting packet, at most
      ``max_ack_delay`` (25 ms) after the first unacknowledged one, immediately on a packet
      out of order. An ACK repeats every range not yet known to the sender, so a lost ACK is
      covered by the next one.
    * Loss detection (RFC 9002 §6.1): a packet below the largest acknowledged one is lost when
      ``kPacketThreshold = 3`` later packets are acknowledged or it was sent more than
      ``9/8 * max(smoothed_rtt, latest_rtt)`` (min 1 ms) ago; otherwise a loss timer fires at
      that time. Lost stream data is retransmitted at once in a new packet.
    * PTO (RFC 9002 §6.2): ``smoothed_rtt + max(4 * rttvar, 1 ms) + max_ack_delay`` after the
      last ack-eliciting packet, doubled per consecutive PTO; on expiry a probe carries the
      oldest unacknowledged frame again.
    * RTT estimation (RFC 9002 §5): latest_rtt minus ack_delay when that stays above min_rtt,
      EWMA with 1/8 and 1/4. Handshake: 1 RTT before application data, 0 with 0-RTT
      resumption; a lost handshake flight waits for the initial PTO (kInitialRtt = 333 ms).
    * Per-packet overhead 74 bytes: IPv4+UDP 28, short header with 8-byte connection id and
      2-byte packet number 11, AEAD tag 16, STREAM frame header 11, MoQT object header 8.
    * Datagram mode (``datagrams=True``, the production edge's audio in MoQT OBJECT_DATAGRAMs
      when both ends negotiate QUIC DATAGRAM frames, RFC 9221): every message that is not on
      the control stream rides one DATAGRAM frame. It is ack-eliciting and counts for loss
      detection and RTT like any packet, but a lost one is never retransmitted: it is never
      delivered (``math.inf``; the receiver's jitter buffer conceals it). A PTO with only
      datagrams outstanding sends a PING. Control messages stay reliable and ordered.
      Overhead 64 bytes: 28 + 11 + 16, DATAGRAM frame header 3, OBJECT_DATAGRAM header 6.

TCP + TLS 1.3 (the WebSocket path; Linux defaults)
    * One ordered byte stream carries every track: a message is delivered only when it and
      every earlier byte have arrived (head-of-line blocking). TCP_NODELAY: each message goes
      out at once in its own segment, as one TLS record (5-byte header, 1 content-type byte,
      16-byte tag) in one WebSocket frame (2-6 bytes): 40 + 12 (timestamps) + 22 + 6 = 80
      bytes of overhead.
    * Receiver: delayed ACK every 2nd segment or after 40 ms (Linux's minimum ATO), immediate
      ACK with SACK blocks for out-of-order data (RFC 2018, RFC 5681 §4.2).
    * Sender recovery: RACK-TLP (RFC 8985, Linux's default since 4.18): a segment sent before
      a (S)ACKed one is lost once ``RACK.rtt + reo_wnd`` (``reo_wnd = min_rtt / 4``) has
      passed since it was sent, else a reorder timer is armed; fast retransmit once 3 later
      segments are SACKed (RFC 6675 DupThresh); a tail loss probe ``2 * srtt`` after the last
      send (plus 200 ms when one segment is in flight), retransmitting the last segment; RTO
      (RFC 6298 with Linux's floor) ``srtt + max(4 * rttvar, 200 ms)``, doubled per expiry.
    * Handshake: 2 RTT (TCP SYN/SYN-ACK, then the TLS 1.3 flight) before application data; a
      lost SYN waits for the initial 1 s RTO.

Both models give up on a message after 10 consecutive timer backoffs (the connection would
be dead); such a message is never delivered (``math.inf``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from typing import Any

from clutchcall.sim.link import Link

CONTROL = -1
"""Stream id of the control stream (ordered); any other id < -1 is invalid. Messages with
``streams=None`` each get a stream of their own (QUIC) / share the byte stream (TCP)."""

_INF = math.inf
_GRANULARITY = 0.001
_MAX_BACKOFF = 10

# event kinds
_ARRIVE, _ACK, _ACK_TIMER, _TIMER, _SEND = 0, 1, 2, 3, 4


class TransportModel:
    """Base: shared RTT estimator, handshake and stream-order bookkeeping."""

    name = "base"
    overhead_bytes = 0
    ack_bytes = 0

    def __init__(self, fwd: Link, rev: Link, *, max_ack_delay_ms: float = 25.0) -> None:
        self.fwd = fwd
        self.rev = rev
        base_rtt = fwd.cfg.one_way_s + rev.cfg.one_way_s
        self.srtt = base_rtt
        self.rttvar = base_rtt / 2
        self.min_rtt = base_rtt if base_rtt > 0 else _GRANULARITY
        self.latest_rtt = base_rtt
        self.max_ack_delay = max_ack_delay_ms / 1000.0
        self.retransmissions = 0
        self.spurious = 0
        # previous deliveries per ordered stream: list of (send_time, delivered_at)
        self._history: dict[int, list[tuple[float, float]]] = {}

    # -- RTT estimator (RFC 9002 §5.3 / RFC 6298) --------------------------------------
    def _rtt_sample(self, rtt: float, ack_delay: float = 0.0) -> None:
        self.latest_rtt = rtt
        self.min_rtt = min(self.min_rtt, rtt)
        adjusted = rtt - ack_delay if rtt - ack_delay >= self.min_rtt else rtt
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - adjusted)
        self.srtt = 0.875 * self.srtt + 0.125 * adjusted

    def handshake(self, t0: float) -> float:
        """Return when application data may first be sent after starting to connect at t0."""
        raise NotImplementedError

    def deliver(
        self, times: Sequence[float], sizes: Sequence[int], streams: Sequence[int] | None = None
    ) -> list[float]:
        """Send message i of ``sizes[i]`` bytes at ``times[i]`` (sorted, seconds) on stream
        ``streams[i]``; return when each is delivered to the receiving application (seconds,
        ``math.inf`` if never). Raises ValueError on mismatched or unsorted input."""
        raise NotImplementedError

    def _check(self, times: Sequence[float], sizes: Sequence[int],
               streams: Sequence[int] | None) -> None:
        if len(times) != len(sizes) or (streams is not None and len(streams) != len(times)):
            raise ValueError("deliver: times, sizes and streams must have equal lengths")
        for a, b in itertools.pairwise(times):
            if b < a:
                raise ValueError("deliver: send times must be sorted")

    def _order(self, times: Sequence[float], arrivals: list[float], stream_of: Sequence[int],
               ordered: set[int]) -> list[float]:
        """Apply in-order delivery within each ordered stream (across batches too)."""
        out = list(arrivals)
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(stream_of):
            if s in ordered:
                groups.setdefault(s, []).append(i)
        for s, idx in groups.items():
            hist = self._history.get(s, [])
            t0 = times[idx[0]]
            floor = max((d for st, d in hist if st <= t0), default=-_INF)
            # earlier-batch messages sent before this batch's first one must precede it
            for i in idx:
                floor = max(floor, out[i])
                out[i] = floor
            self._history[s] = [(times[i], out[i]) for i in idx]
        return out


class QuicModel(TransportModel):
    """Fast QUIC model; see the module docstring."""

    name = "quic"
    overhead_bytes = 74
    datagram_overhead_bytes = 64
    ack_bytes = 50

    def __init__(self, fwd: Link, rev: Link, *, max_ack_delay_ms: float = 25.0,
                 zero_rtt: bool = False, ack_every: int = 2,
                 ack_delay_ms: float | None = None, datagrams: bool = False) -> None:
        """``max_ack_delay_ms`` is the advertised bound (used in the PTO); the receiver ACKs
        every ``ack_every``-th ack-eliciting packet or ``ack_delay_ms`` (default: the bound)
        after the first unacknowledged one. RFC 9000's default is 2 / 25 ms; the ACK
        frequency extension (draft-ietf-quic-ack-frequency) changes them; aioquic ACKs every
        packet after 1 ms (``ack_every`` large, ``ack_delay_ms=1``). ``datagrams``: messages
        off the control stream go in DATAGRAM frames, never retransmitted (module docstring)."""
        super().__init__(fwd, rev, max_ack_delay_ms=max_ack_delay_ms)
        self.datagrams = datagrams
        self.datagrams_lost = 0
        self.zero_rtt = zero_rtt
        self.ack_every = max(1, int(ack_every))
        self.ack_delay = (max_ack_delay_ms if ack_delay_ms is None else ack_delay_ms) / 1000.0
        self._pn = 0

    def handshake(self, t0: float) -> float:
        """Client Initial -> server flight; 1 RTT (0 with 0-RTT); lost flights wait a PTO
        of the initial RTT estimate (333 ms, so PTO 999 ms, doubling)."""
        if self.zero_rtt:
            return t0
        t, pto = t0, 0.999
        for _ in range(_MAX_BACKOFF):
            a = self.fwd.transmit(t, 1252)
            b = self.rev.transmit(a, 1252) if a is not None else None
            if b is not None:
                return b
            t += pto
            pto *= 2
        return _INF

    def deliver(self, times: Sequence[float], sizes: Sequence[int],
                streams: Sequence[int] | None = None) -> list[float]:
        self._check(times, sizes, streams)
        n = len(times)
        if n == 0:
            return []
        fwd, rev = self.fwd, self.rev
        stream_of = list(streams) if streams is not None else [i + 1 for i in range(n)]
        # datagram mode: audio (off the control stream) is unreliable, with its own overhead
        reliable = [True] * n if not self.datagrams else [st == CONTROL for st in stream_of]
        ovh_of = [self.overhead_bytes if r else self.datagram_overhead_bytes for r in reliable]
        mad = self.max_ack_delay
        ack_every, ack_delay = self.ack_every, self.ack_delay
        arrival = [_INF] * n
        acked = [False] * n
        # packets and ACKs in flight: (arrival time, order, kind, a, b)
        heap: list[tuple[float, int, int, int, float]] = []
        ctr = 0
        # sender state; ``sent`` is in packet-number order (dicts keep insertion order)
        sent: dict[int, tuple[float, int]] = {}  # pn -> (send time, item or -1 for a ping)
        largest_acked = -1
        pto_count = 0
        last_ae = 0.0
        timer_at = _INF  # the one loss-detection timer (loss time or PTO)
        timer_pto = False
        ack_seen = 0
        # receiver state
        rx_log: list[int] = []
        rx_max: list[int] = []
        rx_time: dict[int, float] = {}
        rx_largest = -1
        unacked = 0
        ack_at = _INF  # the receiver's delayed-ACK timer
        push = heapq.heappush

        def send_packet(item: int, now: float) -> None:
            nonlocal last_ae, ctr
            pn = self._pn
            self._pn += 1
            sent[pn] = (now, item)
            last_ae = now
            arr = fwd.transmit(now, sizes[item] + ovh_of[item] if item >= 0 else 1 + self.overhead_bytes)
            if arr is not None:
                ctr += 1
                push(heap, (arr, ctr, _ARRIVE, pn, float(item)))

        def arm() -> None:
            nonlocal timer_at, timer_pto
            if not sent:
                timer_at = _INF
                return
            first_pn = next(iter(sent))
            if first_pn < largest_acked:
                loss_delay = max(1.125 * max(self.latest_rtt, self.srtt), _GRANULARITY)
                loss_time = _INF
                for pn, (st, _item) in sent.items():
                    if pn >= largest_acked:
                        break
                    loss_time = min(loss_time, st + loss_delay)
                timer_at, timer_pto = loss_time, False
            else:
                pto = self.srtt + max(4 * self.rttvar, _GRANULARITY) + mad
                timer_at, timer_pto = last_ae + pto * (1 << pto_count), True

        def detect_lost(now: float) -> None:
            loss_delay = max(1.125 * max(self.latest_rtt, self.srtt), _GRANULARITY)
            lost = []
            for pn, (st, _i) in sent.items():
                if pn >= largest_acked:
                    break
                if largest_acked - pn >= 3 or st + loss_delay <= now:
                    lost.append(pn)
            for pn in lost:
                _st, item = sent.pop(pn)
                if item >= 0 and not acked[item]:
                    if not reliable[item]:  # a lost DATAGRAM is gone (never retransmitted)
                        if arrival[item] == _INF:
                            self.datagrams_lost += 1
                        continue
                    self.retransmissions += 1
                    send_packet(item, now)

        def send_ack(now: float) -> None:
            nonlocal unacked, ack_at, ctr
            unacked = 0
            ack_at = _INF
            upto = len(rx_log)
            delay = now - rx_time[rx_max[upto - 1]]
            arr = rev.transmit(now, self.ack_bytes)
            if arr is not None:
                ctr += 1
                push(heap, (arr, ctr, _ACK, upto, delay))

        i_send = 0
        t_send = times[0]
        pop = heapq.heappop
        while True:
            t_heap = heap[0][0] if heap else _INF
            # order at equal times: application sends, then arrivals, then timers
            if t_send <= t_heap and t_send <= timer_at and t_send <= ack_at:
                if t_send == _INF:
                    break
                send_packet(i_send, t_send)
                i_send += 1
                t_send = times[i_send] if i_send < n else _INF
                arm()
                continue
            if t_heap <= timer_at and t_heap <= ack_at:
                now, _c, kind, a, b = pop(heap)
                if kind == _ARRIVE:
                    item = int(b)
                    if item >= 0 and now < arrival[item]:
                        arrival[item] = now
                    out_of_order = a != rx_largest + 1
                    rx_log.append(a)
                    rx_max.append(a if not rx_max or a > rx_max[-1] else rx_max[-1])
                    if a not in rx_time:
                        rx_time[a] = now
                    rx_largest = max(rx_largest, a)
                    unacked += 1
                    if out_of_order or unacked >= ack_every:
                        send_ack(now)
                    elif ack_at == _INF:
                        ack_at = now + ack_delay
                else:  # an ACK reaches the sender
                    if a <= ack_seen:
                        continue
                    newly = rx_log[ack_seen:a]
                    ack_seen = a
                    largest = rx_max[a - 1]
                    sample_time = None
                    for pn in newly:
                        entry = sent.pop(pn, None)
                        if entry is None:
                            continue
                        if pn == largest:
                            sample_time = entry[0]
                        if entry[1] >= 0:
                            acked[entry[1]] = True
                    if largest > largest_acked:
                        largest_acked = largest
                        if sample_time is not None:
                            self._rtt_sample(now - sample_time, min(b, mad))
                    pto_count = 0
                    detect_lost(now)
                    arm()
                continue
            if ack_at <= timer_at:
                now = ack_at
                if unacked:
                    send_ack(now)
                ack_at = _INF
                continue
            now = timer_at
            if not timer_pto:
                detect_lost(now)
            else:
                pto_count += 1
                if pto_count > _MAX_BACKOFF:
                    sent.clear()
                    timer_at = _INF
                    continue
                oldest = next((it for _pn, (_st, it) in sent.items()
                               if it >= 0 and not acked[it] and reliable[it]), -1)
                if oldest >= 0:
                    self.retransmissions += 1
                send_packet(oldest, now)
            arm()

        return self._order(times, arrival, stream_of, {CONTROL})


class TcpTlsModel(TransportModel):
    """Fast TCP + TLS 1.3 model (Linux-like RACK-TLP recovery); see the module docstring."""

    name = "tcp"
    overhead_bytes = 80
    ack_bytes = 52

    def __init__(self, fwd: Link, rev: Link, *, delack_ms: float = 40.0) -> None:
        super().__init__(fwd, rev, max_ack_delay_ms=delack_ms)
        self._seq = 0
        self._rcv_nxt = 0

    def handshake(self, t0: float) -> float:
        """SYN / SYN-ACK, then ClientHello / server flight: 2 RTT. A lost SYN waits the
        initial RTO of 1 s (RFC 6298), a lost TLS flight max(200 ms, 3 * RTT), doubling."""
        t = t0
        for rto in (1.0, max(0.2, 3 * (self.fwd.cfg.one_way_s + self.rev.cfg.one_way_s))):
            for _ in range(_MAX_BACKOFF):
                a = self.fwd.transmit(t, 60 if rto == 1.0 else 600)
                b = self.rev.transmit(a, 60 if rto == 1.0 else 4000) if a is not None else None
                if b is not None:
                    t = b
                    break
                t += rto
                rto *= 2
            else:
                return _INF
        return t

    def deliver(self, times: Sequence[float], sizes: Sequence[int],
                streams: Sequence[int] | None = None) -> list[float]:
        self._check(times, sizes, streams)
        n = len(times)
        if n == 0:
            return []
        fwd, rev = self.fwd, self.rev
        ovh = self.overhead_bytes
        delack = self.max_ack_delay
        base = self._seq
        self._seq += n
        delivered = [_INF] * n
        heap: list[tuple[float, int, int, int, float]] = []
        ctr = 0
        push, pop = heapq.heappush, heapq.heappop
        # sender: seg -> [send time, retransmitted?]
        out: dict[int, list[float]] = {}
        sacked: set[int] = set()
        snd_una = 0
        backoff = 0
        tlp_allowed = True
        last_send = 0.0
        rto_start = 0.0
        timer_at = _INF  # the one retransmission timer: mode 0 reorder, 1 TLP, 2 RTO
        timer_mode = 2
        # receiver
        rcv_nxt = 0
        ooo: set[int] = set()
        unacked = 0
        ack_at = _INF
        acks: list[tuple[int, frozenset[int]]] = []
        rack_xmit, rack_rtt = 0.0, self.srtt

        def transmit(seg: int, now: float) -> None:
            nonlocal ctr
            arr = fwd.transmit(now, sizes[seg] + ovh)
            if arr is not None:
                ctr += 1
                push(heap, (arr, ctr, _ARRIVE, seg, 0.0))

        def retransmit(seg: int, now: float) -> None:
            self.retransmissions += 1
            e = out[seg]
            e[0] = now
            e[1] = 1.0
            transmit(seg, now)

        def arm(reo_deadline: float) -> None:
            nonlocal timer_at, timer_mode
            if not out:
                timer_at = _INF
                return
            if reo_deadline < _INF:
                timer_at, timer_mode = reo_deadline, 0
                return
            rto_at = rto_start + (self.srtt + max(4 * self.rttvar, 0.2)) * (1 << backoff)
            if tlp_allowed:
                pto = max(2 * self.srtt, 0.01)
                if len(out) == 1:
                    pto = max(pto, 1.5 * self.srtt + 0.2)
                if last_send + pto < rto_at:
                    timer_at, timer_mode = last_send + pto, 1
                    return
            timer_at, timer_mode = rto_at, 2

        def rack_detect(now: float) -> float:
            """Mark lost and retransmit; return the reorder-timer deadline (inf if none)."""
            reo_wnd = self.min_rtt / 4
            deadline = _INF
            high_sacked = max(sacked) if sacked else -1
            for seg in sorted(out):
                if seg in sacked:
                    continue
                st, retx = out[seg]
                dup = (not retx and seg < high_sacked
                       and sum(1 for x in sacked if x > seg) >= 3)
                if st < rack_xmit or dup:
                    if dup or st + rack_rtt + reo_wnd <= now:
                        retransmit(seg, now)
                    elif st + rack_rtt + reo_wnd < deadline:
                        deadline = st + rack_rtt + reo_wnd
            return deadline

        def send_ack(now: float) -> None:
            nonlocal unacked, ack_at, ctr
            unacked = 0
            ack_at = _INF
            arr = rev.transmit(now, self.ack_bytes)
            if arr is not None:
                acks.append((rcv_nxt, frozenset(ooo)))
                ctr += 1
                push(heap, (arr, ctr, _ACK, len(acks) - 1, 0.0))

        i_send = 0
        t_send = times[0]
        while True:
            t_heap = heap[0][0] if heap else _INF
            if t_send <= t_heap and t_send <= timer_at and t_send <= ack_at:
                if t_send == _INF:
                    break
                now = t_send
                if not out:
                    rto_start = now
                out[i_send] = [now, 0.0]
                last_send = now
                transmit(i_send, now)
                i_send += 1
                t_send = times[i_send] if i_send < n else _INF
                if timer_mode != 0 or timer_at == _INF:
                    arm(_INF)
                continue
            if t_heap <= timer_at and t_heap <= ack_at:
                now, _c, kind, a, _b = pop(heap)
                if kind == _ARRIVE:
                    if a < rcv_nxt or a in ooo:
                        send_ack(now)  # duplicate: ACK at once (D-SACK)
                    elif a == rcv_nxt:
                        filled = bool(ooo)
                        delivered[a] = now
                        rcv_nxt += 1
                        while rcv_nxt in ooo:
                            ooo.discard(rcv_nxt)
                            delivered[rcv_nxt] = now
                            rcv_nxt += 1
                        unacked += 1
                        if filled or unacked >= 2:
                            send_ack(now)
                        elif ack_at == _INF:
                            ack_at = now + delack
                    else:
                        ooo.add(a)
                        send_ack(now)
                    continue
                cum, sack = acks[a]
                newly: list[list[float]] = []
                for seg in [x for x in out if x < cum or (x in sack and x not in sacked)]:
                    if seg < cum:
                        newly.append(out.pop(seg))
                        sacked.discard(seg)
                    else:
                        newly.append(out[seg])
                        sacked.add(seg)
                if not newly:
                    continue
                tlp_allowed = True
                if cum > snd_una:
                    snd_una = cum
                    backoff = 0
                    rto_start = now
                fresh = [e[0] for e in newly if e[1] == 0.0]
                if fresh:
                    self._rtt_sample(now - max(fresh))
                latest = max(e[0] for e in newly)
                if latest >= rack_xmit and (now - latest >= self.min_rtt or not any(
                        e[1] for e in newly if e[0] == latest)):
                    rack_xmit, rack_rtt = latest, now - latest
                arm(rack_detect(now))
                continue
            if ack_at <= timer_at:
                now = ack_at
                if unacked:
                    send_ack(now)
                ack_at = _INF
                continue
            now = timer_at
            if timer_mode == 0:  # RACK reorder timer
                arm(rack_detect(now))
            elif timer_mode == 1:  # tail loss probe: resend the highest unSACKed segment
                tlp_allowed = False
                cand = [x for x in out if x not in sacked]
                if cand:
                    retransmit(max(cand), now)
                arm(_INF)
            else:  # RTO: no loss probe until an ACK arrives again
                tlp_allowed = False
                backoff += 1
                if backoff > _MAX_BACKOFF:
                    out.clear()
                    timer_at = _INF
                    continue
                cand = [x for x in out if x not in sacked]
                if cand:
                    retransmit(min(cand), now)
                rto_start = now
                arm(_INF)

        self._rcv_nxt = base + n
        # one byte stream: every message of the batch is ordered, and follows the previous
        # batch's messages sent before it
        hist = self._history.get(0, [])
        t0 = times[0]
        floor = max((d for st, d in hist if st <= t0), default=-_INF)
        res = []
        for d in delivered:
            floor = max(floor, d)
            res.append(floor)
        self._history[0] = list(zip(times, res))
        return res


def make_transport(name: str, fwd: Link, rev: Link, **kw: Any) -> TransportModel:
    """Return the fast model called ``name`` ("quic" or "tcp"); raise ValueError otherwise."""
    if name == "quic":
        return QuicModel(fwd, rev, **kw)
    if name == "tcp":
        return TcpTlsModel(fwd, rev, **kw)
    raise ValueError(f"unknown transport {name!r} (expected 'quic' or 'tcp')")
