"""The peers' own VAD run offline on a corpus call (sim/peers.py): the speaking stream follows
the caller's speech with the peer's debouncing, and ``clutchcall eval --peer`` scores it.
Skipped where the optional [peers] libraries are not installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clutchcall.cli import main
from clutchcall.sim.calls import load_call
from clutchcall.sim.peers import PEER_TURN, peer_call
from clutchcall.sim.runner import default_corpus as corpus_dir
from clutchcall.traces.labels import read_call

CALL = "call0001_clean16"


def _speech_segments(name: str) -> list[tuple[float, float]]:
    call = load_call(corpus_dir() / name)
    return [(s.start_ms, s.end_ms) for s in call.segments if s.kind in ("turn", "short_answer")]


@pytest.mark.parametrize("peer", ["pipecat", "livekit"])
def test_peer_stream_follows_the_callers_turns(peer: str) -> None:
    pytest.importorskip("pipecat" if peer == "pipecat" else "livekit.plugins.silero")
    path = corpus_dir() / CALL
    call = load_call(path)
    pc = peer_call(call, path, peer)
    assert len(pc.speech) == len(call.speech) and pc.features is None
    fr = np.asarray(pc.speech)
    # every labelled turn is seen as speaking (within its span plus the peer's hangover)
    for a, b in _speech_segments(CALL):
        k0, k1 = int(a // 20), int((b + 700) // 20)
        assert fr[k0:k1].any(), (peer, a, b)
    # ... and the peer's debouncing: it starts after the labelled onset, never before it
    # (pipecat: 0.2 s start; livekit: 0.05 s min speech), and long silences are not speech
    first = _speech_segments(CALL)[0][0]
    assert not fr[: int(first // 20)].any()
    assert fr.mean() < 0.8
    assert PEER_TURN[peer].policy == "threshold"
    assert read_call(path).rate == 16000


def test_eval_peer_prints_the_keys(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("pipecat")
    d = tmp_path / "c"
    d.mkdir()
    for ext in (".json", ".wav"):
        (d / (CALL + ext)).write_bytes((corpus_dir() / (CALL + ext)).read_bytes())
    assert main(["eval", str(d), "--json", "--peer", "pipecat", "--split", "all"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peer"] == "pipecat" and out["calls"] == 1
    assert out["turn_latency_from_speech_end_ms_p50"] is not None
    # VAD-only Pipecat waits 0.2 s (VAD stop) + 0.6 s (speech timeout) after speech
    assert out["turn_latency_from_speech_end_ms_p50"] >= 800
