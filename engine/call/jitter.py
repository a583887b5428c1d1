"""Uplink jitter buffer, sans-IO (time is an argument).

Theory of operation
-------------------
Caller frames arrive with a sequence number (MoQT group ID, Twilio chunk) and possibly out
of order (QUIC carries each frame on its own stream, so a lost packet delays only that frame).
The buffer releases frames in sequence order on a playout schedule anchored on the first
frame: ``playout(seq) = t0 + depth + (seq - seq0) * frame``. The shell calls :meth:`push` on
arrival, :meth:`pop` to take what is due, and re-arms one timer at :meth:`get_timer`.

Late-frame policy (documented contract):

* A frame due and present is released at its playout time. If the frame due next *arrives*
  after its playout time (the caller runs slow or the network stalled) and was not yet
  declared lost, the schedule is re-anchored on it, so the buffer follows the sender's clock
  instead of concealing a slow sender into silence.
* A missing frame is declared **lost** only when its playout time has passed *and* a later
  frame is already buffered (evidence of a gap, not of a pause). It is replaced by the output
  of the ``conceal`` callback (e.g. the Transcoder's ``uplink_loss`` for Opus PLC; silence in
  the caller codec otherwise) and counted in ``lost``. At most ``max_conceal`` consecutive
  frames are concealed; a longer gap is skipped (counted in ``lost`` and ``skipped``).
* A frame whose slot was already released or concealed is **late**: it is dropped and counted
  in ``late``. A repeat of a buffered frame is dropped and counted in ``duplicates``.
* If more than ``max_frames`` are buffered (sender faster than real time), the oldest due
  frames are released at once and ``overflow`` is counted.

Lag-drain policy (documented contract):

* Every re-anchor moves the whole schedule later by the frame's lateness; that shift is the
  buffer's *accumulated lag* (``lag_ms``). Without a drain a depth-0 buffer (WebSocket) keeps
  the longest stall so far for the rest of the call, and a QUIC buffer keeps each re-anchor.
* The lag is drained during caller silence by playing out faster, never by dropping audio:
  when the frame played last was judged *silent* (``is_silent(payload)``, a cheap energy
  check the shell supplies) or was a concealment, there is a lag, and the next frame is
  buffered and would still have been held ``depth`` after its arrival were the schedule one
  step earlier, the schedule moves one step earlier. A step is one frame (the next frame is
  due at once instead of a frame later), or the whole lag when less than a frame is left (a
  stall a few ms longer than ``depth`` leaves such a rest; without this it would stay for the
  rest of the call and delay every later turn by it). Each step is counted in ``drained``.
  Every frame is still released, in order; speech frames keep their 1x spacing (only silent
  frames are followed early), and the buffer never goes below its ``depth``.

Concealed frames are emitted with ``concealed=True``; their payload is whatever ``conceal``
returned (the pipeline decides its format, see ``clutchcall.prod.ingress.call``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clutchcall.engine.errors import ConfigError, LocalProtocolError

_MIN_STEP_S = 1e-6  # a lag below this (s) is float noise, not worth a drain step
_EPS_S = 1e-9  # schedule comparisons: a difference below this (s) is float rounding


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkFrame:
    """One caller frame after the jitter buffer.

    ``seq``: frame sequence number; ``timestamp_ms``: media time of the frame start
    (``seq * frame_ms`` unless the transport carried its own); ``payload``: caller-codec bytes,
    or the concealment output when ``concealed``; ``released_at``: shell clock (s) of release.
    """

    seq: int
    timestamp_ms: int
    payload: bytes
    concealed: bool = False
    released_at: float = 0.0


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    released: int = 0
    late: int = 0
    lost: int = 0
    skipped: int = 0
    duplicates: int = 0
    overflow: int = 0
    reanchored: int = 0  # times the schedule moved later on a late frame
    drained: int = 0  # silent frames after which the schedule moved one frame earlier
    lag_ms: float = 0.0  # accumulated lag not yet drained (ms)
    max_lag_ms: float = 0.0  # the largest accumulated lag seen (ms)


class JitterBuffer:
    """Reorders uplink frames by sequence number; see the module docstring for the policy."""

    def __init__(
        self,
        *,
        frame_ms: int = 20,
        depth_ms: int = 40,
        max_frames: int = 50,
        max_conceal: int = 10,
        conceal: Callable[[int], bytes] | None = None,
        is_silent: Callable[[bytes], bool] | None = None,
    ) -> None:
        if frame_ms <= 0:
            raise ConfigError(f"frame_ms must be > 0, got {frame_ms}")
        if depth_ms < 0:
            raise ConfigError(f"depth_ms must be >= 0, got {depth_ms}")
        if max_frames < 1 or max_conceal < 0:
            raise ConfigError("max_frames must be >= 1 and max_conceal >= 0")
        self.frame_s = frame_ms / 1000.0
        self.frame_ms = frame_ms
        self.depth_s = depth_ms / 1000.0
        self.max_frames = max_frames
        self.max_conceal = max_conceal
        self.conceal = conceal if conceal is not None else (lambda seq: b"")
        # judges a caller-codec payload silent (drain policy); None: only concealments drain
        self.is_silent = is_silent
        self.stats = JitterStats()
        self._buf: dict[int, tuple[bytes, int, float]] = {}  # seq -> (payload, ts_ms, arrival)
        self._lag = 0.0  # accumulated re-anchor shift not yet drained (s)
        self._quiet_prev = False  # the frame played last was silent or concealed
        self._t0: float | None = None
        self._seq0 = 0
        self._next: int | None = None
        self._last_now = float("-inf")

    def _playout(self, seq: int) -> float:
        assert self._t0 is not None
        return self._t0 + self.depth_s + (seq - self._seq0) * self.frame_s

    def _tick(self, now: float) -> None:
        if now < self._last_now:
            raise LocalProtocolError(f"time went backwards: {now} < {self._last_now}")
        self._last_now = now

    def push(self, now: float, seq: int, payload: bytes, timestamp_ms: int | None = None) -> None:
        """Add a frame that arrived at ``now``. Late or duplicate frames are counted and dropped."""
        self._tick(now)
        if seq < 0:
            raise LocalProtocolError(f"negative sequence number {seq}")
        self.stats.received += 1
        if self._t0 is None:
            self._t0, self._seq0, self._next = now, seq, seq
        assert self._next is not None
        if seq < self._next:
            self.stats.late += 1
            return
        if seq in self._buf:
            self.stats.duplicates += 1
            return
        if seq == self._next and now > self._playout(seq) + _EPS_S:
            # the frame due next arrives after its slot: re-anchor on the (slow) sender (not
            # on float noise: a drained depth-0 schedule puts slots exactly on arrivals)
            assert self._t0 is not None
            shift = now - self._playout(seq)
            self._t0 += shift
            self._lag += shift
            self.stats.reanchored += 1
            self._note_lag()
        self._buf[seq] = (payload, seq * self.frame_ms if timestamp_ms is None else timestamp_ms, now)

    def _note_lag(self) -> None:
        self.stats.lag_ms = round(self._lag * 1000.0, 3)
        self.stats.max_lag_ms = max(self.stats.max_lag_ms, self.stats.lag_ms)

    def _maybe_drain(self, seq: int, arrival: float) -> None:
        """Before playing frame ``seq`` (buffered, arrived at ``arrival``) right after a silent
        or concealed frame: the lag-drain policy of the module docstring."""
        self._quiet_prev = False  # one step per silent frame
        # a whole frame, or the sub-frame rest of the lag (else that rest stays for the call)
        step = min(self.frame_s, self._lag)
        if step < _MIN_STEP_S or arrival + self.depth_s > self._playout(seq) - step + _EPS_S:
            return
        assert self._t0 is not None
        self._t0 -= step
        self._lag = 0.0 if self._lag - step < _EPS_S else self._lag - step
        self.stats.drained += 1
        self._note_lag()

    def pop(self, now: float) -> list[UplinkFrame]:
        """Return the frames due at ``now`` in sequence order (real or concealed)."""
        self._tick(now)
        out: list[UplinkFrame] = []
        if self._next is None:
            return out
        overflow = len(self._buf) > self.max_frames
        if overflow:
            self.stats.overflow += 1
        while self._buf:
            seq = self._next
            if self._quiet_prev and seq in self._buf:
                self._maybe_drain(seq, self._buf[seq][2])
            due = self._playout(seq)
            if seq in self._buf:
                if now < due and len(self._buf) <= self.max_frames and not overflow:
                    break
                payload, ts, _ = self._buf.pop(seq)
                out.append(UplinkFrame(seq=seq, timestamp_ms=ts, payload=payload, released_at=now))
                self.stats.released += 1
                self._next = seq + 1
                self._quiet_prev = self.is_silent is not None and self.is_silent(payload)
                overflow = len(self._buf) > self.max_frames
                continue
            if now < due and not overflow:
                break
            # a gap with later frames buffered: conceal or skip
            first_present = min(self._buf)
            gap = first_present - seq
            if gap > self.max_conceal:
                self.stats.lost += gap
                self.stats.skipped += gap
                assert self._t0 is not None
                self._t0 -= gap * self.frame_s  # keep the schedule of the frames after the gap
                self._next = first_present
                continue
            hidden = self.conceal(seq)
            out.append(
                UplinkFrame(seq=seq, timestamp_ms=seq * self.frame_ms, payload=hidden, concealed=True,
                            released_at=now)
            )
            self.stats.lost += 1
            self._next = seq + 1
            self._quiet_prev = True
        return out

    def get_timer(self) -> float | None:
        """Absolute time (s) at which :meth:`pop` will next have something, or None."""
        if not self._buf or self._next is None:
            return None
        return self._playout(self._next)

    def __len__(self) -> int:
        return len(self._buf)
