"""run_pair and the function runner: readiness, timeouts, errors, JSON collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from clutchcall.netem import NetemError, WanEmulator
from clutchcall.netem.harness import run_pair
from clutchcall.netem.runner import python_argv

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="needs root and /dev/net/tun to create network namespaces and TUN devices")


@needs_netns
def test_edge_never_ready_is_a_bounded_error() -> None:
    with WanEmulator() as wan:
        t0 = time.monotonic()
        with pytest.raises(NetemError, match="did not become ready"):
            run_pair(wan, ["sleep", "30"], [["true"]], ready_timeout=0.5)
        assert time.monotonic() - t0 < 5
        with pytest.raises(NetemError, match="boom"):
            run_pair(wan, [sys.executable, "-c", "raise SystemExit('boom')"], [["true"]])


@needs_netns
def test_slow_caller_is_killed_and_marked() -> None:
    ready = [sys.executable, "-c", "import json,time; print(json.dumps({'ready': True}), "
             "flush=True); time.sleep(30)"]
    with WanEmulator() as wan:
        t0 = time.monotonic()
        edge, (fast, slow) = run_pair(
            wan, ready, [[sys.executable, "-c", "print('{\"n\": 1}'); print('not json')"],
                         ["sleep", "30"]], timeout=1.0, edge_stop_timeout=2.0)
        assert time.monotonic() - t0 < 8
    assert fast.returncode == 0 and fast.messages == [{"n": 1}] and not fast.timed_out
    assert fast.stdout == '{"n": 1}\nnot json\n'
    assert slow.timed_out and slow.returncode != 0
    assert edge.messages == [{"ready": True}] and edge.returncode != 0  # stopped by SIGTERM


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_runner_plain_function_result_and_errors() -> None:
    r = _run(python_argv("json:dumps", obj=[1, 2]))
    assert r.returncode == 0 and json.loads(r.stdout) == {"result": "[1, 2]"}
    r = _run(python_argv("json:loads", s="{bad"))
    assert r.returncode == 1 and json.loads(r.stdout)["error"].startswith("JSONDecodeError")
    assert _run([sys.executable, "-m", "clutchcall.netem.runner", "nomodule"]).returncode == 2
    assert _run([sys.executable, "-m", "clutchcall.netem.runner", "json:dumps",
                 "[1]"]).returncode == 2
