"""Several calls at once on both ingresses, one of them with a failing handler: each call gets its
own audio back, the failing one ends cleanly and is counted, the others are untouched."""

from __future__ import annotations

import asyncio
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import synth
from clutchcall.prod.caller.ws_transport import WsCallerTransport
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.codecs import ulaw_encode
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.ingress.ws import WsIngress

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("each_quic_core")]


class EchoUnlessBroken(EchoHandler):
    async def on_call(self, call) -> None:  # type: ignore[no-untyped-def]
        if call.call_id.endswith("broken"):
            async for _ in call.frames():
                raise RuntimeError("pipeline bug")
        await super().on_call(call)


def test_concurrent_calls_both_transports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    words = ["one", "two", "three", "four"]

    async def main() -> None:
        cfg = IngressConfig(cert_dir=str(tmp_path / "t"))
        handler = EchoUnlessBroken()
        quic, ws = QuicIngress(cfg, handler), WsIngress(cfg, handler)
        qport, wport = await quic.start(), await ws.start()

        async def qcall(i: int, name: str):  # type: ignore[no-untyped-def]
            pcm = bytes(3200) + synth(words[i], 16000) + bytes(6400)
            tr = QuicCallerTransport("127.0.0.1", qport, token=quic.authority.issue(name, time.time() + 60),
                                     call_id=name, codec="pcm16", rate=16000, cafile=quic.cert_path)
            res = await Caller(tr, call_id=name, codec="pcm16", rate=16000, tail_s=0.3, keep_payloads=True).run(pcm)
            return res, pcm[: len(pcm) // 640 * 640]

        async def wcall(i: int, name: str):  # type: ignore[no-untyped-def]
            pcm = bytes(1600) + synth(words[i], 8000) + bytes(3200)
            tr = WsCallerTransport(f"wss://localhost:{wport}/x", token=ws.authority.issue(name, time.time() + 60),
                                   call_id=name, cafile=ws.cert_path)
            res = await Caller(tr, call_id=name, codec="g711_ulaw", rate=8000, tail_s=0.3, keep_payloads=True).run(pcm)
            return res, ulaw_encode(pcm[: len(pcm) // 320 * 320])

        jobs = [qcall(i, f"q{i}") for i in range(4)] + [wcall(i, f"w{i}") for i in range(4)]
        jobs += [qcall(0, "q-broken"), wcall(0, "w-broken")]
        results = await asyncio.gather(*jobs)
        await quic.stop()
        await ws.stop()
        for res, expect in results:
            if res.call_id.endswith("broken"):
                assert res.agent_frames_received == 0
                continue
            assert b"".join(res.received_payloads) == expect, res.call_id
        assert quic.stats["handler_errors"] == 1 and ws.stats["handler_errors"] == 1
        assert quic.stats["calls_started"] == 5 and ws.stats["calls_started"] == 5

    asyncio.run(asyncio.wait_for(main(), 50))
