"""`clutchcall bench native --json` runs (tiny counts) and prints the documented keys with
real, positive figures: rings, UDP echo and one-way receive, QUIC echo, and the end-to-end
edge-added latency through the real edge with --io asyncio and --io uring."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_native_json_keys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clutchcall", "bench", "native", "--json", "--repeat", "1",
         "--ring-msgs", "200000", "--udp-pkts", "3000", "--window", "32", "--rx-pkts", "20000",
         "--echo-calls", "4", "--echo-seconds", "0.5", "--calls", "2", "--call-seconds", "3"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    res = json.loads(out)
    assert res["ring_msgs_per_s"] > 0 and res["ring_1p3c_publish_msgs_per_s"] > 0
    assert res["udp_echo_asyncio_pps"] > 0
    assert res["udp_rx_asyncio_pps"] > 0 and 0 <= res["udp_rx_asyncio_loss_fraction"] < 1
    # every echo is timed when it arrives (not at the next frame): far below the 20 ms frame
    assert 0 < res["quic_asyncio_rtt_ms_p50"] < 15 and res["quic_asyncio_frames_per_s"] > 0
    kinds = ["asyncio"]
    if res["uring_built"]:
        kinds.append("uring")
        assert res["uring_vs_asyncio_pps_ratio"] > 0 and res["udp_echo_uring_pps"] > 0
        assert res["udp_rx_uring_pps"] > 0 and res["uring_vs_asyncio_rx_cpu_ratio"] > 0
        assert res["quic_uring_rtt_ms_p50"] > 0 and res["quic_uring_unanswered"] == 0
        assert res["e2e_uring_vs_asyncio_edge_added_p50_ratio"] > 0
    assert res["e2e_calls"] == 2
    for k in kinds:  # real calls through the real edge, each a committed turn with agent audio
        assert res[f"e2e_{k}_io"] == k
        assert res[f"e2e_{k}_calls_completed"] == 2 and res[f"e2e_{k}_calls_failed"] == 0
        assert res[f"e2e_{k}_turns"] >= 2 and res[f"e2e_{k}_frames_sent"] > 0
        assert res[f"e2e_{k}_edge_added_ms_p50"] > 0
        assert isinstance(res[f"e2e_{k}_within_goal"], bool)


def test_load_generator_survives_an_echo_server_held_up() -> None:
    """The echo server stops answering for 60 ms mid-run (a loaded machine holding it up),
    then echoes the datagrams that waited in its socket. The load generator presumes that
    window lost after 20 ms and sends a new one; the late echoes must not stall it: every
    echo still counts and the run reaches its total instead of giving up at the idle
    timeout."""
    import socket
    import threading
    import time

    from clutchcall.native.cmd_bench_native import _blast

    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.2)
    echoed = [0]
    stop = threading.Event()

    def echo() -> None:
        end = time.monotonic() + 30  # bounded
        while not stop.is_set() and time.monotonic() < end:
            try:
                data, peer = srv.recvfrom(2048)
            except TimeoutError:
                continue
            srv.sendto(data, peer)
            echoed[0] += 1
            if echoed[0] == 300:
                time.sleep(0.06)  # held up: the window in flight waits in the socket

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        got, dt = _blast(srv.getsockname(), 2000, 16, 100)
    finally:
        stop.set()
        t.join(5)
        srv.close()
    assert echoed[0] >= 2000 and dt > 0.06
    assert got >= 2000, got
