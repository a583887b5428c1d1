"""UDP receive-buffer sizing (ingress.udpbuf): real sockets on loopback."""

from __future__ import annotations

import socket

from clutchcall.prod.ingress.udpbuf import ensure_rcvbuf


def test_ensure_rcvbuf_raises_never_lowers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        before = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        got = ensure_rcvbuf(s, 2 << 20)
        assert got == s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert got > before  # raised (capped by rmem_max unless SO_RCVBUFFORCE is allowed)
        assert ensure_rcvbuf(s, 1024) == got  # never lowered
    assert ensure_rcvbuf(None, 1 << 20) == 0
    s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s2.close()
    assert ensure_rcvbuf(s2, 1 << 20) == 0  # a closed socket: left alone, no error
