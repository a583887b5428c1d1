"""The AF_XDP datagram path: UDP for one port straight from the NIC queue into user space.

Theory of operation: :func:`compile_program` builds our XDP program
(``bpf/xdp_udp_redirect.bpf.c``) with clang into a cached object file. :class:`XdpUdpIO` opens
an AF_XDP socket on one interface queue through the C module (``csrc/cc_xdp.c``: SKB/copy
mode, our program attached with ``bpf_xdp_attach``, libxdp's dispatcher not used), and offers
the same small interface as :mod:`clutchcall.native.udpio` (``start(on_batch)``,
``send_batch``, ``local_address``, ``kind == "xdp"``, ``close``). The XSK delivers whole
Ethernet frames: the C side checks and strips Ethernet/IPv4/UDP headers (the sender's MAC
address comes along, so this module learns each peer's MAC from its frames) and builds them
for replies (IPv4 header checksum computed, UDP checksum 0, which IPv4 allows). Only IPv4 without options on our address and port is taken;
anything else the program already passed to the kernel. Replies to a peer whose MAC was never
seen are dropped and counted. Requires root (CAP_NET_ADMIN, CAP_BPF) and the interface; on
veth set ``LIBXDP_SKIP_DISPATCHER=1`` and turn tx checksum offload off on both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clutchcall.engine.errors import ClutchCallError, LocalProtocolError
from clutchcall.native.udpio import Datagram, OnBatch

log = logging.getLogger("clutchcall.native")

BPF_SRC = Path(__file__).with_name("bpf") / "xdp_udp_redirect.bpf.c"

try:
    import clutchcall.native._xdp as _xdp

    XDP_BUILT = True
except ImportError:  # libxdp/libbpf missing at build time
    _xdp = None
    XDP_BUILT = False


class XdpUnavailable(ClutchCallError):
    """AF_XDP cannot be used: not built, no clang, or the kernel refused (``.errno``)."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


def compile_program(out_dir: str | None = None) -> str:
    """Return the path of the compiled XDP object, compiling it with clang if the cached one
    is missing. Raises XdpUnavailable if clang is missing or fails."""
    src = BPF_SRC.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out = Path(out_dir or tempfile.gettempdir()) / f"clutchcall-xdp-{digest}.o"
    if out.exists():
        return str(out)
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = ["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{multiarch}",
           "-c", str(BPF_SRC), "-o", str(tmp)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        raise XdpUnavailable(f"clang not available: {exc}", errno.ENOENT) from exc
    if res.returncode != 0:
        raise XdpUnavailable(f"clang failed: {res.stderr[-500:]}", errno.EINVAL)
    os.replace(tmp, out)
    return str(out)


def _mac(iface: str) -> bytes:
    return bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))


