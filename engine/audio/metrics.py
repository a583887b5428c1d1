"""Signal comparison helpers used by the audio tests and benchmarks.

Theory of operation: small, pure numpy functions that say how close one PCM16 signal is to
another (SNR, correlation, the lag that aligns them) and cut a signal into whole frames.
Codecs and resamplers delay and distort audio; these measure by how much. No clock, no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["best_lag", "correlation", "frames_of", "rms", "snr_db"]


def frames_of(pcm: npt.NDArray[np.int16], n: int) -> list[npt.NDArray[np.int16]]:
    """Return ``pcm`` cut into whole frames of ``n`` samples (views; a partial tail is dropped)."""
    return [pcm[i:i + n] for i in range(0, pcm.shape[0] - n + 1, n)]


def rms(pcm: npt.NDArray[np.int16]) -> float:
    """Return the root-mean-square level of ``pcm`` (0.0 for an empty array)."""
    if pcm.shape[0] == 0:
        return 0.0
    x = pcm.astype(np.float64)
    return float(np.sqrt(np.mean(x * x)))


def snr_db(ref: npt.NDArray[np.int16], test: npt.NDArray[np.int16]) -> float:
    """Return the SNR of ``test`` against ``ref`` (same length) in dB."""
    r = ref.astype(np.float64)
    e = r - test.astype(np.float64)
    return float(10.0 * np.log10(max(float(np.sum(r * r)), 1e-9) / max(float(np.sum(e * e)), 1e-9)))


def correlation(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> float:
    """Return the Pearson correlation of two equal-length arrays."""
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def best_lag(ref: npt.NDArray[np.int16], test: npt.NDArray[np.int16], max_lag: int) -> int:
    """Return the lag ``L`` in ``0..max_lag`` maximising the dot product of ``ref[:n]`` with
    ``test[L:L+n]``, i.e. how many samples ``test`` lags ``ref``."""
    n = min(ref.shape[0], test.shape[0] - max_lag)
    r = ref[:n].astype(np.float64)
    t = test[: n + max_lag].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n + max_lag)))
    # cross-correlation by FFT: c[lag] = sum_i r[i] * t[i + lag]
    c = np.fft.irfft(np.conj(np.fft.rfft(r, size)) * np.fft.rfft(t, size), size)
    return int(np.argmax(c[: max_lag + 1]))
