"""Small bounded network probes run on either side of the emulated link (tests, bench).

Theory of operation: each probe is a subcommand of ``python -m clutchcall.netem.probe``
that runs inside one namespace, does a bounded amount of work (a packet count and a
wall-clock limit, whichever ends first), and prints exactly one JSON object on stdout when
done. Servers (``udp-echo``, ``udp-sink``, ``tcp-echo``) first print ``{"ready": true}``
once their socket is bound, so a harness can start the client only then.

- ``udp-echo``: echoes datagrams back until idle or the time limit.
- ``udp-ping``: strict ping-pong (one outstanding probe); reports every RTT in ms.
- ``udp-blast``: sends ``count`` numbered datagrams of ``size`` bytes, paced or flat out.
- ``udp-sink``: receives numbered datagrams; reports which sequence numbers arrived, when
  the first and last arrived and the bytes received.
- ``tcp-echo`` / ``tcp-client``: the client sends ``bytes`` of a deterministic pattern, the
  server echoes them, the client checks every byte and reports timings.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time
from typing import Any

__all__ = ["main"]

_HDR = struct.Struct("!Id")  # sequence number, send time (monotonic seconds)
_SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _udp_echo(a: argparse.Namespace) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    _emit({"ready": True})
    end = time.monotonic() + a.max_seconds
    n = 0
    while n < a.max_packets:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], min(left, a.idle))
        if not r:
            break
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)
        n += 1
    return {"echoed": n}


def _udp_ping(a: argparse.Namespace) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((a.to, a.port))
    pad = b"\0" * max(0, a.size - _HDR.size)
    rtts: list[float] = []
    lost = 0
    end = time.monotonic() + a.max_seconds
    for seq in range(a.count):
        if time.monotonic() > end:
            break
        t0 = time.monotonic()
        s.send(_HDR.pack(seq, t0) + pad)
        deadline = t0 + a.timeout
        got = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            data = s.recv(65536)
            t1 = time.monotonic()
            if len(data) >= _HDR.size and _HDR.unpack_from(data)[0] == seq:
                rtts.append((t1 - t0) * 1000.0)
                got = True
                break
        if not got:
            lost += 1
        wait = t0 + a.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    srt = sorted(rtts)
    med = srt[len(srt) // 2] if srt else None
    return {"sent": len(rtts) + lost, "received": len(rtts), "lost": lost, "rtt_ms": rtts,
            "median_ms": med}


def _udp_blast(a: argparse.Namespace) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((a.to, a.port))
    pad = b"\0" * max(0, a.size - _HDR.size)
    t_start = time.monotonic()
    sent = 0
    for seq in range(a.count):
        if a.interval > 0:
            wait = t_start + seq * a.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        try:
            s.send(_HDR.pack(seq, time.monotonic()) + pad)
            sent += 1
        except OSError:
            pass
        if time.monotonic() - t_start > a.max_seconds:
            break
    return {"sent": sent, "seconds": time.monotonic() - t_start}


def _udp_sink(a: argparse.Namespace) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # as root, beyond net.core.rmem_max: a stalled sink must not drop datagrams
        s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((a.bind, a.port))
    _emit({"ready": True})
    end = time.monotonic() + a.max_seconds
    seqs: list[int] = []
    first = last = None
    nbytes = 0
    started = False
    while len(seqs) < a.count:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], min(left, a.idle) if started else left)
        if not r:
            break
        data = s.recv(65536)
        now = time.monotonic()
        started = True
        if len(data) < _HDR.size:
            continue
        seqs.append(_HDR.unpack_from(data)[0])
        nbytes += len(data)
        first = now if first is None else first
        last = now
    return {"received": len(seqs), "seqs": seqs, "first": first, "last": last,
            "bytes": nbytes}


def _pattern(n: int) -> bytes:
    block = bytes(range(251))  # prime length: misaligned chunks show as errors
    return (block * (n // len(block) + 1))[:n]


def _tcp_echo(a: argparse.Namespace) -> dict[str, Any]:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4)
    _emit({"ready": True})
    r, _, _ = select.select([ls], [], [], a.max_seconds)
    if not r:
        return {"echoed": 0, "error": "no connection"}
    c, _ = ls.accept()
    c.settimeout(a.max_seconds)
    n = 0
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
        n += len(data)
    c.close()
    return {"echoed": n}


def _tcp_client(a: argparse.Namespace) -> dict[str, Any]:
    payload = _pattern(a.bytes)
    t0 = time.monotonic()
    c = socket.create_connection((a.to, a.port), timeout=a.max_seconds)
    t_conn = time.monotonic()
    c.setblocking(False)
    got = bytearray()
    view = memoryview(payload)
    sent = 0
    end = t0 + a.max_seconds
    shut = False
    while len(got) < len(payload) and time.monotonic() < end:
        w = [c] if sent < len(payload) else []
        r, wr, _ = select.select([c], w, [], max(0.0, end - time.monotonic()))
        if wr:
            try:
                sent += c.send(view[sent:sent + 65536])
            except BlockingIOError:
                pass
        if sent == len(payload) and not shut:
            c.shutdown(socket.SHUT_WR)
            shut = True
        if r:
            data = c.recv(65536)
            if not data:
                break
            got += data
    t_end = time.monotonic()
    c.close()
    return {"connect_ms": (t_conn - t0) * 1000.0, "seconds": t_end - t0,
            "sent": sent, "received": len(got), "intact": bytes(got) == payload}


def main(argv: list[str] | None = None) -> int:
    """Run one probe (see the module docstring); print its JSON result; return 0."""
    p = argparse.ArgumentParser(prog="python -m clutchcall.netem.probe")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("udp-echo", "udp-sink", "tcp-echo"):
        sp = sub.add_parser(name)
        sp.add_argument("--bind", default="0.0.0.0")
        sp.add_argument("--port", type=int, default=9000)
        sp.add_argument("--max-seconds", type=float, default=30.0)
        sp.add_argument("--idle", type=float, default=2.0)
        sp.add_argument("--max-packets", type=int, default=100000)
        sp.add_argument("--count", type=int, default=100000)
    for name in ("udp-ping", "udp-blast", "tcp-client"):
        sp = sub.add_parser(name)
        sp.add_argument("--to", required=True)
        sp.add_argument("--port", type=int, default=9000)
        sp.add_argument("--count", type=int, default=100)
        sp.add_argument("--size", type=int, default=64)
        sp.add_argument("--interval", type=float, default=0.0)
        sp.add_argument("--timeout", type=float, default=1.0)
        sp.add_argument("--max-seconds", type=float, default=30.0)
        sp.add_argument("--bytes", type=int, default=100000)
    a = p.parse_args(argv)
    fn = {"udp-echo": _udp_echo, "udp-ping": _udp_ping, "udp-blast": _udp_blast,
          "udp-sink": _udp_sink, "tcp-echo": _tcp_echo, "tcp-client": _tcp_client}[a.cmd]
    _emit(fn(a))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
