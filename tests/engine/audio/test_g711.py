"""G.711 is bit-exact with CPython 3.11's audioop over every input and every code."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from clutchcall.engine.audio import AudioError, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_PCM = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def test_ulaw_encode_all_65536_inputs_match_audioop() -> None:
    ref = np.frombuffer(audioop.lin2ulaw(ALL_PCM.tobytes(), 2), dtype=np.uint8)
    assert np.array_equal(ulaw_encode(ALL_PCM), ref)


def test_alaw_encode_all_65536_inputs_match_audioop() -> None:
    ref = np.frombuffer(audioop.lin2alaw(ALL_PCM.tobytes(), 2), dtype=np.uint8)
    assert np.array_equal(alaw_encode(ALL_PCM), ref)


def test_ulaw_decode_all_256_codes_match_audioop() -> None:
    ref = np.frombuffer(audioop.ulaw2lin(ALL_CODES.tobytes(), 2), dtype=np.int16)
    assert np.array_equal(ulaw_decode(ALL_CODES), ref)


def test_alaw_decode_all_256_codes_match_audioop() -> None:
    ref = np.frombuffer(audioop.alaw2lin(ALL_CODES.tobytes(), 2), dtype=np.int16)
    assert np.array_equal(alaw_decode(ALL_CODES), ref)


@pytest.mark.parametrize("enc,dec", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_decode_encode_is_identity_on_decoded_values(enc, dec) -> None:  # type: ignore[no-untyped-def]
    levels = dec(ALL_CODES)
    assert np.array_equal(dec(enc(levels)), levels)
    # quantisation error of a round trip is bounded by half the largest step (1024 / 2)
    err = np.abs(dec(enc(ALL_PCM)).astype(np.int32) - ALL_PCM.astype(np.int32))
    assert err.max() <= 1024


def test_non_contiguous_input_and_known_codes() -> None:
    x = np.array([0, 0, 32767, 0, -32768, 0], dtype=np.int16)[::2]
    assert ulaw_encode(x).tolist() == [0xFF, 0x80, 0x00]
    assert alaw_encode(x).tolist() == [0xD5, 0xAA, 0x2A]


@pytest.mark.parametrize("fn", [ulaw_encode, alaw_encode])
def test_encode_rejects_wrong_dtype(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioError):
        fn(np.zeros(10, dtype=np.float32))
    with pytest.raises(AudioError):
        fn(np.zeros((2, 2), dtype=np.int16))


@pytest.mark.parametrize("fn", [ulaw_decode, alaw_decode])
def test_decode_rejects_wrong_dtype(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioError):
        fn(np.zeros(10, dtype=np.int16))
