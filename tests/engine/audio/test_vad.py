"""VAD framing: exact frames with carry-over, webrtcvad decisions, 24 kHz via 16 kHz."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.audio import (
    AudioError,
    ConfigError,
    Decimate24To16,
    FrameSplitter,
    StreamResampler,
    Vad,
    VadFramer,
)
from clutchcall.engine.audio.metrics import frames_of, rms


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 24000, 48000]),
    frame_ms=st.sampled_from([10, 20, 30]),
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=15),
)
def test_splitter_yields_exact_frames_and_loses_nothing(rate: int, frame_ms: int, sizes: list[int]) -> None:
    total = sum(sizes)
    x = (np.arange(total) % 30011).astype(np.int16)
    sp = FrameSplitter(rate, frame_ms)
    frames, i = [], 0
    for n in sizes:
        got = sp.push(x[i:i + n])
        i += n
        assert all(f.shape == (sp.frame_samples,) and f.dtype == np.int16 for f in got)
        frames.extend(np.array(f) for f in got)
    n_frames = total // sp.frame_samples
    assert len(frames) == n_frames
    assert sp.pending == total - n_frames * sp.frame_samples
    joined = np.concatenate(frames) if frames else np.zeros(0, np.int16)
    assert np.array_equal(joined, x[: n_frames * sp.frame_samples])
    tail = sp.flush()
    if sp.frame_samples * n_frames == total:
        assert tail is None
    else:
        assert tail is not None and tail.shape == (sp.frame_samples,)
        rest = total - n_frames * sp.frame_samples
        assert np.array_equal(tail[:rest], x[n_frames * sp.frame_samples:]) and not tail[rest:].any()
    assert sp.pending == 0


def test_splitter_errors() -> None:
    with pytest.raises(ConfigError):
        FrameSplitter(44100, 1)  # 44.1 samples
    with pytest.raises(ConfigError):
        FrameSplitter(8000, 0)
    sp = FrameSplitter(8000, 20)
    sp.push(np.zeros(100, np.int16))
    with pytest.raises(AudioError):
        sp.push(np.zeros(100, np.float64))  # type: ignore[arg-type]
    assert sp.pending == 100  # state unchanged by the bad call


def test_splitter_44100_10ms_is_fine() -> None:
    # 44.1 kHz 10 ms = 441 samples, a whole number
    assert FrameSplitter(44100, 10).frame_samples == 441


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_vad_finds_speech_and_silence(speech, rate: int, aggressiveness: int) -> None:  # type: ignore[no-untyped-def]
    vad = Vad(rate, aggressiveness)
    n = rate // 50
    frames = frames_of(speech[rate], n)
    decisions = [vad.is_speech(f) for f in frames]
    loud = [d for f, d in zip(frames, decisions, strict=True) if rms(f) > 1500]
    # webrtcvad holds "speech" for a while after speech ends (its hangover), so judge only
    # frames at least 300 ms into a stretch of silence
    quiet, run = [], 0
    for f, d in zip(frames, decisions, strict=True):
        run = run + 1 if rms(f) < 1.0 else 0
        if run > 15:
            quiet.append(d)
    assert loud and quiet
    assert sum(loud) / len(loud) > 0.9
    assert sum(quiet) / len(quiet) < 0.05


def test_aggressiveness_is_monotone_on_speech(speech) -> None:  # type: ignore[no-untyped-def]
    frames = frames_of(speech[16000], 320)
    vads = [Vad(16000, a) for a in range(4)]
    counts = [sum(v.is_speech(f) for f in frames) for v in vads]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[3]


def test_vad_errors() -> None:
    with pytest.raises(ConfigError):
        Vad(24000, 2)
    with pytest.raises(ConfigError):
        Vad(16000, 4)
    vad = Vad(16000, 2)
    for bad in (np.zeros(100, np.int16), np.zeros(320, np.float32), np.zeros(0, np.int16)):
        with pytest.raises(AudioError):
            vad.is_speech(bad)  # type: ignore[arg-type]
    for ms in (10, 20, 30):
        assert vad.is_speech(np.zeros(16 * ms, np.int16)) is False


def test_framer_errors() -> None:
    with pytest.raises(ConfigError):
        VadFramer(44100, 20, 2)
    with pytest.raises(ConfigError):
        VadFramer(16000, 40, 2)
    with pytest.raises(ConfigError):
        VadFramer(16000, 20, -1)


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_framer_decisions_do_not_depend_on_chunking(speech, rate: int) -> None:  # type: ignore[no-untyped-def]
    x = speech[rate]
    whole = VadFramer(rate, 20, 2).push(x)
    fr = VadFramer(rate, 20, 2)
    chunked = []
    rng = np.random.default_rng(3)
    i = 0
    while i < x.shape[0]:
        n = int(rng.integers(0, 2000))
        chunked.extend(fr.push(x[i:i + n]))
        i += n
    assert len(chunked) == len(whole) == x.shape[0] // (rate // 50)
    assert [d for _, d in chunked] == [d for _, d in whole]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(chunked, whole, strict=True))


def test_24k_framer_agrees_with_16k_vad(speech) -> None:  # type: ignore[no-untyped-def]
    """24 kHz frames are judged at 16 kHz; the decisions match judging a 16 kHz rendering
    of the same speech (soxr, one-shot) on nearly every frame."""
    d24 = [d for _, d in VadFramer(24000, 20, 2).push(speech[24000])]
    ref16 = StreamResampler(24000, 16000, "VHQ").process(speech[24000], last=True)
    vad16 = Vad(16000, 2)
    d16 = [vad16.is_speech(f) for f in frames_of(ref16, 320)]
    n = min(len(d24), len(d16))
    agree = sum(a == b for a, b in zip(d24[:n], d16[:n], strict=True)) / n
    assert agree > 0.95
    assert 0.2 < sum(d24) / len(d24) < 0.95


def test_decimator_passes_speech_band_and_rejects_aliases() -> None:
    t = np.arange(24000) / 24000.0
    gains = {}
    for f in (300, 1000, 3400, 9000, 11000):
        x = (10000 * np.sin(2 * np.pi * f * t)).astype(np.int16)
        d = Decimate24To16()
        y = np.concatenate([d.process(c) for c in frames_of(x, 480)])
        assert y.shape[0] == 16000
        gains[f] = rms(y[1000:]) / rms(x[1000:])
    assert all(abs(gains[f] - 1.0) < 0.02 for f in (300, 1000, 3400))
    assert gains[9000] < 0.02 and gains[11000] < 0.01


def test_decimator_matches_soxr_and_is_chunk_invariant(speech) -> None:  # type: ignore[no-untyped-def]
    x = speech[24000][: 24000 * 2]
    whole = Decimate24To16().process(x[: x.shape[0] // 3 * 3])
    d = Decimate24To16()
    parts = np.concatenate([d.process(c) for c in frames_of(x, 240)])
    assert np.array_equal(parts, whole[: parts.shape[0]])
    ref = StreamResampler(24000, 16000, "VHQ").process(x, last=True)
    # the FIR lags by its group delay, 23.5 samples at 48 kHz = 7.83 samples at 16 kHz
    lag = 8
    a, b = ref[: 30000 - lag].astype(float), whole[lag:30000].astype(float)
    assert np.corrcoef(a, b)[0, 1] > 0.99
    with pytest.raises(AudioError):
        d.process(np.zeros(100, np.int16))


def test_vad_decisions_is_one_framer_over_the_whole_signal() -> None:
    from clutchcall.engine.audio import vad_decisions

    rng = np.random.default_rng(5)
    t = np.arange(16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 300 * t) * (t > 0.5)).astype(np.int16)
    pcm = (tone + rng.normal(0, 30, t.size)).astype(np.int16)
    got = vad_decisions(pcm[:-100], 16000, 20, 3)  # a trailing partial frame is not judged
    framer = VadFramer(16000, 20, 3)
    want = [s for _, s in framer.push(pcm[:8000])] + [s for _, s in framer.push(pcm[8000:-100])]
    assert got == want and len(got) == 49
    assert not any(got[:20]) and sum(got[30:]) > 10
    with pytest.raises(ConfigError):
        vad_decisions(pcm, 11025, 20, 2)


def test_framer_judges_with_the_same_webrtcvad_call() -> None:
    """VadFramer's per-frame path (Vad.judge: the C call without its two Python wrappers,
    issue 17) gives is_speech's decision on every frame."""
    rng = np.random.default_rng(3)
    for rate in (8000, 16000, 32000, 48000):
        for ms in (10, 20, 30):
            t = np.arange(rate) / rate
            x = np.concatenate([np.zeros(rate // 4), np.sin(2 * np.pi * 180 * t) * 9000
                                + rng.standard_normal(rate) * 800, rng.standard_normal(rate // 2) * 30])
            pcm = x.astype(np.int16)
            framer, ref = VadFramer(rate, ms, 2), Vad(rate, 2)
            got = framer.push(pcm)
            assert [sp for _, sp in got] == [ref.is_speech(f) for f, _ in got]
            assert len(got) == len(pcm) // (rate * ms // 1000) and any(sp for _, sp in got)
