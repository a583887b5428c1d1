"""Batched UDP datagram I/O for the edge: an io_uring reactor, or asyncio as the fallback.

Theory of operation: the production edge is sans-IO QUIC (aioquic's ``QuicConnection``): it
needs a way to receive datagrams as ``(data, addr)`` and to send ``datagrams_to_send()`` back.
Both implementations here offer the same small interface, batch-oriented:

- ``await io.start(on_batch)``: from then on, the event loop calls ``on_batch(list[(bytes,
  addr)])`` whenever datagrams arrive (one call per batch, never with an empty list);
- ``io.send_batch([(bytes, addr), ...]) -> int``: queue and send them all;
- ``io.local_address``, ``io.kind`` (``"uring"`` / ``"asyncio"``), ``io.close()``.

:class:`UringUdpIO` drives the C reactor (``csrc/cc_uring.c``): a multishot ``recvmsg`` into
a provided-buffer ring, completions published into an mcache/dcache :class:`Ring`, sends as one
batch of ``sendmsg`` SQEs per call (with UDP GSO, a run of equal-size datagrams to one peer,
as QUIC typically produces, is one ``sendmsg`` that the kernel segments). The loop watches the reactor's eventfd (``fileno()``) with
``add_reader``; it also works without asyncio through :meth:`UringUdpIO.recv_batch`.
:class:`AsyncioUdpIO` is a plain asyncio datagram endpoint that groups the datagrams of one
loop iteration into a batch. :func:`open_udp_io` picks one; when io_uring is not built or the
kernel refuses it (ENOSYS, EPERM, EINVAL) it logs one line and returns the asyncio one.
Addresses are ``(host, port)`` for IPv4 and ``(host, port, flowinfo, scope_id)`` for IPv6, as
asyncio and aioquic use them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

from clutchcall.engine.errors import ClutchCallError, LocalProtocolError

log = logging.getLogger("clutchcall.native")

Addr = tuple[Any, ...]
Datagram = tuple[bytes, Addr]
OnBatch = Callable[[list[Datagram]], object]

FALLBACK_ERRNOS = (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP)
ADDR_SZ = 28

try:
    import clutchcall.native._uring as _uring

    URING_BUILT = True
except ImportError:  # liburing was missing at build time
    _uring = None
    URING_BUILT = False


class UringUnavailable(ClutchCallError):
    """io_uring cannot be used here: not built, or the kernel refused (``.errno`` set)."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


def _addr_from_sockaddr(raw: bytes) -> Addr:
    fam = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if fam == socket.AF_INET:
        return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if fam == socket.AF_INET6:
        flow = int.from_bytes(raw[4:8], "big")
        scope = int.from_bytes(raw[24:28], "little")
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope)
    raise LocalProtocolError(f"unexpected address family {fam}")


def sockaddr_bytes(addr: Addr, family: int) -> tuple[bytes, int]:
    """Return ``(sockaddr padded to 28 bytes, its length)`` for ``addr`` on a socket of
    ``family``; an IPv4 address on an IPv6 socket becomes v4-mapped.
    Raises LocalProtocolError for an address that is not a literal IP."""
    host, port = addr[0], int(addr[1])
    try:
        if family == socket.AF_INET:
            raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + \
                socket.inet_pton(socket.AF_INET, host)
            return raw.ljust(ADDR_SZ, b"\0"), 16
        if ":" not in host:
            host = "::ffff:" + host
        flow = int(addr[2]) if len(addr) > 2 else 0
        scope = int(addr[3]) if len(addr) > 3 else 0
        raw = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, flow) + \
            socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", scope)
        return raw, 28
    except (OSError, ValueError, struct.error) as exc:
        raise LocalProtocolError(f"not a literal IP address: {addr!r}") from exc


