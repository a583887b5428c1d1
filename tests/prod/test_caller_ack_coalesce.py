"""The caller's ACKs of agent audio ride its next send, or leave within 23 ms when it sends
nothing (prod.quic.ackcoalesce), on real loopback QUIC with both cores, audio in DATAGRAMs and
on streams."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.quic.ackcoalesce import ACK_COALESCE_MS

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]

FRAMES = 50
FRAME = b"\x00\x10" * 320  # 20 ms of pcm16 at 16 kHz


class AgentTalks:
    """After the caller's first frame, the agent sends FRAMES frames 20 ms apart while the
    caller sends nothing (a silent caller: every ACK must leave on the timer)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.done = asyncio.Event()

    async def on_call(self, call: Any) -> None:
        frames = call.frames().__aiter__()
        await frames.__anext__()
        self.started.set()
        for _ in range(FRAMES):
            await call.send_agent_audio(FRAME)
            await asyncio.sleep(0.02)
        self.done.set()
        async for _ in frames:
            pass


class CountingTransport:
    """The caller's datagram transport, counting what it sends (qh3's is read-only)."""

    def __init__(self, inner: Any, sent: list[int]) -> None:
        self.inner, self.sent = inner, sent

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent[0] += 1
        self.inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def in_flight(quic: Any) -> int:
    """Bytes the edge's connection has sent and not seen acknowledged (either core)."""
    core = getattr(quic, "_core", None)
    if core is not None:  # qh3's native core
        value = core.bytes_in_flight
        return int(value() if callable(value) else value)
    return int(quic._loss.bytes_in_flight)


@pytest.mark.parametrize("audio_transport", ["auto", "stream"])
def test_silent_caller_acks_agent_audio_on_its_timer(tmp_path, audio_transport: str) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        h = AgentTalks()
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "t"), jitter_depth_ms=0), h)
        await edge.start()
        heard: list[bytes] = []
        tr = QuicCallerTransport("127.0.0.1", edge.port, token=edge.authority.issue("ack", time.time() + 60),
                                 call_id="ack", codec="pcm16", rate=16000, cafile=edge.cert_path,
                                 audio_transport=audio_transport)
        tr.on_agent_audio = heard.append  # type: ignore[attr-defined]
        tr.on_control = lambda e: None  # type: ignore[attr-defined]
        tr.on_closed = lambda r: None  # type: ignore[attr-defined]
        try:
            await tr.connect()
            proto = tr.proto
            loop = asyncio.get_running_loop()
            waits: list[float] = []
            arm = proto._arm_ack_timer

            def arm_and_note(deadline: float) -> None:
                waits.append(deadline - loop.time())
                arm(deadline)

            proto._arm_ack_timer = arm_and_note
            sent = [0]
            proto._transport = CountingTransport(proto._transport, sent)
            many = getattr(proto, "_sendto_many", None)  # qh3's batch send path
            if many is not None:
                def count_many(datagrams: list[bytes], addr: Any) -> None:
                    sent[0] += len(datagrams)
                    many(datagrams, addr)

                proto._sendto_many = count_many
            proto.send_frame(0, FRAME)
            await asyncio.wait_for(h.started.wait(), 10)
            sent[0] = 0
            await asyncio.wait_for(h.done.wait(), 20)
            for _ in range(100):  # the last ACK leaves on the caller's timer (<= 23 ms)
                await asyncio.sleep(0.02)
                sess = next(iter(edge._protocols))
                if len(heard) >= FRAMES and in_flight(sess._quic) == 0:
                    break
            assert proto.audio_transport() == ("datagram" if audio_transport == "auto" else "stream")
            assert len(heard) == FRAMES
            # every agent packet was acknowledged although the caller sent no audio
            assert in_flight(sess._quic) == 0
            # one ACK-only packet per ~two agent frames, not one per frame (qh3's core alone
            # acknowledges 1 ms after every packet)
            assert 3 <= sent[0] <= 0.75 * FRAMES, sent[0]
            # the coalescing path ran, and never promised an ACK later than 23 ms
            assert proto.acks_deferred >= FRAMES // 2, proto.acks_deferred
            assert waits and max(waits) <= ACK_COALESCE_MS / 1000 + 1e-6, max(waits)
        finally:
            await tr.hangup()
            await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 45))