class XdpUdpIO:
    """Datagram I/O for (ip, port) over an AF_XDP socket on ``iface`` queue ``queue``.

    Raises XdpUnavailable if AF_XDP is not built, clang is missing, or the kernel refuses.
    """

    kind = "xdp"

    def __init__(self, iface: str, ip: str, port: int, *, queue: int = 0, nframes: int = 4096,
                 max_batch: int = 64) -> None:
        if _xdp is None:
            raise XdpUnavailable("AF_XDP path not built (libxdp/libbpf missing at build)",
                                 errno.ENOSYS)
        os.environ.setdefault("LIBXDP_SKIP_DISPATCHER", "1")
        obj = compile_program()
        self._ffi, self._lib = _xdp.ffi, _xdp.lib
        err = self._ffi.new("int *")
        ptr = self._lib.cc_xsk_open(iface.encode(), queue, obj.encode(), port, nframes, 2048, err)
        if ptr == self._ffi.NULL:
            code = -err[0]
            raise XdpUnavailable(f"AF_XDP setup on {iface} failed: "
                                 f"{errno.errorcode.get(code, code)}", code)
        self._x = ptr
        self.iface = iface
        self.ip = ip
        self.port = port
        self._ip_raw = socket.inet_aton(ip)
        self._mac = _mac(iface)
        self.local_address = (ip, port)
        self.max_batch = max_batch
        self._out = self._ffi.new("uint8_t[]", max_batch * 2048)
        self._lens = self._ffi.new("uint32_t[]", max_batch)
        self._neigh: dict[str, bytes] = {}
        self._ip_be = int.from_bytes(self._ip_raw, "little")  # network order in a host u32
        self._mac_c = self._ffi.new("uint8_t[6]", list(self._mac))
        self._peers = self._ffi.new("cc_peer_t[]", max_batch)
        self._dropped = self._ffi.new("uint64_t *")
        self._addr_cache: dict[bytes, tuple[str, int]] = {}
        self._peer_cache: dict[Any, bytes] = {}
        self.dropped_no_neighbour = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_batch: OnBatch | None = None

    def fileno(self) -> int:
        """Return the XSK fd: readable when frames wait in the RX ring."""
        return int(self._lib.cc_xsk_fd(self._x))

    def stats(self) -> dict[str, int]:
        """Return frame counters of the socket and of this wrapper."""
        st = self._ffi.new("cc_xsk_stats_t *")
        self._lib.cc_xsk_get_stats(self._x, st)
        return {"rx_frames": int(st.rx_frames), "tx_frames": int(st.tx_frames),
                "tx_no_frame": int(st.tx_no_frame), "fill_short": int(st.fill_short),
                "dropped_no_neighbour": self.dropped_no_neighbour,
                "dropped_malformed": int(self._dropped[0])}

    def recv_batch(self, max_n: int | None = None) -> list[Datagram]:
        """Return up to ``max_n`` UDP datagrams for our address and port (others dropped and
        counted). Headers are checked and stripped in C."""
        if self._x is None:
            raise LocalProtocolError("AF_XDP socket closed")
        m = min(max_n or self.max_batch, self.max_batch)
        n = self._lib.cc_xsk_recv_udp(self._x, self._ip_be, self.port, self._out, m * 2048,
                                      self._lens, self._peers, m, self._dropped)
        if n <= 0:
            return []
        sizes = [self._lens[i] for i in range(n)]
        raw = self._ffi.buffer(self._out, sum(sizes))[:]
        praw = self._ffi.buffer(self._peers, n * 12)[:]
        cache = self._addr_cache
        res: list[Datagram] = []
        off = 0
        for i in range(n):
            key = praw[i * 12:i * 12 + 6]
            addr = cache.get(key)
            if addr is None:
                if len(cache) > 65536:
                    cache.clear()
                addr = cache[key] = (socket.inet_ntoa(key[:4]), int.from_bytes(key[4:6], "little"))
            mac = praw[i * 12 + 6:i * 12 + 12]
            if self._neigh.get(addr[0]) != mac:
                self._neigh[addr[0]] = mac
                self._peer_cache.pop(addr, None)
            ln = sizes[i]
            res.append((raw[off:off + ln], addr))
            off += ln
        return res

    def send_batch(self, datagrams: Iterable[Datagram]) -> int:
        """Frame (Ethernet/IPv4/UDP, in C) and transmit the datagrams in one batch; return how
        many were queued. Datagrams to a peer whose MAC address was never seen are dropped and
        counted. Raises LocalProtocolError for an oversize datagram or non-IPv4 address."""
        if self._x is None:
            raise LocalProtocolError("AF_XDP socket closed")
        datas: list[bytes] = []
        peers: list[bytes] = []
        pc = self._peer_cache
        for data, addr in datagrams:
            if len(data) > 2048 - 42:
                raise LocalProtocolError(f"datagram of {len(data)} bytes too large for a frame")
            peer = pc.get(addr)
            if peer is None:
                mac = self._neigh.get(addr[0])
                if mac is None:
                    self.dropped_no_neighbour += 1
                    continue
                try:
                    ip = socket.inet_aton(addr[0])
                except OSError as exc:
                    raise LocalProtocolError(f"not an IPv4 address: {addr!r}") from exc
                peer = pc[addr] = ip + int(addr[1]).to_bytes(2, "little") + mac
            datas.append(data)
            peers.append(peer)
        if not datas:
            return 0
        ffi = self._ffi
        sent = 0
        for _attempt in range(100):  # bounded: wait for TX frames to complete if pool is dry
            rest = datas[sent:]
            buf = b"".join(rest)
            rc = self._lib.cc_xsk_send_udp(
                self._x, self._ip_be, self.port, self._mac_c, ffi.from_buffer(buf),
                ffi.new("uint32_t[]", [len(d) for d in rest]),
                ffi.from_buffer("cc_peer_t[]", b"".join(peers[sent:])), len(rest))
            if rc < 0:
                raise OSError(-rc, "AF_XDP send failed")
            sent += rc
            if sent == len(datas):
                break
            time.sleep(0.0005)
        return sent

    async def start(self, on_batch: OnBatch) -> None:
        """Deliver received datagrams to ``on_batch`` from the running loop."""
        self._loop = asyncio.get_running_loop()
        self._on_batch = on_batch
        self._loop.add_reader(self.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(64):
            batch = self.recv_batch()
            if not batch:
                break
            if self._on_batch is not None:
                try:
                    self._on_batch(batch)
                except Exception:
                    log.exception("AF_XDP batch handler failed")

    def close(self) -> None:
        """Detach the program and free the socket and UMEM; idempotent."""
        if self._x is None:
            return
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.fileno())
            except (RuntimeError, ValueError):
                pass
        self._lib.cc_xsk_close(self._x)
        self._x = None


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    from clutchcall.native.quic_echo import QuicEchoServer, server_configuration
    from clutchcall.native.tlscert import make_certificate

    io = XdpUdpIO(args.iface, args.ip, args.port)
    # XdpUdpIO has the UdpIO interface QuicEchoServer uses, without being its subclass
    server = QuicEchoServer(io, server_configuration(*make_certificate()))  # type: ignore[arg-type]
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.seconds
    stop = asyncio.Event()
    loop.add_signal_handler(15, stop.set)
    while loop.time() < deadline and not stop.is_set():
        if args.handshakes and server.handshakes >= args.handshakes and not server.conns:
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass
    out = {"handshakes": server.handshakes, "datagrams_in": server.datagrams_in,
           "datagrams_out": server.datagrams_out, **io.stats()}
    server.close()
    return out


