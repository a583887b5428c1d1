"""The uplink media clock and frame hold: when each caller frame reaches the turn engine.

Theory of operation
-------------------
The shell hands :meth:`FrameHold.push` the VAD frames cut from one uplink payload, with the
payload's arrival time (shell clock) and, when the transport carries one, its media time.
Each frame gets a *nominal arrival*: its media end mapped onto the shell clock by the
*transit floor* -- the smallest ``arrival - media end`` seen, creeping up 1 ms per second of
media so that a sender clock slower than ours is followed -- or its arrival when it has no
media time. A payload that arrives more than ``late_after_ms`` after its nominal arrival is
counted late. The *lag* is how far the latest frame's nominal arrival trails its arrival; the
engine's clock (the *media clock*) is the shell clock minus the lag, so arrival jitter never
reorders caller frames against agent audio or deadlines, which all live on that clock.

Frames reach the engine in order, laid end to end (never overlapping, never back in time):
a frame ends at ``max(nominal, previous end + frame, engine now)``. One that would end in the
media clock's future is held until then (:meth:`FrameHold.next_due` returns None and
:meth:`FrameHold.get_timer` says when). Behind its nominal time, a silence frame is given to
the engine as 10 ms long (silence is measured in time, not frames), which takes a lag out
instead of carrying it into every later frame.

Bounds (for abusive or broken callers; the shell reads :attr:`FrameHold.violation`):

* at most ``max_ahead_ms`` of frames may wait in the hold ahead of the media clock (a sender
  running faster than real time); frames beyond it are dropped and counted in
  ``dropped_ahead``;
* concealment (frames invented for losses) is capped per gap (``max_conceal_per_gap``) and
  per second (a bucket of ``max_conceal_per_s`` frames refilled at that rate): the shell asks
  :meth:`FrameHold.admit_conceal` before concealing; refused frames are counted.

``violation`` becomes ``"hold_overflow"`` or ``"conceal_rate"`` the first time a bound
drops or refuses something, and stays set. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from clutchcall.engine.errors import ConfigError

P = TypeVar("P")
_EPS_HOLD = 0.0002  # a frame due within this of the media clock is not worth a timer (s)


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldConfig:
    """Knobs of the media clock and frame hold (defaults are production's)."""

    frame_ms: int = 20
    """VAD frame length fed to the engine (10, 20 or 30 ms)."""
    late_after_ms: int = 60
    """A payload arriving this much later than its media time predicts counts as late."""
    max_ahead_ms: int = 1000
    """At most this much audio may wait in the hold ahead of the media clock; beyond it new
    frames are dropped (``dropped_ahead``) and the call is flagged ``hold_overflow``."""
    max_conceal_per_gap: int = 50
    """At most this many frames are concealed for one sequence gap."""
    max_conceal_per_s: int = 50
    """Concealment budget: a bucket of this many frames refilled at this many per second;
    frames refused by it are counted (``conceal_refused``) and flag ``conceal_rate``."""

    def __post_init__(self) -> None:
        if self.frame_ms not in (10, 20, 30):
            raise ConfigError(f"HoldConfig.frame_ms: 10, 20 or 30, got {self.frame_ms!r}")
        if self.late_after_ms < 0 or self.max_ahead_ms < self.frame_ms:
            raise ConfigError("HoldConfig: late_after_ms >= 0 and max_ahead_ms >= frame_ms")
        if self.max_conceal_per_gap < 0 or self.max_conceal_per_s < 0:
            raise ConfigError("HoldConfig: concealment caps must be >= 0")


@dataclass(slots=True)
class HoldStats:
    """Counters of one call's uplink hold (all cumulative)."""

    frames_in: int = 0
    """VAD frames pushed."""
    frames_fed: int = 0
    """Frames given to the engine."""
    late: int = 0
    """Payloads later than ``late_after_ms`` behind their media time."""
    resynced: int = 0
    """Silence frames fed as 10 ms to take a lag out."""
    dropped_ahead: int = 0
    """Frames dropped because the hold was full (``max_ahead_ms``)."""
    concealed: int = 0
    """Concealment frames admitted."""
    conceal_capped: int = 0
    """Concealment frames refused by the per-gap cap."""
    conceal_refused: int = 0
    """Concealment frames refused by the per-second budget."""


@dataclass(frozen=True, slots=True)
class DueFrame(Generic[P]):
    """A frame due at the engine: ``end`` (media clock, the engine's ``now``), its duration,
    VAD decision, payload, and ``nominal`` (its nominal arrival, shell clock)."""

    end: float
    duration_ms: int
    speech: bool
    payload: P
    nominal: float


class FrameHold(Generic[P]):
    """The media clock and frame hold of one call (module docstring)."""

    def __init__(self, config: HoldConfig | None = None) -> None:
        self.config = cfg = config or HoldConfig()
        self.frame_ms = cfg.frame_ms
        self.frame_s = cfg.frame_ms / 1000.0
        self._late_s = cfg.late_after_ms / 1000.0
        self._max_held = max(1, cfg.max_ahead_ms // cfg.frame_ms)
        self.stats = HoldStats()
        self.violation: str | None = None
        """None, or why this call broke a bound (``hold_overflow``, ``conceal_rate``)."""
        self.engine_now = 0.0
        """The latest ``now`` given to the engine (media clock)."""
        self.lag = 0.0
        """Shell clock minus media clock (s): how far the latest frame trails its arrival."""
        self.last_frame_end = -1.0
        self._transit: float | None = None  # smallest arrival - media end seen (s)
        self._held: collections.deque[tuple[float, P, bool]] = collections.deque()
        self.last_speech: tuple[float, float] = (0.0, 0.0)
        """(engine end, nominal arrival) of the latest speech frame fed."""
        self._tokens = float(cfg.max_conceal_per_s)
        self._tokens_at: float | None = None

    # -- clocks --------------------------------------------------------------------------
    def clock(self, now: float) -> float:
        """Return the media clock at shell time ``now`` (``now - lag``)."""
        return now - self.lag

    def tick(self, now: float) -> float:
        """Advance the engine clock to the media clock at shell time ``now`` (never back);
        return it: the ``now`` to give the engine for an input that is not a frame."""
        t = now - self.lag
        self.engine_now = max(self.engine_now, t)
        return self.engine_now

    # -- input ---------------------------------------------------------------------------
    def admit_conceal(self, now: float, lost: int) -> int:
        """Return how many of ``lost`` missing frames (one gap, at shell time ``now``) may be
        concealed under the per-gap and per-second caps; count the rest."""
        if lost <= 0:
            return 0
        cfg = self.config
        rate = cfg.max_conceal_per_s
        if self._tokens_at is not None:
            self._tokens = min(float(rate), self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        n = min(lost, cfg.max_conceal_per_gap)
        self.stats.conceal_capped += lost - n
        ok = min(n, int(self._tokens + 1e-9))
        if ok < n:
            self.stats.conceal_refused += n - ok
            self._flag("conceal_rate")
        self._tokens -= ok
        self.stats.concealed += ok
        return ok

    def push(self, now: float, frames: Sequence[tuple[P, bool]], *, media_end: float | None,
             duration_s: float, pending_s: float = 0.0) -> int:
        """Add the VAD frames ``[(payload, speech)]`` cut from one payload that arrived at
        shell time ``now``. ``media_end``: the sender's media time of the end of the payload's
        own audio (None: place frames by arrival); ``duration_s``: how much audio the payload
        added (concealment included: it drives the transit floor's creep); ``pending_s``:
        audio still waiting in the VAD framer (not yet a frame). Returns how many frames were
        dropped by the ``max_ahead_ms`` bound."""
        if media_end is not None:
            transit = now - media_end
            # the floor creeps up 1 ms/s so a sender clock slower than ours is followed
            floor = None if self._transit is None else self._transit + 0.001 * duration_s
            if floor is None or transit < floor:
                self._transit = transit
            else:
                self._transit = floor
                if transit - floor > self._late_s:
                    self.stats.late += 1
            last_end = media_end + self._transit - pending_s
        else:
            last_end = now
        # how far the media clock (where frames are placed) runs behind the shell clock now
        self.lag = max(0.0, now - last_end)
        k = len(frames)
        self.stats.frames_in += k
        room = self._max_held - len(self._held)
        dropped = max(0, k - room)
        if dropped:
            self.stats.dropped_ahead += dropped
            self._flag("hold_overflow")
        fs = self.frame_s
        held = self._held
        for i in range(k - dropped):
            f, speech = frames[i]
            held.append((min(now, last_end - (k - 1 - i) * fs), f, speech))
        return dropped

    def _flag(self, reason: str) -> None:
        if self.violation is None:
            self.violation = reason

    # -- output --------------------------------------------------------------------------
    def _place(self, nominal: float, speech: bool) -> tuple[float, int]:
        end = max(nominal, self.last_frame_end + self.frame_s, self.engine_now)
        if end > nominal + _EPS_HOLD and not speech and self.frame_ms > 10:
            # re-sync: behind the arrivals after a late frame, a silence frame is given to
            # the engine as 10 ms long, which takes the lag out
            return max(nominal, self.last_frame_end + 0.010, self.engine_now), 10
        return end, self.frame_ms

    def next_due(self, now: float) -> DueFrame[P] | None:
        """Pop and return the next held frame if it is due at shell time ``now`` (it then
        becomes the engine's clock), else None."""
        if not self._held:
            return None
        nominal, f, speech = self._held[0]
        end, dur = self._place(nominal, speech)
        if end - (now - self.lag) > _EPS_HOLD:
            return None
        self._held.popleft()
        self.engine_now = self.last_frame_end = end
        if dur != self.frame_ms:
            self.stats.resynced += 1
        if speech:
            self.last_speech = (end, nominal)
        self.stats.frames_fed += 1
        return DueFrame(end, dur, speech, f, nominal)

    def get_timer(self) -> float | None:
        """Return the shell time at which the next held frame is due, or None if none is held."""
        if not self._held:
            return None
        nominal, _, speech = self._held[0]
        return self._place(nominal, speech)[0] + self.lag

    def __len__(self) -> int:
        return len(self._held)