class UringUdpIO:
    """The io_uring reactor on one bound UDP socket (see the module docstring).

    Raises UringUnavailable if the extension is not built or the kernel refuses io_uring.
    """

    kind = "uring"

    def __init__(self, sock: socket.socket, *, entries: int = 256, nbufs: int = 1024,
                 buf_sz: int = 2048, nsend: int = 512, ring_depth: int = 4096,
                 max_batch: int = 256, defer_taskrun: bool = True, gso: bool = True) -> None:
        if _uring is None:
            raise UringUnavailable("io_uring reactor not built (liburing missing at build)",
                                   errno.ENOSYS)
        from clutchcall.native.rings import Ring
        from clutchcall.native.rings import ffi as rffi

        self.sock = sock
        sock.setblocking(False)
        self._family = sock.family
        self.ring = Ring(depth=ring_depth, mtu=ADDR_SZ + buf_sz)
        ffi, lib = _uring.ffi, _uring.lib
        self._ffi, self._lib = ffi, lib
        self._ring_c = ffi.cast("cc_ring_t *", int(rffi.cast("uintptr_t", self.ring.ptr)))
        err = ffi.new("int *")
        ptr = lib.cc_uring_new(sock.fileno(), entries, nbufs, buf_sz, nsend, self._ring_c,
                               (1 if defer_taskrun else 0) | (2 if gso else 0), err)
        if ptr == ffi.NULL:
            code = -err[0]
            raise UringUnavailable(f"io_uring setup failed: {errno.errorcode.get(code, code)}",
                                   code)
        self._u = ptr
        self._cons = ffi.new("cc_consumer_t *")
        lib.cc_consumer_init(self._cons, self._ring_c, -1)
        self.buf_sz = buf_sz
        self.max_batch = max_batch
        self._out = ffi.new("uint8_t[]", max_batch * (ADDR_SZ + buf_sz))
        self._lens = ffi.new("uint32_t[]", max_batch)
        self._addrs = ffi.new("uint8_t[]", max_batch * ADDR_SZ)
        self._addr_cache: dict[bytes, Addr] = {}
        self._sa_cache: dict[Addr, tuple[bytes, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_batch: OnBatch | None = None
        self._kicked: bool = False
        self.local_address = sock.getsockname()

    @property
    def setup_flags(self) -> int:
        """Return the IORING_SETUP_* flags the kernel accepted for this ring."""
        return int(self.stats()["setup_flags"])

    def stats(self) -> dict[str, int]:
        """Return the reactor's counters (rx/tx packets, ENOBUFS, re-arms, ...)."""
        st = self._ffi.new("cc_uring_stats_t *")
        self._lib.cc_uring_get_stats(self._u, st)
        return {k: int(getattr(st, k)) for k in (
            "rx_pkts", "rx_bytes", "rx_truncated", "rx_enobufs", "rx_errors", "rearms",
            "tx_pkts", "tx_errors", "tx_waits", "tx_gso_sends", "setup_flags")}

    @property
    def overruns(self) -> int:
        """Return datagrams this reader lost to ring overrun (0 unless it falls far behind)."""
        return int(self._cons.overrun_cnt)

    def fileno(self) -> int:
        """Return the reactor's eventfd: readable when completions are pending."""
        return int(self._lib.cc_uring_event_fd(self._u))

    def recv_batch(self, max_n: int | None = None, wait: bool = False) -> list[Datagram]:
        """Return up to ``max_n`` received datagrams (empty if none; with ``wait`` block for
        at least one). Raises OSError on a reactor failure."""
        if self._u is None:
            raise LocalProtocolError("reactor closed")
        m = min(max_n or self.max_batch, self.max_batch)
        n = self._lib.cc_uring_recv_batch(self._u, self._cons, self._out,
                                          m * (ADDR_SZ + self.buf_sz), self._lens,
                                          self._addrs, m, 1 if wait else 0)
        if n < 0:
            raise OSError(-n, "io_uring recv: " + errno.errorcode.get(-n, str(-n)))
        if n == 0:
            return []
        lens = self._lens
        sizes = [lens[i] for i in range(n)]
        raw = self._ffi.buffer(self._out, sum(sizes))[:]
        araw = self._ffi.buffer(self._addrs, n * ADDR_SZ)[:]
        cache = self._addr_cache
        res: list[Datagram] = []
        off = 0
        for i in range(n):
            key = araw[i * ADDR_SZ:(i + 1) * ADDR_SZ]
            addr = cache.get(key)
            if addr is None:
                if len(cache) > 65536:
                    cache.clear()
                addr = cache[key] = _addr_from_sockaddr(key)
            ln = sizes[i]
            res.append((raw[off:off + ln], addr))
            off += ln
        return res

    def send_batch(self, datagrams: Iterable[Datagram]) -> int:
        """Send all ``datagrams`` with one submission; return how many were queued.
        Raises LocalProtocolError for an oversize datagram or a bad address, OSError on a
        reactor failure."""
        if self._u is None:
            raise LocalProtocolError("reactor closed")
        datas: list[bytes] = []
        sas: list[bytes] = []
        salens: list[int] = []
        cache = self._sa_cache
        for data, addr in datagrams:
            if len(data) > self.buf_sz:
                raise LocalProtocolError(f"datagram of {len(data)} bytes > {self.buf_sz}")
            sa = cache.get(addr)
            if sa is None:
                if len(cache) > 65536:
                    cache.clear()
                sa = cache[addr] = sockaddr_bytes(addr, self._family)
            datas.append(data)
            sas.append(sa[0])
            salens.append(sa[1])
        n = len(datas)
        if n == 0:
            return 0
        ffi = self._ffi
        buf = b"".join(datas)
        rc = self._lib.cc_uring_send_batch(
            self._u, ffi.from_buffer(buf) if buf else ffi.NULL,
            ffi.new("uint32_t[]", [len(d) for d in datas]), ffi.from_buffer(b"".join(sas)),
            ffi.new("uint32_t[]", salens), n)
        if rc < 0:
            raise OSError(-rc, "io_uring send: " + errno.errorcode.get(-rc, str(-rc)))
        self._kick_if_pending()
        return int(rc)

    def _kick_if_pending(self) -> None:
        # Waiting for send slots (or a bounded drain) may have reaped receive completions into
        # the ring: the eventfd was already consumed for them, so schedule a drain ourselves.
        if (self._loop is not None and not self._kicked
                and int(self._cons.seq) != int(self._lib.cc_ring_seq_next(self._ring_c))):
            self._kicked = True
            self._loop.call_soon(self._readable)

    async def start(self, on_batch: OnBatch) -> None:
        """Deliver received datagrams to ``on_batch`` from the running loop (add_reader on
        the reactor's eventfd)."""
        self._loop = asyncio.get_running_loop()
        self._on_batch = on_batch
        self._loop.add_reader(self.fileno(), self._readable)
        self._drain_now()  # anything that arrived before start

    def _drain_now(self) -> None:
        on_batch = self._on_batch
        if on_batch is None:
            return
        for _ in range(64):  # bounded per wake-up; level-triggered readiness brings us back
            batch = self.recv_batch()
            if not batch:
                break
            on_batch(batch)
        self._kick_if_pending()

    def _readable(self) -> None:
        self._kicked = False
        if self._u is None:
            return
        self._lib.cc_uring_clear_event(self._u)
        try:
            self._drain_now()
        except Exception:  # a broken callback must not kill the loop's reader
            log.exception("io_uring batch handler failed")

    def close(self) -> None:
        """Stop reading, free the reactor and close the socket; idempotent."""
        if self._u is None:
            return
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.fileno())
            except (RuntimeError, ValueError):
                pass
        self._lib.cc_uring_delete(self._u)
        self._u = None
        self.sock.close()


class _BatchProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: AsyncioUdpIO) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        o = self.owner
        o._pending.append((data, addr))
        if not o._scheduled:
            o._scheduled = True
            assert o._loop is not None
            o._loop.call_soon(o._flush)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


