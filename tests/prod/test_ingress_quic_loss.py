"""A QUIC/MoQT call through a lossy, delaying UDP relay on loopback (no namespaces needed).

With audio on streams, each frame rides its own stream, so a lost packet delays only its own
frame: later frames overtake it (counted at the edge as out-of-order arrivals) and the jitter
buffer puts them back in order, concealing the frames that miss their playout slot. With audio
in DATAGRAMs, a lost packet loses its frame for good and the jitter buffer conceals it. The
call completes both ways either way."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]


class LossyRelay(asyncio.DatagramProtocol):
    """Relays one client <-> one server; drops with probability ``loss``, delays ``delay_s`` each way."""

    def __init__(self, server: tuple[str, int], loss: float, delay_s: float, seed: int) -> None:
        self.server = server
        self.loss = loss
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        self.client: tuple[str, int] | None = None
        self.dropped = 0
        self.relayed = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        if addr != self.server:
            self.client = addr
            dest = self.server
        elif self.client is not None:
            dest = self.client
        else:
            return
        if self.relayed > 20 and self.rng.random() < self.loss:  # let the handshake through cleanly
            self.dropped += 1
            return
        self.relayed += 1
        assert self.transport is not None
        asyncio.get_running_loop().call_later(self.delay_s, self.transport.sendto, data, dest)


@pytest.mark.parametrize("audio", ["stream", "auto"])
def test_call_through_loss_no_head_of_line_blocking(tmp_path, audio) -> None:  # type: ignore[no-untyped-def]
    pcm = dialogue(["hello there, how are you doing today", "fine thanks"], rate=16000, gap_s=0.6)

    async def main() -> None:
        handler = EchoHandler()
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "t"), jitter_depth_ms=60,
                                         audio_transport=audio), handler)
        port = await edge.start()
        loop = asyncio.get_running_loop()
        relay = LossyRelay(("127.0.0.1", port), loss=0.05, delay_s=0.01, seed=7)
        rtrans, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        rport = rtrans.get_extra_info("sockname")[1]
        try:
            tr = QuicCallerTransport("127.0.0.1", rport, token=edge.authority.issue("lossy", time.time() + 60),
                                     call_id="lossy", codec="pcm16", rate=16000, cafile=edge.cert_path,
                                     audio_transport=audio)
            res = await Caller(tr, call_id="lossy", codec="pcm16", rate=16000, tail_s=1.0).run(pcm)
        finally:
            rtrans.close()
            await edge.stop()
        call = handler.calls[0]
        st = call.jitter.stats  # type: ignore[attr-defined]
        n = len(pcm) // 640
        assert relay.dropped > 10
        assert res.frames_sent == n
        if audio == "stream":
            assert call.uplink_out_of_order > 0  # later frames overtook lost ones  # type: ignore[attr-defined]
            assert edge.stats["uplink_datagrams"] == 0 and edge.stats["agent_datagrams"] == 0
        else:  # lost datagrams are gone: the jitter buffer conceals them
            assert edge.stats["uplink_datagrams"] > 0.8 * n and edge.stats["agent_datagrams"] > 0.75 * n
            assert edge.stats["audio_transport_datagram"] == 1 and st.lost > 0
        assert st.released + st.lost >= n - 5 and st.released > 0.8 * n
        assert res.agent_frames_received > 0.75 * n
        print(f"dropped {relay.dropped}/{relay.relayed + relay.dropped} packets; uplink out-of-order "
              f"{call.uplink_out_of_order}; jitter {st}; agent frames {res.agent_frames_received}/{n}")  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(main(), 50))
