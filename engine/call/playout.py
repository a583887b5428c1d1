"""The downlink playout of one call: agent audio to the caller at 1x, and what the engine hears.

Theory of operation
-------------------
Agent audio arrives from the model leg in chunks the shell has already cut into caller
frames; :meth:`Playout.push` queues them (with the response and item they belong to) and
:meth:`Playout.done` marks a response complete. :meth:`Playout.poll` (shell time ``now``)
returns what is due, as :class:`PlayoutSignal` values the call core acts on:

* ``frame`` -- send this frame to the caller now. Frames of one run go out at
  ``start + k * frame``: a poll that comes late while the frame was already queued keeps that
  schedule and catches up (the audio sent stays at 1x with the engine's agent clock); only a
  queue that ran dry (the frame was not there when due) restarts the schedule from ``now``.
* ``started`` -- the first frame of a run is being sent: agent audio started (the engine
  hears it before the frame goes out).
* ``response`` -- the first frame of a response is being sent (at a run's start, or when a
  new response follows the previous one without a gap).
* ``finished`` -- agent audio finished: the response is done and its last frame has finished
  playing, or the queue has been empty for ``underrun_finish_ms`` with the response not done
  (an underrun long enough to count as the end).

:meth:`Playout.clear` (barge-in: ``Cancel``) drops everything queued and every response in
flight (later chunks of them are ignored) and reports what had been sent of the playing item.
:meth:`Playout.get_timer` is the next time :meth:`poll` has something to do.

Extension points (later issues): :attr:`Playout.gain` is the level the shell applies to each
frame it sends (``duck`` lowers it, ``restore`` puts it back); :meth:`pause` / :meth:`resume`
stop and restart the pacing without dropping the queue (the schedule restarts on resume);
:meth:`hold` / :meth:`release` keep a (speculative) response's frames queued but unsent until
it is released, or :meth:`retract` drops it as if it never came.

Soft barge-in (issue 15; the call core calls these on the engine's ``Duck`` / ``Restore`` /
``Pause`` / ``Resume``): :meth:`duck` moves the gain to a target over a ramp, linearly per
frame -- each ``frame`` signal carries the gain at the frame's start and end
(``gain_start`` / ``gain``) and the shell ramps the samples between them -- and
:meth:`restore` ramps back to 1.0; :meth:`pause` / :meth:`resume` hold and restart the pacing.

Far-end buffering (Twilio Media Streams): when the far end plays from its own buffer, what was
*sent* is not what was *heard*. A shell that learns the far end's played position (Twilio
``mark`` echoes) reports it with :meth:`played` (frames of this playout, counted as
:attr:`frames_sent` counts them). The playout then keeps the frames sent but not yet confirmed;
on a pause or a duck, :meth:`rewind` puts the ones the far end has not yet played (estimated
at 1x from the last confirmation) back at the head of the queue, so the pause is immediate /
the duck applies to them, and reports how many: the shell must clear the far end's buffer
(Twilio ``clear``) before sending more. :meth:`heard_ms` is the played time of an item
(sent less what the far end still buffers), the truncation point of a ``Cancel``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from clutchcall.engine.errors import ConfigError

D = TypeVar("D")
_EPS = 0.0005  # a deadline within this of now counts as reached (s)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutConfig:
    """Knobs of the downlink playout."""

    frame_ms: int = 20
    """Length of each agent frame sent to the caller (ms)."""
    underrun_finish_ms: int = 400
    """With the queue empty this long and the response not done, the agent counts as finished."""
    max_remembered: int = 64
    """Responses remembered (done, dropped, sent ms) before old entries are forgotten."""

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.underrun_finish_ms < 20 or self.max_remembered < 4:
            raise ConfigError("PlayoutConfig: frame_ms > 0, underrun_finish_ms >= 20, "
                              "max_remembered >= 4")


@dataclass(frozen=True, slots=True)
class PlayoutSignal(Generic[D]):
    """One thing :meth:`Playout.poll` decided: ``kind`` is ``frame`` (send ``payload``),
    ``started``, ``response`` or ``finished``; ``response_id`` / ``item_id`` of the audio concerned."""

    kind: str
    response_id: str
    item_id: str
    payload: D | None = None
    gain_start: float = 1.0
    """``frame`` only: the level at the frame's first sample (a duck / restore ramps)."""
    gain: float = 1.0
    """``frame`` only: the level at the frame's last sample."""