async def _udp_echo(args: argparse.Namespace) -> dict[str, Any]:
    from clutchcall.native.udpio import open_udp_io

    io: Any
    if args.io == "xdp":
        io = XdpUdpIO(args.iface, args.ip, args.port)
    else:
        io = open_udp_io(args.io, args.ip, args.port)
    seen = [0, 0.0]

    def echo(batch: list[Datagram]) -> None:
        seen[0] += len(batch)
        seen[1] = time.monotonic()
        io.send_batch(batch)

    await io.start(echo)
    print("READY", flush=True)
    t_end = time.monotonic() + args.seconds
    cpu0 = time.thread_time()
    while time.monotonic() < t_end:
        await asyncio.sleep(0.05)
        if seen[0] and time.monotonic() - seen[1] > args.idle:
            break
    cpu = time.thread_time() - cpu0
    out = {"io": io.kind, "echoed": seen[0],
           "server_cpu_us_per_packet": cpu * 1e6 / seen[0] if seen[0] else None}
    if isinstance(io, XdpUdpIO):
        out.update(io.stats())
    io.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m clutchcall.native.xdp serve --iface IF --ip A --port P``: a QUIC echo
    server behind AF_XDP (bounded by --seconds); prints READY, then a JSON report.
    ``udp-echo --io xdp|uring|asyncio ...``: a plain UDP echo for the benchmark, same output."""
    p = argparse.ArgumentParser(prog="python -m clutchcall.native.xdp")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("udp-echo")
    e.add_argument("--io", choices=["xdp", "uring", "asyncio"], default="xdp")
    e.add_argument("--iface", default="")
    e.add_argument("--ip", required=True)
    e.add_argument("--port", type=int, default=4433)
    e.add_argument("--seconds", type=float, default=30.0)
    e.add_argument("--idle", type=float, default=1.0, help="stop after this long without traffic")
    s = sub.add_parser("serve")
    s.add_argument("--iface", required=True)
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, default=4433)
    s.add_argument("--seconds", type=float, default=30.0)
    s.add_argument("--handshakes", type=int, default=0, help="exit when this many calls ended")
    args = p.parse_args(argv)
    report = asyncio.run(_serve(args) if args.cmd == "serve" else _udp_echo(args))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
