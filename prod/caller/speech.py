"""Caller speech for tests and demos: real synthetic speech from espeak-ng.

:func:`synth` runs ``espeak-ng`` (a Debian package in .ci/setup) to a WAV, resamples it to the
caller rate with soxr and returns 16-bit mono PCM. :func:`dialogue` joins utterances with
silences, giving a caller script with clear turn ends. Deterministic for a given espeak-ng.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np


def synth(text: str, rate: int = 16000, voice: str = "en-us", wpm: int = 170) -> bytes:
    """Return ``text`` spoken by espeak-ng as 16-bit mono PCM at ``rate``; raises RuntimeError."""
    import soxr

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.wav"
        proc = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text],
            capture_output=True, timeout=30, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed: {proc.stderr.decode(errors='replace')}")
        with wave.open(str(path), "rb") as w:
            src_rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if src_rate != rate:
        pcm = soxr.resample(pcm, src_rate, rate).astype("<i2")
    return pcm.tobytes()


def dialogue(texts: list[str], rate: int = 16000, gap_s: float = 0.8, lead_s: float = 0.2) -> bytes:
    """Utterances separated by ``gap_s`` of silence, after ``lead_s`` of silence."""
    silence = bytes(int(rate * gap_s) * 2)
    parts = [bytes(int(rate * lead_s) * 2)]
    for t in texts:
        parts += [synth(t, rate), silence]
    return b"".join(parts)
