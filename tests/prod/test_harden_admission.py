"""Issue 19 item 4: connections that never authenticate are capped per ingress (closed at
once beyond ``max_unauthenticated``, before any TLS work), QUIC sends a Retry (address
validation) from ``quic_retry_above`` pending handshakes on, and legitimate calls still go
through both. Memory per idle connection is measured by ``clutchcall bench hostile``."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import synth
from clutchcall.prod.caller.ws_transport import WsCallerTransport
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.ingress.ws import WsIngress

pytestmark = pytest.mark.timeout(60)


def test_ws_unauthenticated_connections_are_capped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge = WsIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), max_unauthenticated=5), EchoHandler())
        port = await edge.start()
        idle = []
        try:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", port))
                s.setblocking(False)
                idle.append(s)
            await asyncio.sleep(0.5)
            closed = 0
            for s in idle:
                try:
                    closed += s.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            assert closed == 15 and edge.gate.pending == 5
            assert edge.stats["refused_unauthenticated_cap"] == 15
        finally:
            for s in idle:
                s.close()
        for _ in range(50):  # the slots come back when those connections close
            if edge.gate.pending == 0:
                break
            await asyncio.sleep(0.05)
        assert edge.gate.pending == 0
        pcm = synth("hello there", 8000)
        tr = WsCallerTransport(f"wss://localhost:{port}/media", token=edge.authority.issue("ok", time.time() + 60),
                               call_id="ok", cafile=edge.cert_path)
        res = await Caller(tr, call_id="ok", codec="g711_ulaw", rate=8000, tail_s=0.3).run(pcm)
        assert res.agent_frames_received == len(pcm) // 320
        assert edge.gate.pending == 0  # an authenticated call holds no pending slot
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 45))


def test_quic_retry_under_load_and_pending_cap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    async def main() -> None:
        cfg = IngressConfig(cert_dir=str(tmp_path / "tls"), max_unauthenticated=8, quic_retry_above=4)
        edge = QuicIngress(cfg, EchoHandler())
        port = await edge.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # 30 abandoned handshakes: 4 create state, the rest get a Retry and create none
            for _ in range(30):
                conn = QuicConnection(configuration=QuicConfiguration(
                    is_client=True, alpn_protocols=["moq-00"], server_name="localhost"))
                conn.connect(("127.0.0.1", port), now=time.monotonic())
                for data, _ in conn.datagrams_to_send(now=time.monotonic()):
                    sock.sendto(data, ("127.0.0.1", port))
            await asyncio.sleep(0.5)
            assert edge.gate.pending == 4, edge.gate.pending
            assert edge.stats["quic_retries_sent"] >= 26
            # a real caller under load: answers the Retry and completes its call
            pcm = synth("hello there", 16000)
            tr = QuicCallerTransport("127.0.0.1", port, token=edge.authority.issue("q", time.time() + 60),
                                     call_id="q", codec="pcm16", rate=16000, cafile=edge.cert_path)
            res = await Caller(tr, call_id="q", codec="pcm16", rate=16000, tail_s=0.3).run(pcm)
            assert res.agent_frames_received == len(pcm) // 640
            assert edge.stats["calls_started"] == 1
        finally:
            sock.close()
            await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 45))


@pytest.mark.parametrize("core_name", ["aioquic", "qh3"])
def test_short_header_datagrams_go_straight_to_their_connection(core_name: str) -> None:
    """Issue 17: the admission wrapper hands a short-header datagram for a known connection
    ID to its connection without the server's header parse; anything else (an unknown CID,
    a clear fixed bit, a truncated or empty datagram) still goes through the server, which
    drops it -- the connection sees exactly what the server itself would have given it."""
    from clutchcall.prod.ingress.admission import PendingGate, install_quic_admission
    from clutchcall.prod.quic.core import get_core

    async def main() -> None:
        core = get_core(core_name)
        server = core.QuicServer(configuration=core.QuicConfiguration(is_client=False))
        cid = b"\x11" * server._configuration.connection_id_length
        got: list[bytes] = []

        class Conn:
            def datagram_received(self, data: bytes, addr: object) -> None:
                got.append(data)

        server._protocols[cid] = Conn()
        via_server: list[bytes] = []
        own = server.datagram_received

        def counted(data: bytes, addr: object) -> None:
            via_server.append(data)
            own(data, addr)

        server.datagram_received = counted
        install_quic_admission(server, PendingGate(4), 2)
        addr = ("127.0.0.1", 5000)
        good = bytes([0x41]) + cid + b"protected payload"
        server.datagram_received(good, addr)
        assert got == [good] and via_server == []
        bad = [bytes([0x41]) + b"\x22" * len(cid) + b"x", bytes([0x01]) + cid + b"x",
               bytes([0x41]) + cid[:3], b""]
        for data in bad:
            server.datagram_received(data, addr)
        assert via_server == bad and got == [good]  # the server dropped each of them

    asyncio.run(main())
