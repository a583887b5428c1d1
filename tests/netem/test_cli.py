"""``clutchcall netem``: clean stdout, exit status, edge command, signals, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="needs root and /dev/net/tun to create network namespaces and TUN devices")

CLI = [sys.executable, "-m", "clutchcall.cli", "netem"]


def _our_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(("cc-edge-", "cc-caller-"))]


def test_stdout_is_cmds_only_and_status_passes_through() -> None:
    before = set(_our_namespaces())
    r = subprocess.run(CLI + ["--rtt-ms", "20", "--loss", "0.01", "--stats", "--",
                              "sh", "-c", "echo $CLUTCHCALL_NETEM_EDGE_ADDR; "
                              "ip -o -4 addr show cc0 | awk '{print $4}'; exit 7"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 7, r.stderr
    assert r.stdout == "198.18.0.1\n198.18.0.2/30\n"  # CMD ran in the caller namespace
    stats = json.loads(r.stderr.strip().splitlines()[-1])["netem_stats"]
    assert set(stats) == {"uplink", "downlink", "timing"}
    assert set(_our_namespaces()) == before


def test_edge_command_and_rtt_through_cli() -> None:
    probe = f"{sys.executable} -m clutchcall.netem.probe"
    r = subprocess.run(CLI + ["--rtt-ms", "30", "--edge",
                              f"exec {probe} udp-echo --port 9300 --idle 5",
                              "--edge-port", "9300", "--",
                              "sh", "-c", f"{probe} udp-ping --to $CLUTCHCALL_NETEM_EDGE_ADDR "
                              "--port 9300 --count 10 --interval 0.005"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # only the caller's JSON: the edge's went to stderr
    assert out["received"] == 10
    assert abs(out["median_ms"] - 30.0) <= 2.0 + 1.5
    assert '"ready": true' in r.stderr


def test_bad_options_exit_2() -> None:
    for extra in (["--loss", "1.5", "--", "true"], ["--ge", "0.1", "--", "true"], []):
        r = subprocess.run(CLI + extra, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and r.stdout == ""


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + 15)])
def test_signal_stops_cmd_and_cleans_up(sig: int, code: int) -> None:
    before = set(_our_namespaces())
    p = subprocess.Popen(CLI + ["--rtt-ms", "10", "--", "sh", "-c", "echo up; exec sleep 30"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "up\n"
        assert len(set(_our_namespaces()) - before) == 2
        t0 = time.monotonic()
        p.send_signal(sig)
        assert p.wait(timeout=15) == code
        assert time.monotonic() - t0 < 10
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert set(_our_namespaces()) == before
    assert "cc0" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                       text=True).stdout
