"""The call core: everything between the wire and the turn engine that decides timing.

Theory of operation
-------------------
One :class:`CallCore` per call, sans-IO in the shape of aioquic's ``QuicConnection``: every
input takes the shell's ``now`` (seconds, monotonic: ``loop.time()`` in prod, ``env.now`` in
the simulator), output is pulled with :meth:`CallCore.transmit`, and there is one timer:
:meth:`CallCore.get_timer` (absolute shell time, or None) and :meth:`CallCore.handle_timer`.
Nothing here reads a clock, sleeps or does I/O; prod and sim run this same object, so a
change to the frame hold or the playout is one edit and both shells see it.

The shells' loop (docs/architecture.md §2, the same in both)::

    core.caller_audio(now, frames, ...)        # or agent_audio / response_done / ...
    for ev in core.transmit():                 # engine outputs and call events, in order
        shell.perform(ev)                      # model leg, downlink, metrics
    deadline = core.get_timer()                # re-arm the one timer
    # when it fires: core.handle_timer(max(deadline, clock())), transmit, re-arm

Every input method ends by *servicing* the call at ``now``: held caller frames now due go to
the engine (:mod:`~clutchcall.engine.call.hold`: media clock, transit floor, frame hold), an
engine deadline now due fires, the playout sends what is due
(:mod:`~clutchcall.engine.call.playout`), and the engine's outputs are performed inside the
core where they concern timing: ``Append`` releases the frame's audio (:class:`UplinkAudio`),
``Commit`` opens a :class:`~clutchcall.engine.call.latency.TurnRecord`, ``Cancel`` clears the
playout (:class:`PlayoutCleared`) and, if agent audio was playing, tells the engine it
finished; the soft barge-in actions (issue 15) act on the playout here, once for both shells:
``Duck`` / ``Restore`` ramp its gain (each :class:`AgentFrame` carries the gain at its start
and end), ``Pause`` holds it (the model keeps streaming into the queue) and ``Resume`` plays on
from where it stopped. A shell whose far end buffers audio (Twilio) reports the far end's
played position with :meth:`CallCore.agent_played`; a pause or duck then takes the unplayed
frames back (:class:`PlayoutRewound`: clear the far end's buffer) and a ``Cancel`` truncates
at what was heard (``PlayoutCleared.heard_ms``). Caller frames may carry acoustic features
(``engine/audio/features.py``) to the engine: they are part of the recorded input. Every engine input goes through one
:class:`~clutchcall.engine.call.driver.EngineDriver`, so the recorder passed in sees each
input and each drained output exactly as fed. So every input needs a :meth:`transmit` after
it (before the timer is re-armed).

What :meth:`transmit` returns, in order: every engine :class:`~clutchcall.engine.Output`
(the shell acts on ``Prime`` / ``Commit`` / ``Cancel`` / ``BackchannelFiltered`` towards the
model leg and observes all of them), and :class:`CallEvent` values: :class:`UplinkAudio`
(the audio of an appended frame, for the model leg), :class:`AgentFrame` (send to the caller
now), :class:`AgentStarted` / :class:`AgentFinished`, :class:`PlayoutCleared`,
:class:`TurnMeasured` and :class:`ReplyWithoutAudio`.

Speculative commit (``TurnConfig.speculate``): ``Speculate`` starts the core's
:class:`~clutchcall.engine.call.speculation.SpeculationHold`; agent audio the shell marks
``speculative`` is queued held in the playout; ``Release`` opens the turn's record (as a
``Commit`` does) and lets the held audio go at once; ``Retract`` drops it. The shell's part is
the model's I/O (prod: ``response.cancel`` + ``conversation.item.delete``). Details in
``engine/call/speculation.py``.

Clocks: the engine runs on the *media clock* (shell time minus the uplink lag, see
``hold``); agent audio start/finish and timer firings are placed on it too, never before the
engine's latest ``now``. The engine deadline is armed on the shell clock at ``deadline + lag``
with the lag of the moment it was armed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clutchcall.engine.actions import (
    Append,
    Cancel,
    Commit,
    Duck,
    Output,
    Pause,
    Release,
    Restore,
    Resume,
    Retract,
    Speculate,
)
from clutchcall.engine.audio.features import FrameFeatures, with_agent_edge
from clutchcall.engine.call.driver import EngineDriver
from clutchcall.engine.call.hold import FrameHold, HoldConfig, HoldStats
from clutchcall.engine.call.inputs import Recorder
from clutchcall.engine.call.latency import TurnBook, TurnRecord
from clutchcall.engine.call.phrase import PhraseEnds
from clutchcall.engine.call.playout import Playout, PlayoutConfig
from clutchcall.engine.call.speculation import SpeculationHold
from clutchcall.engine.config import TurnConfig
from clutchcall.engine.errors import RemoteProtocolError
from clutchcall.engine.policy import TurnPolicy
from clutchcall.engine.turn import TurnEngine

P = TypeVar("P")
D = TypeVar("D")


# ------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent:
    """Base of what the call core decides besides the engine's outputs (shell clock ``time``)."""

    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkAudio(CallEvent):
    """The audio of appended caller frame ``seq`` (follows its ``Append``): to the model leg."""

    seq: int
    payload: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFrame(CallEvent):
    """Send this agent frame to the caller now (``gain``: level to apply, 1.0 = as is)."""

    response_id: str
    item_id: str
    payload: Any
    gain: float = 1.0
    gain_start: float = 1.0
    """The level at the frame's first sample (``gain``: at its last): ramp between them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStarted(CallEvent):
    """Agent audio started playing (the engine heard it at ``engine_time``)."""

    engine_time: float
    response_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFinished(CallEvent):
    """Agent audio stopped playing (finished, underrun, or cleared)."""

    engine_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutCleared(CallEvent):
    """A ``Cancel`` cleared the playout: clear the caller's playout, cancel the model's reply
    and truncate ``item_id`` at what was sent (``sent_ms``); ``was_playing``: agent audio was
    playing (it has now finished)."""

    agent_played_ms: int
    item_id: str | None
    sent_ms: int | None
    was_playing: bool
    heard_ms: int | None = None
    """What the caller heard of ``item_id`` (``sent_ms`` less the far end's unplayed buffer,
    see :meth:`CallCore.agent_played`): truncate there."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutRewound(CallEvent):
    """A pause / duck took back ``frames`` frames the far end had not played yet (they are
    queued again): clear the far end's buffer (Twilio ``clear``) before the next frame."""

    frames: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnMeasured(CallEvent):
    """A committed turn's first agent frame went out: its completed record."""

    record: TurnRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyWithoutAudio(CallEvent):
    """A reply ended without any audio (the engine was told agent audio finished)."""

    response_id: str
    status: str


