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
:func:`measure_delay` measures it directly: which chunk returns each output sample, compared
with the chunk it belongs to (buffering), and where a click lands in the output (group delay);
``added_latency_ms`` (worst buffering lag + group delay) is what turn latency accounting
should add for this direction when the output is played out continuously, and
``clutchcall bench audio`` prints it per pair. With 20 ms chunks and HQ the buffering lag
averages about 20 ms (max 40) for the 16/24/48 kHz pairs, 40 ms (max 80) for 8<->24 and
60 ms (max 120) for 8<->16 kHz; LQ (passband 80 % instead of 95 %) about half; soxr's own
pending-output figure agrees. The "LL" quality swaps soxr for
:class:`~clutchcall.engine.audio.polyphase.PolyphaseResampler`: no buffering, 1-4 ms of
group delay, at a somewhat higher CPU cost for downsampling.

``process(..., last=True)`` flushes the tail and leaves the stream fresh for a new signal
(e.g. the next agent reply). No clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from clutchcall.engine.audio.errors import AudioError, ConfigError
from clutchcall.engine.audio.polyphase import PolyphaseResampler

__all__ = ["QUALITIES", "SUPPORTED_RATES", "DelayReport", "StreamResampler", "measure_delay"]

SUPPORTED_RATES: frozenset[int] = frozenset({8000, 12000, 16000, 24000, 32000, 44100, 48000})
SOXR_QUALITIES: tuple[str, ...] = ("QQ", "LQ", "MQ", "HQ", "VHQ")
LOW_LATENCY = "LL"  # our polyphase FIR (:mod:`.polyphase`) instead of soxr
QUALITIES: tuple[str, ...] = (*SOXR_QUALITIES, LOW_LATENCY)
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

    ``quality`` is soxr's recipe: "QQ", "LQ", "MQ", "HQ" (default) or "VHQ"; or "LL" for
    :class:`~clutchcall.engine.audio.polyphase.PolyphaseResampler` (2-4 ms of group delay and
    no block buffering, for simple ratios only: not 44.1 kHz). Equal rates make a pass-through
    (no delay). Raises :class:`ConfigError` for an unsupported rate, quality or LL ratio.
    """

    __slots__ = ("_in_total", "_out_total", "_pp", "_rs", "in_rate", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        for name, rate in (("in_rate", in_rate), ("out_rate", out_rate)):
            if rate not in SUPPORTED_RATES:
                raise ConfigError(f"{name} must be one of {sorted(SUPPORTED_RATES)} Hz, got {rate!r}")
        if quality not in QUALITIES:
            raise ConfigError(f"quality must be one of {QUALITIES}, got {quality!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        same = in_rate == out_rate
        self._pp: PolyphaseResampler | None = (
            PolyphaseResampler(in_rate, out_rate) if quality == LOW_LATENCY and not same else None
        )
        self._rs: soxr.ResampleStream | None = (
            None if same or self._pp is not None
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
        """Current lag in output samples: soxr's pending output (output owed for input
        already given), or for "LL" the filter's group delay plus any partial block."""
        if self._pp is not None:
            return self._pp.delay_samples
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
            out_same: npt.NDArray[np.int16] = (
                pcm.copy() if self._pp is None else self._pp.process(pcm, last)
            )
            if last:
                self._in_total = self._out_total = 0
            else:
                self._in_total += pcm.shape[0]
                self._out_total += out_same.shape[0]
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
        if self._pp is not None:
            self._pp.reset()
        self._in_total = 0
        self._out_total = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DelayReport:
    """Measured latency of one resampling direction fed fixed-size chunks (all in ms).

    * ``buffering_mean_ms`` / ``buffering_max_ms``: how much later each output sample is
      returned than the end of the input chunk it belongs to (soxr's block buffering; 0 for
      "LL"), mean and max over the samples of a steady stream.
    * ``group_delay_ms``: how far a click is shifted inside the output stream (soxr trims its
      filter delay: about 0; "LL" keeps it: 1-4 ms).
    * ``added_latency_ms`` = ``buffering_max_ms + group_delay_ms``: what the resampler adds to
      turn latency when its output is played out continuously (a playout buffer has to absorb
      the worst burst lag, not the mean).
    * ``reported_mean_ms``: the mean of :attr:`StreamResampler.delay_ms` after each chunk.
    """

    in_rate: int
    out_rate: int
    quality: str
    chunk_ms: int
    buffering_mean_ms: float
    buffering_max_ms: float
    group_delay_ms: float
    added_latency_ms: float
    reported_mean_ms: float


def measure_delay(
    in_rate: int, out_rate: int, quality: str = "HQ", chunk_ms: int = 20, clicks: int = 8
) -> DelayReport:
    """Measure the latency a :class:`StreamResampler` adds, fed ``chunk_ms`` chunks.

    Buffering: a stream of 60 chunks is fed and, for every output sample, the chunk after
    which it was returned is compared with the chunk whose input time it represents.
    Group delay: ``clicks`` fresh resamplers each get one full-scale click (positions spread
    over a chunk and beyond) and the output peak's time is compared with the click's
    (median over clicks). Returns a :class:`DelayReport`.
    Raises :class:`ConfigError` for unsupported rates, quality or ``chunk_ms``.
    """
    chunk_in = in_rate * chunk_ms // 1000
    chunk_out = out_rate * chunk_ms / 1000.0
    if chunk_in <= 0 or chunk_out < 1:
        raise ConfigError(f"chunk_ms too small: {chunk_ms!r}")
    n_chunks = 60
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(chunk_in * n_chunks) * 3000).astype(np.int16)
    rs = StreamResampler(in_rate, out_rate, quality)
    returned_after: list[npt.NDArray[np.int64]] = []
    reported: list[float] = []
    for c in range(n_chunks):
        y = rs.process(noise[c * chunk_in:(c + 1) * chunk_in])
        returned_after.append(np.full(y.shape[0], c, dtype=np.int64))
        reported.append(rs.delay_ms)
    when = np.concatenate(returned_after)
    own = np.floor(np.arange(when.shape[0]) / chunk_out).astype(np.int64)
    steady = own >= 5  # skip the start-up
    lag_ms = (when - own)[steady] * float(chunk_ms)
    shifts: list[float] = []
    for k in range(clicks):
        click_at = in_rate // 10 + (k * in_rate * 37 // 1000)  # 100 ms + k * 37 ms
        sig = np.zeros(in_rate, dtype=np.int16)
        sig[click_at] = 30000
        y = StreamResampler(in_rate, out_rate, quality).process(sig, last=True)
        peak = int(np.argmax(np.abs(y.astype(np.int32))))
        shifts.append(1000.0 * (peak / out_rate - click_at / in_rate))
    buffering_max = float(lag_ms.max()) if lag_ms.shape[0] else 0.0
    group = float(np.median(shifts))
    return DelayReport(
        in_rate=in_rate, out_rate=out_rate, quality=quality, chunk_ms=chunk_ms,
        buffering_mean_ms=float(lag_ms.mean()) if lag_ms.shape[0] else 0.0,
        buffering_max_ms=buffering_max,
        group_delay_ms=group,
        added_latency_ms=buffering_max + max(group, 0.0),
        reported_mean_ms=float(np.mean(reported[5:])),
    )
