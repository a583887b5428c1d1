"""Smart-turn v3.2 as an end-of-turn analyzer: our Whisper log-mel, the pinned ONNX model.

Theory of operation: Pipecat's smart-turn v3.2 (BSD-2, 8.7 MB int8 ONNX, shipped inside the
``pipecat-ai`` wheel) reads the last 8 s of 16 kHz caller audio as a Whisper log-mel
spectrogram and returns the probability that the turn is complete. Here:

* :func:`log_mel` -- the Whisper feature extractor (``n_fft`` 400, hop 160, 80 Slaney mel
  bands 0-8 kHz, periodic Hann, reflect-padded centred frames, the last frame dropped, log10
  clamped 8 decades below the peak, scaled ``(x + 4) / 4``) on a zero-mean unit-variance
  waveform, written here in numpy from that definition (``tests/engine/test_smart_turn.py``
  checks it numerically against Pipecat's own extractor). Pure.
* :func:`window` -- the model's input window: the last :data:`WINDOW_S` s of audio ending at a
  given sample, zero-padded in front when the call is shorter. Pure.
* :class:`SmartTurn` -- the ONNX session (``onnxruntime``, the ``[smartturn]`` extra; one
  intra-op thread, sequential execution, so a probability is a deterministic function of
  the audio). :meth:`SmartTurn.probability` is I/O-free but not cheap (~175 ms measured on
  this loaded 2-core machine, ``sim/README.md``), so it runs once per pause, in the shell;
  the engine only reads the result (``engine/endpoint.py``).
* :class:`LiveProbe` / :func:`pause_probabilities` -- the shell's half of the rule: which
  frame analyses a pause (the one ending :data:`CHECK_MS` of silence) and its probability,
  live (the edge, the last 8 s kept per call) or over a whole call (the simulator).

The model's bytes come from ``clutchcall.traces.smart_turn_model`` (I/O stays out of the
engine): cached and SHA-256 pinned like the ARCTIC samples, :data:`MODEL_SHA256` checked again
here.

The runtime never imports pipecat; only the tests do, to check the extractor and the
probabilities against Pipecat's analyzer.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from clutchcall.engine.errors import ClutchCallError

RATE = 16000
"""The model's sample rate (Hz)."""
WINDOW_S = 8
"""Seconds of audio the model reads (the last ones)."""
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = WINDOW_S * RATE // HOP
"""Log-mel frames the model reads (800)."""

MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
"""SHA-256 of ``smart-turn-v3.2-cpu.onnx`` as shipped in ``pipecat-ai==1.14.0``."""


class SmartTurnError(ClutchCallError, RuntimeError):
    """The smart-turn model is unavailable (onnxruntime missing, download failed, digest
    mismatch) or was given unusable audio."""


# ------------------------------------------------------------------------------ features
def _hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    lin = f * (3.0 / 200.0)
    step = np.log(6.4) / 27.0
    return np.where(f < 1000.0, lin, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / step)


def _mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    step = np.log(6.4) / 27.0
    return np.where(m < 15.0, m * (200.0 / 3.0), 1000.0 * np.exp(step * (m - 15.0)))


@lru_cache(maxsize=1)
def _mel_matrix() -> npt.NDArray[np.float64]:
    """(N_MELS, N_FFT//2+1) triangular filters, area-normalised (Slaney)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(RATE / 2.0)),
                                   N_MELS + 2))
    bins = np.linspace(0.0, RATE / 2.0, N_FFT // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins[None, :] - lo) / (mid - lo)
    fall = (hi - bins[None, :]) / (hi - mid)
    tri = np.clip(np.minimum(rise, fall), 0.0, None)
    return np.asarray(tri * (2.0 / (hi - lo)), dtype=np.float64)


@lru_cache(maxsize=1)
def _hann() -> npt.NDArray[np.float64]:
    n = np.arange(N_FFT)
    return np.asarray(0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT), dtype=np.float64)


def log_mel(audio: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Return the (80, 800) Whisper log-mel features of exactly 8 s of 16 kHz float audio
    (``window`` makes such a window). Raises :class:`SmartTurnError` on another length."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size != WINDOW_S * RATE:
        raise SmartTurnError(f"log_mel: expected {WINDOW_S * RATE} samples, got shape {x.shape}")
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))
    half = N_FFT // 2
    padded = np.pad(x.astype(np.float64), (half, half), mode="reflect")
    idx = np.arange(N_FRAMES)[:, None] * HOP + np.arange(N_FFT)[None, :]
    power = np.abs(np.fft.rfft(padded[idx] * _hann(), axis=1)) ** 2  # (800, 201)
    mel = np.log10(np.maximum(power @ _mel_matrix().T, 1e-10)).T  # (80, 800)
    mel = np.maximum(mel, mel.max() - 8.0)
    out: npt.NDArray[np.float32] = ((mel + 4.0) / 4.0).astype(np.float32)
    return out


def window(audio: npt.ArrayLike, end: int | None = None) -> npt.NDArray[np.float32]:
    """Return the last :data:`WINDOW_S` s of 16 kHz ``audio`` up to sample ``end`` (default:
    its end), zero-padded in front to exactly 8 s. Int16 PCM is scaled to [-1, 1)."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise SmartTurnError(f"window: expected mono audio, got shape {a.shape}")
    x = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
    stop = x.size if end is None else max(0, min(int(end), x.size))
    n = WINDOW_S * RATE
    seg = x[max(0, stop - n):stop]
    if seg.size < n:
        seg = np.concatenate([np.zeros(n - seg.size, dtype=np.float32), seg])
    return seg


