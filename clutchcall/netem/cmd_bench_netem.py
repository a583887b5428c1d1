"""``clutchcall bench netem``: what the userspace forwarder costs and how exact it is.

Theory of operation: the same probes run over two links built the same way -- the baseline
(a kernel veth pair between the two namespaces, :class:`VethBaseline`) and the emulator with no
impairment (``WanEmulator(rtt_ms=0)``) -- and report, for each, the UDP ping-pong RTT
(median and p99), the UDP packet rate the receiver sees when the sender blasts small
datagrams flat out, and the TCP echo throughput. Ratios emulator/baseline come from the same
process and the same run. Then the emulator is set to ``--rtt-ms`` (default 50) and the ping
error (measured - requested) is reported, the pure impairment model is timed per packet, and
the forwarder's CPU share and lateness are measured under audio-like load (160-byte
datagrams at 250 and 1000 packets/s each way, i.e. about 5 and 20 calls).
Figures are medians over ``--repeat`` runs of each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from clutchcall.netem.emulator import NamespacePair, VethBaseline, WanEmulator
from clutchcall.netem.harness import run_pair
from clutchcall.netem.model import GilbertElliott, PathConfig, PathModel

__all__ = ["configure", "run"]

PROBE = [sys.executable, "-m", "clutchcall.netem.probe"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser``."""
    parser.add_argument("--pings", type=int, default=200, help="pings per RTT run (200)")
    parser.add_argument("--packets", type=int, default=20000,
                        help="datagrams per packet-rate run (20000)")
    parser.add_argument("--tcp-bytes", type=int, default=4_000_000,
                        help="bytes echoed per TCP run (4 MB)")
    parser.add_argument("--rtt-ms", type=float, default=50.0,
                        help="RTT for the accuracy run (50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _ping(pair: NamespacePair, count: int, interval: float) -> list[float]:
    _, (c,) = run_pair(pair, PROBE + ["udp-echo", "--port", "9500", "--idle", "5"],
                       [PROBE + ["udp-ping", "--to", pair.edge_addr, "--port", "9500",
                                 "--count", str(count), "--interval", str(interval),
                                 "--max-seconds", "60"]], timeout=90)
    assert c.last is not None, c.stderr
    return list(c.last["rtt_ms"])[5:]  # drop warm-up probes


def _pps(pair: NamespacePair, count: int) -> float:
    edge, _ = run_pair(pair, PROBE + ["udp-sink", "--port", "9501", "--count", str(count),
                                      "--idle", "1.0", "--max-seconds", "60"],
                       [PROBE + ["udp-blast", "--to", pair.edge_addr, "--port", "9501",
                                 "--count", str(count), "--size", "64", "--max-seconds", "60"]],
                       timeout=90, edge_grace=5.0)
    r = edge.last
    assert r is not None and r["received"] > 1, edge.stderr
    return float((r["received"] - 1) / (r["last"] - r["first"]))


def _tcp(pair: NamespacePair, nbytes: int) -> float:
    _, (c,) = run_pair(pair, PROBE + ["tcp-echo", "--port", "9502", "--max-seconds", "60"],
                       [PROBE + ["tcp-client", "--to", pair.edge_addr, "--port", "9502",
                                 "--bytes", str(nbytes), "--max-seconds", "60"]], timeout=90)
    r = c.last
    assert r is not None and r["intact"], c.stderr
    return float(2 * nbytes * 8 / r["seconds"] / 1e6)  # Mbit/s, both directions counted


def _link_figures(pair: NamespacePair, a: argparse.Namespace) -> dict[str, float]:
    rtts: list[float] = []
    meds, p99s, pps, tcp = [], [], [], []
    for _ in range(a.repeat):
        r = _ping(pair, a.pings, 0.002)
        rtts += r
        meds.append(statistics.median(r))
        p99s.append(_pct(r, 0.99))
        pps.append(_pps(pair, a.packets))
        tcp.append(_tcp(pair, a.tcp_bytes))
    return {"rtt_median_ms": statistics.median(meds), "rtt_p99_ms": statistics.median(p99s),
            "udp_pps": statistics.median(pps), "tcp_echo_mbps": statistics.median(tcp)}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(rtt_ms: float, pps: int, seconds: float) -> dict[str, float]:
    """Forwarder CPU share and write lateness while carrying ``pps`` packets/s each way of
    160-byte datagrams (about pps/50 calls of 20 ms audio frames), echoed back."""
    wan = WanEmulator(rtt_ms=rtt_ms)
    with wan:
        assert wan._forwarder is not None
        pid = wan._forwarder.pid
        c0, t0 = _cpu_seconds(pid), time.monotonic()
        run_pair(wan, PROBE + ["udp-echo", "--port", "9503", "--idle", "1"],
                 [PROBE + ["udp-blast", "--to", wan.edge_addr, "--port", "9503", "--count",
                           str(int(pps * seconds)), "--size", "160", "--interval",
                           str(1.0 / pps)]], timeout=seconds + 30, edge_grace=2.0)
        cpu = (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    timing = (wan.stats or {}).get("timing", {})
    return {"pps_each_way": pps, "forwarder_cpu_pct": 100.0 * cpu,
            "late_us_mean": timing.get("late_us_mean", float("nan")),
            "late_over_1ms_pct": 100.0 * timing.get("late_over_1ms", 0)
            / max(1, timing.get("writes", 0))}


def _model_us_per_packet(n: int = 200_000) -> float:
    cfg = PathConfig(delay_ms=25.0, jitter_ms=2.0, ge=GilbertElliott(p=0.01, r=0.3),
                     rate_kbps=100_000.0)
    runs = []
    for _ in range(3):
        m = PathModel(cfg, seed=1)
        t0 = time.perf_counter()
        for i in range(n):
            m.admit(i * 1e-4, 200)
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


def run(a: argparse.Namespace) -> int:
    """Run the benchmark; print a table (or JSON with ``--json``); return 0."""
    with VethBaseline() as veth:
        base = _link_figures(veth, a)
    with WanEmulator(rtt_ms=0.0) as wan:
        emu = _link_figures(wan, a)
    errs: list[float] = []
    wan = WanEmulator(rtt_ms=a.rtt_ms)
    with wan:
        for _ in range(a.repeat):
            errs += [x - a.rtt_ms for x in _ping(wan, max(20, a.pings // 4), 0.01)]
    timing = (wan.stats or {}).get("timing", {})
    out: dict[str, Any] = {
        "baseline_veth": base,
        "netem_rtt0": emu,
        "ratio_netem_over_veth": {k: emu[k] / base[k] for k in base},
        "forwarder_added_rtt_ms": emu["rtt_median_ms"] - base["rtt_median_ms"],
        "accuracy": {"rtt_ms": a.rtt_ms, "error_median_ms": statistics.median(errs),
                     "error_p99_ms": _pct(errs, 0.99), "error_min_ms": min(errs),
                     "forwarder_late_us_mean": timing.get("late_us_mean"),
                     "forwarder_late_us_max": timing.get("late_us_max")},
        "model_us_per_packet": _model_us_per_packet(),
        "load": [_load(a.rtt_ms, pps, 2.0) for pps in (250, 1000)],
    }
    if a.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"{'':22}{'veth (baseline)':>18}{'netem rtt=0':>14}{'ratio':>8}")
    for k, label in (("rtt_median_ms", "UDP RTT median ms"), ("rtt_p99_ms", "UDP RTT p99 ms"),
                     ("udp_pps", "UDP packets/s"), ("tcp_echo_mbps", "TCP echo Mbit/s")):
        print(f"{label:22}{base[k]:>18.3f}{emu[k]:>14.3f}"
              f"{out['ratio_netem_over_veth'][k]:>8.2f}")
    acc = out["accuracy"]
    print(f"forwarder adds {out['forwarder_added_rtt_ms']:.3f} ms RTT (median)")
    print(f"at rtt {a.rtt_ms:g} ms: error median {acc['error_median_ms']:+.3f} ms, "
          f"p99 {acc['error_p99_ms']:+.3f} ms, min {acc['error_min_ms']:+.3f} ms; forwarder "
          f"writes {acc['forwarder_late_us_mean']:.1f} us late on average "
          f"(max {acc['forwarder_late_us_max']:.0f} us)")
    print(f"impairment model: {out['model_us_per_packet']:.2f} us/packet")
    for ld in out["load"]:
        print(f"at {ld['pps_each_way']} packets/s each way (160 B, rtt {a.rtt_ms:g} ms): "
              f"forwarder CPU {ld['forwarder_cpu_pct']:.1f}%, writes "
              f"{ld['late_us_mean']:.0f} us late on average, "
              f"{ld['late_over_1ms_pct']:.1f}% over 1 ms")
    return 0
