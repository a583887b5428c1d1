"""Opus encode/decode through libopus, with our own cffi binding (ABI mode, no compile step).

Theory of operation: :func:`_lib` declares the handful of ``opus_*`` functions we use with
``ffi.cdef`` and opens the system ``libopus.so.0`` with ``ffi.dlopen`` once per process (Debian
``libopus0``). Each :class:`OpusEncoder` / :class:`OpusDecoder` owns one libopus state (mono),
freed by ``ffi.gc`` when the Python object dies, plus preallocated input/output buffers, so the
per-frame hot path allocates only its result.

* Rates: 8, 12, 16, 24 and 48 kHz (Opus's native rates); frames of 10 or 20 ms (also 40/60).
* :meth:`OpusDecoder.decode` with a packet decodes it; with ``None`` it runs libopus's packet
  loss concealment (PLC) for one frame, which extrapolates the last decoded speech.
* A packet libopus rejects (``OPUS_INVALID_PACKET`` and friends) or an empty one raises
  :class:`AudioError`. libopus parses a packet completely before it touches the decoder state,
  so after such an error the decoder continues exactly as if the packet had never arrived
  (the tests check this bit for bit).

No clock, no I/O other than loading the shared library on first use.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from clutchcall.engine.audio.errors import AudioError, ConfigError

__all__ = ["OPUS_RATES", "OpusDecoder", "OpusEncoder", "opus_version", "packet_samples"]

OPUS_RATES: frozenset[int] = frozenset({8000, 12000, 16000, 24000, 48000})
ENCODER_FRAME_MS: frozenset[int] = frozenset({10, 20, 40, 60})
_MAX_PACKET = 4000  # bytes; libopus's recommended upper bound for one packet
_MAX_FRAME_MS = 120  # longest duration one Opus packet can carry

_CDEF = """
typedef struct OpusEncoder OpusEncoder;
typedef struct OpusDecoder OpusDecoder;
const char *opus_get_version_string(void);
const char *opus_strerror(int error);
OpusEncoder *opus_encoder_create(int32_t Fs, int channels, int application, int *error);
void opus_encoder_destroy(OpusEncoder *st);
int32_t opus_encode(OpusEncoder *st, const int16_t *pcm, int frame_size,
                    unsigned char *data, int32_t max_data_bytes);
int opus_encoder_ctl(OpusEncoder *st, int request, ...);
OpusDecoder *opus_decoder_create(int32_t Fs, int channels, int *error);
void opus_decoder_destroy(OpusDecoder *st);
int opus_decode(OpusDecoder *st, const unsigned char *data, int32_t len, int16_t *pcm,
                int frame_size, int decode_fec);
int opus_decoder_ctl(OpusDecoder *st, int request, ...);
int opus_packet_get_nb_samples(const unsigned char *packet, int32_t len, int32_t Fs);
"""

OPUS_OK = 0
OPUS_APPLICATION_VOIP = 2048
OPUS_SET_BITRATE_REQUEST = 4002
OPUS_SET_COMPLEXITY_REQUEST = 4010
OPUS_SET_SIGNAL_REQUEST = 4024
OPUS_GET_LOOKAHEAD_REQUEST = 4027
OPUS_RESET_STATE = 4028
OPUS_SIGNAL_VOICE = 3001

_lock = threading.Lock()
_loaded: tuple[Any, Any] | None = None


def _lib() -> tuple[Any, Any]:
    """Return ``(ffi, lib)`` for libopus, loading it on first use.

    Raises :class:`ConfigError` if ``libopus.so.0`` cannot be loaded (install ``libopus0``).
    """
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                import cffi

                ffi = cffi.FFI()
                ffi.cdef(_CDEF)
                try:
                    lib = ffi.dlopen("libopus.so.0")
                except OSError as exc:  # pragma: no cover - depends on the machine
                    raise ConfigError(f"cannot load libopus.so.0 (install libopus0): {exc}") from exc
                _loaded = (ffi, lib)
    return _loaded


def _strerror(code: int) -> str:
    ffi, lib = _lib()
    return str(ffi.string(lib.opus_strerror(code)).decode("ascii", "replace"))


def opus_version() -> str:
    """Return libopus's version string, e.g. ``'libopus 1.3.1'``."""
    ffi, lib = _lib()
    return str(ffi.string(lib.opus_get_version_string()).decode("ascii", "replace"))


