"""The edge's decision to end a call whose caller keeps breaking the call core's uplink bounds.

Theory of operation
-------------------
The call core (``engine/call/hold.py``) bounds what one call may cost: at most
``max_ahead_ms`` of caller audio waits ahead of the media clock (a sender faster than real
time; beyond it frames are dropped, ``HoldStats.dropped_ahead``), and concealment is capped per
gap and per second (refusals: ``HoldStats.conceal_refused``). The core only drops, counts and
flags (``CallCore.violation``); ending the call is the edge's decision, made here.

A :class:`ViolationGuard` is given the core's counters (read live) and the caller leg's own
uplink drops (frames the ingress's bounded queue refused, :attr:`BaseCall.uplink_dropped
<clutchcall.prod.ingress.call.BaseCall.uplink_dropped>`), and is asked :meth:`check` before
every caller frame. Every frame dropped or refused is a *violating frame*. The guard keeps the
violating frames of the last ``window_s`` seconds; once they reach ``limit_frames`` the call is
over: :meth:`check` returns the reason, the handler closes the call with the transport's policy
code (WebSocket 1008, MoQT ``PROTOCOL_VIOLATION``) and counts it on ``/metrics``
(``clutchcall_calls_closed_violation_total``; every violating frame also counts in
``clutchcall_caller_violations_total{kind="ahead"|"conceal"}``).

Whose fault: a bound can also overflow because the *edge* fell behind -- the pipeline drains,
in one burst, frames that waited in the caller leg's queue while the model leg connected (seconds
on a starved machine), and the hold sees them arrive faster than real time. So a violating
frame counts toward ending the call only while the caller's own frame numbering (sequence number
x frame length since its first frame) runs at least ``evidence_s`` ahead of the wall time since
its first frame arrived at the ingress: a caller cannot send faster than real time without its
sequence numbers (which must increase) running ahead of the clock; a backlog the edge drains
never does. Such frames are still counted on /metrics.

Why a window and not the first violation: a legitimate caller sending at 1x has no frame dropped
ahead nor concealment refused while the edge keeps up (concealment of real losses plus received
frames cannot exceed real time), but an edge starved of CPU can: in ``bench soak`` with 20 calls
on a 2-core machine at load average 12 (other processes), legitimate WebSocket calls dropped 50
to 100 frames per 2 s at the hold or the caller leg's queue, and a first limit of 50 frames in
2 s ended them. The limit is therefore 250 frames in 5 s (a sender at 2x real time or more,
sustained); anything slower is still bounded by the core (memory and work at most 2x one call)
and not ended. A flood (10 k messages/s) or sequence numbers that jump by 100 per message
produce thousands of violating frames per second and are ended within about a second. Time is
an argument (pure, testable).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from clutchcall.engine.call import HoldStats
from clutchcall.engine.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
    """When a call that breaks its uplink bounds is ended."""

    limit_frames: int = 250
    """This many violating frames (dropped ahead of the media clock, concealment refused, or
    refused by the caller leg's queue) within ``window_s`` end the call (250 in 5 s: a sender
    at 2x real time or more, sustained; 250 = 5 s of 20 ms audio)."""
    window_s: float = 5.0
    """The sliding window (s) over which violating frames are summed."""
    evidence_s: float = 1.0
    """Violating frames count toward ending the call only while the caller's frame numbering
    (sequence number x frame length) runs at least this far ahead of the time since its first
    frame arrived: the caller really sent faster than real time."""

    def __post_init__(self) -> None:
        if self.limit_frames < 1 or not self.window_s > 0:
            raise ConfigError("GuardConfig: limit_frames >= 1 and window_s > 0")


class ViolationGuard:
    """Sums one call's violating frames over a sliding window (module docstring)."""

    def __init__(self, stats: HoldStats, config: GuardConfig | None = None,
                 ingress_dropped: Callable[[], int] | None = None) -> None:
        self.config = config or GuardConfig()
        self.stats = stats
        self._ingress_dropped = ingress_dropped or (lambda: 0)
        self._seen_ahead = 0
        self._seen_conceal = 0
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._in_window = 0
        self.ahead = 0
        """Violating frames of kind ahead seen so far (hold full, or the ingress queue full)."""
        self.conceal = 0
        """Violating frames of kind conceal seen so far (concealment refused)."""
        self.ingress = 0
        """Frames the caller leg's queue refused so far (counted in ``ahead`` too)."""
        self.reason: str | None = None
        """Why the call must end (set once, by :meth:`check`), else None."""

    def check(self, now: float, caller_ahead_s: float | None = None) -> tuple[int, int, str | None]:
        """Take the counters' growth since the last check at time ``now`` (s). Returns
        ``(new_ahead, new_conceal, reason)``: the violating frames of each kind new since the
        last check, and the reason to end the call once ``limit_frames`` fell in the last
        ``window_s`` (then and on every later call), else None. ``caller_ahead_s``: how far
        the caller's own frame numbering runs ahead of the time since its first frame (module
        docstring); below ``evidence_s`` new violating frames are counted but do not count
        toward ending the call (None: always count)."""
        queued = self._ingress_dropped()
        self.ingress = queued
        ahead = self.stats.dropped_ahead + queued
        conceal = self.stats.conceal_refused
        if ahead == self._seen_ahead and conceal == self._seen_conceal and not self._events:
            return 0, 0, self.reason  # nothing new and an empty window: the usual frame
        new_a, new_c = ahead - self._seen_ahead, conceal - self._seen_conceal
        self._seen_ahead, self._seen_conceal = ahead, conceal
        self.ahead += new_a
        self.conceal += new_c
        ev = self._events
        if caller_ahead_s is not None and caller_ahead_s < self.config.evidence_s:
            new_a_w = new_c_w = 0  # the edge fell behind (its own backlog), not the caller
        else:
            new_a_w, new_c_w = new_a, new_c
        if new_a_w + new_c_w:
            ev.append((now, new_a_w + new_c_w))
            self._in_window += new_a_w + new_c_w
        horizon = now - self.config.window_s
        while ev and ev[0][0] < horizon:
            self._in_window -= ev.popleft()[1]
        if self.reason is None and self._in_window >= self.config.limit_frames:
            self.reason = (f"caller exceeded its uplink bounds: {self._in_window} frames dropped "
                           f"in {self.config.window_s:g} s (held ahead of real time "
                           f"{self.stats.dropped_ahead}, ingress queue full {self.ingress}, "
                           f"concealment refused {self.conceal})")
        return new_a, new_c, self.reason
