"""``clutchcall demo --json`` end to end, as a user runs it (a subprocess, everything on
loopback): a corpus call over WebSocket/TLS through the edge and the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clutchcall.engine.call.hold import _EPS_HOLD

pytestmark = pytest.mark.timeout(90)


def test_demo_json_end_to_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [sys.executable, "-m", "clutchcall.cli", "demo", "--json", "--call", "call0031_clean16",
         "--transport", "ws", "--tail", "1.5", "--trace-dir", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=80, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    for key in ("turns", "turn_latency_ms_p50", "turn_latency_ms_p95", "edge_added_ms_p50", "edge_added_ms_p99"):
        assert key in r
    assert r["transport"] == "ws" and r["codec"] == "g711_ulaw" and r["call_failed"] is None
    assert len(r["turns"]) >= 1
    t = r["turns"][0]
    # speculative commit (on by default): the model's time to first audio overlaps the
    # end-of-turn silence, so the turn takes at least the silence, not silence + model. "At
    # least" up to the frame hold's epsilon: a frame due within _EPS_HOLD of the media clock is
    # fed at once rather than on a timer, so the deadline can fire that much early (CI saw
    # 499.99 ms for a 500 ms silence)
    assert t["speculative"] is True
    assert t["turn_latency_ms"] >= t["eot_silence_ms"] - _EPS_HOLD * 1000 - 0.01
    assert t["turn_latency_ms"] < t["eot_silence_ms"] + t["model_ttfa_ms"]
    assert r["speculations_started"] >= r["speculations_released"] >= 1
    assert r["turn_latency_from_speech_end_ms_p50"] >= r["turn_latency_ms_p50"] - 200
    assert t["edge_added_ms"] is not None and t["mouth_to_ear_ms"] is not None
    assert r["turn_latency_ms_p50"] <= r["turn_latency_ms_p95"]
    assert r["backchannels_filtered"] >= 1  # the labelled call has backchannels
    assert r["trace_replay_exact"] is True and r["trace"] and (tmp_path / "traces").is_dir()
    # a call that is not in the corpus is a clear error (exit 2)
    table = subprocess.run([sys.executable, "-m", "clutchcall.cli", "demo", "--call", "nonexistent"],
                           check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert table.returncode == 2 and "cannot read" in table.stderr