def _check_rate(rate: int) -> None:
    if rate not in OPUS_RATES:
        raise ConfigError(f"opus rate must be one of {sorted(OPUS_RATES)} Hz, got {rate!r}")


def packet_samples(packet: bytes, rate: int) -> int:
    """Return how many samples per channel ``packet`` decodes to at ``rate``.

    Raises :class:`AudioError` if the packet is empty or its table of contents is invalid.
    """
    _check_rate(rate)
    if not packet:
        raise AudioError("empty opus packet")
    ffi, lib = _lib()
    n = int(lib.opus_packet_get_nb_samples(ffi.from_buffer(packet), len(packet), rate))
    if n < 0:
        raise AudioError(f"invalid opus packet: {_strerror(n)}")
    return n


class OpusEncoder:
    """One mono Opus encoder stream (VOIP application, voice signal).

    ``OpusEncoder(rate, frame_ms=20, bitrate=None, complexity=None)``: ``bitrate`` in bit/s
    (None: libopus's default for the rate), ``complexity`` 0-10 (None: libopus default).
    Raises :class:`ConfigError` for an unsupported rate, frame length, bitrate or complexity.
    """

    __slots__ = ("_ffi", "_lib", "_out", "_st", "frame_ms", "frame_samples", "rate")

    def __init__(
        self, rate: int, frame_ms: int = 20, bitrate: int | None = None, complexity: int | None = None
    ) -> None:
        _check_rate(rate)
        if frame_ms not in ENCODER_FRAME_MS:
            raise ConfigError(f"opus frame_ms must be one of {sorted(ENCODER_FRAME_MS)}, got {frame_ms!r}")
        if bitrate is not None and not 6000 <= bitrate <= 510000:
            raise ConfigError(f"opus bitrate must be within 6000..510000 bit/s, got {bitrate!r}")
        if complexity is not None and not 0 <= complexity <= 10:
            raise ConfigError(f"opus complexity must be within 0..10, got {complexity!r}")
        ffi, lib = _lib()
        self._ffi = ffi
        self._lib = lib
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        err = ffi.new("int *")
        st = lib.opus_encoder_create(rate, 1, OPUS_APPLICATION_VOIP, err)
        if err[0] != OPUS_OK or st == ffi.NULL:
            raise ConfigError(f"opus_encoder_create failed: {_strerror(err[0])}")
        self._st = ffi.gc(st, lib.opus_encoder_destroy)
        self._ctl(OPUS_SET_SIGNAL_REQUEST, OPUS_SIGNAL_VOICE)
        if bitrate is not None:
            self._ctl(OPUS_SET_BITRATE_REQUEST, bitrate)
        if complexity is not None:
            self._ctl(OPUS_SET_COMPLEXITY_REQUEST, complexity)
        self._out = ffi.new("unsigned char[]", _MAX_PACKET)

    def _ctl(self, request: int, value: int) -> None:
        rc = int(self._lib.opus_encoder_ctl(self._st, request, self._ffi.cast("int", value)))
        if rc != OPUS_OK:
            raise ConfigError(f"opus_encoder_ctl({request}) failed: {_strerror(rc)}")

    @property
    def lookahead_samples(self) -> int:
        """The encoder's algorithmic lookahead in samples at ``rate`` (its added delay)."""
        p = self._ffi.new("int *")
        rc = int(self._lib.opus_encoder_ctl(self._st, OPUS_GET_LOOKAHEAD_REQUEST, p))
        if rc != OPUS_OK:  # pragma: no cover - libopus always supports this request
            raise ConfigError(f"opus lookahead query failed: {_strerror(rc)}")
        return int(p[0])

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """Encode exactly one frame (``frame_samples`` int16 samples); return one Opus packet.

        Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array of ``frame_samples``.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise AudioError("opus encode expects a 1-D int16 array")
        if pcm.shape[0] != self.frame_samples:
            raise AudioError(
                f"opus encode expects {self.frame_samples} samples ({self.frame_ms} ms at "
                f"{self.rate} Hz), got {pcm.shape[0]}"
            )
        if not pcm.flags.c_contiguous:
            pcm = np.ascontiguousarray(pcm)
        ffi = self._ffi
        n = int(
            self._lib.opus_encode(
                self._st, ffi.cast("int16_t *", ffi.from_buffer(pcm)), self.frame_samples,
                self._out, _MAX_PACKET,
            )
        )
        if n < 0:  # pragma: no cover - only on libopus internal errors
            raise AudioError(f"opus_encode failed: {_strerror(n)}")
        return bytes(ffi.buffer(self._out, n))

    def reset(self) -> None:
        """Reset the encoder to its freshly created state (new stream, same settings)."""
        self._lib.opus_encoder_ctl(self._st, OPUS_RESET_STATE)


class OpusDecoder:
    """One mono Opus decoder stream with packet loss concealment.

    ``OpusDecoder(rate)``. Raises :class:`ConfigError` for an unsupported rate.
    """

    __slots__ = ("_ffi", "_last_samples", "_lib", "_max_samples", "_pcm", "_st", "rate")

    def __init__(self, rate: int) -> None:
        _check_rate(rate)
        ffi, lib = _lib()
        self._ffi = ffi
        self._lib = lib
        self.rate = rate
        err = ffi.new("int *")
        st = lib.opus_decoder_create(rate, 1, err)
        if err[0] != OPUS_OK or st == ffi.NULL:
            raise ConfigError(f"opus_decoder_create failed: {_strerror(err[0])}")
        self._st = ffi.gc(st, lib.opus_decoder_destroy)
        self._max_samples = rate * _MAX_FRAME_MS // 1000
        self._pcm = ffi.new("int16_t[]", self._max_samples)
        self._last_samples = rate * 20 // 1000

    @property
    def last_frame_samples(self) -> int:
        """Samples of the last decoded packet (20 ms before any): the default PLC length."""
        return self._last_samples

    def decode(self, packet: bytes | None, frame_samples: int | None = None) -> npt.NDArray[np.int16]:
        """Decode one packet, or conceal one lost packet when ``packet`` is None.

        For a packet, ``frame_samples`` (if given) is the count it must decode to. For a loss,
        ``frame_samples`` is how much audio to synthesise (default: the last packet's
        duration); it must be a positive multiple of 2.5 ms, at most 120 ms.
        Returns a new int16 array at ``rate``.
        Raises :class:`AudioError` for an empty or corrupt packet, a packet of another
        duration than ``frame_samples``, or an invalid ``frame_samples``; the decoder state
        is unchanged when it raises.
        """
        ffi = self._ffi
        if packet is None:
            n_req = self._last_samples if frame_samples is None else frame_samples
            quantum = self.rate // 400  # 2.5 ms
            if not 0 < n_req <= self._max_samples or n_req % quantum:
                raise AudioError(
                    f"opus PLC length must be a positive multiple of {quantum} samples up to "
                    f"{self._max_samples}, got {n_req!r}"
                )
            n = int(self._lib.opus_decode(self._st, ffi.NULL, 0, self._pcm, n_req, 0))
        else:
            if not isinstance(packet, (bytes, bytearray, memoryview)):
                raise AudioError(f"opus packet must be bytes, got {type(packet).__name__}")
            if len(packet) == 0:
                raise AudioError("empty opus packet")
            if frame_samples is not None:
                have = int(self._lib.opus_packet_get_nb_samples(
                    ffi.from_buffer(packet), len(packet), self.rate))
                if have < 0:
                    raise AudioError(f"corrupt opus packet: {_strerror(have)}")
                if have != frame_samples:
                    raise AudioError(f"opus packet holds {have} samples, expected {frame_samples}")
            n = int(self._lib.opus_decode(
                self._st, ffi.from_buffer(packet), len(packet), self._pcm, self._max_samples, 0))
            if n > 0:
                self._last_samples = n
        if n < 0:
            raise AudioError(f"corrupt opus packet: {_strerror(n)}")
        out: npt.NDArray[np.int16] = np.frombuffer(ffi.buffer(self._pcm, 2 * n), dtype=np.int16).copy()
        return out

    def reset(self) -> None:
        """Reset the decoder to its freshly created state (new stream)."""
        self._lib.opus_decoder_ctl(self._st, OPUS_RESET_STATE)
        self._last_samples = self.rate * 20 // 1000
