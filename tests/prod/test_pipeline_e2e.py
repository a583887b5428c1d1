"""A real call end to end on loopback: a caller over QUIC/MoQT or WebSocket/TLS -> the caller-leg
ingress -> EdgeHandler (the call pipeline: VAD, call core, turn engine, model leg) -> the embedded reference model, and the
agent's speech back to the caller."""

from __future__ import annotations

import asyncio
import time

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import dialogue
from clutchcall.prod.caller.ws_transport import WsCallerTransport
from clutchcall.prod.edge.handler import EdgeHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.ingress.ws import WsIngress
from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model import ModelServerConfig, ReferenceModelServer

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", ["quic", "ws"])
def test_call_through_ingress_pipeline_and_model(tmp_path, transport: str) -> None:  # type: ignore[no-untyped-def]
    codec, rate = ("pcm16", 16000) if transport == "quic" else ("g711_ulaw", 8000)
    pcm = dialogue(["where is my order", "thanks, and when does it arrive"], rate=rate, gap_s=2.2)

    async def main() -> None:
        model_cfg = ModelServerConfig(replies=("It ships today.",), time_to_first_audio_ms=100)
        async with ReferenceModelServer(model_cfg) as model:
            metrics = EdgeMetrics()
            handler = EdgeHandler(model_url=model.url, metrics=metrics,
                                  pipeline_options={"drain_timeout_s": 1.0})
            cfg = IngressConfig(cert_dir=str(tmp_path / "tls"))
            edge = QuicIngress(cfg, handler) if transport == "quic" else WsIngress(cfg, handler)
            port = await edge.start()
            try:
                token = edge.authority.issue("e2e", time.time() + 60)
                if transport == "quic":
                    tr = QuicCallerTransport("127.0.0.1", port, token=token, call_id="e2e", codec=codec,
                                             rate=rate, cafile=edge.cert_path)
                else:
                    tr = WsCallerTransport(f"wss://localhost:{port}/media", token=token, call_id="e2e",
                                           cafile=edge.cert_path)
                res = await Caller(tr, call_id="e2e", codec=codec, rate=rate, tail_s=1.5).run(pcm)
            finally:
                await edge.stop()
            turns = (await handler.wait_ended("e2e", 5.0)).turns
            assert len(turns) == 2, turns
            assert all(t.edge_added_ms is not None and t.edge_added_ms >= 0 for t in turns)
            assert model.stats.responses == 2
            assert res.agent_frames_received > 50  # two spoken replies reached the caller
            kinds = [c.get("type") for c in res.controls]
            assert kinds.count("commit") == 2
            assert metrics.value("clutchcall_turn_latency_seconds_count") == 2
            assert metrics.value("clutchcall_calls_active") == 0

    asyncio.run(asyncio.wait_for(main(), 50))
