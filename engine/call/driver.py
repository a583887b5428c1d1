"""The engine half of the one drive loop: feed an input, drain, record -- and the timer.

Theory of operation: docs/architecture.md §2's loop is *feed input -> drain outputs -> act on them -> re-arm
the one timer*. :class:`EngineDriver` is its engine-facing half, shared by every shell: the
call core (:class:`~clutchcall.engine.call.core.CallCore`, which prod and sim run), the
offline drivers (scripted scenarios, labelled-call traces) and every replay. Each input is one
:class:`~clutchcall.engine.call.inputs.EngineInput`; :meth:`EngineDriver.feed` applies it,
drains the engine at once (every input needs a drain after it) and hands both to the
:class:`~clutchcall.engine.call.inputs.Recorder`, if any -- so a shell cannot feed without
recording, and the recorder is passed in, never patched onto an engine. Offline shells that
have no real timer call :meth:`EngineDriver.advance` before each input: it fires every
deadline at or before the input's time, at the deadline, as a shell's timer would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from clutchcall.engine.actions import Output
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call.inputs import EngineInput, Recorder, apply
from clutchcall.engine.config import TurnConfig
from clutchcall.engine.policy import TurnPolicy
from clutchcall.engine.turn import TurnEngine

_CHUNK_MIN = 6
_CHUNK_MAX = 512
_BACKOFF = 2


class EngineDriver:
    """Feeds one :class:`TurnEngine`, drains after every input, records both."""

    __slots__ = ("engine", "recorder")

    def __init__(self, engine: TurnEngine | None = None, recorder: Recorder | None = None, *,
                 config: TurnConfig | None = None, policy: TurnPolicy | None = None) -> None:
        self.engine = engine if engine is not None else TurnEngine(config, policy)
        self.recorder = recorder

    def feed(self, inp: EngineInput) -> list[Output]:
        """Apply ``inp``, drain; return the outputs (also given to the recorder). Engine errors
        propagate (nothing is recorded for an input the engine refused)."""
        engine = self.engine
        apply(engine, inp)
        outs = engine.drain()
        rec = self.recorder
        if rec is not None:
            rec.input(inp)
            rec.outputs(outs)
        return outs

    def caller_frame(self, now: float, *, speech: bool, duration_ms: int,
                     seq: int | None = None, features: FrameFeatures | None = None
                     ) -> list[Output]:
        """Feed one caller frame (with its acoustic ``features``, if any); return the outputs
        drained after it."""
        if self.recorder is None:
            # no one records: the engine call apply() would make, without building the
            # EngineInput (the live edge's per-frame path, issue 17)
            engine = self.engine
            engine.caller_frame(now, speech=speech, duration_ms=duration_ms, seq=seq,
                                features=features)
            return engine.drain()
        return self.feed(EngineInput.frame(now, speech=speech, duration_ms=duration_ms, seq=seq,
                                           features=features))

    def agent_audio_started(self, now: float) -> list[Output]:
        """Feed agent audio started; return the outputs drained after it."""
        if self.recorder is None:
            self.engine.agent_audio_started(now)
            return self.engine.drain()
        return self.feed(EngineInput.started(now))

    def agent_audio_finished(self, now: float) -> list[Output]:
        """Feed agent audio finished; return the outputs drained after it."""
        if self.recorder is None:
            self.engine.agent_audio_finished(now)
            return self.engine.drain()
        return self.feed(EngineInput.finished(now))

    def handle_timer(self, now: float) -> list[Output]:
        """Feed a timer firing; return the outputs drained after it."""
        if self.recorder is None:
            self.engine.handle_timer(now)
            return self.engine.drain()
        return self.feed(EngineInput.timer(now))

    def get_timer(self) -> float | None:
        """Return the engine's next deadline (absolute, engine clock) or None."""
        return self.engine.get_timer()

    def feed_columns(self, times: Sequence[float], speech: Sequence[bool], duration_ms: int, *,
                     features: Sequence[FrameFeatures | None] | None = None,
                     seqs: Sequence[int] | None = None) -> list[Output]:
        """Feed a run of caller frames given as columns (frame ``k`` ended at ``times[k]``,
        VAD decision ``speech[k]``, ``features[k]`` and ``seqs[k]`` if given, all
        ``duration_ms`` long), each after :meth:`advance` to its time: the same outputs, in
        the same order, as ``advance(t) + caller_frame(t, ...)`` frame by frame (the
        per-frame drive loop), but the runs in which nothing can be decided go to the engine
        in one call (:meth:`TurnEngine.caller_frames_quiet`). With a recorder every frame is
        fed on its own as an :class:`EngineInput` (the recorder sees each input and its
        drain). Engine errors propagate as from :meth:`feed` (the frames before the bad one
        fed)."""
        n = len(times)
        if self.recorder is not None:
            out: list[Output] = []
            for k in range(n):
                out += self.advance(times[k])
                out += self.feed(EngineInput.frame(
                    times[k], speech=speech[k], duration_ms=duration_ms,
                    seq=None if seqs is None else seqs[k],
                    features=None if features is None else features[k]))
            return out
        engine = self.engine
        quiet = engine.caller_frames_quiet
        caller_frame = engine.caller_frame
        drain = engine.drain
        get_timer = engine.get_timer
        out = []
        # Frame by frame (timers first, the frame, drain), but the run ahead (up to
        # _CHUNK_MAX frames) is offered to the engine in one call now and then: after a run it
        # took, the frame that ended it is stepped; a refusal (a state that decides on every
        # frame, a run shorter than _CHUNK_MIN) backs off for _BACKOFF frames.
        retry = 0
        it = iter(range(n))
        for k in it:
            if k >= retry:
                took = quiet(times, speech, duration_ms, k, min(n, k + _CHUNK_MAX),
                             features=features, seqs=seqs, min_run=_CHUNK_MIN)
                if took:
                    out += drain()
                    retry = k + took + (took < _CHUNK_MAX)
                    if took > 1:
                        next(islice(it, took - 2, None), None)  # skip the frames it took
                    continue
                retry = k + _BACKOFF
            now = times[k]
            deadline = get_timer()
            if deadline is not None and deadline <= now:
                out += self.advance(now)
            caller_frame(now, speech=speech[k], duration_ms=duration_ms,
                         seq=None if seqs is None else seqs[k],
                         features=None if features is None else features[k])
            out += drain()
        return out

    def advance(self, now: float) -> list[Output]:
        """Fire every deadline at or before ``now``, each at its own time (for shells with no
        real timer); return the outputs, in order."""
        out: list[Output] = []
        deadline = self.engine.get_timer()
        while deadline is not None and deadline <= now:
            out += self.feed(EngineInput.timer(deadline))
            deadline = self.engine.get_timer()
        return out
