"""The agent's phrase ends, from the agent audio the call core plays (issue 15's onset cue).

Theory of operation
-------------------
Listeners place backchannels at the speaker's phrase boundaries; interruptions come anywhere.
The ``evidence`` policy therefore wants, with each caller frame, its distance to the agent's
nearest phrase end (``FrameFeatures.agent_edge_ms``). The call core knows the agent's audio:
every frame passes through its playout, usually well before it is sent (a model streams
faster than real time). :class:`PhraseEnds` is fed each queued frame's level
(:meth:`PhraseEnds.pushed`, in push order, numbered) and each frame's send time
(:meth:`PhraseEnds.sent`), and answers :meth:`PhraseEnds.distance_ms`.

A *phrase end* is the first quiet frame (level below ``quiet_db``) after at least
``min_loud`` loud frames, once ``min_quiet`` quiet frames in a row confirm it (a pause, not a
stop consonant). Its time is its send time once sent, else predicted at 1x from the next frame
due (``next_at``) and its place in the queue. The caller's frame is compared on the edge's
clock with the agent frame's send time, so the distance is biased by the round trip (the
caller hears the agent one downlink delay after the send; the edge hears the caller one
uplink delay after it spoke); the policy's window is tuned with that bias in.
Pure: no clock, no I/O; equal inputs give equal answers.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable


class PhraseEnds:
    """Phrase ends of one call's agent audio (module docstring)."""

    __slots__ = ("_cand", "_ends", "_frame_s", "_loud", "_next_idx", "_quiet", "_sent",
                 "min_loud", "min_quiet", "quiet_db")

    def __init__(self, frame_ms: int, *, quiet_db: float = -45.0, min_loud: int = 5,
                 min_quiet: int = 6) -> None:
        self._frame_s = frame_ms / 1000.0
        self.quiet_db = quiet_db
        self.min_loud = min_loud
        self.min_quiet = min_quiet
        self._next_idx = 0  # push index of the next frame pushed
        self._loud = 0  # loud frames in a row (before the current quiet run)
        self._quiet = 0  # quiet frames in a row
        self._cand: int | None = None  # a quiet frame after a phrase, not yet confirmed
        self._ends: list[int] = []  # confirmed phrase ends (push indices), increasing
        self._sent: dict[int, float] = {}  # send time of each phrase end sent

    def pushed(self, levels: Iterable[float]) -> list[int]:
        """Number frames of these levels (dBFS) in push order; return their push indices."""
        out = []
        for lv in levels:
            i = self._next_idx
            self._next_idx = i + 1
            out.append(i)
            if lv < self.quiet_db:
                if self._quiet == 0 and self._loud >= self.min_loud:
                    self._cand = i
                self._quiet += 1
                if self._cand is not None and self._quiet >= self.min_quiet:
                    self._ends.append(self._cand)
                    self._cand = None
                if self._quiet >= self.min_quiet:
                    self._loud = 0
            else:
                if self._quiet:
                    self._cand = None
                    if self._quiet >= self.min_quiet:
                        self._loud = 0
                self._quiet = 0
                self._loud += 1
        return out

    def sent(self, idx: int, at: float) -> None:
        """Frame ``idx`` was sent at ``at`` (shell clock)."""
        if self._ends and idx >= self._ends[0]:
            j = bisect.bisect_left(self._ends, idx)
            if j < len(self._ends) and self._ends[j] == idx:
                self._sent[idx] = at
                if len(self._sent) > 64:  # keep the recent ones
                    for k in sorted(self._sent)[:32]:
                        del self._sent[k]
                    self._ends = [e for e in self._ends if e >= min(self._sent)]

    def dropped(self, first_unsent: int) -> None:
        """Frames from push index ``first_unsent`` on were dropped (a clear): forget their
        phrase ends."""
        self._ends = [e for e in self._ends if e < first_unsent or e in self._sent]

    def distance_ms(self, now: float, next_idx: int | None, next_at: float | None) -> float:
        """Return the distance (ms) from ``now`` to the nearest phrase end: sent ones at their
        send time, unsent ones predicted as due at ``next_at + (idx - next_idx) * frame``
        (``next_idx``: push index of the next frame to send, None if nothing is queued or the
        playout is held); inf if none is known."""
        best = math.inf
        for t in self._sent.values():
            best = min(best, abs(now - t))
        if next_idx is not None and next_at is not None:
            j = bisect.bisect_left(self._ends, next_idx)
            if j < len(self._ends):
                t = next_at + (self._ends[j] - next_idx) * self._frame_s
                best = min(best, abs(t - now))
        return best * 1000.0
