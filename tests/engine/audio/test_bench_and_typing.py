"""The audio benchmark runs end to end (tiny sizes), and engine/audio is mypy --strict clean."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clutchcall.cli import main

ROOT = Path(__file__).resolve().parents[3]


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


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_engine_audio_is_mypy_strict_clean(tmp_path: Path) -> None:
    # mypy cannot follow setuptools' package-dir mapping, so lay out clutchcall.engine by symlink
    pkg = tmp_path / "clutchcall"
    pkg.mkdir()
    (pkg / "__init__.py").symlink_to(ROOT / "clutchcall" / "__init__.py")
    (pkg / "engine").symlink_to(ROOT / "engine")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "clutchcall.engine.audio"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
