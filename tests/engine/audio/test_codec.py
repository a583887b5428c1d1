"""Codec names and the per-call Transcoder: both directions, bad payloads, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.audio import (
    AudioError,
    Codec,
    ConfigError,
    OpusDecoder,
    OpusEncoder,
    StreamResampler,
    Transcoder,
    alaw_encode,
    payload_bytes,
    ulaw_decode,
    ulaw_encode,
)
from clutchcall.engine.audio.metrics import best_lag, correlation, frames_of, rms


def test_codec_names() -> None:
    assert [c.value for c in Codec] == ["pcm16", "opus", "g711_ulaw", "g711_alaw"]
    assert Codec.parse("g711_ulaw") is Codec.G711_ULAW
    assert Codec.parse(Codec.OPUS) is Codec.OPUS
    with pytest.raises(ConfigError):
        Codec.parse("g729")
    assert payload_bytes("pcm16", 16000, 20) == 640
    assert payload_bytes(Codec.G711_ALAW, 8000, 20) == 160
    assert payload_bytes("opus", 48000, 20) is None


@pytest.mark.parametrize(
    "args",
    [("g711_ulaw", 16000), ("opus", 44100), ("pcm16", 22050), ("mp3", 8000)],
)
def test_config_errors(args: tuple[str, int]) -> None:
    with pytest.raises(ConfigError):
        Transcoder(*args)


def test_quality_auto_picks_low_latency_when_the_ratio_allows() -> None:
    assert Transcoder("g711_ulaw", 8000).quality == "LL"
    assert Transcoder("pcm16", 16000).quality == "LL"
    assert Transcoder("pcm16", 44100).quality == "HQ"  # 147/80 is no simple ratio
    assert Transcoder("pcm16", 16000, quality="MQ").quality == "MQ"
    with pytest.raises(ConfigError):
        Transcoder("pcm16", 44100, quality="LL")


def test_config_errors_frame_and_model_rate() -> None:
    with pytest.raises(ConfigError):
        Transcoder("opus", 48000, frame_ms=30)
    with pytest.raises(ConfigError):
        Transcoder("pcm16", 16000, model_rate=11025)
    with pytest.raises(ConfigError):
        Transcoder("pcm16", 16000, quality="best")


def _caller_payloads(codec: Codec, rate: int, pcm: np.ndarray) -> list[bytes]:
    n = rate // 50
    frames = frames_of(pcm, n)
    if codec is Codec.G711_ULAW:
        return [ulaw_encode(f).tobytes() for f in frames]
    if codec is Codec.G711_ALAW:
        return [alaw_encode(f).tobytes() for f in frames]
    if codec is Codec.PCM16:
        return [f.astype("<i2").tobytes() for f in frames]
    enc = OpusEncoder(rate, 20)
    return [enc.encode(f) for f in frames]


CASES = [
    (Codec.G711_ULAW, 8000, 24000),
    (Codec.G711_ALAW, 8000, 24000),
    (Codec.OPUS, 48000, 24000),
    (Codec.OPUS, 16000, 24000),
    (Codec.PCM16, 16000, 24000),
    (Codec.PCM16, 24000, 24000),
    (Codec.G711_ULAW, 8000, 16000),
]


@pytest.mark.parametrize("quality", ["auto", "HQ"])
@pytest.mark.parametrize("codec,rate,model_rate", CASES, ids=[f"{c.value}-{r}-{m}" for c, r, m in CASES])
def test_uplink_delivers_the_speech_at_model_rate(speech, codec: Codec, rate: int, model_rate: int, quality: str) -> None:  # type: ignore[no-untyped-def]
    payloads = _caller_payloads(codec, rate, speech[rate])
    tr = Transcoder(codec, rate, model_rate, quality=quality)
    out = b"".join(tr.uplink(p) for p in payloads) + tr.uplink_flush()
    y = np.frombuffer(out, dtype="<i2")
    assert y.shape[0] == len(payloads) * model_rate // 50
    ref = speech[model_rate]
    lag = best_lag(ref, y, 1000)
    n = y.shape[0] - lag
    assert correlation(ref[:n], y[lag:lag + n]) > 0.9
    # deterministic: a second transcoder fed the same payloads gives the same bytes
    tr2 = Transcoder(codec, rate, model_rate, quality=quality)
    assert b"".join(tr2.uplink(p) for p in payloads) + tr2.uplink_flush() == out


def test_opus_runs_at_the_model_rate_without_a_resampler(speech) -> None:  # type: ignore[no-untyped-def]
    tr = Transcoder("opus", 48000, 24000)
    assert tr.codec_rate == 24000 and tr.uplink_delay_ms == 0.0
    enc = OpusEncoder(48000, 20)
    for f in frames_of(speech[48000], 960)[:20]:
        assert len(tr.uplink(enc.encode(f))) == 960  # 20 ms at 24 kHz, every frame, no burst
    assert Transcoder("opus", 48000, 44100).codec_rate == 48000  # 44.1 kHz is no Opus rate


def test_uplink_for_vad_and_model_separately(speech) -> None:  # type: ignore[no-untyped-def]
    """decode_caller + to_model is uplink, split so the VAD can run at the caller rate."""
    payloads = _caller_payloads(Codec.G711_ULAW, 8000, speech[8000])[:50]
    a, b = Transcoder("g711_ulaw", 8000), Transcoder("g711_ulaw", 8000)
    for p in payloads:
        pcm = a.decode_caller(p)
        assert np.array_equal(pcm, ulaw_decode(np.frombuffer(p, np.uint8)))
        assert a.to_model(pcm) == b.uplink(p)


BAD = {
    Codec.PCM16: [b"", b"\x00\x01\x02", bytearray(b"\x01")],
    Codec.G711_ULAW: [b""],
    Codec.OPUS: [b"", b"\xff", b"\x03", b"\x0b\xff\xff"],
}


@pytest.mark.parametrize("codec,rate", [(Codec.PCM16, 16000), (Codec.G711_ULAW, 8000), (Codec.OPUS, 48000)])
def test_bad_payloads_raise_and_leave_the_stream_usable(speech, codec: Codec, rate: int) -> None:  # type: ignore[no-untyped-def]
    payloads = _caller_payloads(codec, rate, speech[rate])[:60]
    tr, twin = Transcoder(codec, rate), Transcoder(codec, rate)
    for i, p in enumerate(payloads):
        if i in (0, 17, 30):
            for bad in BAD[codec]:
                with pytest.raises(AudioError):
                    tr.uplink(bad)
            with pytest.raises(AudioError):
                tr.uplink("not bytes")  # type: ignore[arg-type]
        assert tr.uplink(p) == twin.uplink(p)
    assert tr.uplink_flush() == twin.uplink_flush()


@pytest.mark.parametrize("codec,rate", [(Codec.PCM16, 16000), (Codec.G711_ULAW, 8000), (Codec.OPUS, 48000)])
def test_uplink_loss_keeps_timing(speech, codec: Codec, rate: int) -> None:  # type: ignore[no-untyped-def]
    payloads = _caller_payloads(codec, rate, speech[rate])[:100]
    tr = Transcoder(codec, rate)
    out = []
    for i, p in enumerate(payloads):
        out.append(tr.uplink_loss() if i % 10 == 5 else tr.uplink(p))
    out.append(tr.uplink_flush())
    assert len(b"".join(out)) == 100 * 480 * 2  # 100 frames of 20 ms at 24 kHz


def test_opus_uplink_loss_is_concealment_not_silence(speech) -> None:  # type: ignore[no-untyped-def]
    payloads = _caller_payloads(Codec.OPUS, 48000, speech[48000])
    loudest = int(np.argmax([rms(f) for f in frames_of(speech[48000], 960)]))
    tr = Transcoder("opus", 48000)
    for p in payloads[:loudest]:
        tr.decode_caller(p)
    concealed = tr.conceal_caller()
    assert tr.codec_rate == 24000  # decoded straight at the model rate
    assert concealed.shape == (480,) and rms(concealed) > 300


@pytest.mark.parametrize(
    "codec,rate,frame_ms",
    [(Codec.G711_ULAW, 8000, 20), (Codec.G711_ALAW, 8000, 10), (Codec.PCM16, 16000, 20),
     (Codec.OPUS, 48000, 20), (Codec.OPUS, 16000, 10)],
)
@pytest.mark.parametrize("quality", ["auto", "HQ"])
def test_downlink_frames_payloads_and_is_chunk_invariant(speech, codec: Codec, rate: int, frame_ms: int, quality: str) -> None:  # type: ignore[no-untyped-def]
    model = speech[24000].astype("<i2").tobytes()
    whole_tr = Transcoder(codec, rate, frame_ms=frame_ms, quality=quality)
    whole = whole_tr.downlink(model) + whole_tr.downlink_flush()
    tr = Transcoder(codec, rate, frame_ms=frame_ms, quality=quality)
    chunked: list[bytes] = []
    rng = np.random.default_rng(5)
    i = 0
    while i < len(model):
        n = 2 * int(rng.integers(0, 3000))
        chunked.extend(tr.downlink(model[i:i + n]))
        i += n
    chunked.extend(tr.downlink_flush())
    assert chunked == whole
    samples = rate * frame_ms // 1000
    expected_frames = -(-(len(model) // 2 * rate // 24000) // samples)
    assert abs(len(whole) - expected_frames) <= 1
    size = payload_bytes(codec, rate, frame_ms)
    if size is not None:
        assert all(len(p) == size for p in whole)
    # decode the caller-leg payloads and compare with the speech at the caller rate
    if codec is Codec.OPUS:
        dec = OpusDecoder(rate)
        y = np.concatenate([dec.decode(p, frame_samples=samples) for p in whole])
    elif codec is Codec.PCM16:
        y = np.frombuffer(b"".join(whole), dtype="<i2")
    else:
        tr_up = Transcoder(codec, rate, model_rate=rate)
        y = np.concatenate([tr_up.decode_caller(p) for p in whole])
    ref = speech[rate]
    lag = best_lag(ref, y, 1000)
    n = min(ref.shape[0], y.shape[0] - lag)
    assert correlation(ref[:n], y[lag:lag + n]) > 0.9


def test_downlink_errors_and_empty() -> None:
    tr = Transcoder("g711_ulaw", 8000)
    assert tr.downlink(b"") == []
    with pytest.raises(AudioError):
        tr.downlink(b"\x00\x00\x00")
    with pytest.raises(AudioError):
        tr.downlink(np.zeros(10, np.int16))  # type: ignore[arg-type]
    assert tr.downlink_flush() == []


def test_downlink_reset_drops_pending_audio(speech) -> None:  # type: ignore[no-untyped-def]
    tr, fresh = Transcoder("g711_ulaw", 8000), Transcoder("g711_ulaw", 8000)
    tr.downlink(speech[24000][:12345].astype("<i2").tobytes())
    assert tr.downlink_delay_ms > 0
    tr.downlink_reset()  # barge-in
    assert tr.downlink_delay_ms == fresh.downlink_delay_ms
    reply = speech[24000][24000:48000].astype("<i2").tobytes()
    assert tr.downlink(reply) + tr.downlink_flush() == fresh.downlink(reply) + fresh.downlink_flush()


def test_delay_properties_track_the_resamplers() -> None:
    tr = Transcoder("g711_ulaw", 8000, quality="HQ")
    up = StreamResampler(8000, 24000, "HQ")
    for _ in range(7):
        tr.uplink(b"\xff" * 160)
        up.process(np.zeros(160, np.int16))
    assert tr.uplink_delay_ms == up.delay_ms


@settings(max_examples=150, deadline=None)
@given(
    codec=st.sampled_from([Codec.OPUS, Codec.PCM16, Codec.G711_ALAW]),
    junk=st.lists(st.binary(min_size=0, max_size=400), min_size=1, max_size=6),
)
def test_fuzzed_payloads_raise_only_audio_error(codec: Codec, junk: list[bytes]) -> None:
    """Whatever a peer sends, uplink returns audio or raises AudioError, and the stream goes on."""
    rate = 48000 if codec is Codec.OPUS else 8000 if codec is Codec.G711_ALAW else 16000
    tr = Transcoder(codec, rate)
    silence = _caller_payloads(codec, rate, np.zeros(rate // 10, np.int16))
    for p in junk:
        try:
            out = tr.uplink(p)
            assert len(out) % 2 == 0
        except AudioError:
            pass
        tr.uplink(silence[0])  # the stream still works
    assert len(tr.uplink_loss()) % 2 == 0


def test_low_latency_transcoder_returns_every_frame_at_once(speech) -> None:  # type: ignore[no-untyped-def]
    """With quality="LL" each 20 ms caller frame gives 20 ms of model audio straight away and
    each 20 ms of model audio gives one caller payload straight away: no bursts, no backlog."""
    payloads = _caller_payloads(Codec.G711_ULAW, 8000, speech[8000])
    tr = Transcoder("g711_ulaw", 8000, quality="LL")
    up = [tr.uplink(p) for p in payloads]
    assert all(len(u) == 960 for u in up)
    assert 3.0 < tr.uplink_delay_ms < 5.0  # the FIR's group delay, nothing else
    y = np.frombuffer(b"".join(up), dtype="<i2")
    lag = best_lag(speech[24000], y, 400)
    assert abs(lag - round(tr.uplink_delay_ms * 24)) <= 1
    n = y.shape[0] - lag
    assert correlation(speech[24000][:n], y[lag:lag + n]) > 0.9
    model = speech[24000]
    for f in frames_of(model, 480)[:100]:
        assert len(tr.downlink(f.astype("<i2").tobytes())) == 1
    assert 3.0 < tr.downlink_delay_ms < 5.0
