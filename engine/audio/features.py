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
inputs give the same features.

Voicing, pitch and spectral shape (the "how" of a burst beyond its level), from
:func:`frame_shapes` (a whole signal, vectorized) or :class:`FrameAnalyzer` (a stream, one
frame at a time, the same numbers):

* ``voicing`` -- the periodicity of the frame: the highest local peak, over the lags of
  ``F0_MIN_HZ`` .. ``F0_MAX_HZ``, of a normalised autocorrelation of the last
  ``PITCH_WINDOW_MS`` of audio (this frame and the ones before it). It is computed in the
  spectrum of the Hann-windowed window: the *magnitude* spectrum (power ** 0.5, a partial
  spectral flattening: noise's autocorrelation then falls fast, a harmonic series keeps its
  peaks), low-passed to ``PITCH_LOWPASS_HZ`` with a cos^2 taper (the first harmonics carry
  the period; formants and the taper's edge do not pull the peak), transformed back, divided
  by its lag-0 value and by the window's own autocorrelation (Boersma 1993, Praat's
  correction). 8 kHz PSTN (no energy below 300 Hz: the fundamental is gone, its harmonics
  remain) and 16/48 kHz give the same answer. Only a *local* peak counts (coloured noise's
  autocorrelation falls monotonically). Measured (1 s signals, 20 ms frames, 8 and 16 kHz):
  a harmonic tone scores >= 0.64, white / pink noise p95 0.22-0.26, brown noise p95 0.43
  (1.4 % of its frames reach ``VOICED_MIN``); loud frames of corpus speech 64-75 % voiced.
* ``f0_hz`` -- the pitch: ``rate / lag`` at that peak (parabolic interpolation), when
  ``voicing >= VOICED_MIN``; else 0 (unvoiced). Octave errors remain possible (on PSTN,
  where the fundamental is filtered out, ~11 % of voiced frames lie > 7 semitones from the
  call's median); users should be robust to them (the evidence policy drops frames > 9 st
  from the caller's running pitch).
* ``hf_db`` -- the spectral shape: the energy in the ``HIGH_BAND`` (2000-3400 Hz) over the
  energy in the ``LOW_BAND`` (300-1000 Hz), dB, of the Hann-windowed frame. Both bands lie
  inside the telephone band, so the number means the same on 8 kHz PSTN as on wide-band
  audio. Vowels, nasals and "mhm" sit around -20..-35 dB (energy falls with frequency);
  fricatives and bursts (/s/, /t/, "stop", "wait", "sorry") reach -10..+10 dB. A lexical
  interruption has several such frames, a nasal or vocalic backchannel few or none.

:class:`FeatureTracker` also keeps the caller's running pitch (``speech_f0``: an exponential
average in semitones over voiced frames of clear speech, like the speech level), so that
``rel_f0_st`` = a voiced frame's pitch relative to the caller's own, in semitones (0 when
unvoiced or before any reference): raised pitch is an interruption cue, low pitch a
backchannel cue, and a semitone difference on one speaker needs no per-speaker constant.
For other users (the end-of-turn rule: pitch slope at a pause): :func:`pitch_track` gives
the per-frame ``(voicing, f0_hz)`` of a whole signal, and :func:`f0_slope_st_per_s` the
least-squares pitch slope (semitones per second) of any run of frames.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # numpy >= 2.0: the ufuncs np.fft.rfft / irfft call (numpy/fft/_pocketfft.py)
    _pfu: Any = importlib.import_module("numpy.fft._pocketfft_umath")
except ImportError:  # pragma: no cover - another numpy: the public functions
    _pfu = None
if not (hasattr(_pfu, "rfft_n_even") and hasattr(_pfu, "irfft")):  # pragma: no cover
    _pfu = None


