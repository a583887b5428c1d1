"""The audio benchmark runs end to end (tiny sizes); its types are checked by ``make check``."""

from __future__ import annotations

import json

import pytest

from clutchcall.cli import main


def test_bench_audio_json_prints_real_figures(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "audio", "--json", "--calls", "3", "--seconds", "0.4", "--runs", "1", "--no-pin"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert isinstance(res["pstn_uplink_calls_per_core"], int) and res["pstn_uplink_calls_per_core"] > 0
    for path in ("pstn_uplink", "opus_uplink", "pstn_downlink", "baseline_audioop_pstn_uplink",
                 "pstn_uplink_hq", "pstn_downlink_hq"):
        s = res["paths"][path]
        assert s["us_per_frame"] > 0 and 0 < s["rtf"] < 1
    assert res["resampler_delay_ms"]["8k_24k"]["HQ"]["buffering_mean_ms"] > 0
    assert 0 < res["resampler_delay_ms"]["8k_24k"]["LL"]["added_latency_ms"] < 5
    assert res["speech"] == "espeak-ng" and res["libopus"].startswith("libopus")
