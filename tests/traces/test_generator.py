"""The corpus generator: determinism, real speech, timing, and labels that match the audio.

Labels-vs-audio tolerance (stated here and in FORMAT.md): with webrtcvad (mode 2, 30 ms
frames), every non-noise segment has VAD speech in >= 50 % of its frames, and outside the
segments (each widened by 30 ms before and 120 ms after, for the VAD's onset and hangover)
at most 2 % of frames are speech on clean, PSTN and Opus channels, at most 10 % on the
sampled noisy calls at 10 dB SNR or more. At 5 dB SNR the VAD fires on (pink) noise itself,
so only the inside check applies there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soxr
import webrtcvad

from clutchcall.cli import main
from clutchcall.traces import speech as sp
from clutchcall.traces.channel import CHANNELS, apply_channel, bandpass
from clutchcall.traces.generator import (
    CHANNEL_ROTATION,
    MANIFEST,
    SpeechBank,
    build_call,
    mid_turn_pause_ms,
    plan_call,
    render,
    response_gap_ms,
)
from clutchcall.traces.labels import KINDS, LabelledCall, read_call

SEED = 5
N_CALLS = 4  # pstn8, clean16, pstn8, noisy16


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a = tmp_path_factory.mktemp("corpus_a")
    b = tmp_path_factory.mktemp("corpus_b")
    for d in (a, b):
        assert main(["corpus", "build", str(d), "--calls", str(N_CALLS), "--seed", str(SEED),
                     "--traces", "2"]) == 0
    return a, b


def test_same_seed_gives_byte_identical_files(built: tuple[Path, Path]) -> None:
    a, b = built
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert len([n for n in names if n.endswith(".wav")]) == N_CALLS
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_other_seed_differs_and_build_validates(built: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = built
    bank = SpeechBank()
    name, _, pcm, labels, _ = build_call(SEED + 1, 0, bank)
    assert name == "call0000_pstn8"
    assert not np.array_equal(pcm, read_call(a / name).pcm) or labels != read_call(a / name).labels
    assert main(["corpus", "validate", str(a)]) == 0


def test_manifest_records_the_command_and_sources(built: tuple[Path, Path]) -> None:
    a, _ = built
    m = json.loads((a / MANIFEST).read_text())
    assert m["seed"] == SEED and m["calls"] == N_CALLS
    assert m["command"] == f"clutchcall corpus build OUT_DIR --calls {N_CALLS} --seed {SEED} --traces 2"
    assert [e.get("trace") for e in m["entries"]] == ["call0000_pstn8.parquet", "call0001_clean16.parquet",
                                                      None, None]
    assert m["espeak_ng"].startswith("eSpeak NG")
    assert [e["channel"] for e in m["entries"]] == list(CHANNEL_ROTATION[:N_CALLS])


def test_arctic_recordings_are_real_pinned_speech() -> None:
    utts = sp.arctic_utterances()
    assert [n for n, _ in utts] == ["arctic_a0007", "arctic_a0009"]
    for _, x in utts:
        assert x.dtype == np.float32 and 2.0 < len(x) / sp.SPEECH_RATE < 4.0
        assert float(np.sqrt(np.mean(x**2))) > 0.01
    assert (sp.fetch_arctic() / "COPYING").read_text().count("Carnegie Mellon University") == 1
    # some calls of a seed use them; the manifest says which
    bank = SpeechBank()
    used = [plan_call(SEED, i, bank).info["human_speech"] for i in range(12)]
    assert any(used) and not all(used)


def test_espeak_is_deterministic_and_varied() -> None:
    a = sp.espeak("hold on a second", "en-gb+f3", 170, 60)
    sp._espeak_cached.cache_clear()
    b = sp.espeak("hold on a second", "en-gb+f3", 170, 60)
    c = sp.espeak("hold on a second", "en-us+m3", 170, 40)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c[: len(a)])
    assert 0.5 < len(a) / sp.SPEECH_RATE < 2.0


def test_timing_follows_the_published_statistics() -> None:
    rng = np.random.default_rng(0)
    gaps = np.array([response_gap_ms(rng) for _ in range(4000)])
    pauses = np.array([mid_turn_pause_ms(rng) for _ in range(4000)])
    assert 180 <= np.median(gaps) <= 260 and gaps.min() >= 50
    assert 450 <= np.median(pauses) <= 550
    assert 1400 <= np.percentile(pauses, 95) <= 2500
    bank = SpeechBank()
    for i in range(10):
        plan = plan_call(SEED, i, bank)
        agent = plan.labels.agent_speech
        for s in plan.labels.segments:
            inside_agent = any(a <= s.start_ms and s.end_ms <= b for a, b in agent)
            if s.kind == "backchannel":
                assert inside_agent and s.end_ms - s.start_ms < 1000
            if s.kind == "interruption":
                assert any(a <= s.start_ms < b for a, b in agent)
            if s.kind in ("turn", "short_answer"):  # the caller does not talk over the agent
                assert not any(a < s.end_ms and s.start_ms < b for a, b in agent)


def vad_agreement(call: LabelledCall, mode: int = 2) -> tuple[float, list[tuple[str, float]]]:
    """Return (fraction of VAD speech frames outside the widened segments, per non-noise
    segment the fraction of its frames the VAD calls speech)."""
    pcm, rate = call.pcm, call.rate
    if rate == 48000:
        pcm = np.asarray(soxr.resample(pcm, 48000, 16000)).astype(np.int16)
        rate = 16000
    vad = webrtcvad.Vad(mode)
    n = rate * 30 // 1000
    frames = len(pcm) // n
    flags = np.array([vad.is_speech(pcm[i * n:(i + 1) * n].tobytes(), rate) for i in range(frames)])
    centre = np.arange(frames) * 30 + 15
    near = np.zeros(frames, dtype=bool)
    inside = []
    for s in call.labels.segments:
        near |= (centre >= s.start_ms - 30) & (centre < s.end_ms + 120)
        if s.kind != "noise":
            inside.append((s.kind, float(flags[(centre >= s.start_ms) & (centre < s.end_ms)].mean())))
    return float(flags[~near].mean()), inside


def test_labels_match_the_audio(built: tuple[Path, Path]) -> None:
    a, _ = built
    entries = {e["name"]: e for e in json.loads((a / MANIFEST).read_text())["entries"]}
    checked: list[tuple[LabelledCall, dict]] = [(read_call(a / f"{n}.json"), e) for n, e in entries.items()]
    # a wider sample, every SNR (call i of the rotation gets SNRS_DB[i % 3]), without files
    bank = SpeechBank()
    for i in (3, 5, 11, 13, 23):  # noisy 20 dB, opus, clean, noisy 10 dB, noisy 5 dB
        name, rate, pcm, labels, info = build_call(SEED + 7, i, bank)
        checked.append((LabelledCall(name=name, rate=rate, pcm=pcm, labels=labels), info))
    seen_snr = set()
    for call, info in checked:
        outside, inside = vad_agreement(call)
        assert inside, call.name
        for kind, frac in inside:
            assert frac >= 0.5, (call.name, kind, frac)
        if info["channel"] == "noisy16":
            seen_snr.add(info["snr_db"])
            if info["snr_db"] >= 10:
                assert outside <= 0.10, (call.name, info["snr_db"], outside)
        else:
            assert outside <= 0.02, (call.name, outside)
    assert seen_snr == {20.0, 10.0, 5.0}


def test_channels_shape_the_signal() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16000) * 0.1
    active = np.ones(16000, dtype=bool)
    for ch, rate in CHANNELS.items():
        r, y = apply_channel(x, ch, active=active, snr_db=10.0, rng=np.random.default_rng(2))
        assert r == rate and y.dtype == np.int16 and abs(len(y) - rate) <= 1
    # the PSTN band-pass removes energy below 300 Hz and above 3400 Hz
    spec = np.abs(np.fft.rfft(bandpass(x, 16000, 300.0, 3400.0)))
    f = np.fft.rfftfreq(16000, 1 / 16000)
    assert spec[f < 150].mean() < 0.05 * spec[(f > 500) & (f < 3000)].mean()
    assert spec[f > 4000].mean() < 0.05 * spec[(f > 500) & (f < 3000)].mean()
    # noisy: the added noise sits at the requested SNR
    _, y = apply_channel(np.zeros(16000) + x, "noisy16", active=active, snr_db=10.0, rng=np.random.default_rng(3))
    noise = y / 32767.0 - x
    snr = 10 * np.log10(np.mean(x**2) / np.mean(noise**2))
    assert abs(snr - 10.0) < 0.2


def _lag(out: np.ndarray, rate: int, clean16: np.ndarray) -> int:
    """Samples by which ``out`` lags the clean render (resampled to ``rate``)."""
    ref = np.asarray(soxr.resample(clean16, 16000, rate))
    y = out.astype(np.float64) / 32767.0
    n = 2 * max(len(ref), len(y))
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(ref, n)), n)
    window = rate // 20  # +-50 ms
    cand = np.r_[c[:window], c[-window:]]
    lags = np.r_[np.arange(window), np.arange(-window, 0)]
    return int(lags[int(np.argmax(cand))])


def test_pstn_channel_keeps_labels_aligned() -> None:
    bank = SpeechBank()
    x, _ = render(plan_call(SEED, 0, bank))
    name, rate, pcm, _, _ = build_call(SEED, 0, bank)
    assert name.endswith("_pstn8") and rate == 8000
    assert abs(_lag(pcm, 8000, x)) <= 8  # <= 1 ms


def test_opus_channel_is_deterministic_and_aligned() -> None:
    bank = SpeechBank()
    i = CHANNEL_ROTATION.index("opus48")
    one = build_call(SEED, i, bank)
    two = build_call(SEED, i, bank)
    assert one[0].endswith("_opus48") and one[1] == 48000
    assert np.array_equal(one[2], two[2])
    outside, inside = vad_agreement(LabelledCall(name=one[0], rate=one[1], pcm=one[2], labels=one[3]))
    assert outside <= 0.02 and all(frac >= 0.5 for _, frac in inside)
    x, _ = render(plan_call(SEED, i, bank))
    assert abs(_lag(one[2], 48000, x)) <= 48  # encoder lookahead removed: <= 1 ms


def test_every_kind_appears_within_a_few_calls() -> None:
    bank = SpeechBank()
    kinds = {s.kind for i in range(20) for s in plan_call(SEED, i, bank).labels.segments}
    assert kinds == set(KINDS)


def test_no_human_build_uses_espeak_only_and_warns_about_stale_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["corpus", "build", str(tmp_path), "--calls", "3", "--seed", "9", "--no-human"]) == 0
    m = json.loads((tmp_path / MANIFEST).read_text())
    assert m["human_speech"] is False and all(e["human_speech"] == [] for e in m["entries"])
    assert m["command"].endswith("--no-human")
    assert main(["corpus", "build", str(tmp_path), "--calls", "2", "--seed", "9", "--no-human"]) == 0
    assert "1 older call(s)" in capsys.readouterr().err
    assert main(["corpus", "build", str(tmp_path), "--calls", "0"]) == 1


def test_interruptions_usually_go_on_and_some_do_not() -> None:
    """Generator v3: most interruptions are followed (within 600 ms) by a continuation clip
    inside the same segment; a real share stays a lone phrase (the hard case)."""
    from clutchcall.traces.generator import continuation_pause_ms

    rng = np.random.default_rng(0)
    p = np.array([continuation_pause_ms(rng) for _ in range(2000)])
    assert 170 <= np.median(p) <= 230 and p.min() >= 60 and p.max() <= 600
    bank = SpeechBank(human=False)
    followed = lone = 0
    for i in range(40):
        plan = plan_call(SEED, i, bank)
        for s in plan.labels.segments:
            if s.kind != "interruption":
                continue
            clips = [c for c in plan.placed if s.start_ms <= c.start_ms < s.end_ms]
            assert clips and clips[0].start_ms == s.start_ms
            if len(clips) == 2:
                followed += 1
                first_end = clips[0].start_ms + len(clips[0].clip) * 1000 // sp.SPEECH_RATE
                assert 60 <= clips[1].start_ms - first_end <= 601
            else:
                assert len(clips) == 1
                lone += 1
    assert followed + lone >= 10
    assert 0.4 <= followed / (followed + lone) <= 0.85 and lone >= 2


def test_mhm_is_hummed_not_spelled_out() -> None:
    import shutil
    import subprocess

    from clutchcall.traces.generator import BACKCHANNELS

    exe = shutil.which("espeak-ng")
    assert exe is not None
    out = subprocess.run([exe, "-q", "-x", BACKCHANNELS[0]], capture_output=True, text=True,
                         check=True).stdout
    assert "tS" not in out and "m" in out  # as text, "mhm" reads ",Em,eItS'Em"


def test_holds_are_rendered_as_holds_from_their_own_stream() -> None:
    """Version 3 (issue 16): the phrase before a mid-turn pause carries a hold cue drawn from
    ``[seed, index, 16]``; a turn's last phrase is a finished sentence; the cue mix is roughly
    the documented one, and the cues sound different (comma: no final fall)."""
    from clutchcall.engine.audio.features import f0_slope_st_per_s, pitch_track
    from clutchcall.traces.generator import HOLD_CUE_P, HOLD_CUES, final_text, hold_cue, phrase_text

    assert final_text("can you tell me when the store opens tomorrow").endswith("?")
    assert final_text("how much would it cost to upgrade").endswith(".")
    rng = np.random.default_rng([1, 2, 16])
    texts = {c: phrase_text("the package never arrived", c, rng, after_pause=False) for c in HOLD_CUES}
    assert texts["none"] == "the package never arrived." and texts["comma"].endswith("arrived,")
    assert texts["conjunction"].endswith(",") and texts["filled"].split(", ")[1] in ("um,", "uh,")
    draws = [hold_cue(np.random.default_rng([9, i, 16])) for i in range(2000)]
    for cue, p in zip(HOLD_CUES, HOLD_CUE_P, strict=True):
        assert abs(draws.count(cue) / 2000 - p) < 0.04
    # espeak-ng: a full stop ends falling, a comma does not (the cue is in the audio)
    slopes = {}
    for end in (".", ","):
        pcm = (sp.espeak("I need to change my delivery address" + end, "en-us+m3", 150, 50)
               * 32767).astype(np.int16)
        _, f0 = pitch_track(pcm, sp.SPEECH_RATE, 20)
        last = int(np.flatnonzero(f0 > 0)[-1])
        slopes[end] = f0_slope_st_per_s(f0[max(0, last - 14):last + 1])
    assert slopes["."] < -5.0 and slopes[","] > slopes["."] + 5.0
    # the plan records the holds, one per mid-turn pause of an espeak phrase
    bank = SpeechBank()
    plan = plan_call(1, 7, bank)  # the checked-in corpus's call 7: one comma hold
    assert plan.info["holds"] == ["comma"]