def _private_fft_agrees() -> bool:
    """Whether this numpy's private pocketfft ufuncs, called as :func:`_rfft1` / :func:`_irfft1`
    call them, give ``np.fft.rfft`` / ``irfft`` bit for bit on a probe (a private module may
    change its signature or meaning in any numpy release: then the public functions are used)."""
    try:
        x = np.sin(np.arange(200, dtype=np.float64) * 0.37) * np.hanning(200)
        axes = [(0,), (), (0,)]
        spec = _pfu.rfft_n_even(x, 1, axes=axes, out=np.empty(257, dtype=np.complex128))
        back = _pfu.irfft(spec, np.reciprocal(512, dtype=np.float64), axes=axes,
                          out=np.empty(512, dtype=np.float64))
        return bool(np.array_equal(spec, np.fft.rfft(x, 512))
                    and np.array_equal(back, np.fft.irfft(np.fft.rfft(x, 512), 512)))
    except (TypeError, ValueError, AttributeError):  # pragma: no cover - another numpy's private API
        return False


if _pfu is not None and not _private_fft_agrees():  # pragma: no cover
    _pfu = None

SPEECH_TAU_MS = 3000.0
"""Time constant of the running speech level."""
FLOOR_RISE_DB_PER_S = 3.0
"""How fast the noise floor may rise (it falls to any quieter frame at once)."""
SPEECH_CLEAR_DB = 9.0
"""A speech frame must stand this far above the noise floor to update the speech level."""
INITIAL_SPEECH_DB = -24.0
"""The running speech level before the caller's first clear speech frame (dBFS)."""
PITCH_WINDOW_MS = 40
"""Pitch is measured over the last this-many ms of audio (two 20 ms frames): two periods of
a 50 Hz voice, the lowest ``F0_MIN_HZ`` needs."""
F0_MIN_HZ = 60.0
"""Lowest pitch searched (a low male voice)."""
F0_MAX_HZ = 400.0
"""Highest pitch searched (a high female / child voice)."""
PITCH_LOWPASS_HZ = 2000.0
"""The pitch autocorrelation uses only the spectrum below this (the first harmonics; 2 kHz
keeps enough of them on PSTN, where the fundamental is gone: voiced frames > 7 st from the
call's median, 24 train calls: 15 % at 1 kHz, 11 % at 2 kHz, 9 % at 3 kHz, which also
voices fewer speech frames)."""
VOICED_MIN = 0.5
"""A frame whose ``voicing`` reaches this is voiced (has an ``f0_hz``): above the p95 of
white, pink and brown noise (0.3-0.43), below a harmonic tone's (>= 0.6)."""
OCTAVE_TOLERANCE = 1.0
"""Of the autocorrelation peaks within this factor of the best, the shortest lag wins; 1.0 =
the highest peak. (0.85, the usual guard against octave-down errors, made octave-*up*
errors on PSTN: 14 % vs 11 % of voiced frames > 7 st from the call's median, 24 train calls.)"""
LOW_BAND = (300.0, 1000.0)
"""``hf_db``'s reference band (Hz)."""
HIGH_BAND = (2000.0, 3400.0)
"""``hf_db``'s high band (Hz): inside the telephone band, where fricatives show on PSTN."""
HF_FLOOR_DB = -60.0
"""``hf_db`` of a frame with no energy in either band (a silent frame)."""
F0_TAU_MS = 3000.0
"""Time constant of the caller's running pitch (semitones, over voiced clear-speech frames)."""
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
    voicing: float = -1.0
    """Periodicity 0..1 (module docstring); -1 = not measured (a shell that sends levels only,
    or a trace recorded before these features existed)."""
    f0_hz: float = 0.0
    """Pitch of a voiced frame (Hz); 0 when unvoiced or not measured."""
    hf_db: float = 0.0
    """High-band over low-band energy (dB; module docstring); 0 when not measured."""
    rel_f0_st: float = 0.0
    """Pitch relative to the caller's running pitch (semitones); 0 when unvoiced, not measured
    or before the caller's first voiced clear-speech frame."""
    turn_end_p: float = math.nan
    """Smart-turn's probability that the caller's turn is complete, on the audio up to this
    frame's end (``engine/audio/smart_turn.py``); NaN on every frame the shell did not analyse
    (all of them unless ``end_of_turn_rule = "smart-turn"``: one frame per pause, ``CHECK_MS``
    of silence after its last speech frame). ``engine/endpoint.py`` reads it."""

    @property
    def shaped(self) -> bool:
        """Whether voicing, pitch and spectral shape were measured for this frame."""
        return self.voicing >= 0.0


