"""Caller speech for tests and demos: real synthetic speech from espeak-ng.

:func:`synth` renders with ``espeak-ng`` (a Debian package in .ci/setup) through the embedded
model's renderer (:mod:`clutchcall.prod.model.speech`), resampled to the caller rate with soxr,
and returns 16-bit mono PCM. :func:`dialogue` joins utterances with
silences, giving a caller script with clear turn ends. Deterministic for a given espeak-ng.
"""

from __future__ import annotations


def synth(text: str, rate: int = 16000, voice: str = "en-us", wpm: int = 170) -> bytes:
    """Return ``text`` spoken by espeak-ng as 16-bit mono PCM at ``rate``; raises RuntimeError
    (:class:`~clutchcall.prod.model.speech.SpeechError`) or ConfigError (espeak-ng missing).
    The one espeak-ng rendering of ``prod``, the embedded model's
    (:func:`~clutchcall.prod.model.speech.render_speech_sync`), at the caller's defaults."""
    from clutchcall.prod.model.speech import render_speech_sync

    return render_speech_sync(text, rate, voice, wpm)


def dialogue(texts: list[str], rate: int = 16000, gap_s: float = 0.8, lead_s: float = 0.2) -> bytes:
    """Utterances separated by ``gap_s`` of silence, after ``lead_s`` of silence."""
    silence = bytes(int(rate * gap_s) * 2)
    parts = [bytes(int(rate * lead_s) * 2)]
    for t in texts:
        parts += [synth(t, rate), silence]
    return b"".join(parts)
