"""The engine's commands run for real through the one CLI."""

from __future__ import annotations

import json

from clutchcall.cli import main


def test_bench_engine_json(capsys) -> None:
    assert main(["bench", "engine", "--seconds", "20", "--runs", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["frames"] == 1000
    assert res["frames_per_s"] > 0 and res["us_per_frame"] > 0
    for k in ("frames_per_s_batch", "frames_per_s_features", "frames_per_s_features_batch",
              "frames_per_s_product", "frames_per_s_product_batch"):
        assert res[k] > 0


def test_bench_vad_json(capsys) -> None:
    assert main(["bench", "vad", "--seconds", "1", "--runs", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    web = res["webrtc"]
    assert set(web) == {"8000", "16000", "48000"} and web["8000"]["frames"] == 50
    assert all(r["us_per_frame"] > 0 and 0 <= r["speech_share"] <= 1 for r in web.values())
    # silero is in [test]; without it the backend is reported as unavailable, not a crash
    assert "error" in res["silero"] or res["silero"]["16000"]["us_per_frame"] > 0


def test_engine_demo(capsys) -> None:
    assert main(["engine", "demo", "--seconds", "20"]) == 0
    out = capsys.readouterr().out
    assert "commit" in out and "frames appended" in out


def test_bad_config_is_a_clear_error(capsys) -> None:
    assert main(["engine", "demo", "--barge-confirm-ms", "-3"]) == 2
    assert "barge_confirm_ms" in capsys.readouterr().err


def test_unknown_command(capsys) -> None:
    assert main(["nope"]) == 2
    assert main([]) == 0
