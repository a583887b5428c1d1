"""Fixtures for the audio tests: real speech from espeak-ng, resampled to every rate we use."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

SENTENCES = (
    "Hello, I would like to change the delivery address for my order, please.",
    "Yes. It should go to forty two Baker Street, not the old office.",
)
RATES = (8000, 16000, 24000, 32000, 48000)


def _espeak(text: str, path: Path) -> tuple[npt.NDArray[np.int16], int]:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True, timeout=60)
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return data, rate


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[int, npt.NDArray[np.int16]]:
    """Two spoken sentences separated by 600 ms of silence (300 ms lead-in and tail), as
    int16 arrays keyed by sample rate (8, 16, 24, 32, 48 kHz)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (it is in .ci/setup's APT_PACKAGES)")
    tmp = tmp_path_factory.mktemp("speech")
    parts = []
    src_rate = 0
    for i, text in enumerate(SENTENCES):
        data, src_rate = _espeak(text, tmp / f"s{i}.wav")
        parts.append(data)
    gap = np.zeros(int(0.6 * src_rate), dtype=np.int16)
    edge = np.zeros(int(0.3 * src_rate), dtype=np.int16)
    whole = np.concatenate([edge, parts[0], gap, parts[1], edge]).astype(np.float64)
    # normalise to a -6 dBFS peak so every codec sees a healthy level
    whole *= 16384.0 / np.max(np.abs(whole))
    out: dict[int, npt.NDArray[np.int16]] = {}
    for rate in RATES:
        y = soxr.resample(whole, src_rate, rate, quality="VHQ")
        out[rate] = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
    return out
