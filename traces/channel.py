"""Channel variants: how the caller's speech reaches the edge (clean, PSTN, noisy, Opus).

Theory of operation: every call is rendered first as a clean 16 kHz float signal (caller
speech plus labelled noise bursts); :func:`apply_channel` then turns it into the int16 PCM
that the edge would decode for one channel variant:

* ``clean16`` -- 16 kHz, unchanged.
* ``noisy16`` -- 16 kHz plus stationary background noise (pink or babble-like brown) at a
  given SNR, measured against the speech's active power.
* ``pstn8`` -- 300-3400 Hz band-pass (a linear-phase FIR, so no timing shift), 8 kHz, then a
  G.711 mu-law encode/decode round trip.
* ``opus48`` -- 48 kHz, Opus encode/decode round trip in 20 ms frames, with the encoder's
  lookahead removed so labels stay aligned.

Codecs come from ``clutchcall.engine.audio`` (g711, opus: the same code the edge runs);
resampling is soxr's one-shot ``resample`` (the engine's ``StreamResampler`` wraps the same
library, streaming, with a delay we would only have to undo). Every step is deterministic
for the same input on the same machine.
"""

from __future__ import annotations

import numpy as np
import soxr

from clutchcall.engine.audio import g711
from clutchcall.engine.audio.opus import OpusDecoder, OpusEncoder
from clutchcall.engine.errors import ClutchCallError

CHANNELS: dict[str, int] = {"clean16": 16000, "noisy16": 16000, "pstn8": 8000, "opus48": 48000}
SOURCE_RATE = 16000


class ChannelError(ClutchCallError, RuntimeError):
    """A channel variant cannot be rendered (unknown name, codec unavailable)."""


def to_int16(x: np.ndarray) -> np.ndarray:
    """Return float samples in [-1, 1] as int16 (rounded, clipped)."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def bandpass_fir(rate: int, low_hz: float, high_hz: float, taps: int = 255) -> np.ndarray:
    """Return a linear-phase windowed-sinc band-pass FIR (odd ``taps``, Blackman window)."""
    n = np.arange(taps) - (taps - 1) / 2
    def lowpass(fc: float) -> np.ndarray:
        return 2 * fc / rate * np.sinc(2 * fc / rate * n)
    h = (lowpass(high_hz) - lowpass(low_hz)) * np.blackman(taps)
    return h.astype(np.float64)


def bandpass(x: np.ndarray, rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Return ``x`` band-passed to ``[low_hz, high_hz]`` with no delay (centred FIR)."""
    return np.convolve(x.astype(np.float64), bandpass_fir(rate, low_hz, high_hz), mode="same")


def colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Return ``n`` samples of 1/f**exponent noise (0: white, 1: pink, 2: brown), unit RMS."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (exponent / 2)
    y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def add_noise(x: np.ndarray, active: np.ndarray, snr_db: float, rng: np.random.Generator,
              exponent: float = 1.0) -> np.ndarray:
    """Return ``x`` plus stationary noise at ``snr_db`` below the power of ``x`` over the
    boolean mask ``active`` (the speech samples)."""
    p_speech = float(np.mean(x[active] ** 2)) if active.any() else float(np.mean(x**2))
    noise = colored_noise(len(x), rng, exponent)
    return x + noise * np.sqrt(p_speech / 10 ** (snr_db / 10))


def _ulaw_roundtrip(pcm: np.ndarray) -> np.ndarray:
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def _opus_roundtrip(pcm: np.ndarray, rate: int) -> np.ndarray:
    enc, dec = OpusEncoder(rate, frame_ms=20), OpusDecoder(rate)
    frame = rate // 50
    skip = int(enc.lookahead_samples)
    padded = np.concatenate([pcm, np.zeros(skip + (-(len(pcm) + skip)) % frame, np.int16)])
    out = [dec.decode(enc.encode(padded[i:i + frame])) for i in range(0, len(padded), frame)]
    return np.concatenate(out)[skip: skip + len(pcm)].astype(np.int16)


def check_available(channels: set[str]) -> None:
    """Raise :class:`ChannelError` now if one of ``channels`` is unknown or its codec is
    missing (so a build fails before writing anything)."""
    for c in sorted(channels):
        if c not in CHANNELS:
            raise ChannelError(f"unknown channel {c!r} (one of {', '.join(CHANNELS)})")
    if "opus48" in channels:
        try:
            OpusEncoder(48000, frame_ms=20)
        except ClutchCallError as exc:  # libopus missing or unusable
            raise ChannelError(f"opus48 needs libopus: {exc}") from exc


def apply_channel(x: np.ndarray, channel: str, *, active: np.ndarray | None = None,
                  snr_db: float | None = None, rng: np.random.Generator | None = None,
                  noise_exponent: float = 1.0) -> tuple[int, np.ndarray]:
    """Render clean 16 kHz float ``x`` through ``channel``; return ``(rate, int16 pcm)``.

    ``noisy16`` needs ``active`` (speech mask), ``snr_db`` and ``rng``. Raises
    :class:`ChannelError` for an unknown channel or a missing codec."""
    if channel == "clean16":
        return 16000, to_int16(x)
    if channel == "noisy16":
        if active is None or snr_db is None or rng is None:
            raise ChannelError("noisy16 needs active, snr_db and rng")
        return 16000, to_int16(add_noise(x, active, snr_db, rng, noise_exponent))
    if channel == "pstn8":
        y = bandpass(x, SOURCE_RATE, 300.0, 3400.0)
        y8 = np.asarray(soxr.resample(y, SOURCE_RATE, 8000, quality="HQ"))
        return 8000, _ulaw_roundtrip(to_int16(y8))
    if channel == "opus48":
        y48 = np.asarray(soxr.resample(x.astype(np.float64), SOURCE_RATE, 48000, quality="HQ"))
        return 48000, _opus_roundtrip(to_int16(y48), 48000)
    raise ChannelError(f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
