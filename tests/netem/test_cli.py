"""``clutchcall netem``: clean stdout, exit status, edge command, signals, cleanup."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from clutchcall.netem.tun import NETNS_DIR

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="needs root and /dev/net/tun to create network namespaces and TUN devices")

CLI = [sys.executable, "-m", "clutchcall.cli", "netem"]


def _namespaces_of(pid: int) -> set[str]:
    """The emulator namespaces process ``pid`` made (``cc-edge-PID-N`` / ``cc-caller-PID-N``).

    Only these are compared: other tests and other people on the machine create (and sweep
    away stale) ``cc-*`` namespaces at the same time, so the whole list is not ours to check.
    """
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    names = {ln.split()[0] for ln in out.splitlines() if ln.strip()}
    return {n for n in names if re.fullmatch(rf"cc-(edge|caller)-{pid}-\d+", n)}


def _netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def _is_pair_of(pid: int, names: list[str]) -> bool:
    """Whether ``names`` is [edge, caller] of one emulator made by process ``pid``."""
    m = [re.fullmatch(rf"cc-{side}-{pid}-(\d+)", n) for side, n in zip(("edge", "caller"), names)]
    return len(names) == 2 and all(m) and m[0].group(1) == m[1].group(1)  # type: ignore[union-attr]


def test_stdout_is_cmds_only_and_status_passes_through() -> None:
    p = subprocess.Popen(CLI + ["--rtt-ms", "20", "--loss", "0.01", "--stats", "--",
                                "sh", "-c", "echo $CLUTCHCALL_NETEM_EDGE_ADDR; "
                                "ip -o -4 addr show cc0 | awk '{print $4}'; "
                                "echo NS $CLUTCHCALL_NETEM_EDGE_NS $CLUTCHCALL_NETEM_CALLER_NS >&2; "
                                "exit 7"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 7, err
    assert out == "198.18.0.1\n198.18.0.2/30\n"  # CMD ran in the caller namespace
    stats = json.loads(err.strip().splitlines()[-1])["netem_stats"]
    assert set(stats) == {"uplink", "downlink", "timing"}
    names = next(ln.split()[1:] for ln in err.splitlines() if ln.startswith("NS "))
    assert _is_pair_of(p.pid, names), names  # this run's own pair (named after its pid)
    assert not any(_netns_exists(n) for n in names)  # ... removed when CMD ended
    assert _namespaces_of(p.pid) == set()


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
    p = subprocess.Popen(CLI + ["--rtt-ms", "10", "--", "sh", "-c",
                                "echo up $CLUTCHCALL_NETEM_EDGE_NS $CLUTCHCALL_NETEM_CALLER_NS; "
                                "exec sleep 30"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        up, *names = p.stdout.readline().split()
        assert up == "up" and _is_pair_of(p.pid, names), names
        assert _namespaces_of(p.pid) == set(names)
        t0 = time.monotonic()
        p.send_signal(sig)
        assert p.wait(timeout=15) == code
        assert time.monotonic() - t0 < 10
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not any(_netns_exists(n) for n in names)
    assert _namespaces_of(p.pid) == set()
    assert "cc0" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                       text=True).stdout
