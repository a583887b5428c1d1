"""Streaming sample-rate conversion with soxr, one resampler per stream and direction.

Theory of operation: :class:`StreamResampler` wraps one ``soxr.ResampleStream`` (mono). PCM16
goes in and out, but soxr runs in float32 on the raw sample values and we round (half to even)
and saturate back to int16 ourselves: soxr's own int16 output path dithers, which makes the
output depend on how the input was chunked, while the float path is exactly chunk-invariant.
So for any split of a signal into chunks, the concatenated outputs of ``process(chunk)`` plus
``process(last_chunk, last=True)`` equal ``process(whole, last=True)`` sample for sample (the
tests check this for every supported pair and several chunkings).

Latency: soxr trims its filter's group delay from the start of the output, so output sample
``k`` is aligned with input time ``k / out_rate``; the price is that output lags input. At any
moment the lag is soxr's pending output, which :attr:`StreamResampler.delay_samples` reports
(output samples; :attr:`delay_ms` in ms). soxr works in internal blocks, so with 20 ms input
chunks the output arrives in bursts and the lag saw-tooths between a floor and a peak.
:func:`measure_delay` measures it the direct way, with impulses: it feeds a click at a known
input time in ``chunk_ms`` chunks and records when (in input time) the output containing the
click's peak is returned; ``mean_ms`` / ``max_ms`` over click positions spread across a block
are what turn latency accounting should add for this direction (``clutchcall bench audio``
prints them per pair and quality). Measured with 20 ms chunks, HQ adds on average 18.75 ms
(max 40) for the 16/24/48 kHz pairs, 40 ms (max 80) for 8<->24 and 63.75 ms (max 100) for
8<->16 kHz; LQ (passband 80 % instead of 95 %) adds 6-27 ms; "QQ" (cubic, no anti-alias
filter) adds none but aliases. soxr's own pending-output figure agrees within a few ms.

``process(..., last=True)`` flushes the tail and leaves the stream fresh for a new signal
(e.g. the next agent reply). No clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]
from clutchcall.engine.audio.errors import AudioError, ConfigError

__all__ = ["QUALITIES", "SUPPORTED_RATES", "DelayReport", "StreamResampler", "measure_delay"]

SUPPORTED_RATES: frozenset[int] = frozenset({8000, 12000, 16000, 24000, 32000, 44100, 48000})
QUALITIES: tuple[str, ...] = ("QQ", "LQ", "MQ", "HQ", "VHQ")
_EMPTY_F32: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)


def _to_int16(y: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    np.rint(y, out=y)
    # saturate; np.minimum/np.maximum in place cost half of np.clip's call overhead
    np.minimum(y, 32767.0, out=y)
    np.maximum(y, -32768.0, out=y)
    out: npt.NDArray[np.int16] = y.astype(np.int16)
    return out


class StreamResampler:
    """Resample one mono PCM16 stream from ``in_rate`` to ``out_rate`` (Hz).

    ``quality`` is soxr's recipe: "QQ", "LQ", "MQ", "HQ" (default) or "VHQ". Equal rates make
    a pass-through (no delay). Raises :class:`ConfigError` for an unsupported rate or quality.
    """

    __slots__ = ("_in_total", "_out_total", "_rs", "in_rate", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        for name, rate in (("in_rate", in_rate), ("out_rate", out_rate)):
            if rate not in SUPPORTED_RATES:
                raise ConfigError(f"{name} must be one of {sorted(SUPPORTED_RATES)} Hz, got {rate!r}")
        if quality not in QUALITIES:
            raise ConfigError(f"quality must be one of {QUALITIES}, got {quality!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._rs: soxr.ResampleStream | None = (
            None if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )
        self._in_total = 0
        self._out_total = 0

    @property
    def ratio(self) -> float:
        """``out_rate / in_rate``."""
        return self.out_rate / self.in_rate

    @property
    def delay_samples(self) -> float:
        """Output samples owed for input already given (soxr's pending output) right now."""
        if self._rs is None:
            return 0.0
        return float(self._rs.delay())

    @property
    def delay_ms(self) -> float:
        """:attr:`delay_samples` in milliseconds at ``out_rate``."""
        return 1000.0 * self.delay_samples / self.out_rate

    @property
    def samples_in(self) -> int:
        """Input samples consumed since the stream began (or since the last flush)."""
        return self._in_total

    @property
    def samples_out(self) -> int:
        """Output samples returned since the stream began (or since the last flush)."""
        return self._out_total

    def process(self, pcm: npt.NDArray[np.int16], last: bool = False) -> npt.NDArray[np.int16]:
        """Feed a chunk of any length (0 included); return the output soxr has ready.

        With ``last=True`` the stream's tail is flushed too and the resampler starts afresh.
        Returns a new int16 array (it may be empty: soxr emits in bursts).
        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array (state unchanged).
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise AudioError("resampler expects a 1-D int16 array")
        if self._rs is None:
            out_same: npt.NDArray[np.int16] = pcm.copy()
            return out_same
        x = pcm.astype(np.float32) if pcm.shape[0] else _EMPTY_F32
        y = self._rs.resample_chunk(x, last=last)
        out = _to_int16(y)
        if last:
            self._rs.clear()
            self._in_total = 0
            self._out_total = 0
        else:
            self._in_total += pcm.shape[0]
            self._out_total += out.shape[0]
        return out

    def flush(self) -> npt.NDArray[np.int16]:
        """Return the stream's remaining output and start afresh (``process(empty, last=True)``)."""
        return self.process(np.zeros(0, dtype=np.int16), last=True)

    def reset(self) -> None:
        """Drop everything pending and start afresh (e.g. after a barge-in cancel)."""
        if self._rs is not None:
            self._rs.clear()
        self._in_total = 0
        self._out_total = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DelayReport:
    """Measured latency of one resampling direction with fixed-size input chunks."""

    in_rate: int
    out_rate: int
    quality: str
    chunk_ms: int
    mean_ms: float  # input time fed -> output returned, mean over click positions
    max_ms: float
    min_ms: float
    soxr_mean_ms: float  # soxr's own pending-output figure, mean over chunk boundaries


def measure_delay(
    in_rate: int, out_rate: int, quality: str = "HQ", chunk_ms: int = 20, clicks: int = 16
) -> DelayReport:
    """Measure the input-to-output lag of a :class:`StreamResampler` with impulses.

    For each of ``clicks`` positions spread over 400 ms, a fresh resampler is fed silence with
    one full-scale click, in ``chunk_ms`` chunks; the click's lag is how much more input (in
    ms) had to be fed, after the chunk holding the click, before the output containing the
    click's peak came back: the latency the resampler adds on top of framing. Returns the mean,
    max and min of those lags, and the mean of soxr's pending-output figure after each chunk.
    Raises :class:`ConfigError` for unsupported rates or quality.
    """
    chunk_in = in_rate * chunk_ms // 1000
    if chunk_in <= 0:
        raise ConfigError(f"chunk_ms too small: {chunk_ms!r}")
    total_chunks = 40 + 1000 // chunk_ms  # 1 s of lead-in/tail beyond the 400 ms spread
    lags: list[float] = []
    pending: list[float] = []
    for k in range(clicks):
        rs = StreamResampler(in_rate, out_rate, quality)
        sig = np.zeros(chunk_in * total_chunks, dtype=np.int16)
        click_at = in_rate // 5 + (k * in_rate * 2 // 5) // clicks  # 200..600 ms
        sig[click_at] = 30000
        click_out = click_at * out_rate / in_rate
        got = 0
        for c in range(total_chunks):
            y = rs.process(sig[c * chunk_in:(c + 1) * chunk_in])
            if k == 0:
                pending.append(rs.delay_ms)
            got += y.shape[0]
            if got > click_out + 1:
                lags.append(float(chunk_ms * (c - click_at // chunk_in)))
                break
    arr = np.asarray(lags, dtype=np.float64)
    return DelayReport(
        in_rate=in_rate, out_rate=out_rate, quality=quality, chunk_ms=chunk_ms,
        mean_ms=float(arr.mean()), max_ms=float(arr.max()), min_ms=float(arr.min()),
        soxr_mean_ms=float(np.mean(pending[5:])) if len(pending) > 5 else 0.0,
    )