READ_BURST = 16
"""Datagrams :class:`AsyncioUdpIO` reads per readiness event at most (then the loop runs
its other work: timers and other sockets wait at most this many datagrams' handling). 64
let one readiness event hold the call scheduler's timers for up to ~20 ms on a saturated
edge (64 x ~300 us per frame); 16 bounds that to ~5 ms."""


class AsyncioUdpIO:
    """The asyncio fallback with the same interface as :class:`UringUdpIO`: datagrams that
    arrive in one loop iteration are handed over as one batch."""

    kind = "asyncio"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.local_address = sock.getsockname()
        self._pending: list[Datagram] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._on_batch: OnBatch | None = None

    async def start(self, on_batch: OnBatch) -> None:
        """Deliver received datagrams to ``on_batch`` from the running loop."""
        loop = self._loop = asyncio.get_running_loop()
        self._on_batch = on_batch
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _BatchProtocol(self), sock=self.sock)
        self._transport = transport
        # read every datagram the socket holds (up to READ_BURST) per readiness event and hand
        # them over as one batch: asyncio's own reader takes one datagram per event-loop
        # iteration (a poll + a loop pass + a deferred flush per datagram). The
        # transport keeps sending (its buffering) and closing (which removes this reader as
        # its own). The selector loop's internal reader calls are the ones that may replace
        # a transport's reader (the public ones refuse an fd a transport owns); other loops
        # keep asyncio's reader.
        swap_out = getattr(loop, "_remove_reader", None)
        swap_in = getattr(loop, "_add_reader", None)
        if isinstance(loop, asyncio.SelectorEventLoop) and swap_out and swap_in:
            fd = self.sock.fileno()
            swap_out(fd)
            swap_in(fd, self._read_burst)

    def _read_burst(self) -> None:
        recvfrom = self.sock.recvfrom
        pending = self._pending
        for _ in range(READ_BURST):
            try:
                pending.append(recvfrom(65536))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                log.debug("udp error: %s", exc)
                break
        if pending and not self._scheduled:
            # handed over from the loop's next pass, as asyncio's own reader path did: the
            # timers already due in this pass (the call scheduler's deadlines) run first
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch and self._on_batch is not None:
            try:
                self._on_batch(batch)
            except Exception:
                log.exception("asyncio batch handler failed")

    def send_batch(self, datagrams: Iterable[Datagram]) -> int:
        """Send every datagram with ``sendto``; return how many. Raises LocalProtocolError
        if not started."""
        transport = self._transport
        if transport is None:
            raise LocalProtocolError("start() the asyncio UDP I/O before sending")
        n = 0
        # straight to the socket while the transport has nothing queued (the usual case: a
        # datagram socket is almost always writable); once the socket would block, the rest
        # goes through the transport, which queues it and sends it when writable (in order)
        queued = getattr(transport, "get_write_buffer_size", None)  # asyncio's selector transport
        direct = queued is not None and queued() == 0 and not transport.is_closing()
        sendto = self.sock.sendto
        for data, addr in datagrams:
            n += 1
            if direct and data:
                try:
                    sendto(data, addr)
                    continue
                except (BlockingIOError, InterruptedError):
                    direct = False
                except OSError as exc:  # as the transport does: reported, not raised
                    log.debug("udp error: %s", exc)
                    continue
            transport.sendto(data, addr)
        return n

    def close(self) -> None:
        """Close the transport (or the bare socket if never started); idempotent. Datagrams
        not yet handed over are dropped."""
        self._on_batch = None
        self._pending = []
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        else:
            self.sock.close()


