"""A raw MoQT-over-QUIC peer for bad-input tests and floods.

:func:`probe` opens a real QUIC connection (ALPN moq-00), writes arbitrary bytes on the
control stream (and optionally on a unidirectional data stream), and returns how the edge
closed the session: ``(error_code, reason)`` from its CONNECTION_CLOSE, or ``(None, "")`` if it
did not close within ``timeout_s``. :func:`flood` runs ``n`` probes, ``concurrency`` at a time,
bounded in count and time. ``python -m clutchcall.prod.caller.rawmoqt HOST PORT N KIND`` runs a
flood from another process (KIND: ``bad_token`` | ``no_token`` | ``garbage``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import Any

from clutchcall.prod.moqt.wire import (
    MOQT_ALPN,
    MOQT_VERSION_14,
    AuthToken,
    ClientSetup,
    SetupParam,
    params_from,
)
from clutchcall.prod.quic.core import QuicCore, get_core


class _ProbeSession:
    """Records how the edge closed the connection (on the chosen QUIC core's protocol)."""

    core: QuicCore

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.closed = asyncio.Event()
        self.code: int | None = None
        self.reason = ""

    def quic_event_received(self, event: Any) -> None:
        if isinstance(event, self.core.ConnectionTerminated):
            self.code, self.reason = event.error_code, event.reason_phrase
            self.closed.set()


_PROBES: dict[str, type] = {}


def _probe_class(core: QuicCore) -> type:
    cls = _PROBES.get(core.name)
    if cls is None:
        cls = _PROBES[core.name] = type(f"_Probe_{core.name}", (_ProbeSession, core.QuicConnectionProtocol),
                                        {"core": core})
    return cls


def __getattr__(name: str) -> Any:
    """``_Probe``: the probe protocol class on aioquic (what callers of this module used before
    the QUIC-core adapter; new code calls ``_probe_class(core)``)."""
    if name == "_Probe":
        return _probe_class(get_core("aioquic"))
    raise AttributeError(name)


async def probe(
    host: str, port: int, control: bytes, data_stream: bytes | None = None, timeout_s: float = 5.0
) -> tuple[int | None, str]:
    """Send ``control`` (and ``data_stream``) and return the edge's (close code, reason), over
    the default QUIC core (``$CLUTCHCALL_QUIC_CORE``)."""
    core = get_core()
    qc = core.client_configuration(alpn=[MOQT_ALPN], server_name="localhost", cafile=None)
    async with core.connect(host, port, configuration=qc, create_protocol=_probe_class(core)) as conn:
        assert isinstance(conn, _ProbeSession)
        p: Any = conn  # also the core's QuicConnectionProtocol (_quic, transmit)
        sid = p._quic.get_next_available_stream_id()
        p._quic.send_stream_data(sid, control)
        if data_stream is not None:
            await asyncio.sleep(0.05)
            usid = p._quic.get_next_available_stream_id(is_unidirectional=True)
            p._quic.send_stream_data(usid, data_stream, end_stream=True)
        p.transmit()
        try:
            await asyncio.wait_for(p.closed.wait(), timeout_s)
        except TimeoutError:
            return None, ""
        return p.code, p.reason


def setup_with_token(token: bytes | None) -> bytes:
    params: dict[int, int | bytes] = {SetupParam.PATH: b"/clutchcall", SetupParam.MAX_REQUEST_ID: 16}
    if token is not None:
        params[SetupParam.AUTHORIZATION_TOKEN] = AuthToken(value=token).encode()
    return ClientSetup(versions=(MOQT_VERSION_14,), params=params_from(params)).encode()


async def _garbage(host: str, port: int, i: int) -> tuple[int | None, str]:
    """One UDP datagram that looks like a QUIC long header but is not a valid Initial."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
    try:
        transport.sendto(bytes([0xC0, 0, 0, 0, 1, 8]) + i.to_bytes(8, "big") + bytes(1180))
    finally:
        transport.close()
    return None, "garbage"


async def flood(host: str, port: int, n: int, kind: str, concurrency: int = 16, budget_s: float = 60.0) -> Counter[str]:
    """Run ``n`` bad sessions of ``kind``; return a Counter of outcomes (close codes)."""
    sem = asyncio.Semaphore(concurrency)
    out: Counter[str] = Counter()
    deadline = time.monotonic() + budget_s

    async def one(i: int) -> None:
        async with sem:
            if time.monotonic() > deadline:
                out["skipped_budget"] += 1
                return
            try:
                if kind == "garbage":
                    code, _ = await _garbage(host, port, i)
                elif kind == "no_token":
                    code, _ = await probe(host, port, setup_with_token(None), timeout_s=3)
                else:
                    code, _ = await probe(host, port, setup_with_token(b"v1.Zm9v.9999999999.AAAA"), timeout_s=3)
                out[str(code)] += 1
            except (ConnectionError, OSError, TimeoutError, get_core().QuicConnectionError) as exc:
                # a failed handshake is an outcome
                out[type(exc).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    host, port, n, kind = args[0], int(args[1]), int(args[2]), args[3]
    res = asyncio.run(flood(host, port, n, kind))
    print(dict(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
