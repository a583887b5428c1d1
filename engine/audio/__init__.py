"""clutchcall.engine.audio: codecs, resampling and VAD framing -- pure, stateful per stream.

Theory of operation: everything here turns audio into audio (or a speech decision) with no
clock and no I/O; one object per stream and direction holds that stream's state.

* :mod:`.g711` -- G.711 mu-law / A-law by lookup table, bit-exact with ``audioop``.
* :mod:`.opus` -- Opus encoder/decoder through our cffi (ABI mode) binding to libopus, with PLC.
* :mod:`.resample` -- soxr streaming resampler (chunk-invariant output, measured delay).
* :mod:`.polyphase` -- low-latency polyphase FIR resampler ("LL": no block buffering).
* :mod:`.vad` -- frame splitter with carry-over, webrtcvad, the two chained, and
  ``vad_decisions`` (the decisions for a whole signal: what the simulator and corpus use);
  the optional Silero backend behind the same interface (``make_vad_framer``, ``[silero]``).
* :mod:`.codec` -- the :class:`Codec` names and the per-call :class:`Transcoder`.

Malformed data raises :class:`AudioError` (a ``RemoteProtocolError``) and leaves the stream's
state usable; invalid parameters raise ``ConfigError``. ``clutchcall bench audio`` lives in
:mod:`clutchcall.tools.cmd_bench_audio` (outside the pure core: it reads the clock).
"""

from __future__ import annotations

from clutchcall.engine.audio.codec import Codec, Transcoder, payload_bytes
from clutchcall.engine.audio.errors import AudioError, ConfigError
from clutchcall.engine.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from clutchcall.engine.audio.opus import OpusDecoder, OpusEncoder
from clutchcall.engine.audio.polyphase import PolyphaseResampler
from clutchcall.engine.audio.resample import DelayReport, StreamResampler, measure_delay
from clutchcall.engine.audio.vad import Decimate24To16, FrameSplitter, Vad, VadFramer, vad_decisions

__all__ = [
    "AudioError",
    "Codec",
    "ConfigError",
    "Decimate24To16",
    "DelayReport",
    "FrameSplitter",
    "OpusDecoder",
    "OpusEncoder",
    "PolyphaseResampler",
    "StreamResampler",
    "Transcoder",
    "Vad",
    "VadFramer",
    "alaw_decode",
    "alaw_encode",
    "measure_delay",
    "payload_bytes",
    "ulaw_decode",
    "ulaw_encode",
    "vad_decisions",
]
