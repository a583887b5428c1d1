"""The caller's audio: its codec (16-bit PCM <-> caller payloads, :class:`CallerCodec`), the
speech marking of what it sends (:func:`speech_flags`, webrtcvad) and its turn ends
(:func:`turn_ends`); the WAV of what it heard is written by the trace format's
:func:`clutchcall.traces.labels.write_wav`, the one WAV writer. Used by
:class:`~clutchcall.prod.caller.client.Caller` and the browser caller's analysis."""

from __future__ import annotations

import numpy as np

from clutchcall.engine.audio import Codec, OpusDecoder, OpusEncoder, alaw_decode, alaw_encode
from clutchcall.engine.audio import ulaw_decode as _ulaw_decode
from clutchcall.engine.audio import ulaw_encode as _ulaw_encode


def speech_flags(pcm: bytes, rate: int, frame_ms: int, aggressiveness: int = 2, hangover_ms: int = 0) -> list[bool]:
    """Per-frame speech decisions for 16-bit mono PCM (webrtcvad; optional hangover).

    No hangover by default: a turn's last speech frame is the last frame the VAD called speech;
    pauses inside a turn are bridged by ``turn_gap_ms`` in :func:`turn_ends` instead.
    """
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    n = rate * frame_ms // 1000 * 2
    flags = []
    hang = 0
    for i in range(0, len(pcm) - n + 1, n):
        frame = pcm[i : i + n]
        sp = vad.is_speech(frame, rate) if rate in (8000, 16000, 32000, 48000) else any(frame)
        if sp:
            hang = hangover_ms // frame_ms
        elif hang > 0:
            hang -= 1
            sp = True
        flags.append(sp)
    return flags


def turn_ends(flags: list[bool], frame_ms: int, turn_gap_ms: int) -> list[int]:
    """Indices of the last speech frame of each turn (followed by >= turn_gap_ms non-speech or the end)."""
    ends = []
    gap_frames = max(1, turn_gap_ms // frame_ms)
    last_speech = None
    quiet = 0
    for i, sp in enumerate(flags):
        if sp:
            last_speech, quiet = i, 0
        else:
            quiet += 1
            if last_speech is not None and quiet == gap_frames:
                ends.append(last_speech)
                last_speech = None
    if last_speech is not None:
        ends.append(last_speech)
    return ends


class CallerCodec:
    """The caller's own encoder/decoder (16-bit PCM <-> caller payloads), on the audio contract."""

    def __init__(self, codec: str, rate: int, frame_ms: int = 20) -> None:
        self.codec = Codec.parse(codec)
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self._enc = OpusEncoder(rate, frame_ms) if self.codec is Codec.OPUS else None
        self._dec = OpusDecoder(rate) if self.codec is Codec.OPUS else None

    def encode(self, pcm: bytes) -> bytes:
        if self.codec is Codec.PCM16:
            return pcm  # (no array: one call per 20 ms frame of every bench caller)
        x = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        if self.codec is Codec.G711_ULAW:
            return bytes(_ulaw_encode(x).tobytes())
        if self.codec is Codec.G711_ALAW:
            return bytes(alaw_encode(x).tobytes())
        assert self._enc is not None
        return self._enc.encode(x)

    def decode(self, payload: bytes) -> bytes:
        if self.codec is Codec.PCM16:
            return payload
        if self.codec is Codec.OPUS:
            assert self._dec is not None
            return bytes(self._dec.decode(payload).astype("<i2").tobytes())
        codes = np.frombuffer(payload, dtype=np.uint8)
        pcm = _ulaw_decode(codes) if self.codec is Codec.G711_ULAW else alaw_decode(codes)
        return bytes(pcm.astype("<i2").tobytes())
