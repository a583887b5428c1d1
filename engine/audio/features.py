"""Per-frame acoustic features for the turn policy: pure, cheap, stateful per caller stream.

Theory of operation: a VAD says *whether* a frame is speech; the policy also wants *how*
it is spoken. For each caller frame this module gives a :class:`FrameFeatures`:

* ``level_db`` -- the frame's energy, dBFS (RMS of the int16 samples / 32768).
* ``rel_db`` -- that energy relative to the caller's own running speech level: an
  exponential average (time constant ``SPEECH_TAU_MS``, 3 s) of ``level_db`` over frames the
  VAD called speech and that stand clear of the noise floor. Backchannels ("mhm") are
  spoken softly, a caller who breaks in usually raises the voice, so a burst's mean
  ``rel_db`` separates them better than its length alone -- and it is the same on 8 kHz
  mu-law PSTN as on 16 kHz (a ratio of energies on one channel, so codec and gain cancel).
* ``agent_edge_ms`` -- the frame's distance to the agent's nearest phrase end: listeners
  place backchannels at the speaker's phrase boundaries, interruptions come anywhere. The
  call core, which plays the agent's audio, finds its pauses and sets it
  (``engine/call/phrase.py``).
* ``snr_db`` -- the frame's energy over a running noise floor (a minimum tracker: drops to
  any quieter frame at once, rises ``FLOOR_RISE_DB_PER_S`` per second). On a noisy channel
  webrtcvad calls stationary noise speech; a frame within a few dB of the floor is not.

:class:`FeatureTracker` holds one stream's state (push one frame's level and VAD decision,
get its features); :func:`frame_levels_db` computes the levels of a whole signal at once
(numpy, vectorized) and :func:`track` runs the tracker over them. No clock, no I/O; the same
inputs give the same features. Not covered yet (issue 15 lists them): voicing / F0 slope
and spectral shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPEECH_TAU_MS = 3000.0
"""Time constant of the running speech level."""
FLOOR_RISE_DB_PER_S = 3.0
"""How fast the noise floor may rise (it falls to any quieter frame at once)."""
SPEECH_CLEAR_DB = 9.0
"""A speech frame must stand this far above the noise floor to update the speech level."""
INITIAL_SPEECH_DB = -24.0
"""The running speech level before the caller's first clear speech frame (dBFS)."""
SILENCE_DB = -100.0
"""The level of a digitally silent frame."""


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """The acoustic features of one caller frame (see the module docstring)."""

    level_db: float
    rel_db: float
    snr_db: float
    agent_edge_ms: float = math.inf
    """Distance (ms, on the edge's clock) from this frame to the nearest end of an agent
    phrase (the start of a pause in the agent's audio), past or just ahead; inf when the
    agent is not talking or its phrasing is unknown. The call core fills it from the agent
    audio it plays (``engine/call/phrase.py``)."""
    turn_end_p: float = math.nan
    """Smart-turn's probability that the caller's turn is complete, on the audio up to this
    frame's end (``engine/audio/smart_turn.py``); NaN on every frame the shell did not analyse
    (all of them unless ``end_of_turn_rule = "smart-turn"``: one frame per pause, ``CHECK_MS``
    of silence after its last speech frame). ``engine/endpoint.py`` reads it."""


def frame_levels_db(pcm: np.ndarray, rate: int, frame_ms: int) -> np.ndarray:
    """Return the dBFS level of each whole ``frame_ms`` frame of int16 ``pcm`` at ``rate``
    (float64, one per frame; ``SILENCE_DB`` for a silent frame). Raises ValueError for a
    rate/frame pair that does not give whole samples."""
    n = rate * frame_ms
    if n % 1000:
        raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
    per = n // 1000
    k = len(pcm) // per
    x = np.asarray(pcm[: k * per], dtype=np.float64).reshape(k, per) / 32768.0
    ms = np.mean(x * x, axis=1)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(ms)
    out: np.ndarray = np.maximum(db, SILENCE_DB)
    return out


def frame_level_db(pcm: np.ndarray) -> float:
    """Return the dBFS level of one int16 frame (``SILENCE_DB`` if silent or empty): the
    same measure as :func:`frame_levels_db`, for a shell that gets frames one at a time."""
    if len(pcm) == 0:
        return SILENCE_DB
    x = np.asarray(pcm, dtype=np.float64) / 32768.0
    ms = float(np.mean(x * x))
    return max(10.0 * math.log10(ms), SILENCE_DB) if ms > 0.0 else SILENCE_DB


class FeatureTracker:
    """One caller stream's running speech level and noise floor.

    ``push(level_db, speech, frame_ms)`` returns the frame's :class:`FrameFeatures` and
    updates the state. Pure: no clock; equal inputs give equal outputs."""

    __slots__ = ("floor_db", "speech_db")

    def __init__(self) -> None:
        self.speech_db = INITIAL_SPEECH_DB
        self.floor_db = math.inf

    def push(self, level_db: float, speech: bool, frame_ms: int = 20) -> FrameFeatures:
        """Return the features of a frame of ``level_db`` (its VAD decision ``speech``)."""
        floor = self.floor_db
        if level_db < floor:
            floor = level_db
        else:
            floor += FLOOR_RISE_DB_PER_S * frame_ms / 1000.0
        self.floor_db = floor
        snr = level_db - floor
        if speech and snr >= SPEECH_CLEAR_DB:
            a = frame_ms / SPEECH_TAU_MS
            self.speech_db += a * (level_db - self.speech_db)
        return FrameFeatures(level_db=level_db, rel_db=level_db - self.speech_db, snr_db=snr)


def track(levels_db: Sequence[float] | np.ndarray, speech: Sequence[bool],
          frame_ms: int = 20) -> list[FrameFeatures]:
    """Return the features of every frame of a stream, in order (a fresh tracker)."""
    t = FeatureTracker()
    return [t.push(float(lv), bool(s), frame_ms) for lv, s in zip(levels_db, speech, strict=False)]