# ------------------------------------------------------------------------------ inference
class SmartTurn:
    """The smart-turn v3.2 session over the model's bytes (``clutchcall.traces.smart_turn_model``
    fetches and checks them): :meth:`probability` of "turn complete" for a window of audio.
    One intra-op thread, sequential execution (deterministic)."""

    def __init__(self, model: bytes) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the install
            raise SmartTurnError("smart-turn needs onnxruntime (pip install 'clutchcall[smartturn]')") from e
        if hashlib.sha256(model).hexdigest() != MODEL_SHA256:
            raise SmartTurnError(f"smart-turn model: sha256 does not match the pinned {MODEL_SHA256}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self._session: Any = ort.InferenceSession(model, sess_options=so,
                                                  providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def probability(self, audio: npt.ArrayLike, end: int | None = None) -> float:
        """Return P(turn complete) for the 8 s of 16 kHz ``audio`` ending at sample ``end``."""
        feats = log_mel(window(audio, end))[None, :, :]
        out = self._session.run(None, {self._input: feats})
        return float(np.asarray(out[0]).reshape(-1)[0])



# ------------------------------------------------------------------------------ the shell's probe
CHECK_MS = 200
"""Silence (ms after the last speech frame) at which a pause is analysed: Pipecat runs the
model when its VAD has seen 200 ms of silence, on audio that includes that silence."""


def check_frames(speech: npt.ArrayLike, frame_ms: int, check_ms: int = CHECK_MS) -> list[int]:
    """Return the indices of the frames that end ``check_ms`` of silence after a speech frame
    (one per pause that lasts that long): where the shell analyses the pause. Pure."""
    if check_ms % frame_ms:
        raise SmartTurnError(f"check_ms {check_ms} is not a whole number of {frame_ms} ms frames")
    k = check_ms // frame_ms
    out: list[int] = []
    run = -1  # silence frames since the last speech frame (-1: no speech yet)
    for i, s in enumerate(np.asarray(speech, dtype=bool).tolist()):
        if s:
            run = 0
        elif run >= 0:
            run += 1
            if run == k:
                out.append(i)
    return out


def pause_probabilities(model: SmartTurn, pcm: npt.ArrayLike, rate: int, speech: npt.ArrayLike,
                        frame_ms: int, check_ms: int = CHECK_MS) -> dict[int, float]:
    """Return ``{frame index: P(turn complete)}`` for every :func:`check_frames` frame of a
    whole call (offline shells: the simulator), each on the audio up to that frame's end --
    what a live shell holding the last 8 s would have at that moment. 8 kHz audio is
    resampled to 16 kHz first (soxr, as Pipecat does)."""
    x = np.asarray(pcm)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    if rate != RATE:
        import soxr

        x = np.asarray(soxr.resample(x, rate, RATE, quality="HQ"), dtype=np.float32)
    per = RATE * frame_ms // 1000
    return {i: model.probability(x, (i + 1) * per) for i in check_frames(speech, frame_ms, check_ms)}


class LiveProbe:
    """A live shell's half of the smart-turn rule, per call: keeps the last 8 s of the
    caller's audio and, on the frame that ends :data:`CHECK_MS` of silence after speech,
    returns the model's P(turn complete) on the audio up to that frame (NaN on every other
    frame): the frames of :func:`check_frames`, and at 16 kHz the probabilities of
    :func:`pause_probabilities` on the whole call. ``rate``: the frames' sample rate (8 kHz
    is resampled to 16 kHz per analysis). The analysis runs synchronously, once per pause
    (tens of ms; ``sim/README.md`` has the measured cost)."""

    def __init__(self, model: SmartTurn, rate: int, frame_ms: int, check_ms: int = CHECK_MS) -> None:
        if check_ms % frame_ms:
            raise SmartTurnError(f"check_ms {check_ms} is not a whole number of {frame_ms} ms frames")
        self._model = model
        self._rate = rate
        self._k = check_ms // frame_ms
        self._buf = np.zeros(WINDOW_S * rate, dtype=np.float32)
        self._pos = 0  # next write index (the ring's oldest sample once full)
        self._filled = 0
        self._run = -1  # silence frames since the last speech frame (-1: no speech yet)

    def push(self, pcm: npt.ArrayLike, speech: bool) -> float:
        """Take one frame (int16 or float PCM at ``rate``) and its VAD decision; return the
        probability on the check frame, else NaN."""
        x = np.asarray(pcm)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        size = self._buf.size
        x = x[-size:]
        first = min(x.size, size - self._pos)
        self._buf[self._pos:self._pos + first] = x[:first]
        self._buf[:x.size - first] = x[first:]
        self._pos = (self._pos + x.size) % size
        self._filled = min(size, self._filled + x.size)
        if speech:
            self._run = 0
            return math.nan
        if self._run < 0:
            return math.nan
        self._run += 1
        if self._run != self._k:
            return math.nan
        ring = np.concatenate((self._buf[self._pos:], self._buf[:self._pos]))
        audio = ring[size - self._filled:]
        if self._rate != RATE:
            import soxr

            audio = np.asarray(soxr.resample(audio, self._rate, RATE, quality="HQ"), dtype=np.float32)
        return self._model.probability(audio)
