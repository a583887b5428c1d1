"""The hold of a speculative reply at the edge: its audio waits for Release or is dropped.

Theory of operation: a playout decision, kept in one small class so it can move into the
call core's downlink playout (``engine/call/``) as is. Between the engine's ``Speculate`` and
its ``Release`` / ``Retract``, :class:`ReplyHold` is *active*: the model leg's events for the
speculative response -- audio chunks and its end -- are offered to it and kept, in order,
instead of being queued for the caller. ``release()`` returns them so the shell feeds them to
its playout at once, in the order they came (the first frame goes to the caller with no
further model wait: the reply was generated while the caller's pause ran); ``drop()`` forgets
them (the caller hears nothing of a retracted reply). The hold never reads a clock and does no
I/O; which response is speculative is the model leg's to say (``accepts``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ReplyHold:
    """Holds one speculative reply's events until it is released or dropped.

    ``is_speculative(response_id)`` tells whether a response is the speculative one (the
    model leg knows it once the server named it; a refused request has the id ``""``).
    """

    __slots__ = ("_events", "_is_speculative", "active", "held_audio_bytes")

    def __init__(self, is_speculative: Callable[[str], bool]) -> None:
        self._is_speculative = is_speculative
        self._events: list[tuple[str, tuple[Any, ...]]] = []
        self.active = False
        self.held_audio_bytes = 0

    def start(self) -> None:
        """A speculation started: hold its reply from now on."""
        self._events.clear()
        self.active = True
        self.held_audio_bytes = 0

    def accepts(self, response_id: str) -> bool:
        """Return whether events of ``response_id`` are to be held now."""
        return self.active and (response_id == "" or self._is_speculative(response_id))

    def offer_audio(self, chunk: Any) -> bool:
        """Keep an audio chunk (``.response_id``, ``.pcm``) if it is held; return whether it was."""
        if not self.accepts(chunk.response_id):
            return False
        self._events.append(("audio", (chunk,)))
        self.held_audio_bytes += len(chunk.pcm)
        return True

    def offer_done(self, response_id: str, status: str) -> bool:
        """Keep the held response's end if it is held; return whether it was."""
        if not self.accepts(response_id):
            return False
        self._events.append(("done", (response_id, status)))
        return True

    def release(self) -> list[tuple[str, tuple[Any, ...]]]:
        """End of turn confirmed: stop holding; return the held events in arrival order
        (``("audio", (chunk,))`` / ``("done", (response_id, status))``)."""
        events, self._events = self._events, []
        self.active = False
        return events

    def drop(self) -> int:
        """Retracted: stop holding and forget the held events; return how many there were."""
        n = len(self._events)
        self._events = []
        self.active = False
        self.held_audio_bytes = 0
        return n
