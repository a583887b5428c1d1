"""One scheduler per shard for every call's core deadlines (the batched call loop's timers).

Theory of operation
-------------------
Each call's :class:`~clutchcall.engine.call.CallCore` has at most one deadline at a time
(``get_timer()``: the next media tick of the frame hold, a commit or grace deadline, the next
downlink frame at 1x). Without this module every :class:`~clutchcall.prod.pipeline.CallPipeline`
keeps its own ``loop.call_at`` handle and re-arms it after every input -- a cancelled
``TimerHandle`` and a new one per caller frame per call, each a separate entry in the event
loop's heap and a separate callback when it fires.

A :class:`CallScheduler` owns one loop timer for all the calls of its event loop (one per edge
shard process). :meth:`CallScheduler.arm` records a call's current deadline (re-arming with the
same deadline is a dictionary look-up; an earlier one moves the single loop timer). When the
timer fires, one pass takes *every* call whose deadline is due, in deadline order, and calls
its ``on_deadline(deadline)``; the call runs ``handle_timer(max(deadline, now))`` exactly as
its own timer would have, so the engine sees the same inputs at the same ``now`` (nothing in
the turn behaviour changes: the deadline is neither rounded nor delayed). With a *slack*
(``slack_s`` > 0, the edge's ``call_loop_slack_ms``; default 0) the loop timer is set that long
after the earliest deadline, and the pass runs every deadline due by then: deadlines up to
``slack_s`` apart share one pass (one loop wake-up, one timer, one coalesced send per
connection) at the price of running up to ``slack_s`` late -- each call then runs
``handle_timer(now)``, as with any late timer, so trace replay stays exact; what changes is
the edge-added latency (a CPU / latency trade, measured in prod/edge/README.md). Deadlines that moved
stay in the heap until they surface and are dropped then (lazy deletion); the heap is rebuilt
when stale entries outnumber live ones 4:1, so it stays bounded by the number of calls.

One scheduler per event loop: :meth:`CallScheduler.install` makes a scheduler the loop's own
(the edge does, with its batched call loop), :meth:`CallScheduler.of_loop` finds it, so the
caller leg's uplink jitter buffers (:class:`~clutchcall.prod.ingress.call.BaseCall`) and the
pipelines of the same process share it; without one installed each keeps its own loop timer.

The same one timer carries the QUIC connections' own timers (loss detection, ACK delay, idle:
``EdgeSession`` arms its connection here instead of a loop timer per connection), and a pass
coalesces sends: a connection that wants to transmit during a pass
(:meth:`CallScheduler.defer_transmit`) transmits once after every due call of the pass has run,
so what one tick sends on a connection (agent frames, control objects, pending ACKs) leaves in
as few packets as the QUIC core packs it.

The scheduler is single-threaded (the loop's thread) and never raises into the loop: a call
whose ``on_deadline`` raises is logged, counted in ``stats["errors"]`` and dropped, the other
due calls still run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from typing import Protocol

log = logging.getLogger("clutchcall.scheduler")

_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CallScheduler] = weakref.WeakKeyDictionary()


class Scheduled(Protocol):
    """What a :class:`CallScheduler` drives: one method, called once per due deadline."""

    def on_deadline(self, deadline: float) -> None: ...


class Transmitter(Protocol):
    """A connection whose sends a pass may coalesce (:meth:`CallScheduler.defer_transmit`)."""

    def transmit(self) -> None: ...


class CallScheduler:
    """One loop timer for the core deadlines of every call on one event loop (see module
    docstring). ``stats``: ``passes`` (timer firings), ``fired`` (calls run), ``max_batch``
    (most calls run in one pass), ``errors``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, slack_s: float = 0.0) -> None:
        if not slack_s >= 0.0:
            raise ValueError(f"CallScheduler: slack_s must be >= 0, got {slack_s!r}")
        self.loop = loop or asyncio.get_running_loop()
        self.slack_s = slack_s
        """How long after the earliest pending deadline the pass runs (module docstring)."""
        self._heap: list[tuple[float, int, int]] = []  # (deadline, seq, key)
        self._due: dict[int, float] = {}  # key -> the call's current deadline
        self._calls: dict[int, Scheduled] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._in_pass = False  # the loop timer is set once, after the pass
        self._deferring = False  # transmits asked for during the pass wait for its end
        self._deferred: dict[Transmitter, None] = {}
        self.stats = {"passes": 0, "fired": 0, "max_batch": 0, "errors": 0, "coalesced": 0}

    @classmethod
    def install(cls, loop: asyncio.AbstractEventLoop | None = None, slack_s: float = 0.0) -> CallScheduler:
        """Return the scheduler of ``loop`` (default: the running loop), creating and
        registering it on first use (with ``slack_s``; an installed one keeps its own).
        Raises RuntimeError without a running loop."""
        loop = loop or asyncio.get_running_loop()
        sched = _BY_LOOP.get(loop)
        if sched is None:
            sched = _BY_LOOP[loop] = cls(loop, slack_s)
        return sched

    @staticmethod
    def of_loop(loop: asyncio.AbstractEventLoop) -> CallScheduler | None:
        """Return the scheduler installed on ``loop``, or None."""
        return _BY_LOOP.get(loop)

    def __len__(self) -> int:
        """Return the number of calls with a pending deadline."""
        return len(self._due)

    def arm(self, call: Scheduled, deadline: float | None) -> None:
        """Make ``deadline`` (loop time) ``call``'s one pending deadline; None cancels it.
        Returns None."""
        key = id(call)
        if deadline is None:
            self.cancel(call)
            return
        if self._due.get(key) == deadline:
            return
        self._due[key] = deadline
        self._calls[key] = call
        heapq.heappush(self._heap, (deadline, next(self._seq), key))
        if len(self._heap) > 4 * len(self._due) + 64:
            self._compact()
        if not self._in_pass and (self._timer_at is None or deadline < self._timer_at):
            self._set_timer(deadline)

    def deadline_of(self, call: Scheduled) -> float | None:
        """Return ``call``'s pending deadline, or None."""
        return self._due.get(id(call))

    def defer_transmit(self, conn: Transmitter) -> bool:
        """During a pass: note that ``conn`` has something to send and return True; its
        ``transmit()`` runs once after every due call of the pass has run (tick-level
        coalescing: what one pass sends on a connection -- agent frames, control objects,
        the ACKs they carry -- is packed together). Outside a pass return False (send now)."""
        if not self._deferring:
            return False
        if conn in self._deferred:
            self.stats["coalesced"] += 1
        else:
            self._deferred[conn] = None
        return True

    def cancel(self, call: Scheduled) -> None:
        """Drop ``call``'s pending deadline, if any. Returns None."""
        key = id(call)
        self._due.pop(key, None)
        self._calls.pop(key, None)

    def close(self) -> None:
        """Drop every pending deadline and the loop timer. Returns None."""
        self._due.clear()
        self._calls.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    # ------------------------------------------------------------------ internals
    def _compact(self) -> None:
        self._heap = [(d, next(self._seq), k) for k, d in self._due.items()]
        heapq.heapify(self._heap)

    def _set_timer(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when  # the earliest deadline; the pass runs slack_s after it
        if when is not None:
            self._timer = self.loop.call_at(when + self.slack_s, self._fire)

    def _next_live(self) -> float | None:
        heap, due = self._heap, self._due
        while heap:
            d, _, key = heap[0]
            if due.get(key) == d:
                return d
            heapq.heappop(heap)  # stale: the call moved or dropped its deadline
        return None

    def _fire(self) -> None:
        # due: every deadline up to the one this timer was set for (+ the slack; asyncio may
        # run a timer a clock resolution early) or up to now, whichever is later
        limit = max(self.loop.time(), (self._timer_at or 0.0) + self.slack_s)
        self._timer = self._timer_at = None
        heap, due = self._heap, self._due
        batch: list[tuple[float, Scheduled]] = []
        while heap and heap[0][0] <= limit:
            d, _, key = heapq.heappop(heap)
            if due.get(key) != d:
                continue
            del due[key]
            batch.append((d, self._calls.pop(key)))
        self.stats["passes"] += 1
        self.stats["fired"] += len(batch)
        self.stats["max_batch"] = max(self.stats["max_batch"], len(batch))
        self._in_pass = True  # the calls re-arm; the one loop timer is set once, below
        self._deferring = True
        try:
            for d, call in batch:
                try:
                    call.on_deadline(d)
                except Exception:
                    self.stats["errors"] += 1
                    log.exception("call deadline failed")
        finally:
            self._deferring = False
            deferred, self._deferred = self._deferred, {}
            for conn in deferred:
                try:
                    conn.transmit()
                except Exception:
                    self.stats["errors"] += 1
                    log.exception("deferred transmit failed")
            self._in_pass = False
            self._set_timer(self._next_live())
