"""ITU-T G.711 mu-law and A-law over numpy arrays, by lookup table.

Theory of operation: G.711 maps each 16-bit linear PCM sample to one 8-bit code and back, one
sample at a time with no state, so the whole codec is four tables built once at import:

* encode: a 65,536-entry ``uint8`` table indexed by the sample's bit pattern read as ``uint16``
  (``pcm.view(uint16)``), so encoding a frame is one fancy-indexing gather;
* decode: a 256-entry ``int16`` table indexed by the code.

The tables are computed here from the segment/quantisation rules of G.711 as written in the
classic Sun reference implementation (mu-law: 14-bit magnitude with bias 33 and clip at 8159,
codes inverted; A-law: 13-bit magnitude, even bits inverted with 0x55). The test suite proves
them bit-exact against CPython 3.11's ``audioop`` (``lin2ulaw``/``ulaw2lin``/``lin2alaw``/
``alaw2lin``) over all 65,536 inputs and all 256 codes; ``audioop`` is only the test oracle and is
not imported here (it is removed in Python 3.13).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clutchcall.engine.audio.errors import AudioError

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

_ALL_PCM = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
_ALL_CODES = np.arange(256, dtype=np.int32)


def _segment(magnitude: npt.NDArray[np.int32], ends: list[int]) -> npt.NDArray[np.int32]:
    """Index of the first segment end >= magnitude (8 when above the last end)."""
    return np.searchsorted(np.asarray(ends, dtype=np.int32), magnitude, side="left").astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _ALL_PCM >> 2  # 14-bit signed (arithmetic shift, as in C)
    negative = pcm < 0
    mag = np.where(negative, -pcm, pcm)
    mask = np.where(negative, 0x7F, 0xFF)
    mag = np.minimum(mag, 8159) + 33  # clip, then add the bias (0x84 >> 2)
    seg = _segment(mag, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    out: npt.NDArray[np.uint8] = ((uval ^ mask) & 0xFF).astype(np.uint8)
    return out


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~_ALL_CODES & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t = t << ((u & 0x70) >> 4)
    val = np.where((u & 0x80) != 0, 0x84 - t, t - 0x84)
    out: npt.NDArray[np.int16] = val.astype(np.int16)
    return out


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _ALL_PCM >> 3  # 13-bit signed
    negative = pcm < 0
    mag = np.where(negative, -pcm - 1, pcm)
    mask = np.where(negative, 0x55, 0xD5)
    seg = _segment(mag, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    quant = np.where(seg < 2, (mag >> 1) & 0xF, (mag >> np.maximum(seg, 1)) & 0xF)
    aval = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    out: npt.NDArray[np.uint8] = ((aval ^ mask) & 0xFF).astype(np.uint8)
    return out


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = _ALL_CODES ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg >= 2, t << np.maximum(seg - 1, 0), t)
    val = np.where((a & 0x80) != 0, t, -t)
    out: npt.NDArray[np.int16] = val.astype(np.int16)
    return out


ULAW_ENCODE_TABLE: npt.NDArray[np.uint8] = _build_ulaw_encode()
ULAW_DECODE_TABLE: npt.NDArray[np.int16] = _build_ulaw_decode()
ALAW_ENCODE_TABLE: npt.NDArray[np.uint8] = _build_alaw_encode()
ALAW_DECODE_TABLE: npt.NDArray[np.int16] = _build_alaw_decode()
for _table in (ULAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_ENCODE_TABLE, ALAW_DECODE_TABLE):
    _table.setflags(write=False)


def _check_pcm(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise AudioError("G.711 encode expects a 1-D int16 array")
    view: npt.NDArray[np.uint16] = pcm.view(np.uint16)
    return view


def _check_codes(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 1:
        raise AudioError("G.711 decode expects a 1-D uint8 array")
    return codes


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Encode 16-bit linear PCM to G.711 mu-law; return one uint8 code per sample.

    Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array.
    """
    out: npt.NDArray[np.uint8] = ULAW_ENCODE_TABLE[_check_pcm(pcm)]
    return out


def ulaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode G.711 mu-law codes to 16-bit linear PCM; return one int16 sample per code.

    Raises :class:`AudioError` if ``codes`` is not a 1-D uint8 array.
    """
    out: npt.NDArray[np.int16] = ULAW_DECODE_TABLE[_check_codes(codes)]
    return out


def alaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Encode 16-bit linear PCM to G.711 A-law; return one uint8 code per sample.

    Raises :class:`AudioError` if ``pcm`` is not a 1-D int16 array.
    """
    out: npt.NDArray[np.uint8] = ALAW_ENCODE_TABLE[_check_pcm(pcm)]
    return out


def alaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode G.711 A-law codes to 16-bit linear PCM; return one int16 sample per code.

    Raises :class:`AudioError` if ``codes`` is not a 1-D uint8 array.
    """
    out: npt.NDArray[np.int16] = ALAW_DECODE_TABLE[_check_codes(codes)]
    return out
