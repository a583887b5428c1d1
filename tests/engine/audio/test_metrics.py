"""The comparison helpers the other audio tests rely on measure what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from clutchcall.engine.audio.metrics import best_lag, correlation, frames_of, rms, snr_db


@pytest.mark.parametrize("lag", [0, 1, 7, 333, 400])
def test_best_lag_finds_a_known_delay(lag: int) -> None:
    x = (np.random.default_rng(1).standard_normal(5000) * 1000).astype(np.int16)
    y = np.concatenate([np.zeros(lag, np.int16), x])
    assert best_lag(x, y, 400) == lag


def test_snr_correlation_rms_frames() -> None:
    x = (np.random.default_rng(2).standard_normal(8000) * 1000).astype(np.int16)
    noisy = (x + (np.random.default_rng(3).standard_normal(8000) * 100)).astype(np.int16)
    assert 19.0 < snr_db(x, noisy) < 21.0
    assert correlation(x, noisy) > 0.99 and abs(correlation(x, x[::-1])) < 0.1
    assert rms(np.full(10, -3, np.int16)) == 3.0 and rms(np.zeros(0, np.int16)) == 0.0
    fr = frames_of(x, 160)
    assert len(fr) == 50 and all(f.shape == (160,) for f in fr)
