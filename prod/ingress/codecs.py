"""The caller-leg's thin view of codecs, on the audio contract (clutchcall.engine.audio).

Theory of operation
-------------------
The ingress never transcodes: it carries caller-codec payloads and tells the pipeline which
codec and rate the caller negotiated (the pipeline builds a ``Transcoder`` from them). It needs
only (a) to validate a negotiated codec / rate against :class:`~clutchcall.engine.audio.Codec`,
(b) the byte size of one frame, to refuse payloads of the wrong codec, and (c) one frame of
silence in the caller codec for concealment when the pipeline installed no better concealer.
The caller client and the echo demo use G.711 µ-law encode/decode from the same package.
No codec is implemented here.
"""

from __future__ import annotations

import numpy as np

from clutchcall.engine.audio import Codec, alaw_encode, payload_bytes
from clutchcall.engine.audio import ulaw_decode as _ulaw_decode
from clutchcall.engine.audio import ulaw_encode as _ulaw_encode
from clutchcall.engine.errors import ConfigError, RemoteProtocolError

CODECS = tuple(c.value for c in Codec)


class CodecError(RemoteProtocolError):
    """A peer asked for a codec / rate we do not carry."""


def check_codec(codec: str, rate: int) -> None:
    """Raise CodecError unless ``codec``/``rate`` is a supported caller-leg format."""
    try:
        c = Codec.parse(codec)
    except ConfigError as exc:
        raise CodecError(str(exc)) from None
    if rate not in c.rates:
        raise CodecError(f"{codec} does not run at {rate} Hz (supported: {sorted(c.rates)})")


def frame_bytes(codec: str, rate: int, frame_ms: int) -> int | None:
    """Bytes in one frame for constant-rate codecs; None for Opus (variable)."""
    return payload_bytes(codec, rate, frame_ms)


def silence(codec: str, rate: int, frame_ms: int) -> bytes:
    """One frame of silence in the caller codec (empty for Opus: the decoder's PLC fills it)."""
    n = frame_bytes(codec, rate, frame_ms)
    if n is None:
        return b""
    if codec == "pcm16":
        return bytes(n)
    zeros = np.zeros(n, dtype=np.int16)
    return bytes((_ulaw_encode(zeros) if codec == "g711_ulaw" else alaw_encode(zeros)).tobytes())


def ulaw_encode(pcm16le: bytes) -> bytes:
    """PCM16 little-endian -> G.711 µ-law bytes."""
    return bytes(_ulaw_encode(np.frombuffer(pcm16le, dtype="<i2").astype(np.int16)).tobytes())


def ulaw_decode(ulaw: bytes) -> bytes:
    """G.711 µ-law bytes -> PCM16 little-endian."""
    return bytes(_ulaw_decode(np.frombuffer(ulaw, dtype=np.uint8)).astype("<i2").tobytes())
