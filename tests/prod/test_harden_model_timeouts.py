"""Issue 19 item 5: a model that stops answering never leaves the caller in silence. Real
misbehaving Realtime servers on loopback: one that accepts TCP and never upgrades, one that
upgrades and never sends ``session.created``, one that never answers ``response.create``, one
that answers only the second ``response.create``. Time-outs are typed, counted on /metrics,
a silent response is retried once, and the caller gets an ``error`` control event."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
from websockets.asyncio.server import serve

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import synth
from clutchcall.prod.edge import Edge, EdgeConfig
from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model.client import ModelLeg, ModelLegConfig
from clutchcall.prod.model.protocol import ModelTimeoutError

pytestmark = pytest.mark.timeout(60)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 45))


def model_server(answer_from: int | None):  # type: ignore[no-untyped-def]
    """A Realtime server that sends session.created, reads everything, and answers the
    ``answer_from``-th response.create (1-based) and later ones with 200 ms of audio; None:
    never answers."""
    creates = [0]

    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        async for raw in ws:
            ev = json.loads(raw)
            if ev["type"] != "response.create":
                continue
            creates[0] += 1
            if answer_from is None or creates[0] < answer_from:
                continue  # silent: the edge must not wait forever
            rid, item = f"resp_{creates[0]}", f"item_{creates[0]}"
            await ws.send(json.dumps({"type": "response.created", "response": {"id": rid}}))
            await ws.send(json.dumps({"type": "response.output_item.added", "response_id": rid,
                                      "item": {"id": item}}))
            pcm = base64.b64encode(b"\x10\x00" * 4800).decode()  # 200 ms at 24 kHz
            await ws.send(json.dumps({"type": "response.output_audio.delta", "response_id": rid,
                                      "item_id": item, "delta": pcm}))
            await ws.send(json.dumps({"type": "response.done", "response": {"id": rid, "status": "completed"}}))

    return handler, creates


def test_connect_and_session_timeouts_are_typed_and_counted() -> None:
    async def never_upgrades(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(1 << 16)
        await asyncio.sleep(30)

    async def never_speaks(ws: Any) -> None:
        await ws.wait_closed()

    async def main() -> None:
        metrics = EdgeMetrics()
        tcp = await asyncio.start_server(never_upgrades, "127.0.0.1", 0)
        cfg = ModelLegConfig(connect_timeout_s=0.5, session_timeout_s=0.5)
        try:
            leg = ModelLeg(cfg, url=f"ws://127.0.0.1:{tcp.sockets[0].getsockname()[1]}", metrics=metrics)
            t0 = time.monotonic()
            with pytest.raises(ModelTimeoutError) as exc:
                await leg.connect()
            assert exc.value.stage == "connect" and time.monotonic() - t0 < 2.0
        finally:
            tcp.close()
        async with serve(never_speaks, "127.0.0.1", 0) as server:
            leg = ModelLeg(cfg, url=f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", metrics=metrics)
            t0 = time.monotonic()
            with pytest.raises(ModelTimeoutError) as exc:
                await leg.connect()
            assert exc.value.stage == "session" and time.monotonic() - t0 < 2.0
        assert metrics.value("clutchcall_model_timeouts_total", {"stage": "connect"}) == 1
        assert metrics.value("clutchcall_model_timeouts_total", {"stage": "session"}) == 1

    run(main())


def _edge_call(answer_from: int | None, tmp_path: Any) -> tuple[Any, Any, float, int]:
    handler, creates = model_server(answer_from)

    async def main() -> tuple[Any, bytes, float]:
        async with serve(handler, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/realtime"
            cfg = EdgeConfig(model_url=url, cert_dir=str(tmp_path / "tls"), json_logs=False,
                             model_first_audio_timeout_s=0.6)
            async with Edge(cfg) as edge:
                pcm = bytes(3200) + synth("Where is my parcel today?", 16000) + bytes(32000 * 3)
                tr = QuicCallerTransport("127.0.0.1", edge.quic_port, token=edge.issue_token("m1"), call_id="m1",
                                         codec="pcm16", rate=16000, cafile=edge.cert_path)
                t0 = time.monotonic()
                res = await Caller(tr, call_id="m1", codec="pcm16", rate=16000, tail_s=0.5).run(pcm)
                took = time.monotonic() - t0
                await edge.handler.wait_ended("m1", 10)
                return res, edge.metrics.exposition(), took

    res, expo, took = run(main())
    return res, expo, took, creates[0]


def test_a_model_that_never_answers_gives_the_caller_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res, expo, _took, creates = _edge_call(None, tmp_path)
    errors = [c for c in res.controls if c.get("type") == "error"]
    assert errors and errors[0]["code"] == "model_timeout" and errors[0]["stage"] == "first_audio", res.controls
    assert creates == 2  # the first response.create and exactly one retry
    assert b'clutchcall_model_timeouts_total{stage="first_audio"} 2.0' in expo
    assert b"clutchcall_model_response_retries_total 1.0" in expo
    assert res.agent_frames_received == 0


def test_a_response_retried_after_a_timeout_reaches_the_caller(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res, expo, _took, creates = _edge_call(2, tmp_path)
    assert creates == 2
    assert not [c for c in res.controls if c.get("type") == "error"], res.controls
    assert res.agent_frames_received >= 9  # the retried reply's 200 ms were played to the caller
    assert b'clutchcall_model_timeouts_total{stage="first_audio"} 1.0' in expo
    assert b"clutchcall_model_response_retries_total 1.0" in expo
