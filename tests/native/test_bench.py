"""`clutchcall bench native --json` runs (tiny counts) and prints the documented keys with
real, positive figures."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_native_json_keys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clutchcall", "bench", "native", "--json", "--repeat", "1",
         "--ring-msgs", "200000", "--udp-pkts", "3000", "--window", "32",
         "--calls", "4", "--call-seconds", "0.5"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    res = json.loads(out)
    assert res["ring_msgs_per_s"] > 0 and res["ring_1p3c_publish_msgs_per_s"] > 0
    assert res["udp_echo_asyncio_pps"] > 0
    if res["uring_built"]:
        assert res["uring_vs_asyncio_pps_ratio"] > 0 and res["udp_echo_uring_pps"] > 0
        assert res["quic_uring_rtt_ms_p50"] > 0 and res["quic_uring_unanswered"] == 0
    assert res["quic_asyncio_rtt_ms_p50"] > 0 and res["quic_asyncio_frames_per_s"] > 0
