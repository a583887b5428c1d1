"""The QUIC ingress's datagram I/O: the native io_uring reactor, or asyncio as the fallback.

Theory of operation: the QUIC ingress never touches a UDP socket itself. It asks
:func:`open_ingress_io` for batched datagram I/O of the configured kind
(``IngressConfig.io``) and runs aioquic's ``QuicServer`` over it through
:func:`clutchcall.native.aio_bridge.serve_quic`: a received batch is fed datagram by datagram
to the connections, and everything they want to send in reply leaves as one ``send_batch``
(one io_uring submission on the reactor).

* ``"uring"``: the io_uring reactor (multishot ``recvmsg`` into a provided-buffer ring,
  batched ``sendmsg``); if it cannot be used here (library not built, or the kernel refuses:
  ENOSYS, EPERM, EINVAL) one warning line says why and asyncio serves: never a crash.
* ``"asyncio"``: a plain asyncio datagram endpoint (same batch interface).
* ``"auto"`` (the default): the reactor where it works, else asyncio with exactly one
  warning line on the ``clutchcall.ingress.io`` logger saying why; never an exception for an
  unavailable reactor. ``$CLUTCHCALL_NO_URING`` (any non-empty value) makes io_uring count as
  unavailable at run time (the fallback can be forced without rebuilding).
* ``"xdp"``: an AF_XDP socket on the interface ``IngressConfig.xdp_iface`` (our XDP program
  redirects only the QUIC port; see :mod:`clutchcall.native.xdp`), opened through
  ``open_udp_io("xdp", ...)``. Where AF_XDP cannot work (not built, no clang, no such
  interface, the kernel refuses, not root) exactly one warning line says why and a plain
  asyncio socket on (host, port) serves: never a crash.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from clutchcall.engine.errors import ConfigError

log = logging.getLogger("clutchcall.ingress.io")

IO_KINDS = ("auto", "uring", "asyncio", "xdp")
DISABLE_ENV = "CLUTCHCALL_NO_URING"


RX_CHUNK = 8


def _paced_uring_class() -> Any:
    """Return the reactor class that hands at most RX_CHUNK datagrams to the loop per turn."""
    from clutchcall.native import udpio

    class PacedUringUdpIO(udpio.UringUdpIO):
        """The io_uring reactor, delivering received datagrams in chunks of ``chunk``, one
        chunk per event-loop turn: the tasks a chunk woke (call handlers queueing replies)
        and the send batch run before the next chunk, so a reply never waits behind the
        processing of everything the ring holds (the base class drains up to 64 full batches
        per wake-up: best throughput, but each datagram then waits for the whole drain)."""

        chunk = RX_CHUNK

        def _drain_now(self) -> None:
            on_batch = self._on_batch
            if on_batch is None or self._u is None:
                return
            batch = self.recv_batch(self.chunk)
            if not batch:
                self._kick_if_pending()
                return
            on_batch(batch)
            if not self._kicked and self._loop is not None:  # more may be waiting
                self._kicked = True
                self._loop.call_soon(self._continue)

        def _continue(self) -> None:
            self._kicked = False
            if self._u is None:
                return
            try:
                self._drain_now()
            except Exception:  # a broken callback must not stop the reader
                log.exception("io_uring batch handler failed")

    return PacedUringUdpIO


def _uring_or_reason(sock: socket.socket) -> tuple[Any, str]:
    """Return (io_uring datagram I/O, "") or (None, why io_uring cannot be used)."""
    if os.environ.get(DISABLE_ENV):
        return None, f"disabled by ${DISABLE_ENV}"
    try:
        from clutchcall.native.udpio import UringUnavailable

        cls = _paced_uring_class()
    except ImportError as exc:  # the native package itself failed to import
        return None, f"native data plane not importable ({exc})"
    try:
        return cls(sock), ""
    except UringUnavailable as exc:
        return None, str(exc)
    except OSError as exc:  # e.g. ENOMEM for the ring's locked memory
        return None, f"io_uring setup failed: {exc}"


def _xdp_or_asyncio(host: str, port: int, iface: str | None) -> Any:
    """Return AF_XDP datagram I/O on ``iface`` for (host, port), or asyncio I/O bound to
    (host, port) after exactly one warning line if AF_XDP cannot work here. Raises
    ConfigError for missing/ill-formed settings; OSError if the fallback socket cannot bind."""
    from clutchcall.engine.errors import ClutchCallError
    from clutchcall.native import udpio
    from clutchcall.prod.ingress.config import check_xdp_settings

    check_xdp_settings(host, port, iface)
    native_log = udpio.log
    seen: list[logging.LogRecord] = []

    class _Catch(logging.Filter):  # the native layer's own fallback line, re-issued below
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record)
            return False

    catch = _Catch()
    native_log.addFilter(catch)
    try:
        io = udpio.open_udp_io("xdp", host, port, iface=iface)
    except (OSError, ClutchCallError) as exc:  # e.g. EBUSY: another program on the interface
        why = str(exc)
        io = None
    finally:
        native_log.removeFilter(catch)
    if io is not None and io.kind == "xdp":
        return io
    if io is not None:  # open_udp_io fell back to asyncio (ENOSYS/EPERM/EINVAL/ENODEV/...)
        why = seen[-1].getMessage() if seen else "AF_XDP unavailable"
        log.warning("QUIC ingress: io=xdp on %s requested but %s", iface, why)
        return io
    log.warning("QUIC ingress: io=xdp on %s requested but AF_XDP failed (%s); "
                "serving on asyncio datagram I/O", iface, why)
    return udpio.AsyncioUdpIO(udpio.bind_udp(host, port))


def open_ingress_io(kind: str, host: str, port: int, sock: socket.socket | None = None,
                    iface: str | None = None) -> Any:
    """Return started-ready datagram I/O (``.kind`` is "uring", "xdp" or "asyncio") bound to
    (host, port), or on ``sock`` if given (a shard's pre-bound SO_REUSEPORT socket; not with
    "xdp"). ``iface`` is the interface of kind "xdp".

    Raises ConfigError for an unknown kind or bad "xdp" settings; OSError if binding fails.
    With "uring", "auto" or "xdp" an unusable fast path logs one warning line and gives the
    asyncio I/O."""
    if kind not in IO_KINDS:
        raise ConfigError(f"io must be one of {', '.join(IO_KINDS)}, got {kind!r}")
    from clutchcall.native.udpio import AsyncioUdpIO, bind_udp

    if kind == "xdp":
        if sock is not None:
            raise ConfigError("io xdp owns its interface queue: it cannot serve on a pre-bound "
                              "socket (one shard only)")
        return _xdp_or_asyncio(host, port, iface)

    if sock is None:
        sock = bind_udp(host, port)
    if kind == "asyncio":
        return AsyncioUdpIO(sock)
    io, why = _uring_or_reason(sock)
    if io is not None:
        return io
    asked = "io=uring requested but " if kind == "uring" else ""
    log.warning("QUIC ingress: %sio_uring unavailable (%s); serving on asyncio datagram I/O", asked, why)
    return AsyncioUdpIO(sock)


def _coalescing_transport_class() -> Any:
    from clutchcall.native.aio_bridge import BatchDatagramTransport

    class CoalescingBatchTransport(BatchDatagramTransport):
        """The bridge's batched transport, plus one transmit per connection per received
        batch: while a batch is fed to aioquic, a protocol that wants to transmit marks itself
        in ``dirty`` (see ``EdgeProtocol.transmit``) instead of building packets there and
        then (aioquic's protocol transmits after every datagram, and our MoQT handling once
        more); after the batch each marked protocol transmits once, and everything leaves in
        one send batch."""

        def __init__(self, io: Any, protocol: Any) -> None:
            super().__init__(io, protocol)
            self.dirty: dict[Any, None] | None = None
            self.rx_datagrams = 0  # UDP datagrams received / sent (packets per audio frame)
            self.tx_datagrams = 0

        def flush(self) -> None:
            if not self._closing:
                self.tx_datagrams += len(self._out)
            super().flush()

        def on_batch(self, batch: list[Any]) -> None:
            self.rx_datagrams += len(batch)
            self._in_batch = True
            self.dirty = {}
            try:
                for data, addr in batch:
                    self.protocol.datagram_received(data, addr)
            finally:
                dirty, self.dirty = self.dirty, None
                for proto in dirty:
                    try:
                        proto.transmit()
                    except Exception:  # one connection's failure must not stop the others
                        log.exception("transmit failed")
                self._in_batch = False
            self.flush()

    return CoalescingBatchTransport


async def serve_ingress_quic(io: Any, *, configuration: Any, create_protocol: Any,
                             server_class: Any = None, **server_kwargs: Any) -> Any:
    """Run ``server_class`` (a QUIC core's ``QuicServer``; default aioquic's) over ``io``
    (from :func:`open_ingress_io`) with the coalescing batch transport; return the server
    (``server.close()`` stops it and closes ``io``)."""
    if server_class is None:
        from aioquic.asyncio.server import QuicServer as server_class

    server = server_class(configuration=configuration, create_protocol=create_protocol,
                          **server_kwargs)
    transport = _coalescing_transport_class()(io, server)
    server.connection_made(transport)
    await io.start(transport.on_batch)
    return server
