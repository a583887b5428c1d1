"""Fixtures: a tiny labelled corpus spoken by espeak-ng (real speech, real VAD)."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

RATE = 16000


def _say(text: str, tmp: Path) -> np.ndarray:
    out = tmp / "say.wav"
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(out), text], check=True,
                   capture_output=True)
    with wave.open(str(out), "rb") as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    # espeak-ng speaks at 22050 Hz; resample to 16 kHz for the VAD (linear is enough here)
    n = int(len(pcm) * RATE / rate)
    x = np.interp(np.arange(n) * rate / RATE, np.arange(len(pcm)), pcm)
    nz = np.flatnonzero(np.abs(x) > 200)
    return x[nz[0]:nz[-1] + 1].astype(np.int16)


def make_call(directory: Path, name: str, script: list[tuple[int, str, str, str]],
              agent: list[list[int]], total_ms: int) -> None:
    """Write NAME.wav/NAME.json: each script item (start_ms, text, kind, expect) is spoken
    at start_ms; the segment's end is where the speech ends."""
    audio = np.zeros(total_ms * RATE // 1000, dtype=np.int16)
    rng = np.random.default_rng(0)
    audio += rng.normal(0, 3, len(audio)).astype(np.int16)  # faint line noise
    segs = []
    for start, text, kind, expect in script:
        s = _say(text, directory)
        i = start * RATE // 1000
        audio[i:i + len(s)] = s[: len(audio) - i]
        segs.append({"start_ms": start, "end_ms": start + len(s) * 1000 // RATE,
                     "kind": kind, "expect": expect})
    with wave.open(str(directory / f"{name}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.tobytes())
    (directory / f"{name}.json").write_text(json.dumps(
        {"version": 1, "agent_speech": agent, "segments": segs}))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (see .ci/setup)")
    d = tmp_path_factory.mktemp("corpus")
    make_call(d, "booking", [
        (500, "Hello, I would like to book a table for two tonight", "turn", "reply"),
        (6000, "mhm", "backchannel", "ignore"),
        (9000, "no wait, actually make it three people please", "interruption", "yield"),
        (15000, "yes", "short_answer", "reply"),
    ], agent=[[4300, 11500], [16500, 19000]], total_ms=20000)
    make_call(d, "weather", [
        (400, "What is the weather going to be like tomorrow in Paris", "turn", "reply"),
        (7000, "okay", "backchannel", "ignore"),
        (12500, "and the day after that, will it rain", "turn", "reply"),
    ], agent=[[4500, 10500], [15500, 18000]], total_ms=19000)
    return d
