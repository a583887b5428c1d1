"""The QUIC ingress's datagram I/O: the native io_uring reactor, or asyncio as the fallback.

Theory of operation: the QUIC ingress never touches a UDP socket itself. It asks
:func:`open_ingress_io` for batched datagram I/O of the configured kind
(``IngressConfig.io``) and runs aioquic's ``QuicServer`` over it through
:func:`clutchcall.native.aio_bridge.serve_quic`: a received batch is fed datagram by datagram
to the connections, and everything they want to send in reply leaves as one ``send_batch``
(one io_uring submission on the reactor).

* ``"uring"``: the io_uring reactor (multishot ``recvmsg`` into a provided-buffer ring,
  batched ``sendmsg``); if it cannot be used here this is a :class:`ConfigError`, because the
  operator asked for it by name.
* ``"asyncio"``: a plain asyncio datagram endpoint (same batch interface).
* ``"auto"`` (the default): the reactor where it works, else asyncio with exactly one
  warning line on the ``clutchcall.ingress.io`` logger saying why; never an exception for an
  unavailable reactor. ``$CLUTCHCALL_NO_URING`` (any non-empty value) makes io_uring count as
  unavailable at run time (the fallback can be forced without rebuilding).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from clutchcall.engine.errors import ConfigError

log = logging.getLogger("clutchcall.ingress.io")

IO_KINDS = ("auto", "uring", "asyncio")
DISABLE_ENV = "CLUTCHCALL_NO_URING"


def _uring_or_reason(sock: socket.socket) -> tuple[Any, str]:
    """Return (UringUdpIO, "") or (None, why io_uring cannot be used)."""
    if os.environ.get(DISABLE_ENV):
        return None, f"disabled by ${DISABLE_ENV}"
    try:
        from clutchcall.native.udpio import UringUdpIO, UringUnavailable
    except ImportError as exc:  # the native package itself failed to import
        return None, f"native data plane not importable ({exc})"
    try:
        return UringUdpIO(sock), ""
    except UringUnavailable as exc:
        return None, str(exc)
    except OSError as exc:  # e.g. ENOMEM for the ring's locked memory
        return None, f"io_uring setup failed: {exc}"


def open_ingress_io(kind: str, host: str, port: int, sock: socket.socket | None = None) -> Any:
    """Return started-ready datagram I/O (``.kind`` is "uring" or "asyncio") bound to
    (host, port), or on ``sock`` if given (a shard's pre-bound SO_REUSEPORT socket).

    Raises ConfigError for an unknown kind, or for "uring" when io_uring cannot be used;
    OSError if binding fails. With "auto" an unusable io_uring logs one warning line and
    gives the asyncio I/O."""
    if kind not in IO_KINDS:
        raise ConfigError(f"io must be one of {', '.join(IO_KINDS)}, got {kind!r}")
    from clutchcall.native.udpio import AsyncioUdpIO, bind_udp

    own = sock is None
    if sock is None:
        sock = bind_udp(host, port)
    if kind == "asyncio":
        return AsyncioUdpIO(sock)
    io, why = _uring_or_reason(sock)
    if io is not None:
        return io
    if kind == "uring":
        if own:
            sock.close()
        raise ConfigError(f"io=uring requested but io_uring cannot be used here: {why}")
    log.warning("QUIC ingress: io_uring unavailable (%s); serving on asyncio datagram I/O", why)
    return AsyncioUdpIO(sock)
