"""A QUIC caller's hangup is bounded: aioquic keeps a closed connection for 3 PTOs, which after a
slow path is seconds; the caller waits at most ``close_timeout_s`` (real edge, a real UDP relay
that adds 300 ms each way)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.edge import Edge, EdgeConfig

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]


class _DelayRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and ``upstream``, each ``delay_s`` late."""

    def __init__(self, upstream: tuple[str, int], delay_s: float) -> None:
        self.upstream, self.delay_s = upstream, delay_s
        self.client: Any = None
        self.t: Any = None

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        dst = self.client if addr == self.upstream else self.upstream
        if addr != self.upstream:
            self.client = addr
        if dst is not None:
            asyncio.get_running_loop().call_later(self.delay_s, self._send, data, dst)

    def _send(self, data: bytes, dst: Any) -> None:
        if not self.t.is_closing():
            self.t.sendto(data, dst)


def test_quic_hangup_returns_within_close_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = EdgeConfig(trace_dir=str(tmp_path / "tr"), cert_dir=str(tmp_path / "tls"), json_logs=False)

    async def main() -> tuple[float, int, float, int]:
        loop = asyncio.get_running_loop()
        async with Edge(cfg) as edge:
            relay_t, _ = await loop.create_datagram_endpoint(
                lambda: _DelayRelay(("127.0.0.1", edge.quic_port), 0.3), local_addr=("127.0.0.1", 0))
            port = relay_t.get_extra_info("sockname")[1]
            results = []
            try:
                for close_timeout in (0.5, 30.0):
                    call_id = f"hangup-{close_timeout}"
                    tr = QuicCallerTransport("127.0.0.1", port, token=edge.issue_token(call_id),
                                             call_id=call_id, codec="pcm16", rate=16000,
                                             cafile=edge.cert_path, timeout_s=20,
                                             close_timeout_s=close_timeout)
                    tr.on_agent_audio = lambda p: None
                    tr.on_control = lambda e: None
                    tr.on_closed = lambda r: None
                    await tr.connect()
                    for i in range(10):
                        await tr.send_frame(i, bytes(640))
                        await asyncio.sleep(0.02)
                    t0 = time.monotonic()
                    await tr.hangup()
                    results += [time.monotonic() - t0, tr.closes_cut_short]
            finally:
                relay_t.close()
        return results[0], results[1], results[2], results[3]

    bounded, cut, unbounded, not_cut = asyncio.run(main())
    # aioquic's own close takes 3 PTOs on a 600 ms path: well over a second
    assert unbounded > 1.0 and not_cut == 0, unbounded
    assert bounded < 0.9 and cut == 1, bounded
