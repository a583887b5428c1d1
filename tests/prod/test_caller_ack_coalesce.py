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


async def call_and_count(tmp_path: Any, audio_transport: str, talk: bool) -> dict[str, Any]:
    """One call on a real loopback edge: the caller sends one frame, then (``talk``) one every
    20 ms or nothing while the agent sends FRAMES; return what the caller heard and sent."""
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
        frames = 0
        t_next = loop.time()
        while not h.done.is_set():
            if talk:
                frames += 1
                proto.send_frame(frames, FRAME)
            t_next += 0.02
            await asyncio.sleep(max(0.0, t_next - loop.time()))
        sess = next(iter(edge._protocols))
        for _ in range(100):  # the last ACK leaves on the caller's timer (<= 23 ms)
            await asyncio.sleep(0.02)
            if len(heard) >= FRAMES and in_flight(sess._quic) == 0:
                break
        return {"mode": proto.audio_transport(), "heard": len(heard), "in_flight": in_flight(sess._quic),
                "sent": sent[0], "frames": frames, "waits": waits, "deferred": proto.acks_deferred}
    finally:
        await tr.hangup()
        await edge.stop()


@pytest.mark.parametrize("audio_transport", ["auto", "stream"])
def test_silent_caller_acks_agent_audio_on_its_timer(tmp_path, audio_transport: str) -> None:  # type: ignore[no-untyped-def]
    r = asyncio.run(asyncio.wait_for(call_and_count(tmp_path, audio_transport, talk=False), 45))
    assert r["mode"] == ("datagram" if audio_transport == "auto" else "stream")
    assert r["heard"] == FRAMES
    # every agent packet was acknowledged although the caller sent no audio
    assert r["in_flight"] == 0
    # one ACK-only packet per ~two agent frames, not one per frame (qh3's core alone
    # acknowledges 1 ms after every packet)
    assert 3 <= r["sent"] <= 0.75 * FRAMES, r["sent"]
    # the coalescing path ran, and never promised an ACK later than 23 ms
    assert r["deferred"] >= FRAMES // 2, r["deferred"]
    assert r["waits"] and max(r["waits"]) <= ACK_COALESCE_MS / 1000 + 1e-6, max(r["waits"])


def test_talking_caller_acks_ride_its_frames(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Both sides talk (the bench's case): the caller's ACKs ride its own audio frames, so it
    sends hardly any packet beyond them (aioquic writes an ACK only once due: the caller
    brings it forward, QuicCore.ack_with_next_send)."""
    r = asyncio.run(asyncio.wait_for(call_and_count(tmp_path, "auto", talk=True), 45))
    assert r["mode"] == "datagram" and r["heard"] == FRAMES and r["in_flight"] == 0
    assert r["frames"] >= FRAMES // 2
    assert r["frames"] <= r["sent"] <= r["frames"] + 0.2 * FRAMES, (r["sent"], r["frames"])
