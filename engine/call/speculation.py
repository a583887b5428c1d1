"""The hold of a speculative reply: a playout decision of the call core, the same in prod and sim.

Theory of operation
-------------------
With speculative commit on (``TurnConfig.speculate``; ``engine/turn.py``) the engine emits
``Speculate`` when a pause in a real turn reaches ``speculate_silence_ms``: the shell asks the
model for its reply at once (prod: ``input_audio_buffer.commit`` + ``response.create``; sim:
the modelled model draws its time to first audio). Until the end of turn is confirmed that
reply must not reach the caller. *When* it may play is decided here, in the call core, so the
production edge and the simulator hold and release it with the same code:

* ``Speculate`` -> :meth:`SpeculationHold.start`: one speculation is in flight (the engine
  allows at most one per call), with the shell time its request was handed over and the
  silence (ms after the turn's last speech frame, on the engine clock) at which it was made.
* agent audio the shell marks ``speculative`` (prod: the model leg's speculative response;
  sim: the reply the world requested speculatively) is *claimed*
  (:meth:`SpeculationHold.claim`): the core queues it in the playout held
  (:meth:`Playout.hold <clutchcall.engine.call.playout.Playout.hold>`); nothing is sent and
  the engine hears no agent audio.
* ``Release`` (the turn's commit) -> the held response is let go
  (:meth:`Playout.release <clutchcall.engine.call.playout.Playout.release>`) and its first
  frame goes out in the same service, i.e. at ``max(release, first audio ready)`` -- the
  model's time to first audio overlapped the caller's silence. Audio that comes after the
  release plays as it comes (the speculation is over).
* ``Retract`` (the caller went on, or other agent audio started) -> the held response is
  dropped (:meth:`Playout.retract <clutchcall.engine.call.playout.Playout.retract>`): its
  frames and any later chunk of it are ignored; the caller heard nothing. Retracted before
  any of its audio came, the next speculative audio (before another speculation starts) is
  taken to be its late audio and dropped too. Cancelling the
  model's reply and deleting its item from the conversation is the shell's I/O.
* a speculative response that ends without audio while held is remembered
  (:meth:`SpeculationHold.ended`): at its release it is a reply without audio, at a retraction
  it is forgotten.

Contract with the shell: audio marked ``speculative`` belongs to the speculation in flight
(or, after its release, to the released one); audio of a retracted speculation not yet
delivered is the shell's to drop (prod: the model leg drops a cancelled response's deltas;
sim: the world never delivers it). The hold never reads a clock and does no I/O; the core
passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Speculation:
    """The speculation in flight: turn ``turn``, requested at shell time ``requested_at``
    after ``silence_ms`` of the pause; ``response_id`` once its audio came (None before);
    ``ended_status`` if it ended without audio while held."""

    turn: int
    requested_at: float
    silence_ms: float
    response_id: str | None = None
    ended_status: str | None = None


class SpeculationHold:
    """At most one speculative reply held by the call core (module docstring)."""

    __slots__ = ("_orphan", "current", "released", "retracted", "started")

    def __init__(self) -> None:
        self.current: Speculation | None = None
        self._orphan = False  # retracted before its audio came: its late audio is dropped
        self.started = 0
        self.released = 0
        self.retracted = 0

    def start(self, turn: int, now: float, silence_ms: float) -> None:
        """``Speculate`` for ``turn`` was performed at ``now`` after ``silence_ms`` of pause."""
        self.current = Speculation(turn, now, silence_ms)
        self.started += 1
        self._orphan = False

    def claim(self, response_id: str) -> str:
        """Speculative audio of ``response_id`` arrived: return ``"hold"`` (a speculation is
        in flight and this is its response, or it names none yet), ``"drop"`` (late audio of
        a speculation retracted before its audio came) or ``"play"`` (released already: it
        plays as it comes)."""
        cur = self.current
        if cur is None:
            if self._orphan:
                self._orphan = False
                return "drop"
            return "play"
        if cur.response_id is None:
            cur.response_id = response_id
        return "hold" if cur.response_id == response_id else "play"

    def ended(self, response_id: str, status: str, has_audio: bool) -> bool:
        """The speculative ``response_id`` ended (``has_audio``: it queued audio): return True
        if the hold took the event (a speculation is in flight and it is its response)."""
        cur = self.current
        if cur is None or (cur.response_id is not None and cur.response_id != response_id):
            return False
        if not has_audio:
            cur.ended_status = status
        return True

    def finish(self, released: bool) -> Speculation | None:
        """The speculation in flight was released (``released``) or retracted: return it (None
        if none was in flight) and forget it."""
        cur, self.current = self.current, None
        if cur is not None:
            if released:
                self.released += 1
            else:
                self.retracted += 1
                self._orphan = cur.response_id is None
        return cur