Event = Output | CallEvent

_set_ev_time = vars(CallEvent)["time"].__set__
_set_up_seq = vars(UplinkAudio)["seq"].__set__
_set_up_payload = vars(UplinkAudio)["payload"].__set__


def _uplink_audio(time: float, seq: int, payload: Any) -> UplinkAudio:
    """``UplinkAudio(time=time, seq=seq, payload=payload)`` built through the slot descriptors
    (one per caller frame; the frozen dataclass's ``__init__`` sets each field with
    ``object.__setattr__``): an equal object."""
    ev: UplinkAudio = object.__new__(UplinkAudio)
    _set_ev_time(ev, time)
    _set_up_seq(ev, seq)
    _set_up_payload(ev, payload)
    return ev


# ------------------------------------------------------------------------------ the core
class CallCore(Generic[P, D]):
    """One call's timing core: frame hold, engine, playout, latency book (module docstring).
    ``P``: the shell's caller frame payload (PCM in prod, None in sim); ``D``: its agent frame
    payload."""

    def __init__(self, turn_config: TurnConfig | None = None, *, hold: HoldConfig | None = None,
                 playout: PlayoutConfig | None = None, recorder: Recorder | None = None,
                 policy: TurnPolicy | None = None, uplink_events: bool = True,
                 agent_level: Callable[[D], float] | None = None) -> None:
        """``uplink_events``: emit :class:`UplinkAudio` after each ``Append`` (False when the
        shell has no audio to forward, e.g. the simulator). ``agent_level``: the level (dBFS)
        of an agent frame payload; given, the core finds the agent's phrase ends in the audio
        it plays (:mod:`~clutchcall.engine.call.phrase`) and fills each caller frame's
        ``agent_edge_ms`` feature from them."""
        self.turn_config = tc = turn_config or TurnConfig()
        if hold is None:
            hold = HoldConfig(frame_ms=tc.frame_ms)
        self.driver = EngineDriver(TurnEngine(tc, policy), recorder)
        self.hold: FrameHold[tuple[P, FrameFeatures | None]] = FrameHold(hold)
        # agent frames are queued with their push index (phrase-end tracking; -1 without)
        self.playout: Playout[tuple[D, int]] = Playout(playout)
        self._agent_level = agent_level
        self.phrases: PhraseEnds | None = (
            None if agent_level is None else PhraseEnds(self.playout.config.frame_ms))
        self._last_sent_idx = -1
        self.book = TurnBook(float(tc.end_of_turn_silence_ms))
        self.speculation = SpeculationHold()
        """The speculative reply held until Release (engine/call/speculation.py)."""
        self._out: list[Event] = []
        self._uplink: dict[int, P] = {}
        self._next_seq = 0
        self._last_seq = -1
        self._timer_deadline: float | None = None
        self._timer_at: float | None = None
        self._uplink_events = uplink_events
        self.closed = False

    # -- observation ---------------------------------------------------------------------
    @property
    def engine(self) -> TurnEngine:
        """The turn engine (read its state; feed it only through the core)."""
        return self.driver.engine

    @property
    def turns(self) -> list[TurnRecord]:
        """Committed turns whose reply started playing, in order."""
        return self.book.turns

    @property
    def stats(self) -> HoldStats:
        """Uplink counters (frames in / fed / late / dropped / concealed ...)."""
        return self.hold.stats

    @property
    def violation(self) -> str | None:
        """None, or the first bound this call broke: ``hold_overflow`` (frames dropped ahead
        of the media clock) or ``conceal_rate`` (concealment refused). A shell may end the
        call on it."""
        return self.hold.violation

    def idle(self) -> bool:
        """Return True when no reply is pending or playing, no frame is held and no engine
        deadline is pending."""
        pending = self.book.pending
        return ((pending is None or pending.first_audio_at is not None)
                and not self.playout.playing and not len(self.playout) and not len(self.hold)
                and self.driver.get_timer() is None)

    # -- uplink inputs -------------------------------------------------------------------
    def caller_seq(self, seq: int | None) -> int:
        """Check an uplink payload's sequence number before decoding it; return how many
        frames were lost just before it (0 without a number). Raises RemoteProtocolError if
        it does not increase (nothing changes)."""
        if seq is None:
            return 0
        last = self._last_seq
        if last >= 0 and seq <= last:
            raise RemoteProtocolError(f"caller frame seq {seq} after {last}")
        self._last_seq = seq
        return seq - last - 1 if last >= 0 else 0

    def admit_conceal(self, now: float, lost: int) -> int:
        """Return how many of ``lost`` missing frames the shell may conceal (caps of
        :class:`~clutchcall.engine.call.hold.HoldConfig`); the rest are counted."""
        return self.hold.admit_conceal(now, lost)

    def caller_audio(self, now: float, frames: Sequence[tuple[P, bool]], *,
                     media_end: float | None, duration_s: float, pending_s: float = 0.0,
                     features: Sequence[FrameFeatures | None] | None = None) -> None:
        """The VAD frames ``[(payload, speech)]`` of one uplink payload arrived at ``now``
        (see :meth:`FrameHold.push <clutchcall.engine.call.hold.FrameHold.push>`), with each
        frame's acoustic features if the shell computes them (``features``, one per frame).
        Needs a :meth:`transmit` after it."""
        if self.closed:
            return
        feats: Sequence[FrameFeatures | None] = features or (None,) * len(frames)
        self.hold.push(now, [((p, f), sp) for (p, sp), f in zip(frames, feats, strict=True)],
                       media_end=media_end, duration_s=duration_s, pending_s=pending_s)
        self._service(now)

    # -- downlink inputs -----------------------------------------------------------------
    def agent_audio(self, now: float, response_id: str, item_id: str | None, frames: Iterable[D],
                    *, model_ttfa_s: float | None = None, received_at: float | None = None,
                    first: bool = False, speculative: bool = False) -> bool:
        """Queue agent frames of ``response_id`` (``first``: the response's first chunk, with
        the model's time to first audio and when it was read; ``speculative``: the reply to a
        ``Speculate``, held until its ``Release`` while the speculation is in flight). Returns
        False if the response was cleared or the call is closed (nothing queued). Decides
        nothing by itself: re-arm the timer after it (:meth:`get_timer` is then at most ``now``)."""
        if self.closed or self.playout.is_dropped(response_id):
            return False
        if speculative:
            claim = self.speculation.claim(response_id)
            if claim == "drop":
                self.playout.retract(response_id)
                return False
            if claim == "hold":
                self.playout.hold(response_id)
        if first:
            self.book.model_audio(response_id, model_ttfa_s,
                                  now if received_at is None else received_at)
        ph = self.phrases
        if ph is None:
            self.playout.push(now, response_id, item_id, ((f, -1) for f in frames))
        else:
            fl = list(frames)
            lv = self._agent_level
            assert lv is not None
            idx = ph.pushed(lv(f) for f in fl)
            self.playout.push(now, response_id, item_id, zip(fl, idx, strict=True))
        # nothing is sent from here: the timer (due now) sends, so a shell that reads many
        # chunks at once sends the first frame when it is free to, and paces from there
        return True

    def response_done(self, now: float, response_id: str, status: str = "completed", *,
                      speculative: bool = False) -> None:
        """The model said ``response_id`` is done (push its last frames first). A reply that
        ended without any audio tells the engine agent audio finished (it stops waiting) and
        drops the turn's record; a ``speculative`` one held in flight does so only at its
        ``Release``. Needs a :meth:`transmit` after it."""
        if self.closed:
            return
        pl = self.playout
        if speculative and self.speculation.ended(response_id, status, pl.has_audio(response_id)):
            if pl.has_audio(response_id):
                pl.done(response_id)
            self._service(now)
            return
        if not pl.has_audio(response_id) and not pl.is_dropped(response_id) and not pl.playing:
            self._out.append(ReplyWithoutAudio(time=now, response_id=response_id, status=status))
            self.book.drop_pending()
            self._feed_finished(now)
        else:
            pl.done(response_id)
        self._service(now)

    def agent_played(self, now: float, frames: int) -> None:
        """The far end confirmed that the first ``frames`` agent frames this core sent (as
        :attr:`Playout.frames_sent <clutchcall.engine.call.playout.Playout.frames_sent>`
        counts them) have played (Twilio: a ``mark`` echo). From the first call on, a pause
        or duck takes back what the far end still buffers and a ``Cancel`` truncates at what
        was heard (:meth:`Playout.played <clutchcall.engine.call.playout.Playout.played>`).
        Raises ConfigError for a position beyond what was sent."""
        if not self.closed:
            self.playout.played(now, frames)

    # -- timer ---------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """Return the shell time at which :meth:`handle_timer` must be called, or None."""
        if self.closed:
            return None
        best = self._timer_at
        for t in (self.hold.get_timer(), self.playout.get_timer()):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def handle_timer(self, now: float) -> None:
        """Do what is due at ``now`` (safe to call early or spuriously). Needs a :meth:`transmit`."""
        if not self.closed:
            self._service(now)

    def transmit(self) -> list[Event]:
        """Return (and forget) what the core decided since the last call, in order."""
        out = self._out
        self._out = []
        return out

    def close(self) -> None:
        """Stop: later inputs are ignored and there is no timer."""
        self.closed = True

    # -- machinery -----------------------------------------------------------------------
    def _service(self, now: float) -> None:
        hold = self.hold
        driver = self.driver
        uplink = self._uplink
        while True:
            due = hold.next_due(now)
            if due is None:
                break
            n = self._next_seq
            self._next_seq = n + 1
            payload, feat = due.payload
            if feat is not None and self.phrases is not None and self.playout.playing \
                    and feat.agent_edge_ms == math.inf:
                feat = with_agent_edge(feat, self._edge_ms(now))
            if self._uplink_events:
                uplink[n] = payload
            self._perform(now, driver.caller_frame(due.end, speech=due.speech,
                                                   duration_ms=due.duration_ms, seq=n,
                                                   features=feat))
        at = self._timer_at
        if at is not None and now >= at:
            deadline = self._timer_deadline
            assert deadline is not None
            self._timer_at = self._timer_deadline = None
            t = max(deadline, hold.clock(now), hold.engine_now)
            hold.engine_now = t
            self._perform(now, driver.handle_timer(t))
        self._poll_playout(now)
        self._arm()

    def _arm(self) -> None:
        d = self.driver.get_timer()
        if d != self._timer_deadline:
            self._timer_deadline = d
            self._timer_at = None if d is None else d + self.hold.lag

    def _poll_playout(self, now: float) -> None:
        for sig in self.playout.poll(now):
            kind = sig.kind
            if kind == "frame":
                assert sig.payload is not None
                payload, idx = sig.payload
                if idx >= 0 and self.phrases is not None:
                    self.phrases.sent(idx, now)
                    self._last_sent_idx = idx
                self._out.append(AgentFrame(time=now, response_id=sig.response_id,
                                            item_id=sig.item_id, payload=payload,
                                            gain=sig.gain, gain_start=sig.gain_start))
            elif kind == "started":
                t = self.hold.tick(now)
                self._out.append(AgentStarted(time=now, engine_time=t,
                                              response_id=sig.response_id))
                self._perform(now, self.driver.agent_audio_started(t))
            elif kind == "response":
                rec = self.book.first_audio(now, sig.response_id)
                if rec is not None:
                    self._out.append(TurnMeasured(time=now, record=rec))
            else:  # finished
                self._feed_finished(now)

    def _feed_finished(self, now: float) -> None:
        t = self.hold.tick(now)
        self._out.append(AgentFinished(time=now, engine_time=t))
        self._perform(now, self.driver.agent_audio_finished(t))

    def _perform(self, now: float, outs: list[Output]) -> None:
        out = self._out
        for o in outs:
            out.append(o)
            if isinstance(o, Append):
                if self._uplink_events and o.seq in self._uplink:
                    out.append(_uplink_audio(now, o.seq, self._uplink.pop(o.seq)))
            elif isinstance(o, Commit):
                end, nominal = self.hold.last_speech
                # turn latency starts when the last speech frame was due at the edge; if it
                # was held before the engine saw it, the hold counts as edge-added
                last = nominal if end == o.last_speech_at else o.last_speech_at
                self.book.commit(turn=o.turn, last_speech_at=last, commit_at=o.time,
                                 performed_at=now, hold_s=o.last_speech_at - last,
                                 eot_silence_ms=float(self.engine.end_of_turn_ms))
            elif isinstance(o, (Speculate, Release, Retract)):
                self._perform_speculation(now, o)
            elif isinstance(o, Cancel):
                cleared = self.playout.clear(now)
                if self.phrases is not None:
                    self.phrases.dropped(self._last_sent_idx + 1)
                out.append(PlayoutCleared(time=now, agent_played_ms=o.agent_played_ms,
                                          item_id=cleared.item_id, sent_ms=cleared.sent_ms,
                                          was_playing=cleared.was_playing,
                                          heard_ms=cleared.heard_ms))
                if cleared.was_playing:
                    self._feed_finished(now)
            elif isinstance(o, (Duck, Restore, Pause, Resume)):
                self._soft_yield(now, o)

    def _edge_ms(self, now: float) -> float:
        """The distance (ms) from ``now`` to the agent's nearest phrase end (issue 15)."""
        ph = self.phrases
        assert ph is not None
        nxt = self.playout.peek_next()
        if nxt is None:
            return ph.distance_ms(now, None, None)
        (_payload, idx), at = nxt
        return ph.distance_ms(now, idx if idx >= 0 else None, at)

    def _soft_yield(self, now: float, o: Duck | Restore | Pause | Resume) -> None:
        """Act on a soft barge-in action (issue 15): the one place prod and sim do it."""
        pl = self.playout
        if isinstance(o, Duck):
            pl.duck(10.0 ** (-o.gain_db / 20.0), o.ramp_ms)
        elif isinstance(o, Restore):
            pl.restore(self.turn_config.duck_ramp_ms)
        elif isinstance(o, Pause):
            pl.pause()
        else:
            pl.resume(now)
            return
        back = pl.rewind(now)  # only with a far end that buffers (agent_played)
        if back:
            self._out.append(PlayoutRewound(time=now, frames=back))

    # -- speculative commit (engine/call/speculation.py) ---------------------------------
    def _perform_speculation(self, now: float, o: Speculate | Release | Retract) -> None:
        spec = self.speculation
        if isinstance(o, Speculate):
            spec.start(o.turn, now, (o.time - o.last_speech_at) * 1000.0)
            return
        cur = spec.finish(released=isinstance(o, Release))
        rid = None if cur is None else cur.response_id
        if isinstance(o, Retract):
            if rid is not None:
                self.playout.retract(rid)
            return
        # Release: the turn's commit (its record opens as a Commit's does), the held reply
        # is let go now: the playout poll of this same service sends its first frame
        end, nominal = self.hold.last_speech
        last = nominal if end == o.last_speech_at else o.last_speech_at
        self.book.commit(turn=o.turn, last_speech_at=last, commit_at=o.time,
                         performed_at=now if cur is None else cur.requested_at,
                         hold_s=o.last_speech_at - last,
                         eot_silence_ms=float(self.engine.end_of_turn_ms),
                         speculative_silence_ms=None if cur is None else cur.silence_ms,
                         released_at=now)
        if rid is not None:
            self.playout.release(rid)
        elif cur is not None and cur.ended_status is not None:
            # the speculative reply ended without audio: as response_done does for a commit
            self._out.append(ReplyWithoutAudio(time=now, response_id="",
                                               status=cur.ended_status))
            self.book.drop_pending()
            self._feed_finished(now)
