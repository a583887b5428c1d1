"""One Codec notion and the Transcoder between the caller leg and the model leg.

Theory of operation: a call's caller leg speaks one :class:`Codec` at one rate (PSTN: G.711
at 8 kHz; browsers: Opus at 48 kHz; raw PCM16 at 8-48 kHz); the model leg speaks PCM16
little-endian at ``model_rate`` (24 kHz for OpenAI-Realtime-compatible models). One
:class:`Transcoder` per call holds every piece of per-stream state for both directions:

uplink (caller -> model)::

    payload --decode_caller--> int16 @ codec_rate --to_model (resampler)--> PCM16 LE @ model_rate

``uplink(payload)`` does both steps; run the VAD (``VadFramer(tr.codec_rate, ...)``) on
:meth:`Transcoder.decode_caller`'s output, so speech is judged before any resampling delay,
and feed the model :meth:`Transcoder.to_model`'s output.

``codec_rate`` is the rate our codec objects run at. For G.711 and PCM16 it is the caller
rate. For Opus it is the model rate whenever Opus supports it (8/12/16/24/48 kHz): an Opus
packet does not fix the rate it is decoded at, and libopus decodes a 48 kHz browser stream
straight to 24 kHz (and encodes 24 kHz audio into packets any 48 kHz peer decodes), so the
Opus paths need no soxr stage at all -- no resampler delay and less CPU. :meth:`uplink_loss`
conceals one lost caller frame (Opus: libopus PLC; G.711/PCM16: one frame of silence) so the
model-leg stream keeps its timing.

downlink (model -> caller)::

    PCM16 LE @ model_rate --resampler--> int16 @ codec_rate --FrameSplitter--> frame --encode--> payload

``downlink(pcm)`` returns zero or more caller-leg payloads, one per ``frame_ms`` frame (PCM16:
``rate*frame_ms/1000*2`` bytes, G.711: one byte per sample, Opus: one packet per frame); the
rest waits for the next chunk. At the end of an agent reply call :meth:`downlink_flush` (it
emits the resampler's tail and the last partial frame padded with silence); on barge-in call
:meth:`downlink_reset` (it drops what is pending).

Errors: malformed payloads (empty, odd PCM16 byte count, corrupt Opus packet, wrong type) raise
:class:`AudioError`, and every state (Opus decoder, resamplers, frame splitter) is left as it
was before the call, so the next payload is processed normally. Bad construction parameters
raise ``ConfigError``.

Resampling: by default (``quality="auto"``) both directions use the low-latency polyphase
resampler ("LL", :mod:`clutchcall.engine.audio.polyphase`) whenever the rate ratio is simple
(every pair among 8/12/16/24/32/48 kHz), else soxr "HQ" (44.1 kHz). LL returns every 20 ms
frame at once and adds only its filter's group delay (4 ms for 8<->24 kHz), where soxr's
streaming API holds audio back in blocks (up to 80 ms for 8<->24 kHz at 20 ms frames, which
would land on turn latency) at about the same CPU cost. Pass ``quality="HQ"`` (or another soxr
recipe) for soxr; its output then comes in bursts: ``uplink`` may return ``b""`` for some
payloads and several frames' worth for others (total durations match). No clock, no I/O.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from clutchcall.engine.audio.errors import AudioError, ConfigError
from clutchcall.engine.audio.g711 import (
    ALAW_DECODE_TABLE,
    ALAW_ENCODE_TABLE,
    ULAW_DECODE_TABLE,
    ULAW_ENCODE_TABLE,
)
from clutchcall.engine.audio.opus import OPUS_RATES, OpusDecoder, OpusEncoder
from clutchcall.engine.audio.polyphase import ll_supported
from clutchcall.engine.audio.resample import (
    LOW_LATENCY,
    QUALITIES,
    SUPPORTED_RATES,
    StreamResampler,
)
from clutchcall.engine.audio.vad import FrameSplitter

__all__ = ["Codec", "Transcoder", "payload_bytes"]

_LE_I16 = np.dtype("<i2")


class Codec(str, enum.Enum):
    """A caller-leg codec, by its wire name."""

    PCM16 = "pcm16"
    OPUS = "opus"
    G711_ULAW = "g711_ulaw"
    G711_ALAW = "g711_alaw"

    @classmethod
    def parse(cls, value: str | Codec) -> Codec:
        """Return the Codec named ``value``; raise ``ConfigError`` for an unknown name."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(c.value for c in cls)
            raise ConfigError(f"unknown codec {value!r} (expected one of: {names})") from None

    @property
    def rates(self) -> frozenset[int]:
        """Caller-leg rates this codec may run at."""
        if self is Codec.OPUS:
            return OPUS_RATES
        if self is Codec.PCM16:
            return SUPPORTED_RATES
        return frozenset({8000})

    @property
    def frame_ms_allowed(self) -> frozenset[int]:
        """Downlink frame durations this codec can packetise."""
        if self is Codec.OPUS:
            return frozenset({10, 20, 40, 60})
        return frozenset({10, 20, 30, 40, 60})


