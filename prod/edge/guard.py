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

Why a window and not the first violation: a legitimate caller sending at 1x never has a frame
dropped ahead nor concealment refused (concealment of real losses plus received frames cannot
exceed real time), but one burst after a stall on a client whose clock ran fast may overflow
the hold briefly; that caller is not ended. A flood (10 k messages/s) or sequence numbers that
jump by 100 per message produce tens of violating frames per second and are ended within about
a second. Time is an argument (pure, testable).
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

    limit_frames: int = 50
    """This many violating frames (dropped ahead of the media clock, concealment refused, or
    refused by the caller leg's queue) within ``window_s`` end the call (50 = 1 s of 20 ms
    audio)."""
    window_s: float = 2.0
    """The sliding window (s) over which violating frames are summed."""

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
        self.reason: str | None = None
        """Why the call must end (set once, by :meth:`check`), else None."""

    def check(self, now: float) -> tuple[int, int, str | None]:
        """Take the counters' growth since the last check at time ``now`` (s). Returns
        ``(new_ahead, new_conceal, reason)``: the violating frames of each kind new since the
        last check, and the reason to end the call once ``limit_frames`` fell in the last
        ``window_s`` (then and on every later call), else None."""
        ahead = self.stats.dropped_ahead + self._ingress_dropped()
        conceal = self.stats.conceal_refused
        new_a, new_c = ahead - self._seen_ahead, conceal - self._seen_conceal
        self._seen_ahead, self._seen_conceal = ahead, conceal
        self.ahead += new_a
        self.conceal += new_c
        ev = self._events
        if new_a + new_c:
            ev.append((now, new_a + new_c))
            self._in_window += new_a + new_c
        horizon = now - self.config.window_s
        while ev and ev[0][0] < horizon:
            self._in_window -= ev.popleft()[1]
        if self.reason is None and self._in_window >= self.config.limit_frames:
            kind = "frames ahead of real time" if self.ahead >= self.conceal else "concealment"
            self.reason = (f"caller exceeded its uplink bounds: {self._in_window} frames dropped "
                           f"in {self.config.window_s:g} s ({kind})")
        return new_a, new_c, self.reason
