"""The forwarding process between the two namespaces' TUN devices.

Theory of operation: the process reads one JSON line on stdin (the link configuration, the
two namespace names and the interface name), creates the TUN device in each namespace (see
:mod:`clutchcall.netem.tun`), prints ``{"ready": true, ...}`` on stdout and then forwards:
a packet read from the caller's TUN fd goes through the uplink :class:`PathModel`, one read
from the edge's TUN fd through the downlink model. A packet the model keeps is pushed on a
heap keyed by its release time; the loop sleeps in ``select`` (microsecond timeouts) until
shortly before the earliest release or until a TUN fd is readable, writes every due packet to
the other TUN fd, and reads at most a batch of packets per fd per turn so neither direction
starves. Arrival times are taken right after ``select`` returns, on the monotonic clock.
A timer wakes a sleeping process late (here 100-300 us in a VM), so the loop wakes ``lead``
early -- ``lead`` follows 1.5x the lateness it observes, between 20 us and 1 ms -- and polls
(``select`` with a zero timeout, so arrivals are still read at once) until the release is
due. The cost is at most ``lead`` of CPU per release instant; the gain is that packets leave
within microseconds of their release time instead of a timer's slack later. The process runs
SCHED_FIFO when it may (see :func:`_raise_priority`) and with the garbage collector off.

It stops when stdin reaches end of file (its parent closed the pipe or died), on SIGTERM or
SIGINT, or when its parent dies (``PR_SET_PDEATHSIG``); it then prints
``{"stats": {"uplink": ..., "downlink": ..., "timing": ...}}`` and exits. Its TUN devices
vanish with it.
"""

from __future__ import annotations

import ctypes
import gc
import heapq
import json
import os
import select
import signal
import sys
import time
from typing import Any, TextIO

from clutchcall.netem.model import PathModel, WanLinkConfig
from clutchcall.netem.tun import open_tun_in_netns

__all__ = ["main", "serve"]

TRACE_HEADER = "direction,seq,arrival_s,release_s,written_s,size,fate\n"
"""Trace columns: direction (uplink = caller -> edge), the packet's ordinal in its direction
(0-based, the order the model saw it; rows are written in release order), monotonic arrival
time at the
forwarder, release time the model chose, time actually written (empty if dropped), IP packet
size, fate (ok, lost, queue_drop, overflow, write_error)."""
_BATCH = 64
_READ_SIZE = 65536
PR_SET_PDEATHSIG = 1
PR_SET_TIMERSLACK = 29
_LEAD_INIT = 200e-6  # how early to wake before a release, learned from the timer's lateness
_LEAD_MIN = 20e-6
_LEAD_MAX = 1e-3
_MAX_IN_FLIGHT = 200_000  # packets held in the delay line at once (about 300 MB at most)


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise _Stop()


