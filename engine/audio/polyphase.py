"""Low-latency rational resampler: a polyphase FIR, frame-aligned, no block buffering.

Theory of operation: soxr's streaming resampler is excellent but processes in internal blocks,
so its output lags the input by 20-60 ms on average at 20 ms chunks (see
:mod:`clutchcall.engine.audio.resample`). For a voice gateway that lag is edge-added turn
latency. :class:`PolyphaseResampler` trades a little stopband depth for latency: for a rate
ratio ``L/M`` in lowest terms (both <= 6: 8<->16, 8<->24, 16<->24, 16<->48, 24<->48 kHz ...)
it upsamples by ``L``, filters with one Kaiser-windowed-sinc lowpass (passband to 85 % of the
lower Nyquist, about 75 dB stopband from the lower Nyquist on) and keeps every ``M``-th
sample -- computed in polyphase form, so each block of ``M`` input samples yields exactly ``L``
output samples from one window of the input times a small fixed matrix. Every chunk of
``k*M`` samples returns ``k*L`` samples at once; the only delay is the filter's group delay
(:attr:`PolyphaseResampler.delay_samples`, 2-4 ms depending on the pair).

Output is causal and not time-shifted (the group delay stays in the signal, as in any real
filter), it is chunk-invariant (the same for any split of the input; arithmetic in float64,
rounded half to even and saturated to int16), and ``process(..., last=True)`` pads the final
partial block with zeros, returns ``ceil(n_in * L / M)`` samples in total and starts afresh.
No clock, no I/O.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from clutchcall.engine.audio.errors import AudioError, ConfigError

__all__ = ["MAX_FACTOR", "PolyphaseResampler"]

MAX_FACTOR = 6
_STOPBAND_DB = 75.0
_PASSBAND = 0.85  # passband edge as a fraction of the lower Nyquist frequency


def ll_supported(in_rate: int, out_rate: int) -> bool:
    """Return True if :class:`PolyphaseResampler` handles ``in_rate -> out_rate``."""
    if in_rate <= 0 or out_rate <= 0:
        return False
    g = math.gcd(in_rate, out_rate)
    return out_rate // g <= MAX_FACTOR and in_rate // g <= MAX_FACTOR


class PolyphaseResampler:
    """Resample one mono PCM16 stream by the rational factor ``out_rate / in_rate``.

    Raises :class:`ConfigError` unless both rates are positive and the reduced factor
    ``L/M`` has ``L, M <= 6``.
    """

    __slots__ = ("_buf", "_hist", "_in_total", "_out_total", "_plans", "_q", "_span", "down",
                 "in_rate", "out_rate", "taps", "up")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ConfigError(f"rates must be positive, got {in_rate!r} -> {out_rate!r}")
        g = math.gcd(in_rate, out_rate)
        up, down = out_rate // g, in_rate // g
        if up > MAX_FACTOR or down > MAX_FACTOR:
            raise ConfigError(
                f"low-latency resampling needs a simple ratio (L/M with L, M <= {MAX_FACTOR}); "
                f"{in_rate} -> {out_rate} Hz is {up}/{down}"
            )
        self.in_rate, self.out_rate, self.up, self.down = in_rate, out_rate, up, down
        fs = in_rate * up  # the filter runs at the upsampled rate
        nyq_low = 0.5 * min(in_rate, out_rate)
        transition = (1.0 - _PASSBAND) * nyq_low
        cutoff = nyq_low - transition / 2.0
        dw = 2.0 * math.pi * transition / fs
        n = math.ceil((_STOPBAND_DB - 8.0) / (2.285 * dw)) + 1
        per_phase = math.ceil(n / up)
        taps = per_phase * up
        beta = 0.1102 * (_STOPBAND_DB - 8.7)
        k = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0
        h = np.sinc(2.0 * cutoff / fs * k) * np.kaiser(taps, beta)
        h *= up / h.sum()  # unity gain after zero-stuffing by `up`
        self.taps = taps
        # Block r of L outputs (m = r*L + s) reads x[r*M - S0 + w] for w in 0..span-1:
        # y[m] = sum_k h[k] * x_up[m*M - k]; x_up[t] is x[t / L] where L divides t.
        s0 = per_phase
        span = s0 + ((up - 1) * down) // up + 1
        q = np.zeros((span, up), dtype=np.float64)
        for s in range(up):
            for w in range(span):
                kk = s * down - up * (w - s0)
                if 0 <= kk < taps:
                    q[w, s] = h[kk]
        self._q = q
        self._span = span
        self._hist = s0
        self._buf: npt.NDArray[np.float64] = np.zeros(s0, dtype=np.float64)
        self._in_total = 0
        self._out_total = 0
        # per chunk length: a work buffer and a window view over it, built once (hot path)
        self._plans: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}

    def _plan(self, n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        plan = self._plans.get(n)
        if plan is None:
            work = np.zeros(self._hist + n, dtype=np.float64)
            win = np.lib.stride_tricks.as_strided(
                work, shape=(n // self.down, self._span),
                strides=(self.down * work.itemsize, work.itemsize), writeable=False,
            )
            plan = (work, win)
            if len(self._plans) < 8:
                self._plans[n] = plan
        return plan

    @property
    def delay_samples(self) -> float:
        """The filter's group delay in output samples, plus any input held for a partial
        block (in output samples)."""
        pending = int(self._buf.shape[0]) - self._hist
        return (self.taps - 1) / 2.0 / self.down + pending * self.up / self.down

    @property
    def delay_ms(self) -> float:
        """:attr:`delay_samples` in milliseconds at ``out_rate``."""
        return 1000.0 * self.delay_samples / self.out_rate

    def process(self, pcm: npt.NDArray[np.int16], last: bool = False) -> npt.NDArray[np.int16]:
        """Feed a chunk of any length; return every output sample now computable.

        With ``last=True`` the final partial block is zero-padded, ``ceil(n_in*L/M)`` samples
        have been returned in total, and the resampler starts afresh.
        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array (state unchanged).
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise AudioError("resampler expects a 1-D int16 array")
        m = self.down
        n = pcm.shape[0]
        hist = self._hist
        if not last and n and n % m == 0 and self._buf.shape[0] == hist:
            # hot path: whole blocks and nothing pending -- no allocation but the result
            work, win = self._plan(n)
            work[:hist] = self._buf
            work[hist:] = pcm
            # same call shape as the general path below, so the arithmetic is identical
            y = np.dot(np.ascontiguousarray(win), self._q).ravel()
            self._buf[:] = work[n:]
            np.rint(y, out=y)
            np.minimum(y, 32767.0, out=y)
            np.maximum(y, -32768.0, out=y)
            fast: npt.NDArray[np.int16] = y.astype(np.int16)
            self._in_total += n
            self._out_total += fast.shape[0]
            return fast
        buf = np.concatenate((self._buf, pcm.astype(np.float64)))
        self._in_total += n
        if last:
            pad = (-(buf.shape[0] - self._hist)) % m
            if pad:
                buf = np.concatenate((buf, np.zeros(pad, dtype=np.float64)))
        blocks = (buf.shape[0] - self._hist) // m
        if blocks > 0:
            win = np.lib.stride_tricks.as_strided(
                buf, shape=(blocks, self._span), strides=(m * buf.itemsize, buf.itemsize),
                writeable=False,
            )
            y = np.dot(np.ascontiguousarray(win), self._q).ravel()
            np.rint(y, out=y)
            np.minimum(y, 32767.0, out=y)
            np.maximum(y, -32768.0, out=y)
            out: npt.NDArray[np.int16] = y.astype(np.int16)
        else:
            out = np.zeros(0, dtype=np.int16)
        self._buf = buf[blocks * m:].copy()
        if last:
            want = -(-self._in_total * self.up // m) - self._out_total
            out = out[:want]
            self.reset()
        else:
            self._out_total += out.shape[0]
        return out

    def reset(self) -> None:
        """Drop all state and start afresh."""
        self._buf = np.zeros(self._hist, dtype=np.float64)
        self._in_total = 0
        self._out_total = 0
