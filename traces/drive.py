"""Drive a labelled call through the turn engine and record the trace.

Theory of operation: :func:`drive_call` is the offline shell for one labelled call. It
frames the caller channel (``frame_ms`` from the config) and asks webrtcvad for each frame's
decision (``clutchcall.engine.audio.vad``, as the edge does), then runs the drive
loop of docs/architecture.md §2 (:class:`~clutchcall.engine.call.EngineDriver`, recording into a trace) with a
scripted agent: the agent's audio starts at each ``agent_speech`` interval's
start and finishes at its end -- unless the engine emits ``Cancel`` while it plays, in which
case the shell stops the playout at once (``agent_audio_finished`` at the cancel's time) and
that interval is over. Timers fire at their deadline, before any input that comes later.
Every input and every drained output goes into a :class:`TraceRecorder`, so the result
replays exactly (:func:`~clutchcall.traces.recorded.first_mismatch` is ``None``).

The agent does not react to commits (its replies are where the labels put them); this is
a deterministic harness for the engine's caller-side decisions, not a conversation model.
"""

from __future__ import annotations

import numpy as np

from clutchcall.engine import TurnConfig
from clutchcall.engine.actions import Cancel, Output
from clutchcall.engine.audio.vad import make_vad_framer
from clutchcall.engine.call import EngineDriver
from clutchcall.traces.labels import LabelledCall
from clutchcall.traces.recorded import RecordedTrace, TraceRecorder

CHANNEL_CODEC = {"clean16": "pcm16", "noisy16": "pcm16", "pstn8": "g711_ulaw", "opus48": "opus"}


def vad_decisions(pcm: np.ndarray, rate: int, frame_ms: int, aggressiveness: int,
                  backend: str = "webrtc") -> list[bool]:
    """Return the VAD decision for each whole ``frame_ms`` frame of int16 ``pcm``, from the
    same framer the edge uses (``clutchcall.engine.audio.vad.make_vad_framer``: webrtcvad by
    default, or the optional Silero backend)."""
    framer = make_vad_framer(rate, frame_ms, aggressiveness, backend)
    return [bool(s) for _, s in framer.push(pcm)]


def drive_call(call: LabelledCall, config: TurnConfig | None = None, *, codec: str = "pcm16",
               call_id: str | None = None) -> RecordedTrace:
    """Run ``call`` through a fresh :class:`TurnEngine` (``config`` or the defaults) with the
    scripted agent described above; return the recorded trace. ``codec`` goes in the header.
    Engine errors propagate (they would be bugs: the inputs are well-formed by construction)."""
    cfg = config or TurnConfig()
    rec = TraceRecorder(call_id=call_id or call.name, codec=codec, rate=call.rate, config=cfg,
                        extra={"source": "clutchcall.traces.drive", "call": call.name})
    eng = EngineDriver(config=cfg, recorder=rec)
    flags = vad_decisions(call.pcm, call.rate, cfg.frame_ms, cfg.vad_aggressiveness)
    step = cfg.frame_ms / 1000.0
    # (time, order, what, arg): frames first at equal times, then agent finish, then start
    events: list[tuple[float, int, str, int]] = [((k + 1) * step, 0, "frame", k) for k in range(len(flags))]
    for j, (a, b) in enumerate(call.labels.agent_speech):
        events.append((a / 1000.0, 2, "start", j))
        events.append((b / 1000.0, 1, "finish", j))
    events.sort()
    playing: int | None = None
    over: set[int] = set()

    def perform(now: float, outs: list[Output]) -> None:
        nonlocal playing
        if playing is not None and any(isinstance(o, Cancel) for o in outs):
            over.add(playing)
            playing = None
            perform(now, eng.agent_audio_finished(now))

    def advance(now: float) -> None:
        deadline = eng.get_timer()
        while deadline is not None and deadline <= now:
            perform(deadline, eng.handle_timer(deadline))
            deadline = eng.get_timer()

    for t, _, what, arg in events:
        advance(t)
        if what == "frame":
            perform(t, eng.caller_frame(t, speech=flags[arg], duration_ms=cfg.frame_ms, seq=arg))
        elif what == "start" and playing is None and arg not in over:
            playing = arg
            perform(t, eng.agent_audio_started(t))
        elif what == "finish" and playing == arg:
            playing = None
            over.add(arg)
            perform(t, eng.agent_audio_finished(t))
    deadline = eng.get_timer()
    if deadline is not None:  # let the last turn end
        perform(deadline, eng.handle_timer(deadline))
    return rec.trace()
