"""Corpus directories: validate (one line per bad file), stats, the checked-in corpus, and
driving labelled calls through the engine into replayable traces."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from clutchcall.cli import main
from clutchcall.engine.actions import Append, Cancel
from clutchcall.traces.channel import CHANNELS
from clutchcall.traces.corpus import corpus_stats, validate_dir
from clutchcall.traces.drive import drive_call
from clutchcall.traces.generator import SpeechBank, build_call
from clutchcall.traces.labels import KINDS, LabelledCall, write_call
from clutchcall.traces.recorded import InputEvent, RecordedTrace, read_trace, write_trace
from clutchcall.traces.replay import first_mismatch

CORPUS = Path(__file__).resolve().parents[2] / "traces" / "corpus"


@pytest.fixture(scope="module")
def calls() -> list[LabelledCall]:
    bank = SpeechBank()
    out = []
    for i in (0, 1, 3, 6):  # pstn8, clean16, noisy16 (20 dB), pstn8
        name, rate, pcm, labels, _ = build_call(21, i, bank)
        out.append(LabelledCall(name=name, rate=rate, pcm=pcm, labels=labels))
    return out


def test_driven_trace_replays_exactly_and_follows_the_audio(calls: list[LabelledCall], tmp_path: Path) -> None:
    cancels = 0
    for call in calls:
        trace = drive_call(call, codec="pcm16")
        write_trace(tmp_path / f"{call.name}.parquet", trace)
        back = read_trace(tmp_path / f"{call.name}.parquet")
        assert back == trace
        assert first_mismatch(back) is None
        appends = [o for o in back.outputs if isinstance(o, Append)]
        assert len(appends) == int(call.duration_ms) // 20
        # VAD speech frames fall inside labelled segments (widened for onset/hangover);
        # on noisy calls webrtcvad also fires on the noise (see test_generator's tolerances)
        for a in appends:
            if a.speech and not call.name.endswith("noisy16"):
                t_ms = a.time * 1000
                assert any(s.start_ms - 40 <= t_ms <= s.end_ms + 140 for s in call.labels.segments), (call.name, t_ms)
        # a Cancel stops the agent at once: agent_audio_finished at the same time follows it
        rows = back.rows
        for k, r in enumerate(rows):
            if isinstance(r, Cancel):
                cancels += 1
                nxt = next(x for x in rows[k:] if isinstance(x, InputEvent))
                assert nxt.kind == "agent_audio_finished" and nxt.time == r.time
    assert cancels >= 1


def test_validate_reports_one_line_per_bad_file(calls: list[LabelledCall], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # a call whose drive has a Cancel to tamper with
    good = next(c for c in calls if any(isinstance(r, Cancel) for r in drive_call(c).rows))
    write_call(tmp_path, "good", good.rate, good.pcm, good.labels)
    write_call(tmp_path, "badjson", good.rate, good.pcm, good.labels)
    (tmp_path / "badjson.json").write_text('{"version": 1, "agent_speech": [], "segments": [{"kind": "x"}]}')
    write_call(tmp_path, "orphan", good.rate, good.pcm, good.labels)
    (tmp_path / "orphan.json").unlink()
    trace = drive_call(good)
    write_trace(tmp_path / "good.parquet", trace)
    rows = list(trace.rows)
    k = next(i for i, r in enumerate(rows) if isinstance(r, Cancel))
    tampered = RecordedTrace(trace.header, tuple(rows[:k] + [dataclasses.replace(rows[k], agent_played_ms=1)]
                                                 + rows[k + 1:]))
    write_trace(tmp_path / "tampered.parquet", tampered)
    (tmp_path / "junk.parquet").write_bytes(b"nope")
    checked, errors = validate_dir(tmp_path)
    assert checked == 6
    bad = sorted(Path(e.path).name for e in errors)
    assert bad == ["badjson.json", "junk.parquet", "orphan.wav", "tampered.parquet"]
    assert any("replay differs" in e.problem for e in errors)
    assert main(["corpus", "validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 4
    assert "segments[0].start_ms: missing" in captured.err
    assert "checked 6 files: 4 bad" in captured.out
    # the good ones alone pass
    for name in ("badjson.json", "badjson.wav", "orphan.wav", "tampered.parquet", "junk.parquet"):
        (tmp_path / name).unlink()
    assert main(["corpus", "validate", str(tmp_path)]) == 0
    assert main(["corpus", "validate", str(tmp_path / "missing")]) == 1


def test_checked_in_corpus_is_valid_and_covers_every_kind_and_channel(capsys: pytest.CaptureFixture[str]) -> None:
    checked, errors = validate_dir(CORPUS)
    assert checked >= 101
    assert errors == []
    st = corpus_stats(CORPUS)
    assert st["calls"] >= 100 and st["invalid"] == 0
    assert set(st["by_channel"]) == set(CHANNELS)
    assert all(st["by_kind"][k] > 0 for k in KINDS)
    assert st["traces"] >= 1
    size = sum(p.stat().st_size for p in CORPUS.iterdir())
    assert size < 32_000_000
    assert main(["corpus", "stats", str(CORPUS)]) == 0
    out = capsys.readouterr().out
    assert f"calls: {st['calls']}" in out and "pstn8" in out and "interruption" in out


def test_stats_on_a_copy_without_manifest_infers_channels(tmp_path: Path) -> None:
    for p in sorted(CORPUS.glob("call000[0-4]_*")):
        shutil.copy(p, tmp_path / p.name)
    st = corpus_stats(tmp_path)
    assert st["calls"] == 5 and sum(st["by_channel"].values()) == 5
    assert set(st["by_channel"]) <= set(CHANNELS)
