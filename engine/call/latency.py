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
* a *released speculation* (``speculative_silence_ms`` set: the reply was requested at that
  silence and held until the end of turn, ``released_at``): the model's wait overlapped the
  silence, so what the edge cannot remove is whichever ended last, ``max(end-of-turn silence,
  speculation silence + model time to first audio)``; edge-added = turn latency - that.
  ``commit_delay_ms`` is then measured from the speculation's deadline, and
  ``downlink_delay_ms`` from ``max(first delta read, release)`` (the hold is not the
  downlink's). The end-of-turn silence is the one the engine chose for the turn's pause.
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
    speculative_silence_ms: float | None = None
    """A released speculation: the silence (ms after the last speech frame, engine clock) at
    which its reply was requested (``Speculate``); None for a plain commit."""
    released_at: float | None = None
    """A released speculation: when its ``Release`` was performed (the held audio went to the
    playout); ``performed_at`` is then when its request was handed to the model leg."""

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
               hold_s: float, eot_silence_ms: float | None = None,
               speculative_silence_ms: float | None = None,
               released_at: float | None = None) -> TurnRecord:
        """Open the record of a Commit performed at ``performed_at`` (or of a released
        speculation: its request performed then, its silence and release time given); return
        it. ``eot_silence_ms``: the turn's end-of-turn silence (default: the configured one)."""
        rec = TurnRecord(turn, last_speech_at, commit_at, performed_at,
                         eot_silence_ms=self.eot_silence_ms if eot_silence_ms is None
                         else eot_silence_ms, uplink_hold_ms=hold_s * 1000,
                         speculative_silence_ms=speculative_silence_ms, released_at=released_at)
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
        if ttfa is not None and turn.eot_silence_ms is not None \
                and turn.speculative_silence_ms is not None:
            _speculative_latency(turn, ttfa, self._first_rx.get(response_id), now)
        elif ttfa is not None and turn.eot_silence_ms is not None:
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


def _speculative_latency(turn: TurnRecord, ttfa: float, rx: float | None, now: float) -> None:
    """Fill the edge-added parts of a released speculation (module docstring)."""
    assert turn.turn_latency_ms is not None and turn.eot_silence_ms is not None
    assert turn.speculative_silence_ms is not None
    turn.model_ttfa_ms = ttfa * 1000
    floor = max(turn.eot_silence_ms, turn.speculative_silence_ms + turn.model_ttfa_ms)
    turn.edge_added_ms = turn.turn_latency_ms - floor
    turn.commit_delay_ms = ((turn.performed_at - turn.last_speech_at) * 1000
                            - turn.speculative_silence_ms)
    if rx is not None:
        released = turn.released_at if turn.released_at is not None else rx
        turn.downlink_delay_ms = (now - max(rx, released)) * 1000
        turn.request_delay_ms = (rx - ttfa - turn.performed_at) * 1000
