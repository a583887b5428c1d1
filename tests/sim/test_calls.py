"""Labelled-call loading (JSON + WAV through the production VAD) and synthetic calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clutchcall.sim.calls import Call, CallFormatError, find_calls, load_call, synthetic_call


def test_load_call_runs_the_vad_on_real_speech(corpus: Path) -> None:
    call = load_call(corpus / "booking")
    assert call.frame_ms == 20 and call.duration_s == pytest.approx(20.0)
    seg = call.segments[0]
    inside = call.speech[int(seg.start_ms) // 20: int(seg.end_ms) // 20]
    assert sum(inside) > 0.6 * len(inside)  # espeak's sentence is mostly speech
    gap = call.speech[int(seg.end_ms + 500) // 20: 4000 // 20]
    assert sum(gap) <= 2  # the line noise between turns is not
    assert call.agent_speech == ((4300, 11500), (16500, 19000))
    assert [s.kind for s in call.segments] == ["turn", "backchannel", "interruption",
                                              "short_answer"]


def test_find_calls_lists_stems(corpus: Path) -> None:
    assert [p.name for p in find_calls([str(corpus)])] == ["booking", "weather"]
    with pytest.raises(CallFormatError):
        find_calls([str(corpus / "nothing-here")])


@pytest.mark.parametrize("labels", [
    {"version": 2, "agent_speech": [], "segments": []},
    {"version": 1, "agent_speech": [], "segments": [], "extra": 1},
    {"version": 1, "agent_speech": [[5, 1]], "segments": []},
    {"version": 1, "agent_speech": [], "segments": [{"start_ms": 0, "end_ms": 1,
                                                     "kind": "cough", "expect": "ignore"}]},
    {"version": 1, "agent_speech": [], "segments": [{"start_ms": 0, "end_ms": 1}]},
])
def test_malformed_labels_are_a_typed_error(corpus: Path, tmp_path: Path, labels: dict) -> None:
    (tmp_path / "bad.wav").write_bytes((corpus / "booking.wav").read_bytes())
    (tmp_path / "bad.json").write_text(json.dumps(labels))
    with pytest.raises(CallFormatError):
        load_call(tmp_path / "bad")


def test_malformed_wav_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"RIFFjunk")
    (tmp_path / "x.json").write_text(json.dumps({"version": 1, "agent_speech": [],
                                                 "segments": []}))
    with pytest.raises(CallFormatError):
        load_call(tmp_path / "x.json")


def test_from_intervals_marks_frames_by_majority_overlap() -> None:
    c = Call.from_intervals("x", duration_ms=200, caller_speech=[(30, 95)])
    assert c.speech == (False, True, True, True, True, False, False, False, False, False)


def test_synthetic_call_is_deterministic_and_labelled() -> None:
    a, b = synthetic_call(3, 60), synthetic_call(3, 60)
    assert a == b and a != synthetic_call(4, 60)
    kinds = {s.kind for s in a.segments}
    assert {"turn", "interruption"} <= kinds or {"turn", "backchannel"} <= kinds
    for s in a.segments:  # every label sits on speech frames
        assert any(a.speech[s.start_ms // 20: s.end_ms // 20 + 1])
