"""QUIC data plane details: datagram uplink, frame-size check, ordered reliable control track with
clear-playout honoured, GOAWAY on shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.moqt.wire import TerminationCode as TC

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]


class Script:
    def __init__(self) -> None:
        self.frames: list = []  # type: ignore[type-arg]
        self.call = None

    async def on_call(self, call) -> None:  # type: ignore[no-untyped-def]
        self.call = call
        async for f in call.frames():
            self.frames.append(f)


async def connect(edge: QuicIngress, call_id: str) -> QuicCallerTransport:
    tr = QuicCallerTransport("127.0.0.1", edge.port, token=edge.authority.issue(call_id, time.time() + 60),
                             call_id=call_id, codec="pcm16", rate=16000, cafile=edge.cert_path)
    tr.on_agent_audio = lambda p: None
    tr.on_control = lambda e: None
    tr.on_closed = lambda r: None
    await tr.connect()
    return tr


def test_datagram_uplink_and_frame_size_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        h = Script()
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "t"), jitter_depth_ms=0), h)
        await edge.start()
        tr = await connect(edge, "dg")
        tr.proto.send_datagram_frame(0, b"\x01\x00" * 320)
        tr.proto.send_frame(1, b"\x02\x00" * 320)
        for _ in range(100):
            if len(h.frames) >= 2:
                break
            await asyncio.sleep(0.01)
        assert [f.payload[:1] for f in h.frames] == [b"\x01", b"\x02"]
        tr.proto.send_frame(2, b"\x00" * 100)  # not a 20 ms pcm16/16000 frame
        for _ in range(100):
            if tr.proto.close_code is not None:
                break
            await asyncio.sleep(0.01)
        assert tr.proto.close_code == TC.PROTOCOL_VIOLATION and "expected 640" in tr.proto.close_reason
        assert edge.stats["bad_frames"] == 1
        await tr.hangup()
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_control_track_ordered_and_clear_playout_over_quic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Burst:
        async def on_call(self, call):  # type: ignore[no-untyped-def]
            first = True
            async for _ in call.frames():
                if first:
                    first = False
                    for _ in range(100):
                        await call.send_agent_audio(b"\x00\x10" * 320)
                    for i in range(50):
                        await call.send_control({"type": "info", "n": i})
                    await asyncio.sleep(0.3)
                    await call.clear_playout()

    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "t")), Burst())
        port = await edge.start()
        tr = QuicCallerTransport("127.0.0.1", port, token=edge.authority.issue("cc", time.time() + 60),
                                 call_id="cc", codec="pcm16", rate=16000, cafile=edge.cert_path)
        res = await Caller(tr, call_id="cc", codec="pcm16", rate=16000, tail_s=0.2).run(bytes(640 * 50))
        await edge.stop()
        assert [e["n"] for e in res.controls if e["type"] == "info"] == list(range(50))
        assert res.controls[-1] == {"type": "clear_playout"} and res.clear_playouts == 1
        assert res.agent_frames_received == 100 and res.agent_frames_cleared > 50
        assert res.agent_frames_played + res.agent_frames_cleared == 100

    asyncio.run(asyncio.wait_for(main(), 30))


def test_goaway_on_shutdown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "t")), Script())
        await edge.start()
        got: list = []  # type: ignore[type-arg]
        tr = await connect(edge, "ga")
        tr.on_control = got.append
        await edge.stop(goaway_grace_s=0.2)
        assert tr.proto.goaway and {"type": "info", "goaway": ""} in got
        for _ in range(100):
            if tr.proto.close_code is not None:
                break
            await asyncio.sleep(0.01)
        assert tr.proto.close_code == TC.NO_ERROR
        await tr.hangup()

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("audio", ["stream", "auto"])
def test_normal_end_sends_publish_done_with_stream_counts(tmp_path, audio) -> None:  # type: ignore[no-untyped-def]
    class Three:
        async def on_call(self, call):  # type: ignore[no-untyped-def]
            async for _ in call.frames():  # the caller's first frame (auto: its DATAGRAM)
                break
            for _ in range(3):
                await call.send_agent_audio(b"\x00\x01" * 320)
            await call.send_control({"type": "hangup"})

    async def main() -> None:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "t"), audio_transport=audio), Three())
        await edge.start()
        got: list = []  # type: ignore[type-arg]
        tr = await connect(edge, "pd")
        tr.on_agent_audio = got.append
        tr.proto.send_frame(0, bytes(640))  # the edge answers DATAGRAMs only to a caller using them
        for _ in range(200):
            if tr.proto.close_code is not None:
                break
            await asyncio.sleep(0.01)
        assert tr.proto.close_code == TC.NO_ERROR and len(got) == 3
        counts = sorted((m.status_code, m.stream_count) for m in tr.proto.publish_dones)
        # TRACK_ENDED: control (1 stream), agent-audio (3 streams; none when it went in DATAGRAMs)
        assert counts == ([(2, 1), (2, 3)] if audio == "stream" else [(2, 0), (2, 1)])
        assert edge.stats["agent_datagrams"] == (0 if audio == "stream" else 3)
        await tr.hangup()
        await edge.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
