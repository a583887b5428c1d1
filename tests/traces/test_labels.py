"""Labelled calls (WAV + JSON, format v1): round trip and one rejection per class of bad file."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from clutchcall.engine.errors import ClutchCallError
from clutchcall.traces.errors import TraceFormatError
from clutchcall.traces.labels import (
    Labels,
    Segment,
    read_call,
    read_labels,
    read_wav,
    write_call,
    write_labels,
)

GOOD = {
    "version": 1,
    "agent_speech": [[1000, 2500], [4000, 6000.5]],
    "segments": [
        {"start_ms": 200, "end_ms": 900, "kind": "turn", "expect": "reply"},
        {"start_ms": 1500, "end_ms": 1800, "kind": "backchannel", "expect": "ignore"},
        {"start_ms": 2600, "end_ms": 2900.25, "kind": "short_answer", "expect": "reply"},
        {"start_ms": 3000, "end_ms": 3200, "kind": "noise", "expect": "ignore"},
        {"start_ms": 4500, "end_ms": 5200, "kind": "interruption", "expect": "yield"},
    ],
}


def _pcm(seconds: float = 7.0, rate: int = 8000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(seconds * rate)) * 1000).astype(np.int16)


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_round_trip_is_exact_and_canonical(tmp_path: Path) -> None:
    labels = read_labels(_write_json(tmp_path / "a.json", GOOD))
    assert labels.agent_speech == ((1000, 2500), (4000, 6000.5))
    assert labels.segments[2] == Segment(start_ms=2600, end_ms=2900.25, kind="short_answer", expect="reply")
    pcm = _pcm()
    write_call(tmp_path, "call", 8000, pcm, labels)
    call = read_call(tmp_path / "call.wav")
    assert call.rate == 8000 and call.name == "call"
    assert np.array_equal(call.pcm, pcm)
    assert call.labels == labels
    # the canonical text parses to exactly the format's JSON, and rewriting is byte-identical
    text = (tmp_path / "call.json").read_text()
    assert json.loads(text) == GOOD
    write_labels(tmp_path / "again.json", read_labels(tmp_path / "call.json"))
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "call.json").read_bytes()


def test_empty_labels_round_trip(tmp_path: Path) -> None:
    empty = Labels(agent_speech=(), segments=())
    write_labels(tmp_path / "e.json", empty)
    assert json.loads((tmp_path / "e.json").read_text()) == {"version": 1, "agent_speech": [], "segments": []}
    assert read_labels(tmp_path / "e.json") == empty


def _mut(**changes: object) -> dict:
    data = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        data[key] = value
    return data


def _seg(i: int, **changes: object) -> dict:
    data = json.loads(json.dumps(GOOD))
    data["segments"][i].update(changes)
    for k, v in list(changes.items()):
        if v is _DROP:
            del data["segments"][i][k]
    return data


_DROP = object()

BAD_LABELS = [
    ("not-an-object", [1, 2], "-", "expected a JSON object"),
    ("missing-version", {k: v for k, v in GOOD.items() if k != "version"}, "version", "missing"),
    ("missing-segments", {k: v for k, v in GOOD.items() if k != "segments"}, "segments", "missing"),
    ("unknown-key", _mut(speaker="bob"), "speaker", "unknown key"),
    ("version-2", _mut(version=2), "version", "unsupported version 2"),
    ("version-bool", _mut(version=True), "version", "unsupported version"),
    ("agent-not-list", _mut(agent_speech={"a": 1}), "agent_speech", "expected a list"),
    ("agent-not-pair", _mut(agent_speech=[[1, 2, 3]]), "agent_speech[0]", "expected [start_ms, end_ms]"),
    ("agent-empty", _mut(agent_speech=[[500, 500]]), "agent_speech[0]", "not after start"),
    ("agent-negative", _mut(agent_speech=[[-5, 500]]), "agent_speech[0]", "negative"),
    ("agent-overlap", _mut(agent_speech=[[0, 500], [400, 900]]), "agent_speech[1]", "sorted and not overlap"),
    ("agent-string", _mut(agent_speech=[["0", 500]]), "agent_speech[0]", "finite number"),
    ("segments-not-list", _mut(segments="x"), "segments", "expected a list"),
    ("segment-not-object", _mut(segments=[[0, 1]]), "segments[0]", "expected an object"),
    ("segment-missing-kind", _seg(1, kind=_DROP), "segments[1].kind", "missing"),
    ("segment-extra-key", _seg(1, speaker="x"), "segments[1].speaker", "unknown key"),
    ("segment-bad-kind", _seg(1, kind="laugh"), "segments[1].kind", "unknown kind 'laugh'"),
    ("segment-bad-expect", _seg(4, expect="stop"), "segments[4].expect", "unknown expect 'stop'"),
    ("segment-end-before-start", _seg(0, end_ms=100), "segments[0].end_ms", "not after start"),
    ("segment-bool-time", _seg(0, start_ms=False), "segments[0].start_ms", "finite number"),
    ("segment-null-time", _seg(0, end_ms=None), "segments[0].end_ms", "finite number"),
    ("segment-unsorted", _seg(1, start_ms=100, end_ms=150), "segments[1].start_ms", "sorted and not overlap"),
]


@pytest.mark.parametrize(("name", "data", "field", "problem"), BAD_LABELS, ids=[b[0] for b in BAD_LABELS])
def test_bad_labels_are_rejected_naming_file_field_problem(
    tmp_path: Path, name: str, data: object, field: str, problem: str
) -> None:
    path = _write_json(tmp_path / f"{name}.json", data)
    with pytest.raises(TraceFormatError) as info:
        read_labels(path)
    err = info.value
    assert isinstance(err, ClutchCallError)
    assert err.path == str(path) and err.field == field and problem in err.problem
    assert str(err).startswith(f"{path}: {field}: ")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"version": 1,\n "agent_speech": [,]}')
    with pytest.raises(TraceFormatError, match=r"broken.json: -: invalid JSON at line 2 column"):
        read_labels(path)


def _wav(path: Path, *, channels: int = 1, width: int = 2, rate: int = 16000, frames: int = 1600) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01" * (frames * channels * width))
    return path


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"channels": 2}, "channels", "expected mono"),
        ({"width": 1}, "sample_width", "expected 16-bit PCM"),
        ({"rate": 44100}, "rate", "44100 Hz"),
        ({"frames": 0}, "data", "no samples"),
    ],
)
def test_bad_wav_is_rejected(tmp_path: Path, kwargs: dict, field: str, problem: str) -> None:
    path = _wav(tmp_path / "x.wav", **kwargs)
    with pytest.raises(TraceFormatError) as info:
        read_wav(path)
    assert info.value.field == field and problem in info.value.problem


def test_truncated_and_garbage_wav_are_rejected(tmp_path: Path) -> None:
    path = _wav(tmp_path / "t.wav", frames=1600)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(TraceFormatError, match="truncated: header says 1600 samples"):
        read_wav(path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all" * 10)
    with pytest.raises(TraceFormatError, match=r"junk.wav: -: not a readable PCM WAV"):
        read_wav(junk)


def test_labels_beyond_the_audio_and_missing_partners(tmp_path: Path) -> None:
    labels = read_labels(_write_json(tmp_path / "g.json", GOOD))
    write_call(tmp_path, "short", 8000, _pcm(seconds=5.0), labels)  # agent speech runs to 6000.5 ms
    with pytest.raises(TraceFormatError) as info:
        read_call(tmp_path / "short.json")
    assert info.value.field == "agent_speech[1]" and "after the audio ends (5000 ms)" in info.value.problem
    seg_late = Labels(agent_speech=(), segments=(Segment(start_ms=0, end_ms=5001, kind="turn", expect="reply"),))
    write_call(tmp_path, "late", 8000, _pcm(seconds=5.0), seg_late)
    with pytest.raises(TraceFormatError, match=r"segments\[0\].end_ms: 5001 ms is after the audio ends"):
        read_call(tmp_path / "late")
    (tmp_path / "late.wav").unlink()
    with pytest.raises(TraceFormatError, match=r"late.wav: -: missing \(the audio of late.json\)"):
        read_call(tmp_path / "late.json")
    _wav(tmp_path / "lonely.wav")
    with pytest.raises(TraceFormatError, match=r"lonely.json: -: missing"):
        read_call(tmp_path / "lonely.wav")


def test_writer_refuses_what_the_reader_would_reject(tmp_path: Path) -> None:
    bad = Labels(agent_speech=(), segments=(Segment(start_ms=10, end_ms=5, kind="turn", expect="reply"),))
    with pytest.raises(TraceFormatError):
        write_labels(tmp_path / "bad.json", bad)
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(TraceFormatError, match="rate"):
        write_call(tmp_path, "r", 44100, _pcm(), Labels(agent_speech=(), segments=()))


def test_the_hand_written_example_in_format_md_validates(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "traces" / "FORMAT.md").read_text()
    example = doc.split("`hello.json`", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    (tmp_path / "hello.json").write_text(example)
    with wave.open(str(tmp_path / "hello.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 6 * 8000)
    call = read_call(tmp_path / "hello")
    assert [s.kind for s in call.labels.segments] == ["backchannel", "turn", "interruption"]
    assert call.duration_ms == 6000
