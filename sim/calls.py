"""Labelled calls as the simulator consumes them: caller VAD frames, agent speech, labels.

Theory of operation: a labelled call on disk is ``NAME.wav`` (the caller's audio, mono PCM16)
plus ``NAME.json``, exactly::

    {"version": 1,
     "agent_speech": [[start_ms, end_ms], ...],
     "segments": [{"start_ms": .., "end_ms": .., "kind": .., "expect": ..}, ...]}

with ``kind`` in turn / short_answer / backchannel / interruption / noise and ``expect`` in
reply / ignore / yield (``traces/FORMAT.md``). :func:`load_call` reads the pair with
``clutchcall.traces``' validating reader and runs the production VAD framing
(:class:`clutchcall.engine.audio.VadFramer`) to get one speech decision per frame: the
simulator feeds the engine exactly what the production edge would.

A :class:`Call` can also be built from intervals (:meth:`Call.from_intervals`) -- frame-level
VAD sequences for tests -- and :func:`synthetic_call`, the project's one call generator, makes
a deterministic labelled call of any length (turns, short answers, backchannels,
interruptions, noise) for tests and the benchmark, or (``style="scripted"``) the unlabelled
frame-level call the engine demo and benchmark drive the engine with.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clutchcall.engine.audio.features import FrameFeatures, signal_features
from clutchcall.engine.errors import ClutchCallError, ConfigError
from clutchcall.traces.labels import Segment  # the label format's own type

if TYPE_CHECKING:
    from clutchcall.engine.audio.smart_turn import SmartTurn


class CallFormatError(ClutchCallError, ValueError):
    """A labelled call (JSON or WAV) is malformed; the message names the file and field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A call ready to simulate. ``speech[k]``: VAD decision of caller frame k, which covers
    ``[k * frame_ms, (k + 1) * frame_ms)`` ms of the call."""

    name: str
    frame_ms: int
    speech: tuple[bool, ...]
    agent_speech: tuple[tuple[float, float], ...]
    segments: tuple[Segment, ...]
    agent_pauses: tuple[tuple[float, float], ...] = ()
    """The labelled pauses between the agent's phrases (ms; ``agent_pauses`` in the JSON)."""
    features: tuple[FrameFeatures, ...] | None = None
    """Per-frame acoustic features (``engine/audio/features.py``) computed from the audio,
    fed to the engine with each frame; None for calls built from intervals."""
    speech_hangover_frames: int = 0
    """Frames by which ``speech`` outlasts the caller's real speech at its end (a peer's VAD
    stop debouncing, :mod:`clutchcall.sim.peers`): scoring takes them off the last speech
    frame of a committed turn, so a commit is matched to the segment it closed."""

    @property
    def duration_s(self) -> float:
        """Length of the call's caller audio in seconds."""
        return len(self.speech) * self.frame_ms / 1000.0

    @classmethod
    def from_intervals(
        cls,
        name: str,
        *,
        duration_ms: int,
        caller_speech: Sequence[tuple[float, float]],
        agent_speech: Sequence[tuple[float, float]] | None = None,
        segments: Sequence[Segment] | None = None,
        frame_ms: int = 20,
    ) -> Call:
        """Build a call whose frame k is speech iff it overlaps a ``caller_speech`` interval
        by at least half a frame. Raises CallFormatError on bad intervals."""
        n = duration_ms // frame_ms
        speech = [False] * n
        for s, e in caller_speech:
            if e < s or s < 0:
                raise CallFormatError(f"{name}: bad speech interval {(s, e)}")
            for k in range(max(0, int(s // frame_ms)), min(n, int(e // frame_ms) + 1)):
                lo, hi = k * frame_ms, (k + 1) * frame_ms
                if min(hi, e) - max(lo, s) >= frame_ms / 2:
                    speech[k] = True
        return cls(name=name, frame_ms=frame_ms, speech=tuple(speech),
                   agent_speech=tuple((a, b) for a, b in (agent_speech or [])),
                   segments=tuple(segments or []))


def load_call(path: str | Path, *, frame_ms: int = 20, aggressiveness: int = 2,
              smart_turn: SmartTurn | None = None, vad: str = "webrtc") -> Call:
    """Load ``NAME.json`` + ``NAME.wav`` (``path`` may name either, or the stem) through
    ``clutchcall.traces.labels.read_call`` (the one validating reader of the format) and run
    the VAD (backend ``vad``: "webrtc" or "silero", ``engine/audio/vad.py``) on the audio.
    With a ``smart_turn`` model, each pause's analysed frame carries the model's probability
    on the audio up to its end (``FrameFeatures.turn_end_p``, as a live shell would compute
    it; ``end_of_turn_rule = "smart-turn"``). Raises CallFormatError (carrying the reader's
    ``PATH: FIELD: PROBLEM`` text) for a missing or malformed file, ConfigError for an
    unknown or unavailable VAD backend."""
    from clutchcall.traces.errors import TraceFormatError
    from clutchcall.traces.labels import read_call

    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".wav") else p
    try:
        lc = read_call(stem)
    except TraceFormatError as exc:
        raise CallFormatError(str(exc)) from exc
    agent = [(float(a), float(b)) for a, b in lc.labels.agent_speech]
    segs = [Segment(start_ms=float(x.start_ms), end_ms=float(x.end_ms), kind=x.kind,
                    expect=x.expect) for x in lc.labels.segments]
    from clutchcall.engine.audio import AudioError, vad_decisions
    from clutchcall.engine.audio.vad import VadBackendUnavailable

    try:
        speech = vad_decisions(np.asarray(lc.pcm, dtype=np.int16), lc.rate, frame_ms,
                               aggressiveness, vad)
    except VadBackendUnavailable:
        raise
    except (AudioError, ConfigError, ValueError) as exc:  # audio the VAD cannot take (its rate)
        raise CallFormatError(f"VAD cannot take this audio ({lc.rate} Hz): {exc}") from exc
    pcm = np.asarray(lc.pcm, dtype=np.int16)
    feats = signal_features(pcm, lc.rate, frame_ms, speech)
    speech = speech[: len(feats)]
    if smart_turn is not None:
        from clutchcall.engine.audio.smart_turn import pause_probabilities

        for i, prob in pause_probabilities(smart_turn, pcm, lc.rate, speech, frame_ms).items():
            feats[i] = dataclasses.replace(feats[i], turn_end_p=prob)
    return Call(name=stem.name, frame_ms=frame_ms, speech=tuple(speech),
                agent_speech=tuple(agent), segments=tuple(segs),
                agent_pauses=tuple((float(a), float(b)) for a, b in lc.labels.agent_pauses),
                features=tuple(feats))


def call_from_trace(path: str | Path) -> Call:
    """Build a :class:`Call` from a recorded trace's inputs (``clutchcall.traces``): the
    caller frames' VAD decisions in order, and the agent audio started/finished inputs as
    the agent's planned speech. It has no labels, so only latencies can be scored. Raises
    CallFormatError for a malformed trace or frames of mixed durations."""
    from clutchcall.traces.errors import TraceFormatError
    from clutchcall.traces.recorded import read_trace

    try:
        trace = read_trace(path)
    except TraceFormatError as exc:
        raise CallFormatError(str(exc)) from exc
    frames = [i for i in trace.inputs if i.kind == "caller_frame"]
    durations = {int(i.duration_ms or 0) for i in frames}
    if len(durations) > 1:
        raise CallFormatError(f"{path}: caller frames of mixed durations {sorted(durations)}")
    frame_ms = durations.pop() if durations else 20
    agent: list[tuple[float, float]] = []
    start: float | None = None
    for i in trace.inputs:
        if i.kind == "agent_audio_started" and start is None:
            start = i.time * 1000.0
        elif i.kind == "agent_audio_finished" and start is not None:
            agent.append((start, i.time * 1000.0))
            start = None
    if start is not None and frames:
        agent.append((start, frames[-1].time * 1000.0))
    return Call(name=Path(path).stem, frame_ms=frame_ms,
                speech=tuple(bool(i.speech) for i in frames), agent_speech=tuple(agent),
                segments=())


def find_calls(paths: list[str]) -> list[Path]:
    """Expand files and directories into the sorted list of labelled-call stems (every
    ``*.json`` with a sibling ``*.wav``) and recorded traces named explicitly (``*.parquet``).
    Raises CallFormatError if none, or for a path that does not exist."""
    stems: set[Path] = set()
    for item in paths:
        p = Path(item)
        if p.is_dir():
            stems.update(j.with_suffix("") for j in p.rglob("*.json") if j.with_suffix(".wav").exists())
        elif p.suffix == ".parquet":
            if not p.exists():
                raise CallFormatError(f"{item}: no such recorded trace")
            stems.add(p)
        else:
            stem = p.with_suffix("") if p.suffix in (".json", ".wav") else p
            if not stem.with_suffix(".json").exists():
                raise CallFormatError(f"{item}: no such labelled call or directory")
            stems.add(stem)
    if not stems:
        raise CallFormatError(f"no labelled calls (NAME.json + NAME.wav) in {', '.join(paths)}")
    return sorted(stems)


SYNTHETIC_STYLES = ("labelled", "scripted")


def synthetic_call(seed: int, seconds: float = 60.0, frame_ms: int = 20,
                   name: str | None = None, *, style: str = "labelled") -> Call:
    """Return a deterministic synthetic call of about ``seconds`` (the one call generator of
    the project; each ``style`` is its own seeded stream, kept exactly as recorded results
    and benchmarks pinned it).

    ``style="labelled"`` (the simulator's): agent turns with caller backchannels
    (150-450 ms, ignore), interruptions (0.8-2 s, yield) and noise blips (40-100 ms, ignore)
    over them; caller turns (0.8-4 s with pauses, reply) and short answers (200-500 ms,
    reply) after them. VAD frames follow the intervals exactly.

    ``style="scripted"`` (the engine demo's and benchmark's, as engine inputs through
    :func:`clutchcall.tools.scenario.scripted_call`): frame-level caller speech, no labels
    (``segments`` empty); caller turns of 1-3 bursts (0.4-2 s each at 20 ms frames, pauses of
    5-20 frames), the agent talking for 50-200 frames starting 45-70 frames after the
    caller's speech ended; during agent speech the caller may backchannel (8-25 frames) or
    barge in (30-75 frames). Agent intervals are whole frames (ms) and may run past the end.
    """
    if style not in SYNTHETIC_STYLES:
        raise ConfigError(f"synthetic_call: style one of {SYNTHETIC_STYLES}, got {style!r}")
    if style == "scripted":
        return _scripted_call(seed, seconds, frame_ms, name)
    rng = random.Random(seed)
    total = int(seconds * 1000)
    t = 500
    caller: list[tuple[int, int]] = []
    agent: list[tuple[int, int]] = []
    segs: list[Segment] = []
    while t < total - 6000:
        # caller: a turn or a short answer
        if rng.random() < 0.3:
            d = rng.randrange(200, 500, 20)
            caller.append((t, t + d))
            segs.append(Segment(start_ms=t, end_ms=t + d, kind="short_answer", expect="reply"))
            t += d
        else:
            start = t
            for b in range(rng.randint(1, 3)):
                if b:
                    t += rng.randrange(100, 300, 20)
                d = rng.randrange(500, 1600, 20)
                caller.append((t, t + d))
                t += d
            segs.append(Segment(start_ms=start, end_ms=t, kind="turn", expect="reply"))
        # the agent answers and talks for 2-5 s
        t += rng.randrange(900, 1300, 20)
        a0, a1 = t, t + rng.randrange(2000, 5000, 20)
        agent.append((a0, a1))
        u = rng.random()
        if u < 0.45:
            s = rng.randrange(a0 + 300, max(a0 + 320, a1 - 600), 20)
            d = rng.randrange(160, 460, 20)
            caller.append((s, s + d))
            segs.append(Segment(start_ms=s, end_ms=s + d, kind="backchannel", expect="ignore"))
        elif u < 0.55:
            s = rng.randrange(a0 + 300, max(a0 + 320, a1 - 600), 20)
            d = rng.randrange(40, 100, 20)
            caller.append((s, s + d))
            segs.append(Segment(start_ms=s, end_ms=s + d, kind="noise", expect="ignore"))
        if rng.random() < 0.3:
            s = rng.randrange(a0 + 600, max(a0 + 620, a1 - 200), 20)
            s = max(s, caller[-1][1] + 400) if caller[-1][0] >= a0 else s
            d = rng.randrange(800, 2000, 20)
            caller.append((s, s + d))
            segs.append(Segment(start_ms=s, end_ms=s + d, kind="interruption", expect="yield"))
            t = max(a1, s + d) + rng.randrange(900, 1300, 20)
        else:
            t = a1 + rng.randrange(300, 900, 20)
    return Call.from_intervals(name or f"synthetic-{seed}", duration_ms=total,
                               caller_speech=caller, agent_speech=agent, segments=segs,
                               frame_ms=frame_ms)



def _scripted_call(seed: int, seconds: float, frame_ms: int, name: str | None) -> Call:
    """The ``style="scripted"`` stream of :func:`synthetic_call` (frame-level, unlabelled)."""
    rng = random.Random(seed)
    n_frames = int(seconds * 1000) // frame_ms
    speech = [False] * n_frames
    agent: list[tuple[int, int]] = []
    i = rng.randint(5, 25)
    while i < n_frames:
        # a caller turn made of 1-3 bursts separated by short pauses
        for b in range(rng.randint(1, 3)):
            if b:
                i += rng.randint(5, 20)  # 100-400 ms pause inside the turn
            length = rng.randint(20, 100)
            for k in range(i, min(i + length, n_frames)):
                speech[k] = True
            i += length
        i += rng.randint(45, 70)  # silence until the agent answers
        a_len = rng.randint(50, 200)
        agent.append((i, i + a_len))
        # caller reactions over the agent
        if rng.random() < 0.5:
            j = i + rng.randint(10, max(11, a_len - 30))
            for k in range(j, min(j + rng.randint(8, 25), n_frames)):
                speech[k] = True
        if rng.random() < 0.25:
            j = i + rng.randint(20, max(21, a_len - 10))
            for k in range(j, min(j + rng.randint(30, 75), n_frames)):
                speech[k] = True
        i += a_len + rng.randint(10, 40)
    return Call(name=name or f"scripted-{seed}", frame_ms=frame_ms, speech=tuple(speech),
                agent_speech=tuple((float(a * frame_ms), float(b * frame_ms)) for a, b in agent),
                segments=())


def segment_for_commit(segments: tuple[Segment, ...], t_ms: float) -> int:
    """Return the index of the labelled segment a commit whose turn's speech ended at caller
    time ``t_ms`` closed (its end within ``[start - 60, end + 300]`` ms; the closest end
    wins), or -1."""
    best, best_d = -1, float("inf")
    for i, s in enumerate(segments):
        if s.start_ms - 60 <= t_ms <= s.end_ms + 300:
            d = abs(s.end_ms - t_ms)
            if d < best_d:
                best, best_d = i, d
    return best


def reply_intervals(call: Call, max_gap_ms: float = 3000.0) -> dict[int, int]:
    """Map each ``expect == "reply"`` segment to the index of the agent_speech interval that
    answers it: the first one starting at or after the segment's end (within
    ``max_gap_ms``) and before the next reply segment starts. FORMAT.md: such a reply is
    placed at a human pace; a reactive simulator starts it at its own commit and keeps only
    its length."""
    reply_segs = [i for i, s in enumerate(call.segments) if s.expect == "reply"]
    out: dict[int, int] = {}
    used: set[int] = set()
    for n, i in enumerate(reply_segs):
        seg = call.segments[i]
        nxt = call.segments[reply_segs[n + 1]].start_ms if n + 1 < len(reply_segs) else float("inf")
        for j, (a, _b) in enumerate(call.agent_speech):
            if j in used or a < seg.end_ms - 1:
                continue
            if a <= seg.end_ms + max_gap_ms and a < nxt:
                out[i] = j
                used.add(j)
            break
    return out