def payload_bytes(codec: Codec | str, rate: int, frame_ms: int) -> int | None:
    """Return the byte size of one ``frame_ms`` caller-leg payload (None for Opus: variable).

    Raises ``ConfigError`` for an unknown codec.
    """
    c = Codec.parse(codec)
    samples = rate * frame_ms // 1000
    if c is Codec.PCM16:
        return 2 * samples
    if c is Codec.OPUS:
        return None
    return samples


class Transcoder:
    """Per-call transcoding between a caller-leg codec and model-leg PCM16.

    ``Transcoder(caller_codec, caller_rate, model_rate=24000, frame_ms=20, quality="auto",
    opus_bitrate=None)``. ``frame_ms`` is the downlink packetisation (and the length of one
    concealed uplink frame); ``quality`` the resamplers' quality: "auto" (LL when the ratio
    allows, else HQ; see the module notes), "LL" or a soxr recipe; ``opus_bitrate``
    the downlink Opus encoder's bitrate (None: libopus default).
    Raises ``ConfigError`` for an unknown codec, a rate the codec or resampler does not
    support, or an unsupported ``frame_ms``.
    """

    __slots__ = (
        "_dec",
        "_down",
        "_enc",
        "_silence",
        "_split",
        "_up",
        "caller_codec",
        "caller_frame_samples",
        "caller_rate",
        "codec_frame_samples",
        "codec_rate",
        "frame_ms",
        "model_rate",
        "quality",
    )

    def __init__(
        self,
        caller_codec: Codec | str,
        caller_rate: int,
        model_rate: int = 24000,
        frame_ms: int = 20,
        quality: str = "auto",
        opus_bitrate: int | None = None,
    ) -> None:
        codec = Codec.parse(caller_codec)
        if caller_rate not in codec.rates:
            raise ConfigError(
                f"caller_rate {caller_rate!r} not supported by {codec.value} "
                f"(allowed: {sorted(codec.rates)})"
            )
        if model_rate not in SUPPORTED_RATES:
            raise ConfigError(f"model_rate must be one of {sorted(SUPPORTED_RATES)}, got {model_rate!r}")
        if frame_ms not in codec.frame_ms_allowed:
            raise ConfigError(
                f"frame_ms {frame_ms!r} not supported by {codec.value} "
                f"(allowed: {sorted(codec.frame_ms_allowed)})"
            )
        if quality != "auto" and quality not in QUALITIES:
            raise ConfigError(f"quality must be 'auto' or one of {QUALITIES}, got {quality!r}")
        self.caller_codec = codec
        self.caller_rate = caller_rate
        self.model_rate = model_rate
        self.frame_ms = frame_ms
        self.caller_frame_samples = caller_rate * frame_ms // 1000
        codec_rate = caller_rate
        if codec is Codec.OPUS and model_rate in OPUS_RATES:
            codec_rate = model_rate
        self.codec_rate = codec_rate
        self.codec_frame_samples = codec_rate * frame_ms // 1000
        if quality == "auto":
            quality = LOW_LATENCY if ll_supported(codec_rate, model_rate) else "HQ"
        self.quality = quality  # as resolved
        self._up = StreamResampler(codec_rate, model_rate, quality)
        self._down = StreamResampler(model_rate, codec_rate, quality)
        self._split = FrameSplitter(codec_rate, frame_ms)
        self._dec: OpusDecoder | None = None
        self._enc: OpusEncoder | None = None
        if codec is Codec.OPUS:
            self._dec = OpusDecoder(codec_rate)
            self._enc = OpusEncoder(codec_rate, frame_ms, bitrate=opus_bitrate)
        self._silence: npt.NDArray[np.int16] = np.zeros(self.codec_frame_samples, dtype=np.int16)
        self._silence.setflags(write=False)

    # -- uplink ---------------------------------------------------------------------------

    def decode_caller(self, payload: bytes) -> npt.NDArray[np.int16]:
        """Decode one caller-leg payload; return int16 samples at ``codec_rate``.

        Raises :class:`AudioError` for an empty payload, an odd PCM16 byte count, a corrupt
        Opus packet or a non-bytes payload (state unchanged).
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise AudioError(f"payload must be bytes, got {type(payload).__name__}")
        if len(payload) == 0:
            raise AudioError("empty caller payload")
        codec = self.caller_codec
        if codec is Codec.G711_ULAW:
            out: npt.NDArray[np.int16] = ULAW_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)]
            return out
        if codec is Codec.G711_ALAW:
            out = ALAW_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)]
            return out
        if codec is Codec.PCM16:
            if len(payload) % 2:
                raise AudioError(f"pcm16 payload has an odd byte count ({len(payload)})")
            out = np.frombuffer(payload, dtype=_LE_I16).astype(np.int16)
            return out
        assert self._dec is not None
        return self._dec.decode(bytes(payload))

    def to_model(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """Resample caller-rate samples to ``model_rate``; return PCM16 LE (maybe ``b""``).

        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array.
        """
        return self._up.process(pcm).astype(_LE_I16, copy=False).tobytes()

    def uplink(self, payload: bytes) -> bytes:
        """Turn one caller-leg payload into model-leg PCM16 LE at ``model_rate``.

        Returns what the resampler has ready (possibly ``b""``; see the module notes).
        Raises :class:`AudioError` for a malformed payload (state unchanged).
        """
        return self.to_model(self.decode_caller(payload))

    def conceal_caller(self) -> npt.NDArray[np.int16]:
        """Return one ``frame_ms`` frame concealing a lost caller payload, at ``codec_rate``
        (Opus: libopus packet loss concealment; G.711/PCM16: silence)."""
        if self._dec is not None:
            return self._dec.decode(None, self.codec_frame_samples)
        return self._silence

    def uplink_loss(self) -> bytes:
        """Conceal one lost caller frame; return model-leg PCM16 LE (see :meth:`uplink`)."""
        return self.to_model(self.conceal_caller())

    def uplink_flush(self) -> bytes:
        """End of the caller's stream: return the uplink resampler's tail; start afresh."""
        return self._up.flush().astype(_LE_I16, copy=False).tobytes()

    # -- downlink -------------------------------------------------------------------------

    def _encode(self, frames: list[npt.NDArray[np.int16]]) -> list[bytes]:
        codec = self.caller_codec
        if codec is Codec.G711_ULAW:
            return [ULAW_ENCODE_TABLE[f.view(np.uint16)].tobytes() for f in frames]
        if codec is Codec.G711_ALAW:
            return [ALAW_ENCODE_TABLE[f.view(np.uint16)].tobytes() for f in frames]
        if codec is Codec.PCM16:
            return [f.astype(_LE_I16, copy=False).tobytes() for f in frames]
        enc = self._enc
        assert enc is not None
        return [enc.encode(f) for f in frames]

    def downlink(self, pcm: bytes) -> list[bytes]:
        """Turn model-leg PCM16 LE at ``model_rate`` into caller-leg payloads, one per frame.

        Returns the payloads of every frame completed so far (maybe none; ``b""`` in gives
        ``[]``). Raises :class:`AudioError` for an odd byte count or non-bytes (state unchanged).
        """
        if not isinstance(pcm, (bytes, bytearray, memoryview)):
            raise AudioError(f"model audio must be bytes, got {type(pcm).__name__}")
        if len(pcm) % 2:
            raise AudioError(f"model pcm16 chunk has an odd byte count ({len(pcm)})")
        return self._encode(self.downlink_frames(pcm))

    def downlink_flush(self) -> list[bytes]:
        """End of an agent reply: return the payloads of everything still pending (the last
        frame padded with silence) and start the downlink afresh for the next reply."""
        return self._encode(self.downlink_flush_frames())

    # -- the downlink in two steps: frames at the caller rate, encoded when sent (issue 15:
    #    a duck's gain is applied to the PCM before encoding) --------------------------------
    def downlink_frames(self, pcm: bytes) -> list[npt.NDArray[np.int16]]:
        """Like :meth:`downlink`, but return the caller-rate PCM frames, not yet encoded
        (encode each with :meth:`encode_agent` when it is sent). Same errors."""
        if not isinstance(pcm, (bytes, bytearray, memoryview)):
            raise AudioError(f"model audio must be bytes, got {type(pcm).__name__}")
        if len(pcm) % 2:
            raise AudioError(f"model pcm16 chunk has an odd byte count ({len(pcm)})")
        if len(pcm) == 0:
            return []
        x = np.frombuffer(pcm, dtype=_LE_I16).astype(np.int16)
        return self._split.push(self._down.process(x))

    def downlink_flush_frames(self) -> list[npt.NDArray[np.int16]]:
        """Like :meth:`downlink_flush`, but return the PCM frames, not yet encoded."""
        frames = self._split.push(self._down.flush())
        tail = self._split.flush()
        if tail is not None:
            frames.append(tail)
        return frames

    def encode_agent(self, frame: npt.NDArray[np.int16], gain_start: float = 1.0,
                     gain: float = 1.0) -> bytes:
        """Return one caller-rate agent frame encoded for the caller leg, its level ramped
        linearly from ``gain_start`` (first sample) to ``gain`` (last sample) first -- a duck
        or restore without a click. Gains of 1.0 leave the samples untouched."""
        if gain_start != 1.0 or gain != 1.0:
            ramp = np.linspace(gain_start, gain, len(frame), dtype=np.float32)
            frame = np.clip(np.rint(frame * ramp), -32768, 32767).astype(np.int16)
        return self._encode([frame])[0]

    def downlink_reset(self) -> None:
        """Barge-in: drop all pending downlink audio (resampler and partial frame)."""
        self._down.reset()
        self._split.reset()
        if self._enc is not None:
            self._enc.reset()

    # -- latency --------------------------------------------------------------------------

    @property
    def uplink_delay_ms(self) -> float:
        """Audio given to :meth:`uplink` not yet returned, in ms (soxr's pending output)."""
        return self._up.delay_ms

    @property
    def downlink_delay_ms(self) -> float:
        """Audio given to :meth:`downlink` not yet returned as payloads, in ms (resampler
        pending output plus the partial frame)."""
        return self._down.delay_ms + 1000.0 * self._split.pending / self.codec_rate
