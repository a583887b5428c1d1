"""Latency bookkeeping of one call: a :class:`TurnRecord` per committed turn.

Theory of operation: the call core opens a record when the engine's ``Commit`` is performed
(:meth:`TurnBook.commit`) and completes it when the first agent frame of the reply is sent
(:meth:`TurnBook.first_audio`); the model leg's own timing arrives in between
(:meth:`TurnBook.model_audio`: time to first audio as measured at the model leg, and when the
first delta was read). All times are shell-clock seconds. Definitions:

* *turn latency* = first agent frame sent - when the turn's last speech frame was due at the
  edge (its nominal arrival: media time + transit floor). If that frame was held before the
  engine saw it, the hold is time spent inside the edge (``uplink_hold_ms``).
* *edge-added* = turn latency - the configured end-of-turn silence - the model's own time to
  first audio (``response.create`` written -> first delta read). A late timer, a held frame,
  queues, transcoding and pacing all count as edge-added; its three parts are
  ``commit_delay_ms``, ``request_delay_ms`` and ``downlink_delay_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TurnRecord:
    """One committed turn and its latencies (ms, None until measured). Times are shell-clock
    seconds: ``last_speech_at`` when the turn's last speech frame was due (its nominal
    arrival: media time + the smallest transit seen), ``commit_at`` the engine's Commit time,
    ``performed_at`` when the commit was handed to the model leg, ``first_audio_at`` when the
    first agent frame was sent to the caller."""

    turn: int
    last_speech_at: float
    commit_at: float
    performed_at: float
    first_audio_at: float | None = None
    turn_latency_ms: float | None = None
    eot_silence_ms: float | None = None
    model_ttfa_ms: float | None = None
    edge_added_ms: float | None = None
    response_id: str | None = None
    commit_delay_ms: float | None = None
    """Edge-added part 1: the end-of-turn deadline -> Commit handed to the model leg (timer
    lateness, held frames)."""
    request_delay_ms: float | None = None
    """Part 2: Commit handed over -> ``response.create`` written to the socket (queue)."""
    downlink_delay_ms: float | None = None
    """Part 3: first audio delta read -> first agent frame sent (transcode, pacer)."""
    uplink_hold_ms: float | None = None
    """How long the last speech frame waited between its nominal arrival and the engine's
    clock (it was laid end to end after a late frame or a timer); part of edge-added."""

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-able dict."""
        return {k: getattr(self, k) for k in TurnRecord.__slots__}


class TurnBook:
    """Open and completed :class:`TurnRecord` of one call (module docstring)."""

    def __init__(self, eot_silence_ms: float, remember: int = 64) -> None:
        self.eot_silence_ms = eot_silence_ms
        self.turns: list[TurnRecord] = []
        self.pending: TurnRecord | None = None
        self._ttfa: dict[str, float | None] = {}
        self._first_rx: dict[str, float] = {}
        self._remember = remember

    def commit(self, *, turn: int, last_speech_at: float, commit_at: float, performed_at: float,
               hold_s: float) -> TurnRecord:
        """Open the record of a Commit performed at ``performed_at``; return it."""
        rec = TurnRecord(turn, last_speech_at, commit_at, performed_at,
                         eot_silence_ms=self.eot_silence_ms, uplink_hold_ms=hold_s * 1000)
        self.pending = rec
        return rec

    def model_audio(self, response_id: str, model_ttfa_s: float | None, received_at: float) -> None:
        """The model leg's first audio of ``response_id``: its own time to first audio (s,
        None if unknown) and when the first delta was read (shell clock)."""
        if len(self._ttfa) > self._remember:
            self._ttfa.clear()
            self._first_rx.clear()
        self._ttfa[response_id] = model_ttfa_s
        self._first_rx[response_id] = received_at

    def has_audio(self, response_id: str) -> bool:
        """Return True if ``response_id`` delivered audio."""
        return response_id in self._ttfa

    def drop_pending(self) -> None:
        """Forget the open record (its reply will never play)."""
        self.pending = None

    def first_audio(self, now: float, response_id: str) -> TurnRecord | None:
        """The first agent frame of ``response_id`` is sent at ``now``: complete and return
        the open record, if any (None otherwise)."""
        turn = self.pending
        if turn is None or turn.first_audio_at is not None:
            return None
        turn.first_audio_at = now
        turn.response_id = response_id
        turn.turn_latency_ms = (now - turn.last_speech_at) * 1000
        ttfa = self._ttfa.get(response_id)
        if ttfa is not None and turn.eot_silence_ms is not None:
            turn.model_ttfa_ms = ttfa * 1000
            turn.edge_added_ms = turn.turn_latency_ms - turn.eot_silence_ms - turn.model_ttfa_ms
            rx = self._first_rx.get(response_id)
            turn.commit_delay_ms = ((turn.performed_at - turn.last_speech_at) * 1000
                                    - turn.eot_silence_ms)
            if rx is not None:
                turn.downlink_delay_ms = (now - rx) * 1000
                turn.request_delay_ms = (rx - ttfa - turn.performed_at) * 1000
        self.turns.append(turn)
        self.pending = None
        return turn
