"""Smart-turn v3.2 as an end-of-turn analyzer (engine/audio/smart_turn.py, engine/endpoint.py).

The engine half (the rule revising a pause once from the probability a frame carries, the
trace round trip) runs everywhere. The model half needs onnxruntime and the pipecat-ai wheel
(the ``test`` extra): our log-mel is checked numerically against Pipecat's own extractor, the
model copy inside the installed wheel against the pinned SHA-256, and our probabilities
against Pipecat's analyzer on the same audio.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from clutchcall.engine import Append, Commit, EndOfTurn, State, TurnConfig, TurnEngine
from clutchcall.engine.audio import smart_turn as stm
from clutchcall.engine.audio.features import FrameFeatures
from clutchcall.engine.call.driver import EngineDriver
from clutchcall.engine.call.inputs import MemoryRecorder, apply
from clutchcall.engine.endpoint import SmartTurnRule
from clutchcall.engine.errors import ConfigError
from clutchcall.traces import smart_turn_model as stm_model

CORPUS = Path(__file__).resolve().parents[2] / "traces" / "corpus"
F = 0.02


def _feat(p: float = math.nan) -> FrameFeatures:
    return FrameFeatures(level_db=-30.0, rel_db=0.0, snr_db=30.0, turn_end_p=p)


def _run(cfg: TurnConfig, p: float | None) -> tuple[float | None, MemoryRecorder]:
    """800 ms of speech, then 1.5 s of silence; the frame 200 ms into the pause carries ``p``
    (None: no frame does). Return when the turn was committed (s after the last speech
    frame) and the recording."""
    rec = MemoryRecorder()
    d = EngineDriver(TurnEngine(cfg), rec)
    check = stm.CHECK_MS // 20
    frames = [True] * 40 + [False] * 75
    commit_at = None
    silent = 0
    for k, sp in enumerate(frames):
        t = round((k + 1) * F, 9)
        deadline = d.get_timer()
        while deadline is not None and deadline < t - 1e-9:  # a timer fires between frames
            for o in d.handle_timer(deadline):
                if isinstance(o, Commit):
                    commit_at = o.time
            deadline = d.get_timer()
        silent = 0 if sp else silent + 1
        feat = _feat(p if (p is not None and silent == check) else math.nan)
        for o in d.caller_frame(t, speech=sp, duration_ms=20, features=feat):
            if isinstance(o, Commit):
                commit_at = o.time
    return (None if commit_at is None else round(commit_at - 0.8, 6)), rec


@pytest.mark.parametrize(("p", "after"), [
    (0.93, 0.25),   # complete: end_of_turn_min_ms
    (0.2, SmartTurnRule.INCOMPLETE_MS / 1000),  # incomplete: the long silence
    (None, 0.5),    # no probability (no model in the shell): the fixed rule's silence
])
def test_probability_revises_the_pause_once(p: float | None, after: float) -> None:
    cfg = TurnConfig(end_of_turn_rule="smart-turn", end_of_turn_min_ms=250)
    at, rec = _run(cfg, p)
    assert at == pytest.approx(after)
    # the recording replays exactly on a fresh engine (the probability rides on the frame)
    eng = TurnEngine(cfg)
    outs = []
    for inp in rec.inputs:
        apply(eng, inp)
        outs += eng.drain()
    assert outs == rec.outs


def test_fixed_rule_ignores_the_probability() -> None:
    at, _ = _run(TurnConfig(end_of_turn_rule="fixed"), 0.99)
    assert at == pytest.approx(0.5)


def test_probability_outside_a_pause_is_ignored() -> None:
    e = TurnEngine(TurnConfig(end_of_turn_rule="smart-turn"))
    t = 0.0
    for _ in range(40):  # speech frames carrying a probability: no pause to revise
        t = round(t + F, 9)
        e.caller_frame(t, speech=True, duration_ms=20, features=_feat(0.99))
        e.drain()
    assert e.state is State.SPEAKING
    assert e.end_of_turn_ms == 500
    got = []
    for _ in range(30):
        t = round(t + F, 9)
        e.caller_frame(t, speech=False, duration_ms=20, features=_feat())
        got += [o for o in e.drain() if not isinstance(o, Append)]
    got = [o for o in got if isinstance(o, (Commit, EndOfTurn))]
    assert [type(o) for o in got] == [Commit, EndOfTurn] and got[0].time == pytest.approx(0.8 + 0.5)


def test_config_accepts_smart_turn_and_checks_min() -> None:
    assert TurnConfig(end_of_turn_rule="smart-turn").end_of_turn_rule == "smart-turn"
    with pytest.raises(ConfigError):
        TurnConfig(end_of_turn_rule="smart-turn", end_of_turn_min_ms=600)


def test_turn_end_p_survives_a_trace_round_trip(tmp_path: Path) -> None:
    from clutchcall.traces.recorded import TraceRecorder, read_trace
    from clutchcall.traces.replay import first_mismatch

    cfg = TurnConfig(end_of_turn_rule="smart-turn")
    _, mem = _run(cfg, 0.9)
    rec = TraceRecorder(call_id="st", codec="pcm16", rate=16000, config=cfg)
    for inp, step in zip(mem.inputs, mem.steps, strict=True):
        rec.input(inp)
        rec.outputs(step)
    rec.write(tmp_path / "st.parquet")
    back = read_trace(tmp_path / "st.parquet")
    ps = [i.features.turn_end_p for i in back.inputs
          if i.features is not None and not math.isnan(i.features.turn_end_p)]
    assert ps == [0.9]
    assert first_mismatch(back) is None


def test_check_frames() -> None:
    sp = [False] * 5 + [True] * 10 + [False] * 3 + [True] * 2 + [False] * 20
    # 200 ms at 20 ms frames = the 10th silent frame after speech; the 3-frame gap is too short
    assert stm.check_frames(sp, 20) == [19 + 10]
    assert stm.check_frames(sp, 20, 60) == [17, 22]
    with pytest.raises(stm.SmartTurnError):
        stm.check_frames(sp, 30, 200)


def test_window_pads_in_front_and_keeps_the_end() -> None:
    x = np.arange(1, 100, dtype=np.float32)
    w = stm.window(x, end=50)
    assert w.size == stm.WINDOW_S * stm.RATE and w[-1] == 50 and w[-50] == 1 and w[-51] == 0
    pcm = np.full(stm.WINDOW_S * stm.RATE + 10, 16384, dtype=np.int16)
    assert np.all(stm.window(pcm) == 0.5)
    with pytest.raises(stm.SmartTurnError):
        stm.log_mel(np.zeros(100, dtype=np.float32))


# ------------------------------------------------------------------ against Pipecat's own
def _speech() -> np.ndarray:
    import wave

    with wave.open(str(CORPUS / "call0011_clean16.wav"), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def test_log_mel_matches_pipecats_extractor() -> None:
    feats = pytest.importorskip("pipecat.audio.turn.smart_turn._whisper_features")
    rng = np.random.default_rng(7)
    pcm = _speech()
    for x in (stm.window(pcm, 3 * stm.RATE), stm.window(pcm),
              rng.normal(0, 0.1, stm.WINDOW_S * stm.RATE).astype(np.float32),
              np.zeros(stm.WINDOW_S * stm.RATE, dtype=np.float32)):
        ours = stm.log_mel(x)
        ref = feats.compute_whisper_log_mel_features(x, do_normalize=True)
        assert ours.shape == ref.shape == (stm.N_MELS, stm.N_FRAMES)
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_model_is_pinned_and_matches_pipecats_analyzer(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    local = stm_model.installed_copy()
    if local is None:
        pytest.skip("pipecat-ai is not installed")
    import hashlib

    assert hashlib.sha256(local.read_bytes()).hexdigest() == stm.MODEL_SHA256
    path = stm_model.fetch_model(tmp_path, download=False)  # from the installed wheel, digest checked
    assert path.parent == tmp_path / "smart_turn"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stm.MODEL_SHA256
    v3 = pytest.importorskip("pipecat.audio.turn.smart_turn.local_smart_turn_v3")
    theirs = v3.LocalSmartTurnAnalyzerV3(smart_turn_model_path=str(path), sample_rate=16000)
    ours = stm.SmartTurn(path.read_bytes())
    x = stm.window(_speech()).copy()
    got = []
    for end in (2 * stm.RATE, 5 * stm.RATE, x.size):
        p = ours.probability(x, end)
        ref = theirs._predict_endpoint(x[:end])["probability"]
        assert p == pytest.approx(ref, abs=1e-5)
        assert p == ours.probability(x, end)  # deterministic
        got.append(p)
    assert all(0.0 <= p <= 1.0 for p in got)


def test_fetch_refuses_a_tampered_cache(tmp_path: Path) -> None:
    d = tmp_path / "smart_turn"
    d.mkdir()
    (d / Path(stm_model.MODEL_MEMBER).name).write_bytes(b"not the model")
    with pytest.raises(stm.SmartTurnError):
        stm_model.fetch_model(tmp_path, use_installed=False, download=False)
    with pytest.raises(stm.SmartTurnError):  # the session checks the pin on the bytes too
        stm.SmartTurn(b"not the model")


def test_live_probe_matches_the_offline_pass() -> None:
    pytest.importorskip("onnxruntime")
    if stm_model.installed_copy() is None:
        pytest.skip("pipecat-ai is not installed")
    from clutchcall.engine.audio import vad_decisions

    pcm = _speech()[: 9 * stm.RATE]  # longer than the window: the ring wraps
    speech = vad_decisions(pcm, stm.RATE, 20, 2)
    model = stm_model.load_model(download=False)
    offline = stm.pause_probabilities(model, pcm, stm.RATE, speech, 20)
    assert offline
    probe = stm.LiveProbe(model, stm.RATE, 20)
    per = stm.RATE // 50
    live = {i: p for i, sp in enumerate(speech)
            if not math.isnan(p := probe.push(pcm[i * per:(i + 1) * per], bool(sp)))}
    assert live == offline
