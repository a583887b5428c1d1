"""`clutchcall call` end to end (loopback echo edge in-process), both transports, JSON output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clutchcall.cli import main
from clutchcall.prod.caller.speech import dialogue
from clutchcall.traces.labels import write_wav

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", ["quic", "ws"])
def test_call_cli_json(tmp_path, capsys, transport) -> None:  # type: ignore[no-untyped-def]
    wav = tmp_path / "in.wav"
    write_wav(wav, 16000, np.frombuffer(dialogue(["hello there"], rate=16000, gap_s=0.6), dtype="<i2"))
    out = tmp_path / "heard.wav"
    rc = main(["call", "--wav", str(wav), "--transport", transport, "--json", "--out", str(out), "--tail", "0.8"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["transport"] == transport and summary["frames_sent"] > 50
    assert summary["agent_frames_received"] > 20  # the turn was echoed back
    assert len(summary["turns"]) == 1 and summary["turns"][0]["mouth_to_ear_ms"] is not None
    assert out.stat().st_size > 44