def serve(link: WanLinkConfig, edge_fd: int, caller_fd: int, control_fd: int,
          clock: Any = time.monotonic, trace: TextIO | None = None
          ) -> dict[str, dict[str, float]]:
    """Forward packets between ``edge_fd`` and ``caller_fd`` until ``control_fd`` is readable
    (data or end of file) or :class:`_Stop` is raised by a signal handler.

    Returns the per-direction counters ``{"uplink": {...}, "downlink": {...}}`` and
    ``"timing"``: how late packets left versus their release time (``late_us_mean``,
    ``late_us_max``, ``late_over_1ms``) and the learned timer lead (``lead_us``).
    With ``trace``, one CSV row per packet is written to it (see :data:`TRACE_HEADER`).
    """
    up = PathModel(link.uplink, seed=link.seed, name="uplink")
    down = PathModel(link.downlink, seed=link.seed, name="downlink")
    # fd read from -> (model, fd written to)
    routes = {caller_fd: (up, edge_fd), edge_fd: (down, caller_fd)}
    heap: list[tuple[float, int, int, bytes, PathModel, float, int]] = []
    seq = 0
    rlist = [edge_fd, caller_fd, control_fd]
    push, pop = heapq.heappush, heapq.heappop
    read, write = os.read, os.write
    sel = select.select
    lead = _LEAD_INIT
    writes = 0
    late_sum = late_max = 0.0
    late_over = 0

    def result() -> dict[str, dict[str, float]]:
        return {"uplink": dict(up.stats.to_dict()), "downlink": dict(down.stats.to_dict()),
                "timing": {"writes": writes, "late_us_mean": late_sum / max(1, writes) * 1e6,
                           "late_us_max": late_max * 1e6, "late_over_1ms": late_over,
                           "lead_us": lead * 1e6}}

    try:
        while True:
            now = clock()
            while heap and heap[0][0] <= now:
                release, _, out_fd, data, model, arrival, ordinal = pop(heap)
                fate = "ok"
                try:
                    write(out_fd, data)
                except OSError:
                    model.stats.write_errors += 1
                    fate = "write_error"
                if trace is not None:
                    trace.write(f"{model.name},{ordinal},{arrival:.6f},{release:.6f},{now:.6f},"
                                f"{len(data)},{fate}\n")
                late = now - release
                writes += 1
                late_sum += late
                late_max = max(late_max, late)
                if late > 0.001:
                    late_over += 1
            if heap:
                left = heap[0][0] - now
                # the timer wakes us late by about `lead`: sleep until `lead` before the
                # release, then poll (select with timeout 0) until it is due
                timeout: float | None = 0.0 if left <= lead else left - lead
            else:
                timeout = None
            ready, _, _ = sel(rlist, [], [], timeout)
            if not ready:
                if timeout:
                    woke_late = clock() - (now + timeout)
                    lead += 0.1 * (min(woke_late * 1.5, _LEAD_MAX) - lead)
                    lead = max(_LEAD_MIN, lead)
                continue
            now = clock()
            for fd in ready:
                if fd == control_fd:
                    return result()
                model, out_fd = routes[fd]
                admit = model.admit
                for _ in range(_BATCH):
                    try:
                        data = read(fd, _READ_SIZE)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    lost_before = model.stats.lost
                    admitted = admit(now, len(data))
                    if admitted is not None and len(heap) >= _MAX_IN_FLIGHT:
                        model.stats.overflow += 1  # memory guard: count, drop
                        if trace is not None:
                            trace.write(f"{model.name},{model.stats.packets - 1},{now:.6f},,,"
                                        f"{len(data)},overflow\n")
                        continue
                    if admitted is not None:
                        seq += 1
                        push(heap, (admitted, seq, out_fd, data, model, now,
                                    model.stats.packets - 1))
                    elif trace is not None:
                        fate = "lost" if model.stats.lost > lost_before else "queue_drop"
                        trace.write(f"{model.name},{model.stats.packets - 1},{now:.6f},,,"
                                    f"{len(data)},{fate}\n")
    except _Stop:
        pass
    return result()


def _raise_priority() -> None:
    """Make the emulated network preempt the programs it carries: SCHED_FIFO priority 10 if
    allowed (a woken forwarder runs at once; it never runs long: bounded batches, polling at
    most ``_LEAD_MAX`` per release, and the kernel's RT throttling caps it anyway), else
    nice -10, else leave it."""
    if os.environ.get("CLUTCHCALL_NETEM_NO_RT") != "1":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            return
        except (OSError, AttributeError):
            pass
    try:
        os.nice(-10)
    except OSError:
        pass


def main() -> int:
    """Entry point of ``python -m clutchcall.netem.forwarder``; returns the exit code."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)  # wake as exactly as the kernel can
    _raise_priority()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    gc.disable()  # the loop makes no reference cycles; a gen-2 pass would stall packets
    line = sys.stdin.buffer.readline()
    if not line:
        return 1
    spec = json.loads(line)
    link = WanLinkConfig.from_dict(spec["link"])
    ifname = spec.get("ifname", "cc0")
    edge_fd = open_tun_in_netns(spec["edge_ns"], ifname)
    caller_fd = open_tun_in_netns(spec["caller_ns"], ifname)
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    if spec.get("parent_pid") and os.getppid() != spec["parent_pid"]:
        return 1  # parent died before PDEATHSIG was armed
    trace_path = spec.get("trace_path")
    if trace_path:
        with open(trace_path, "w", buffering=1 << 20) as trace:
            trace.write(TRACE_HEADER)
            stats = serve(link, edge_fd, caller_fd, sys.stdin.fileno(), trace=trace)
    else:
        stats = serve(link, edge_fd, caller_fd, sys.stdin.fileno())
    try:
        out.write(json.dumps({"stats": stats}) + "\n")
        out.flush()
    except OSError:
        pass  # parent gone
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except _Stop:
        raise SystemExit(1) from None
