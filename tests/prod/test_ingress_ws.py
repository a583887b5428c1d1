"""A real call over loopback WebSocket/TLS (Twilio Media Streams) with the echo handler, and bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.caller.ws_transport import WsCallerTransport
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.codecs import ulaw_encode
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.ws import WsIngress

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def speech8k() -> bytes:
    return dialogue(["hello there", "how are you today"], rate=8000, gap_s=0.7)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 45))


async def _edge(tmp_path, handler=None):  # type: ignore[no-untyped-def]
    edge = WsIngress(IngressConfig(cert_dir=str(tmp_path / "tls")), handler or EchoHandler())
    port = await edge.start()
    return edge, f"wss://localhost:{port}/media"


def test_ws_call_audio_both_ways(tmp_path, speech8k) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge, uri = await _edge(tmp_path)
        token = edge.authority.issue("call-ws", time.time() + 60)
        tr = WsCallerTransport(uri, token=token, call_id="call-ws", cafile=edge.cert_path)
        caller = Caller(tr, call_id="call-ws", codec="g711_ulaw", rate=8000, tail_s=0.4, keep_payloads=True)
        res = await caller.run(speech8k, out_wav=str(tmp_path / "out.wav"))
        await edge.stop()
        n = len(speech8k) // 320
        assert res.frames_sent == n
        assert res.agent_frames_received == n
        assert b"".join(res.received_payloads) == ulaw_encode(speech8k[: n * 320])
        assert len(res.turns) == 2 and all(t.latency_ms is not None and t.latency_ms >= 0 for t in res.turns)
        assert edge.stats["calls_started"] == 1

    run(main())


def test_ws_clear_playout_is_honoured(tmp_path, speech8k) -> None:  # type: ignore[no-untyped-def]
    class Burst:
        """Sends 2 s of agent audio at once on the first frame, then clear-playout 0.3 s later."""

        async def on_call(self, call):  # type: ignore[no-untyped-def]
            sent = False
            async for _ in call.frames():
                if not sent:
                    sent = True
                    for _ in range(100):
                        await call.send_agent_audio(b"\x7f" * 160)
                    await asyncio.sleep(0.3)
                    await call.clear_playout()
                    await call.send_control({"type": "commit", "turn": 1})

    async def main() -> None:
        edge, uri = await _edge(tmp_path, Burst())
        token = edge.authority.issue("c2", time.time() + 60)
        tr = WsCallerTransport(uri, token=token, call_id="c2", cafile=edge.cert_path)
        caller = Caller(tr, call_id="c2", codec="g711_ulaw", rate=8000, tail_s=0.3)
        res = await caller.run(speech8k[: 8000 * 2 * 1])
        await edge.stop()
        assert res.agent_frames_received == 100
        assert res.clear_playouts == 1
        assert res.agent_frames_cleared > 50  # most of the 2 s was still queued when cleared
        assert res.agent_frames_played + res.agent_frames_cleared == 100
        # over Twilio a control event rides as a short mark name: its type (and an error's code)
        assert {"type": "commit"} in res.controls

    run(main())


async def _raw(uri: str, cafile: str, messages: list) -> tuple[int | None, str]:  # type: ignore[type-arg]
    ctx = ssl.create_default_context(cafile=cafile)
    async with connect(uri, ssl=ctx) as ws:
        try:
            for m in messages:
                await ws.send(m)
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 5)
        return ws.close_code, ws.close_reason or ""


def _start(token: str, enc: str = "audio/x-mulaw") -> str:
    return json.dumps({"event": "start", "streamSid": "MZ1", "start": {
        "customParameters": {"token": token}, "mediaFormat": {"encoding": enc, "sampleRate": 8000, "channels": 1}}})


def _media(chunk: int, payload: str) -> str:
    return json.dumps({"event": "media", "media": {"chunk": str(chunk), "timestamp": "0", "payload": payload}})


def test_ws_bad_input_refused_clearly(tmp_path, speech8k) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        edge, uri = await _edge(tmp_path)
        tr = WsCallerTransport(uri, token=edge.authority.issue("steady", time.time() + 60), call_id="steady",
                               cafile=edge.cert_path)
        caller = Caller(tr, call_id="steady", codec="g711_ulaw", rate=8000, tail_s=0.4, keep_payloads=True)
        good_call = asyncio.ensure_future(caller.run(speech8k))
        await asyncio.sleep(0.2)
        good = edge.authority.issue("c3", time.time() + 60)
        expired = edge.authority.issue("c3", time.time() - 1)
        ok_media = _media(1, base64.b64encode(b"\xff" * 160).decode())
        cases = [
            (["{not json"], 1007, "bad JSON"),
            ([b"\x00\x01"], 1003, "binary"),
            ([json.dumps([1, 2])], 1007, "JSON object"),
            ([_start(good), _media(1, "!!!notbase64")], 1007, "base64"),
            ([_start(good), ok_media, json.dumps({"event": "bogus"})], 1007, "unknown event"),
            ([_start(expired)], 1008, "expired"),
            ([_start("v1.x.y.z")], 1008, "malformed"),
            ([_start(good, enc="audio/l16")], 1003, "mediaFormat"),
            ([json.dumps({"event": "media"})], 1008, "expected start"),
        ]
        for msgs, code, words in cases:
            got_code, reason = await _raw(uri, edge.cert_path, msgs)
            assert got_code == code, (msgs, got_code, reason)
            assert words in reason, (words, reason)
        assert edge.stats["auth_expired"] == 1 and edge.stats["auth_malformed"] == 1
        res = await good_call  # the call in progress was untouched
        n = len(speech8k) // 320
        assert res.agent_frames_received == n
        assert b"".join(res.received_payloads) == ulaw_encode(speech8k[: n * 320])
        await edge.stop()

    run(main())