@dataclass(frozen=True, slots=True)
class Cleared:
    """What :meth:`Playout.clear` dropped: the item that was playing (or None), how much of it
    had been sent (ms), and whether agent audio was playing (it has now finished)."""

    item_id: str | None
    sent_ms: int | None
    was_playing: bool
    heard_ms: int | None = None
    """What the caller heard of ``item_id``: ``sent_ms`` less what the far end still
    buffered (:meth:`Playout.heard_ms`; equal to ``sent_ms`` without a played position)."""


class Playout(Generic[D]):
    """The downlink playout state of one call (module docstring)."""

    def __init__(self, config: PlayoutConfig | None = None) -> None:
        self.config = cfg = config or PlayoutConfig()
        self.frame_s = cfg.frame_ms / 1000.0
        self._grace = cfg.underrun_finish_ms / 1000.0
        self._queue: collections.deque[tuple[str, str, D]] = collections.deque()
        self._filled_at = 0.0  # when the queue last went from empty to non-empty
        self._next_at = 0.0  # when the next frame of the run is due (0: no run)
        self.playing = False
        self.playing_response: str | None = None
        self.playing_item: str | None = None
        self.sent_ms: dict[str, int] = {}
        self._done: set[str] = set()
        self._dropped: set[str] = set()
        self._held: set[str] = set()
        self._seen: set[str] = set()  # responses that queued audio
        self.paused = False
        self.gain = 1.0
        """Level the shell applies to frames it sends (1.0 = as is; for duck / restore)."""
        self.frames_sent = 0
        # soft barge-in: the gain's target and per-frame step (a ramp); far-end buffering:
        # None (not tracked) or [confirmed frames, when confirmed]; frames sent since
        self._gain_target = 1.0
        self._gain_step = 0.0
        self._played: list[float] | None = None
        self._unconfirmed: collections.deque[tuple[str, str, D, float]] = collections.deque()

    # -- inputs --------------------------------------------------------------------------
    def is_dropped(self, response_id: str) -> bool:
        """Return True if ``response_id`` was cleared (its audio is ignored)."""
        return response_id in self._dropped

    def has_audio(self, response_id: str) -> bool:
        """Return True if ``response_id`` queued any audio (recently)."""
        return response_id in self._seen

    def is_done(self, response_id: str) -> bool:
        """Return True if ``response_id`` was marked done."""
        return response_id in self._done

    def push(self, now: float, response_id: str, item_id: str | None, frames: Iterable[D]) -> int:
        """Queue agent frames of ``response_id`` (``item_id`` None: the item queued last or
        playing); return how many were queued (0 for a cleared response)."""
        if response_id in self._dropped:
            return 0
        self._seen.add(response_id)
        if item_id is None:
            item_id = self._queue[-1][1] if self._queue else (self.playing_item or "")
        was_empty = not self._queue
        q = self._queue
        n = len(q)
        q.extend((response_id, item_id, f) for f in frames)
        if was_empty and len(q) > n:
            self._filled_at = now
        return len(q) - n

    def done(self, response_id: str) -> None:
        """Mark ``response_id`` complete: once its last frame has played, audio finishes."""
        self._done.add(response_id)
        m = self.config.max_remembered
        if len(self._done) > 4 * m:
            self._done = {r for r in self._done if r in self._seen} if len(self._seen) <= m \
                else {response_id}
        if len(self._seen) > 4 * m:
            self._seen = {r for r, _, _ in self._queue} | {response_id}

    def clear(self, now: float | None = None) -> Cleared:
        """Drop everything queued and the responses in flight; return what was cleared (with
        what was heard at ``now``, when given). A pause or duck ends with it."""
        item = self.playing_item
        sent = self.sent_ms.get(item, 0) if item else None
        heard = sent if now is None else self.heard_ms(now, item)
        self._clear_yield(now)
        for rid, _, _ in self._queue:
            self._dropped.add(rid)
        if self.playing_response:
            self._dropped.add(self.playing_response)
        self._queue.clear()
        was = self.playing
        self._stop()
        return Cleared(item, sent, was, heard)

    # -- extension points (duck / pause / hold) -------------------------------------------
    def pause(self) -> None:
        """Stop sending frames (the queue is kept; agent audio still counts as playing)."""
        self.paused = True

    def resume(self, now: float) -> None:
        """Send again after :meth:`pause`; the 1x schedule restarts from ``now``."""
        if self.paused:
            self.paused = False
            if self._next_at:
                self._next_at = now

    def hold(self, response_id: str) -> None:
        """Keep ``response_id``'s frames queued but unsent until :meth:`release`."""
        self._held.add(response_id)

    def release(self, response_id: str) -> None:
        """Let a held response's frames go out (from the next poll)."""
        self._held.discard(response_id)

    def retract(self, response_id: str) -> None:
        """Drop a (held) response as if it never came: its frames, and any later chunks."""
        self._held.discard(response_id)
        self._dropped.add(response_id)
        self._queue = collections.deque(x for x in self._queue if x[0] != response_id)

    # -- soft barge-in: duck / restore ramps, far-end played position (issue 15) ----------
    def duck(self, gain: float, ramp_ms: int) -> None:
        """Ramp the gain to ``gain`` (0..1) over ``ramp_ms`` of sent frames (at least one)."""
        self._ramp_to(gain, ramp_ms)

    def restore(self, ramp_ms: int) -> None:
        """Ramp the gain back to 1.0 over ``ramp_ms`` of sent frames."""
        self._ramp_to(1.0, ramp_ms)

    def _ramp_to(self, gain: float, ramp_ms: int) -> None:
        if not 0.0 <= gain <= 1.0:
            raise ConfigError(f"Playout: gain must be in 0..1, got {gain!r}")
        frames = max(1, -(-max(0, ramp_ms) // self.config.frame_ms))
        self._gain_target = gain
        if not self.playing and not self._queue:
            self.gain = gain  # nothing is playing: no ramp to hear
            return
        self._gain_step = (gain - self.gain) / frames

    def _next_gain(self) -> tuple[float, float]:
        g0 = self.gain
        if g0 != self._gain_target:
            g1 = g0 + self._gain_step
            if (self._gain_step > 0 and g1 >= self._gain_target) or \
                    (self._gain_step <= 0 and g1 <= self._gain_target):
                g1 = self._gain_target
            self.gain = g1
        return g0, self.gain

    def played(self, now: float, frames: int) -> None:
        """The far end confirmed (at ``now``) that the first ``frames`` frames this playout
        sent have played. From the first call on, sent frames are kept until confirmed (see
        :meth:`rewind`). Raises ConfigError for a position beyond what was sent."""
        if frames > self.frames_sent or frames < 0:
            raise ConfigError(f"Playout.played: {frames} frames confirmed, "
                              f"{self.frames_sent} sent")
        if self._played is None:
            self._played = [0.0, now]
            self._unconfirmed.clear()  # only frames sent from now on are kept
        confirmed = int(self._played[0])
        if frames >= confirmed:
            for _ in range(min(frames - confirmed, len(self._unconfirmed))):
                self._unconfirmed.popleft()
            self._played = [float(frames), now]

    def peek_next(self) -> tuple[D, float] | None:
        """Return the next frame to send and when it is due (shell time), or None if nothing
        is queued or the playout is held (paused, or the head response held)."""
        if not self._queue or self._blocked():
            return None
        return self._queue[0][2], (self._next_at if self._next_at else self._filled_at)

    def _clear_yield(self, now: float | None) -> None:
        # a clear ends any pause / duck, and the far end's buffer is dropped with it
        self.paused = False
        self.gain = self._gain_target = 1.0
        self._gain_step = 0.0
        if self._played is not None:
            self._played = [float(self.frames_sent), self._played[1] if now is None else now]
            self._unconfirmed.clear()

    def far_buffered(self, now: float) -> int:
        """Return how many sent frames the far end has not played yet at ``now`` (0 when the
        shell reports no played position). Estimated from the last confirmation: the far end
        plays each unconfirmed frame at 1x, not before it was sent."""
        if self._played is None:
            return 0
        t = self._played[1]
        fs = self.frame_s
        played = 0
        for _r, _i, _p, sent_at in self._unconfirmed:
            t = max(t, sent_at) + fs
            if t > now + _EPS:
                break
            played += 1
        return len(self._unconfirmed) - played

    def heard_ms(self, now: float, item_id: str | None) -> int | None:
        """Return how much of ``item_id`` the caller has heard at ``now``: what was sent less
        the far end's buffer (:meth:`far_buffered`); None for no item."""
        if item_id is None:
            return None
        sent = self.sent_ms.get(item_id, 0)
        n = self.far_buffered(now)
        tail = list(self._unconfirmed)[len(self._unconfirmed) - n:] if n else []
        buffered = sum(1 for _r, it, _p, _s in tail if it == item_id)
        return max(0, sent - buffered * self.config.frame_ms)

    def rewind(self, now: float) -> int:
        """Put the frames the far end has not played yet back at the head of the queue (they
        are sent again, at the gain of the moment); return how many (0: nothing to do). The
        shell must clear the far end's buffer before it sends the next frame."""
        n = self.far_buffered(now)
        if not n:
            return 0
        back = [self._unconfirmed.pop() for _ in range(n)]
        for rid, item, payload, _sent in back:  # newest first: each goes to the head
            self._queue.appendleft((rid, item, payload))
            self.sent_ms[item] = max(0, self.sent_ms.get(item, 0) - self.config.frame_ms)
        self.frames_sent -= n
        # the far end's buffer is cleared: it has played everything still counted as sent
        self._played = [float(self.frames_sent), now]
        self._unconfirmed.clear()
        if self._next_at:
            self._next_at = now
        self._filled_at = min(self._filled_at, now)
        return n

    # -- output --------------------------------------------------------------------------
    def _stop(self) -> None:
        self.playing = False
        self.playing_item = self.playing_response = None
        self._next_at = 0.0

    def _blocked(self) -> bool:
        return self.paused or (bool(self._held) and self._queue[0][0] in self._held)

    def poll(self, now: float) -> list[PlayoutSignal[D]]:
        """Return what is due at shell time ``now``, in order (module docstring)."""
        out: list[PlayoutSignal[D]] = []
        q = self._queue
        fs = self.frame_s
        while True:
            if q and not self._blocked():
                next_at = self._next_at
                if now < next_at - _EPS:
                    return out
                rid, item, payload = q.popleft()
                if rid in self._dropped:
                    continue
                if not self.playing:
                    self.playing = True
                    self.playing_response, self.playing_item = rid, item
                    self._forget(rid, item)
                    out.append(PlayoutSignal("started", rid, item))
                    out.append(PlayoutSignal("response", rid, item))
                elif self.playing_response != rid:
                    # a new response while the previous still plays: one continuous run
                    self.playing_response, self.playing_item = rid, item
                    self._forget(rid, item)
                    out.append(PlayoutSignal("response", rid, item))
                self.sent_ms[item] = self.sent_ms.get(item, 0) + self.config.frame_ms
                self.frames_sent += 1
                if self._played is not None:
                    self._unconfirmed.append((rid, item, payload, now))
                g0, g1 = self._next_gain()
                out.append(PlayoutSignal("frame", rid, item, payload, g0, g1))
                on_time = now - next_at < fs or self._filled_at <= next_at
                base = next_at if next_at and on_time else now
                self._next_at = base + fs
                continue
            if self.playing and not self.paused:
                play_end = self._next_at
                done = self.playing_response in self._done
                if (done and now >= play_end - _EPS) or now >= play_end + self._grace - _EPS:
                    rid, item = self.playing_response or "", self.playing_item or ""
                    self._stop()
                    # a ramp with no frame left to ride on lands now: the next run starts at
                    # the target level (a restore after the run's last frame is not lost)
                    self.gain = self._gain_target
                    out.append(PlayoutSignal("finished", rid, item))
                    continue
            elif not q:
                self._next_at = 0.0
            return out

    def get_timer(self) -> float | None:
        """Return the shell time of the next thing :meth:`poll` will do, or None."""
        if self.paused:
            return None
        if self._queue and not self._blocked():
            # no run yet: due since the queue filled
            return self._next_at if self._next_at else self._filled_at
        if self.playing:
            done = self.playing_response in self._done
            return self._next_at if done else self._next_at + self._grace
        return None

    def _forget(self, rid: str, item: str) -> None:
        m = self.config.max_remembered
        if len(self.sent_ms) > m or len(self._dropped) > m:
            self.sent_ms = {k: v for k, v in self.sent_ms.items() if k == item}
            self._dropped = {r for r, _, _ in self._queue if r in self._dropped}

    def __len__(self) -> int:
        return len(self._queue)
