"""The caller-leg's thin view of codecs: names, frame sizes, silence, and G.711 for the tools.

Theory of operation
-------------------
The ingress never transcodes: it carries caller-codec payloads and tells the pipeline which
codec and rate the caller negotiated. It needs only (a) the set of codec names the audio
contract defines (``pcm16``, ``opus``, ``g711_ulaw``, ``g711_alaw``), (b) how many bytes one
frame is, to validate payloads, and (c) one frame of silence for concealment of lost frames
when the pipeline did not install a better concealer (Opus PLC via the Transcoder).

The caller client and the echo demo need G.711 µ-law encode/decode to speak Twilio Media
Streams; they use ``clutchcall.engine.audio.g711`` when that package is present and the
standard library's ``audioop`` (Python 3.11) otherwise. No codec is reimplemented here.
"""

from __future__ import annotations

from clutchcall.engine.errors import RemoteProtocolError

CODECS = ("pcm16", "opus", "g711_ulaw", "g711_alaw")
RATES = (8000, 12000, 16000, 24000, 48000)


class CodecError(RemoteProtocolError):
    """A peer asked for a codec / rate we do not carry, or sent a payload of the wrong size."""


def check_codec(codec: str, rate: int) -> None:
    """Raise CodecError unless ``codec``/``rate`` is a supported caller-leg format."""
    if codec not in CODECS:
        raise CodecError(f"unsupported codec {codec!r} (supported: {', '.join(CODECS)})")
    if rate not in RATES:
        raise CodecError(f"unsupported rate {rate} (supported: {RATES})")
    if codec.startswith("g711") and rate != 8000:
        raise CodecError(f"{codec} runs at 8000 Hz, not {rate}")


def frame_bytes(codec: str, rate: int, frame_ms: int) -> int | None:
    """Bytes in one frame for constant-rate codecs; None for Opus (variable)."""
    samples = rate * frame_ms // 1000
    if codec == "pcm16":
        return samples * 2
    if codec in ("g711_ulaw", "g711_alaw"):
        return samples
    return None


def silence(codec: str, rate: int, frame_ms: int) -> bytes:
    """One frame of silence in the caller codec (empty for Opus: the decoder's PLC fills it)."""
    n = frame_bytes(codec, rate, frame_ms)
    if n is None:
        return b""
    if codec == "pcm16":
        return bytes(n)
    if codec == "g711_ulaw":
        return b"\xff" * n
    return b"\xd5" * n


def _audioop():  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    return audioop


def ulaw_encode(pcm16le: bytes) -> bytes:
    """PCM16 little-endian -> G.711 µ-law bytes."""
    try:
        import numpy as np
        from clutchcall.engine.audio import g711  # type: ignore[attr-defined]

        return bytes(g711.ulaw_encode(np.frombuffer(pcm16le, dtype="<i2")).tobytes())
    except ImportError:
        return bytes(_audioop().lin2ulaw(pcm16le, 2))


def ulaw_decode(ulaw: bytes) -> bytes:
    """G.711 µ-law bytes -> PCM16 little-endian."""
    try:
        import numpy as np
        from clutchcall.engine.audio import g711  # type: ignore[attr-defined]

        return bytes(g711.ulaw_decode(np.frombuffer(ulaw, dtype=np.uint8)).astype("<i2").tobytes())
    except ImportError:
        return bytes(_audioop().ulaw2lin(ulaw, 2))
