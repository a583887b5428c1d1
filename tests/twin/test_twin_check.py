"""End to end: a small twin check (real edge and callers over netem, then the simulator)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="needs root and /dev/net/tun to create network namespaces and TUN devices")


@needs_netns
def test_twin_check_json_two_calls_both_transports() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "clutchcall", "twin", "check", "--calls", "2", "--max-call-s", "6",
         "--rtt-ms", "40", "--loss", "0.01", "--json"],
        capture_output=True, text=True, timeout=110, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["rtt_ms"] == 40 and res["loss"] == 0.01 and res["calls"] == 2
    assert set(res["transports"]) == {"quic", "ws"}
    for name, t in res["transports"].items():
        assert t["errors"] == [], (name, t["errors"])
        assert t["replies_measured"] >= 1 and t["turns_predicted"] >= 1
        for side in ("measured", "predicted"):
            for q in ("p50", "p95", "p99"):
                v = t[side][q]
                assert isinstance(v, float) and math.isfinite(v), (name, side, q, v)
                # at least end-of-turn silence + model time to first audio + the RTT
                assert v >= 500 + 300 + 40 - 1, (name, side, q, v)
        assert t["measured"]["p50"] <= t["measured"]["p95"] <= t["measured"]["p99"]
        assert isinstance(t["max_rel_error"], float) and t["max_rel_error"] >= 0
        assert t["max_rel_error"] == max(t["rel_error"].values())
        for key in ("measured", "predicted", "at_edge"):
            assert math.isfinite(t["edge_added_ms"][key]["p50"])
    # the emulator carried the traffic and was torn down (its stats exist only after close)
    stats = res["netem"]
    assert stats, "no forwarder statistics"
    per_dir = [d for d in stats.values() if isinstance(d, dict) and "packets" in d]
    assert len(per_dir) == 2 and all(d["packets"] > 100 for d in per_dir), stats
