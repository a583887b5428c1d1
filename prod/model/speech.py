"""Real speech for the embedded model: espeak-ng rendered, resampled with soxr, cached.

Theory of operation: :func:`render_speech` runs ``espeak-ng --stdout`` (a WAV stream at the
voice's native rate, 22.05 kHz mono PCM16) as a subprocess, resamples the samples to the
requested rate with soxr and returns PCM16 little-endian bytes. espeak-ng is deterministic for
a given text, voice and speed, so :class:`SpeechCache` keeps one rendering per
(text, voice, speed, rate) and reuses it; concurrent requests for the same key share one
subprocess.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import wave

import numpy as np
import soxr

from clutchcall.engine.errors import ConfigError


class SpeechError(RuntimeError):
    """espeak-ng failed or produced no usable audio."""


def _decode_wav(data: bytes, rate: int) -> bytes:
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2:
                raise SpeechError(f"espeak-ng: expected 16-bit samples, got {w.getsampwidth() * 8}")
            src_rate, channels = w.getframerate(), w.getnchannels()
            raw = w.readframes(1 << 30)  # --stdout writes a streaming header: read to the end
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"espeak-ng: bad WAV output: {exc}") from exc
    pcm = np.frombuffer(raw[: len(raw) - len(raw) % (2 * channels)], dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels)[:, 0]
    if pcm.size == 0:
        raise SpeechError("espeak-ng: produced no audio")
    if src_rate != rate:
        pcm = soxr.resample(pcm.astype(np.int16), src_rate, rate, quality="HQ")
    return np.asarray(pcm, dtype="<i2").tobytes()


def _argv(text: str, voice: str, speed: int) -> list[str]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ConfigError("espeak-ng is not installed (apt-get install espeak-ng)")
    return [exe, "--stdout", "-v", voice, "-s", str(speed), "--", text]


def render_speech_sync(text: str, rate: int = 24000, voice: str = "en-us", speed: int = 175) -> bytes:
    """Render ``text``; return PCM16 LE mono bytes at ``rate``. Raises :class:`SpeechError`,
    or :class:`ConfigError` when espeak-ng is missing."""
    if not text.strip():
        raise SpeechError("empty text")
    proc = subprocess.run(_argv(text, voice, speed), capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise SpeechError(f"espeak-ng exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return _decode_wav(proc.stdout, rate)


async def render_speech(text: str, rate: int = 24000, voice: str = "en-us", speed: int = 175) -> bytes:
    """Async :func:`render_speech_sync` (subprocess on the loop; no thread)."""
    if not text.strip():
        raise SpeechError("empty text")
    proc = await asyncio.create_subprocess_exec(
        *_argv(text, voice, speed), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise SpeechError(f"espeak-ng exited {proc.returncode}: {err.decode(errors='replace')}")
    return _decode_wav(out, rate)


class SpeechCache:
    """Renders each (text, voice, speed, rate) once; returns the cached PCM16 bytes after."""

    def __init__(self, voice: str = "en-us", speed: int = 175) -> None:
        self.voice = voice
        self.speed = speed
        self._done: dict[tuple[str, str, int, int], bytes] = {}
        self._pending: dict[tuple[str, str, int, int], asyncio.Future[bytes]] = {}

    async def get(self, text: str, rate: int = 24000) -> bytes:
        """Return ``text`` as PCM16 LE bytes at ``rate``; raises :class:`SpeechError`."""
        key = (text, self.voice, self.speed, rate)
        if key in self._done:
            return self._done[key]
        fut = self._pending.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._pending[key] = fut
            try:
                pcm = await render_speech(text, rate, self.voice, self.speed)
            except BaseException as exc:
                del self._pending[key]
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else SpeechError("cancelled"))
                    fut.exception()  # mark retrieved
                raise
            self._done[key] = pcm
            del self._pending[key]
            fut.set_result(pcm)
            return pcm
        return await asyncio.shield(fut)