_new = object.__new__
# FrameFeatures' slot descriptors: building through them skips the frozen dataclass's
# per-field object.__setattr__ (the live path builds one per caller frame; issue 17)
(_set_level, _set_rel, _set_snr, _set_edge, _set_voicing, _set_f0, _set_hf, _set_rel_f0,
 _set_turn_p) = (vars(FrameFeatures)[f].__set__ for f in (
    "level_db", "rel_db", "snr_db", "agent_edge_ms", "voicing", "f0_hz", "hf_db", "rel_f0_st",
    "turn_end_p"))


def _shaped_features(level_db: float, rel_db: float, snr_db: float, voicing: float, f0_hz: float,
                     hf_db: float, rel_f0_st: float, agent_edge_ms: float = math.inf) -> FrameFeatures:
    """``FrameFeatures(level_db=..., ..., turn_end_p=nan)`` built without the frozen
    dataclass's ``__init__``: an equal object (the fields are floats the tracker computed)."""
    f: FrameFeatures = _new(FrameFeatures)
    _set_level(f, level_db)
    _set_rel(f, rel_db)
    _set_snr(f, snr_db)
    _set_edge(f, agent_edge_ms)
    _set_voicing(f, voicing)
    _set_f0(f, f0_hz)
    _set_hf(f, hf_db)
    _set_rel_f0(f, rel_f0_st)
    _set_turn_p(f, math.nan)
    return f


def with_agent_edge(f: FrameFeatures, agent_edge_ms: float) -> FrameFeatures:
    """Return ``dataclasses.replace(f, agent_edge_ms=agent_edge_ms)`` (an equal object),
    built through the slot descriptors (the call core sets it on frames heard over the agent)."""
    g: FrameFeatures = _new(FrameFeatures)
    _set_level(g, f.level_db)
    _set_rel(g, f.rel_db)
    _set_snr(g, f.snr_db)
    _set_edge(g, agent_edge_ms)
    _set_voicing(g, f.voicing)
    _set_f0(g, f.f0_hz)
    _set_hf(g, f.hf_db)
    _set_rel_f0(g, f.rel_f0_st)
    _set_turn_p(g, f.turn_end_p)
    return g


