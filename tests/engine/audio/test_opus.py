"""Opus through our cffi binding to libopus: round trips on real speech, PLC, corrupt packets."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from clutchcall.engine.audio import AudioError, ConfigError, OpusDecoder, OpusEncoder
from clutchcall.engine.audio.metrics import best_lag, frames_of, snr_db
from clutchcall.engine.audio.metrics import correlation as corr
from clutchcall.engine.audio.opus import opus_version, packet_samples


def _roundtrip(
    pcm: npt.NDArray[np.int16], rate: int, frame_ms: int, bitrate: int | None = None
) -> tuple[npt.NDArray[np.int16], list[bytes], int]:
    enc = OpusEncoder(rate, frame_ms, bitrate=bitrate)
    dec = OpusDecoder(rate)
    packets = [enc.encode(f) for f in frames_of(pcm, enc.frame_samples)]
    out = np.concatenate([dec.decode(p) for p in packets])
    return out, packets, enc.lookahead_samples


def test_version_is_libopus() -> None:
    assert opus_version().startswith("libopus")


@pytest.mark.parametrize("rate", [48000, 16000, 24000, 8000])
@pytest.mark.parametrize("frame_ms", [10, 20])
def test_round_trip_on_speech_correlates(speech, rate: int, frame_ms: int) -> None:  # type: ignore[no-untyped-def]
    x = speech[rate]
    y, packets, lookahead = _roundtrip(x, rate, frame_ms)
    n = rate * frame_ms // 1000
    assert all(len(p) > 0 for p in packets)
    assert y.shape[0] == len(packets) * n
    lag = best_lag(x, y, 2 * lookahead)
    assert abs(lag - lookahead) <= 8  # the decoder output lags by the encoder's lookahead
    m = y.shape[0] - lag
    assert corr(x[:m], y[lag:lag + m]) > 0.9
    assert snr_db(x[:m], y[lag:lag + m]) > 7.0


def test_higher_bitrate_is_closer_to_the_input(speech) -> None:  # type: ignore[no-untyped-def]
    x = speech[16000]
    scores = []
    for bitrate in (8000, 48000):
        y, packets, la = _roundtrip(x, 16000, 20, bitrate=bitrate)
        m = y.shape[0] - la
        scores.append((snr_db(x[:m], y[la:la + m]), sum(map(len, packets))))
    (snr_lo, bytes_lo), (snr_hi, bytes_hi) = scores
    assert bytes_hi > 3 * bytes_lo
    assert snr_hi > snr_lo + 3.0


def test_encoding_is_deterministic(speech) -> None:  # type: ignore[no-untyped-def]
    a = _roundtrip(speech[48000], 48000, 20)[1]
    b = _roundtrip(speech[48000], 48000, 20)[1]
    assert a == b


@pytest.mark.parametrize("rate", [48000, 16000])
def test_plc_conceals_a_dropped_frame_with_plausible_audio(speech, rate: int) -> None:  # type: ignore[no-untyped-def]
    x = speech[rate]
    enc, dec, ref_dec = OpusEncoder(rate, 20), OpusDecoder(rate), OpusDecoder(rate)
    n = enc.frame_samples
    frames = frames_of(x, n)
    packets = [enc.encode(f) for f in frames]
    ref = [ref_dec.decode(p) for p in packets]
    # drop the loudest frame of the first sentence (voiced speech, mid-word)
    energy = [float(np.mean(f.astype(np.float64) ** 2)) for f in ref]
    lost = int(np.argmax(energy[: len(energy) // 2]))
    out = []
    for i, p in enumerate(packets):
        out.append(dec.decode(None) if i == lost else dec.decode(p))
    concealed = out[lost]
    assert concealed.shape[0] == n and concealed.dtype == np.int16
    rms = float(np.sqrt(np.mean(concealed.astype(np.float64) ** 2)))
    rms_ref = float(np.sqrt(energy[lost]))
    assert 0.1 * rms_ref < rms < 3.0 * rms_ref  # not silent, not an explosion
    # the concealment follows the speech: same spectral envelope region, close in level
    assert corr(np.abs(np.fft.rfft(concealed))[: n // 4], np.abs(np.fft.rfft(ref[lost]))[: n // 4]) > 0.3
    # it extrapolates the actual speech: closer to the lost audio than silence would be
    assert snr_db(ref[lost], concealed) > 1.0
    # decoding recovers: from 200 ms after the loss the output re-converges to the lossless decode
    assert snr_db(np.concatenate(ref[lost + 10:]), np.concatenate(out[lost + 10:])) > 30.0


def test_plc_length_defaults_to_last_packet_and_can_be_chosen(speech) -> None:  # type: ignore[no-untyped-def]
    enc, dec = OpusEncoder(48000, 10), OpusDecoder(48000)
    assert dec.decode(None).shape[0] == 960  # 20 ms before any packet
    dec.decode(enc.encode(speech[48000][:480]))
    assert dec.decode(None).shape[0] == 480
    assert dec.decode(None, frame_samples=1920).shape[0] == 1920
    with pytest.raises(AudioError):
        dec.decode(None, frame_samples=100)  # not a multiple of 2.5 ms
    with pytest.raises(AudioError):
        dec.decode(None, frame_samples=0)


@pytest.mark.parametrize("bad", [b"\xff", b"\x03", b"\x0b\xff\xff", b"\x03\xff" + b"\x00" * 10])
def test_corrupt_packet_raises_and_leaves_decoder_state_intact(speech, bad: bytes) -> None:  # type: ignore[no-untyped-def]
    enc = OpusEncoder(48000, 20)
    packets = [enc.encode(f) for f in frames_of(speech[48000], 960)[:40]]
    dec, twin = OpusDecoder(48000), OpusDecoder(48000)
    for i, p in enumerate(packets):
        if i == 20:
            with pytest.raises(AudioError):
                dec.decode(bad)
            with pytest.raises(AudioError):
                dec.decode(b"")
        assert np.array_equal(dec.decode(p), twin.decode(p))
    with pytest.raises(AudioError):
        packet_samples(bad, 48000)


def test_packet_duration_check(speech) -> None:  # type: ignore[no-untyped-def]
    enc, dec = OpusEncoder(16000, 20), OpusDecoder(16000)
    p = enc.encode(speech[16000][:320])
    assert packet_samples(p, 16000) == 320
    assert packet_samples(p, 48000) == 960
    with pytest.raises(AudioError):
        dec.decode(p, frame_samples=160)
    assert dec.decode(p, frame_samples=320).shape[0] == 320


def test_encoder_rejects_wrong_frames() -> None:
    enc = OpusEncoder(16000, 20)
    with pytest.raises(AudioError):
        enc.encode(np.zeros(319, dtype=np.int16))
    with pytest.raises(AudioError):
        enc.encode(np.zeros(320, dtype=np.float32))  # type: ignore[arg-type]
    assert len(enc.encode(np.zeros(640, dtype=np.int16)[::2])) > 0  # non-contiguous is fine


@pytest.mark.parametrize(
    "kwargs",
    [{"rate": 44100}, {"rate": 16000, "frame_ms": 30}, {"rate": 16000, "bitrate": 100},
     {"rate": 16000, "complexity": 11}],
)
def test_encoder_config_errors(kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        OpusEncoder(**kwargs)


def test_decoder_config_error_and_reset(speech) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        OpusDecoder(22050)
    enc = OpusEncoder(16000, 20)
    packets = [enc.encode(f) for f in frames_of(speech[16000], 320)[:10]]
    dec = OpusDecoder(16000)
    first = [dec.decode(p) for p in packets]
    dec.reset()
    again = [dec.decode(p) for p in packets]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
