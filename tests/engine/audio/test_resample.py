"""soxr streaming: chunked output equals one-shot output; delay is measured and reported."""

from __future__ import annotations

import numpy as np
import pytest
from clutchcall.engine.audio import AudioError, ConfigError, StreamResampler, measure_delay
from clutchcall.engine.audio.metrics import correlation, snr_db
from hypothesis import given, settings
from hypothesis import strategies as st

PAIRS = [
    (8000, 16000), (16000, 8000), (8000, 24000), (24000, 8000), (16000, 24000),
    (24000, 16000), (48000, 16000), (16000, 48000), (48000, 24000), (24000, 48000),
]


def _chunked(x: np.ndarray, rs: StreamResampler, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = sizes[k % len(sizes)]
        out.append(rs.process(x[i:i + n]))
        i += n
        k += 1
    out.append(rs.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_streaming_equals_one_shot(speech, pair: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    x = speech[a]
    one_shot = StreamResampler(a, b).process(x, last=True)
    assert abs(one_shot.shape[0] - x.shape[0] * b / a) <= 1
    frame = a // 50
    for sizes in ([frame], [a // 100], [1, 0, 7, 333, frame * 3 + 1, 4096]):
        got = _chunked(x, StreamResampler(a, b), sizes)
        assert np.array_equal(got, one_shot), sizes


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=12))
def test_streaming_equals_one_shot_any_chunking(sizes: list[int]) -> None:
    if not any(sizes):
        sizes = [*sizes, 1]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(9000) * 4000).astype(np.int16)
    one_shot = StreamResampler(8000, 24000).process(x, last=True)
    assert np.array_equal(_chunked(x, StreamResampler(8000, 24000), sizes), one_shot)


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_output_is_time_aligned_with_input(speech, pair: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """soxr trims its group delay: output sample k sits at input time k/out_rate, so the
    result matches the same speech rendered directly at the output rate."""
    a, b = pair
    y = StreamResampler(a, b).process(speech[a], last=True)
    ref = speech[b]
    n = min(y.shape[0], ref.shape[0])
    if b > a:  # upsampled: compare against the reference band-limited to the input's band
        ref = StreamResampler(a, b, "VHQ").process(StreamResampler(b, a, "VHQ").process(ref, last=True), last=True)
        n = min(n, ref.shape[0])
    assert correlation(y[:n], ref[:n]) > 0.99
    assert snr_db(ref[:n], y[:n]) > 20.0


def test_saturates_instead_of_wrapping() -> None:
    x = np.full(8000, 32767, dtype=np.int16)
    x[::2] = -32768  # a full-scale square wave overshoots in the filter
    y = StreamResampler(8000, 24000).process(x, last=True)
    assert y.dtype == np.int16 and y.max() <= 32767 and y.min() >= -32768


def test_flush_leaves_the_stream_fresh(speech) -> None:  # type: ignore[no-untyped-def]
    x = speech[16000][:16000]
    rs = StreamResampler(16000, 24000)
    first = _chunked(x, rs, [320])
    assert rs.samples_in == 0 and rs.delay_samples == 0.0
    assert np.array_equal(_chunked(x, rs, [320]), first)
    rs.process(x[:5000])
    rs.reset()
    assert np.array_equal(_chunked(x, rs, [320]), first)


def test_delay_is_reported_while_streaming() -> None:
    rs = StreamResampler(8000, 24000)
    seen = []
    for _ in range(20):
        rs.process(np.zeros(160, dtype=np.int16))
        seen.append(rs.delay_ms)
        # soxr's pending output matches our own count of what is still owed
        owed = rs.samples_in * 3 - rs.samples_out
        assert abs(rs.delay_samples - owed) <= 1.0
    assert max(seen) > 0.0


@pytest.mark.parametrize("pair", [(8000, 24000), (24000, 8000), (48000, 24000), (16000, 24000)])
@pytest.mark.parametrize("quality", ["HQ", "LQ"])
def test_impulse_delay_agrees_with_soxr_pending_output(pair: tuple[int, int], quality: str) -> None:
    r = measure_delay(pair[0], pair[1], quality=quality, chunk_ms=20, clicks=8)
    assert 0.0 <= r.min_ms <= r.mean_ms <= r.max_ms <= 200.0
    assert r.max_ms % 20 == 0  # the lag is a whole number of chunks
    assert abs(r.mean_ms - r.soxr_mean_ms) < 20.0


def test_low_quality_has_lower_delay_than_high() -> None:
    hq = measure_delay(8000, 24000, "HQ", clicks=8)
    lq = measure_delay(8000, 24000, "LQ", clicks=8)
    assert lq.mean_ms < hq.mean_ms


def test_same_rate_is_pass_through() -> None:
    rs = StreamResampler(24000, 24000)
    x = np.arange(100, dtype=np.int16)
    assert np.array_equal(rs.process(x), x) and rs.delay_samples == 0.0


def test_errors() -> None:
    with pytest.raises(ConfigError):
        StreamResampler(22050, 16000)
    with pytest.raises(ConfigError):
        StreamResampler(8000, 16000, quality="best")
    rs = StreamResampler(8000, 16000)
    with pytest.raises(AudioError):
        rs.process(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(AudioError):
        rs.process(np.zeros((2, 10), dtype=np.int16))