class _Plan:
    """Precomputed constants of the shape analysis for one (rate, frame length)."""

    __slots__ = ("frame", "hi_bins", "hi_lag", "inv_nfft", "lo_bins", "lo_lag", "lp_bins", "nfft",
                 "power_floats", "rate", "rw", "taper", "win", "window")

    def __init__(self, rate: int, frame_ms: int) -> None:
        n = rate * frame_ms
        if n % 1000 or rate <= 0:
            raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
        self.rate = rate
        self.frame = n // 1000
        span = max(PITCH_WINDOW_MS, frame_ms)
        self.window = rate * span // 1000
        self.lo_lag = max(2, int(rate / F0_MAX_HZ))
        self.hi_lag = min(self.window - 2, math.ceil(rate / F0_MIN_HZ))
        need = self.window + self.hi_lag + 2
        nfft = 1
        while nfft < need:
            nfft *= 2
        self.nfft = nfft
        self.inv_nfft = np.reciprocal(nfft, dtype=np.float64)  # irfft's "backward" scale
        self.win = np.hanning(self.window + 2)[1:-1]  # no zero end points
        w = np.fft.rfft(self.win, nfft)
        rw = np.fft.irfft(w.real * w.real + w.imag * w.imag, nfft)[: self.hi_lag + 2]
        self.rw = rw / rw[0]
        freqs = np.arange(nfft // 2 + 1) * (rate / nfft)
        self.lp_bins = int(np.searchsorted(freqs, PITCH_LOWPASS_HZ, side="right"))
        self.taper = np.cos(0.5 * np.pi * freqs[: self.lp_bins] / PITCH_LOWPASS_HZ) ** 2
        # contiguous bin ranges of the two bands (slices: cheaper than masks)
        lo0, lo1 = np.searchsorted(freqs, LOW_BAND, side="left")
        hi0, hi1 = np.searchsorted(freqs, (HIGH_BAND[0], min(HIGH_BAND[1], rate / 2)), side="left")
        self.lo_bins = slice(int(lo0), int(lo1))
        self.hi_bins = slice(int(hi0), int(hi1))
        # the live path's power spectrum stops after the highest bin it reads (re, im pairs)
        self.power_floats = 2 * max(self.lp_bins, int(hi1), int(lo1))


_PLANS: dict[tuple[int, int], _Plan] = {}

_AXES = [(0,), (), (0,)]


def _rfft1(x: np.ndarray, plan: _Plan) -> np.ndarray:
    """``np.fft.rfft(x, plan.nfft)`` of a 1-D float64 ``x`` (``len(x) <= nfft``), bit for
    bit: the live path calls the pocketfft ufunc that function calls, without the Python
    wrapper (normalisation look-ups, output allocation by ``empty_like``) -- ~5 us of a
    ~10 us call on a 1024-point transform (issue 17)."""
    if _pfu is None:  # pragma: no cover - numpy < 2
        out: np.ndarray = np.fft.rfft(x, plan.nfft)
        return out
    out = np.empty(plan.nfft // 2 + 1, dtype=np.complex128)
    res: np.ndarray = _pfu.rfft_n_even(x, 1, axes=_AXES, out=out)
    return res


def _irfft1(spec: np.ndarray, plan: _Plan) -> np.ndarray:
    """``np.fft.irfft(spec, plan.nfft)`` of a 1-D ``spec``, bit for bit (see :func:`_rfft1`:
    the same ufunc, with the ``1 / nfft`` scale ``np.fft.irfft`` passes it)."""
    if _pfu is None:  # pragma: no cover - numpy < 2
        out: np.ndarray = np.fft.irfft(spec, plan.nfft)
        return out
    out = np.empty(plan.nfft, dtype=np.float64)
    res: np.ndarray = _pfu.irfft(spec, plan.inv_nfft, axes=_AXES, out=out)
    return res


def _plan(rate: int, frame_ms: int) -> _Plan:
    p = _PLANS.get((rate, frame_ms))
    if p is None:
        p = _PLANS[(rate, frame_ms)] = _Plan(rate, frame_ms)
    return p


def _analyze(plan: _Plan, windows: np.ndarray) -> np.ndarray:
    """Return ``(k, 3)``: voicing, f0_hz, hf_db of ``k`` windows (rows, float64 samples)."""
    k = windows.shape[0]
    x = windows - windows.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(x * plan.win, plan.nfft, axis=1)
    power = spec.real * spec.real + spec.imag * spec.imag
    out = np.zeros((k, 3))
    # spectral shape
    lo = power[:, plan.lo_bins].sum(axis=1)
    hi = power[:, plan.hi_bins].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        hf = 10.0 * np.log10(hi / lo)
    hf[~np.isfinite(hf)] = HF_FLOOR_DB
    hf[(lo <= 0.0) & (hi > 0.0)] = -HF_FLOOR_DB
    out[:, 2] = np.clip(hf, HF_FLOOR_DB, -HF_FLOOR_DB)
    # pitch: autocorrelation of the low-passed, windowed signal over the window's own
    lp = np.sqrt(power)
    lp[:, plan.lp_bins:] = 0.0
    lp[:, : plan.lp_bins] *= plan.taper
    r = np.fft.irfft(lp, plan.nfft, axis=1)[:, : plan.hi_lag + 2]
    r0 = r[:, :1]
    ok = r0[:, 0] > 1e-12 * plan.window
    if not ok.any():
        return out
    rn = np.zeros_like(r)
    rn[ok] = r[ok] / r0[ok] / plan.rw
    a, b = plan.lo_lag, plan.hi_lag
    mid = rn[:, a:b + 1]
    peak = (mid > rn[:, a - 1:b]) & (mid >= rn[:, a + 1:b + 2])
    cand = np.where(peak, mid, -np.inf)
    best = cand.max(axis=1)
    has = np.isfinite(best) & ok
    if not has.any():
        return out
    rows = np.flatnonzero(has)
    best = best[rows]
    # the shortest lag within OCTAVE_TOLERANCE of the best peak (against octave-down errors)
    first = np.argmax(cand[rows] >= (OCTAVE_TOLERANCE * best)[:, None], axis=1)
    lag = first + a
    y0 = rn[rows, lag - 1]
    y1 = rn[rows, lag]
    y2 = rn[rows, lag + 1]
    den = y0 - 2.0 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(den < 0.0, 0.5 * (y0 - y2) / den, 0.0)
    shift = np.clip(shift, -0.5, 0.5)
    voicing = np.clip(best, 0.0, 1.0)
    out[rows, 0] = voicing
    out[rows, 1] = np.where(voicing >= VOICED_MIN, plan.rate / (lag + shift), 0.0)
    return out


def _analyze1(plan: _Plan, x: np.ndarray) -> tuple[float, float, float]:
    """:func:`_analyze` of one window (1-D), with scalar bookkeeping: the live path's cost is
    numpy's per-call overhead, so it makes fewer calls. Same arithmetic, same answers (the
    mean is ``np.mean``'s own sum / count; sums, maximum and "any" are the ufunc reductions
    the array methods call, without their Python wrappers; the transforms are
    :func:`_rfft1` / :func:`_irfft1`; the power ``re * re + im * im`` is taken only up to
    the highest bin read, from the interleaved float view; with ``OCTAVE_TOLERANCE = 1`` the
    shortest lag at the best peak is the first maximum, ``argmax``)."""
    x = x - np.add.reduce(x) / x.shape[0]
    x *= plan.win  # x is this function's own array now
    sq = _rfft1(x, plan).view(np.float64)[: plan.power_floats]
    sq = sq * sq
    power = sq[0::2] + sq[1::2]
    lo = float(np.add.reduce(power[plan.lo_bins]))
    hi = float(np.add.reduce(power[plan.hi_bins]))
    if lo > 0.0 and hi > 0.0:
        hf = min(max(10.0 * math.log10(hi / lo), HF_FLOOR_DB), -HF_FLOOR_DB)
    elif hi > 0.0:
        hf = -HF_FLOOR_DB
    else:
        hf = HF_FLOOR_DB
    lp = np.sqrt(power[: plan.lp_bins])
    lp *= plan.taper
    r = _irfft1(lp, plan)
    r0 = float(r[0])
    if not r0 > 1e-12 * plan.window:
        return 0.0, 0.0, hf
    rn = r[: plan.hi_lag + 2] / r0
    rn /= plan.rw
    a, b = plan.lo_lag, plan.hi_lag
    mid = rn[a:b + 1]
    peak = mid > rn[a - 1:b]
    peak &= mid >= rn[a + 1:b + 2]
    if not np.count_nonzero(peak):
        return 0.0, 0.0, hf
    cand = np.where(peak, mid, -np.inf)
    if OCTAVE_TOLERANCE == 1.0:
        k = int(cand.argmax())
        best = float(cand[k])
    else:  # pragma: no cover - the shipped tolerance is 1.0
        best = float(np.maximum.reduce(cand))
        k = int((cand >= OCTAVE_TOLERANCE * best).argmax())
    lag = k + a
    y0, y1, y2 = float(rn[lag - 1]), float(rn[lag]), float(rn[lag + 1])
    den = y0 - 2.0 * y1 + y2
    shift = min(max(0.5 * (y0 - y2) / den, -0.5), 0.5) if den < 0.0 else 0.0
    voicing = min(max(best, 0.0), 1.0)
    return voicing, (plan.rate / (lag + shift) if voicing >= VOICED_MIN else 0.0), hf


def frame_shapes(pcm: np.ndarray, rate: int, frame_ms: int) -> np.ndarray:
    """Return ``(k, 3)`` float64: ``voicing``, ``f0_hz``, ``hf_db`` of each whole
    ``frame_ms`` frame of int16 ``pcm`` at ``rate`` (module docstring; the pitch window ends
    at the frame's end and reaches back into the previous frames, zeros before the start).
    Raises ValueError for a rate/frame pair that does not give whole samples."""
    plan = _plan(rate, frame_ms)
    k = len(pcm) // plan.frame
    if k == 0:
        return np.zeros((0, 3))
    x = np.asarray(pcm[: k * plan.frame], dtype=np.float64) / 32768.0
    pad = plan.window - plan.frame
    xp = np.concatenate([np.zeros(pad), x])
    wins = np.lib.stride_tricks.sliding_window_view(xp, plan.window)[:: plan.frame][:k]
    out = np.empty((k, 3))
    step = 4096  # bound the memory of one batch
    for i in range(0, k, step):
        out[i:i + step] = _analyze(plan, np.ascontiguousarray(wins[i:i + step]))
    return out


def pitch_track(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(voicing, f0_hz)`` per whole frame of int16 ``pcm`` (``f0_hz`` 0 when
    unvoiced): the reusable pitch tracker (e.g. for the end-of-turn rule's final pitch
    slope, with :func:`f0_slope_st_per_s`)."""
    s = frame_shapes(pcm, rate, frame_ms)
    return s[:, 0].copy(), s[:, 1].copy()


def f0_slope_st_per_s(f0_hz: Sequence[float] | np.ndarray, frame_ms: int = 20,
                      min_voiced: int = 3) -> float:
    """Return the least-squares slope (semitones per second) of the pitch of the voiced
    frames (``f0_hz > 0``) of a run of consecutive frames, against their times; 0.0 with
    fewer than ``min_voiced`` voiced frames. Rising pitch > 0, falling < 0."""
    f = np.asarray(f0_hz, dtype=np.float64)
    idx = np.flatnonzero(f > 0.0)
    if len(idx) < max(2, min_voiced):
        return 0.0
    t = idx * (frame_ms / 1000.0)
    st = 12.0 * np.log2(f[idx] / 100.0)
    tc = t - t.mean()
    den = float(np.dot(tc, tc))
    return float(np.dot(tc, st - st.mean()) / den) if den > 0.0 else 0.0


class FrameAnalyzer:
    """One stream's voicing / pitch / shape analysis, one frame at a time: the same numbers
    as :func:`frame_shapes` on the whole signal (it keeps the audio the pitch window reaches
    back to). Raises ValueError for a frame of the wrong length."""

    __slots__ = ("_hist", "_plan")

    def __init__(self, rate: int, frame_ms: int) -> None:
        self._plan = _plan(rate, frame_ms)
        self._hist = np.zeros(self._plan.window)

    def push(self, pcm: np.ndarray) -> tuple[float, float, float]:
        """Return ``(voicing, f0_hz, hf_db)`` of the next frame (int16 samples)."""
        p = self._plan
        if len(pcm) != p.frame:
            raise ValueError(f"frame of {len(pcm)} samples, expected {p.frame}")
        h = self._hist
        h[:-p.frame] = h[p.frame:]
        np.divide(pcm, 32768.0, out=h[-p.frame:])  # = asarray(pcm, float64) / 32768, in place
        if not np.count_nonzero(h):
            # a digitally silent window: what _analyze1 computes from all-zero samples (no
            # energy in either band, lag-0 autocorrelation 0: unvoiced), without its FFTs
            return 0.0, 0.0, HF_FLOOR_DB
        return _analyze1(p, h)

    def last_level_db(self) -> float:
        """The dBFS level of the frame :meth:`push` took last: :func:`frame_level_db` of it,
        from the samples already scaled into the pitch window."""
        x = self._hist[-self._plan.frame:]
        ms = float(np.add.reduce(x * x)) / x.shape[0]
        return max(10.0 * math.log10(ms), SILENCE_DB) if ms > 0.0 else SILENCE_DB


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
    ms = float(np.add.reduce(x * x)) / x.shape[0]  # np.mean's sum / count, without its wrapper
    return max(10.0 * math.log10(ms), SILENCE_DB) if ms > 0.0 else SILENCE_DB


class FeatureTracker:
    """One caller stream's running speech level, noise floor and pitch.

    ``push(level_db, speech, frame_ms, shape)`` returns the frame's :class:`FrameFeatures`
    and updates the state (``shape``: the frame's ``(voicing, f0_hz, hf_db)`` from
    :func:`frame_shapes` / :class:`FrameAnalyzer`, or None for levels only);
    ``push_pcm(frame, rate, speech, frame_ms)`` measures all of it from the frame's samples.
    Pure: no clock; equal inputs give equal outputs."""

    __slots__ = ("_analyzer", "f0_frames", "floor_db", "speech_db", "speech_st")

    def __init__(self) -> None:
        self.speech_db = INITIAL_SPEECH_DB
        self.floor_db = math.inf
        self.speech_st = 0.0
        """The caller's running pitch, semitones re 100 Hz (valid once ``f0_frames`` > 0)."""
        self.f0_frames = 0
        self._analyzer: FrameAnalyzer | None = None

    def push(self, level_db: float, speech: bool, frame_ms: int = 20,
             shape: tuple[float, float, float] | None = None) -> FrameFeatures:
        """Return the features of a frame of ``level_db`` (its VAD decision ``speech``)."""
        floor = self.floor_db
        if level_db < floor:
            floor = level_db
        else:
            floor += FLOOR_RISE_DB_PER_S * frame_ms / 1000.0
        self.floor_db = floor
        snr = level_db - floor
        clear = speech and snr >= SPEECH_CLEAR_DB
        if shape is None:
            if clear:
                a = frame_ms / SPEECH_TAU_MS
                self.speech_db += a * (level_db - self.speech_db)
            return FrameFeatures(level_db=level_db, rel_db=level_db - self.speech_db, snr_db=snr)
        voicing, f0, hf = shape
        if clear and f0 > 0.0:
            # with voicing known, the speech level is that of voiced frames only (vowel
            # nuclei, like an active speech level meter): onsets, offsets and the VAD's
            # hangover frames, tens of dB down on a digitally silent line, no longer drag it
            a = frame_ms / SPEECH_TAU_MS
            self.speech_db += a * (level_db - self.speech_db)
        rel_st = 0.0
        if f0 > 0.0:
            st = 12.0 * math.log2(f0 / 100.0)
            if self.f0_frames:
                rel_st = st - self.speech_st
            if clear:
                # a running mean over the first frames, then an exponential average
                self.f0_frames += 1
                a = max(frame_ms / F0_TAU_MS, 1.0 / self.f0_frames)
                self.speech_st += a * (st - self.speech_st)
        return _shaped_features(level_db, level_db - self.speech_db, snr, voicing, f0, hf, rel_st)

    def push_pcm(self, pcm: np.ndarray, rate: int, speech: bool, frame_ms: int = 20) -> FrameFeatures:
        """Measure one int16 frame (level, voicing, pitch, shape) and push it. Raises
        ValueError for a frame whose length is not ``frame_ms`` at ``rate``."""
        an = self._analyzer
        if an is None or an._plan.rate != rate or an._plan.frame != rate * frame_ms // 1000:
            an = self._analyzer = FrameAnalyzer(rate, frame_ms)
        shape = an.push(pcm)
        return self.push(an.last_level_db(), speech, frame_ms, shape)


def track(levels_db: Sequence[float] | np.ndarray, speech: Sequence[bool],
          frame_ms: int = 20, shapes: np.ndarray | None = None) -> list[FrameFeatures]:
    """Return the features of every frame of a stream, in order (a fresh tracker);
    ``shapes`` (optional): :func:`frame_shapes` of the same frames."""
    t = FeatureTracker()
    if shapes is None:
        return [t.push(float(lv), bool(s), frame_ms)
                for lv, s in zip(levels_db, speech, strict=False)]
    return [t.push(float(lv), bool(s), frame_ms, (float(sh[0]), float(sh[1]), float(sh[2])))
            for lv, s, sh in zip(levels_db, speech, shapes, strict=False)]


def signal_features(pcm: np.ndarray, rate: int, frame_ms: int,
                    speech: Sequence[bool]) -> list[FrameFeatures]:
    """Return every frame's full features (level, noise floor, voicing, pitch, shape) of a
    whole int16 signal with its VAD decisions ``speech`` (the simulator's path; a live shell
    gets the same numbers from :meth:`FeatureTracker.push_pcm`). One per decision, at most
    one per whole frame."""
    levels = frame_levels_db(pcm, rate, frame_ms)
    k = min(len(levels), len(speech))
    shapes = frame_shapes(pcm[: k * (rate * frame_ms // 1000)], rate, frame_ms)
    return track(levels[:k], list(speech)[:k], frame_ms, shapes)