UdpIO = UringUdpIO | AsyncioUdpIO


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def raise_rcvbuf(sock: socket.socket | None, nbytes: int) -> int:
    """Raise ``sock``'s receive buffer to at least ``nbytes`` (never lower it), with
    ``SO_RCVBUFFORCE`` where allowed (root: ``net.core.rmem_max`` does not cap it), else plain
    ``SO_RCVBUF``. Returns the size the kernel reports (0 for ``None`` or a socket without the
    option); never raises: an unsupported socket keeps its buffer."""
    if sock is None:
        return 0
    try:
        cur = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0
    if cur >= nbytes:
        return int(cur)
    for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, nbytes)
            break
        except OSError:
            continue
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return int(cur)


def bind_udp(host: str, port: int, *, reuseport: bool = False,
             rcvbuf: int = 4 << 20) -> socket.socket:
    """Return a non-blocking UDP socket bound to (host, port) (IPv6 if host has a colon),
    with SO_REUSEPORT when asked and a receive buffer of at least ``rcvbuf`` bytes (forced
    past rmem_max where allowed: a shared server socket must queue through a loop stall, not
    drop). Raises OSError if binding fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        raise_rcvbuf(sock, rcvbuf)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
        except OSError:
            pass
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_udp_io(kind: str = "auto", host: str = "127.0.0.1", port: int = 0, *,
                sock: socket.socket | None = None, reuseport: bool = False,
                iface: str | None = None, **uring_options: Any) -> Any:
    """Return datagram I/O of ``kind`` ("uring", "asyncio", "auto" or "xdp") on a socket bound
    to (host, port), or on ``sock`` if given. "uring" and "auto" fall back to asyncio with one
    log line when io_uring is not built or the kernel refuses it (ENOSYS / EPERM / EINVAL);
    other io_uring failures raise OSError. "xdp" needs ``iface`` and an IPv4 ``host`` (the
    interface's address) and a fixed port; it falls back the same way (see
    clutchcall.native.xdp.XdpUdpIO). Raises ValueError for a bad kind or missing iface.
    """
    if kind not in ("uring", "asyncio", "auto", "xdp"):
        raise ValueError(f"io kind must be uring, asyncio, auto or xdp, got {kind!r}")
    if kind == "xdp":
        if not iface or not port:
            raise ValueError("io kind xdp needs iface and a fixed port")
        from clutchcall.native.xdp import XdpUdpIO, XdpUnavailable

        try:
            return XdpUdpIO(iface, host, port)
        except XdpUnavailable as exc:
            if exc.errno not in FALLBACK_ERRNOS + (errno.ENOENT, errno.ENODEV):
                raise OSError(exc.errno, str(exc)) from exc
            log.warning("AF_XDP unavailable (%s); using asyncio datagram I/O", exc)
            return AsyncioUdpIO(sock or bind_udp(host, port, reuseport=reuseport))
    if sock is None:
        sock = bind_udp(host, port, reuseport=reuseport)
    if kind == "asyncio":
        return AsyncioUdpIO(sock)
    try:
        return UringUdpIO(sock, **uring_options)
    except UringUnavailable as exc:
        if exc.errno not in FALLBACK_ERRNOS:
            sock.close()
            raise OSError(exc.errno, str(exc)) from exc
        log.warning("io_uring unavailable (%s); using asyncio datagram I/O", exc)
        return AsyncioUdpIO(sock)
