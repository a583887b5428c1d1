"""Faults at the edge, all real on loopback: a caller that vanishes is cleaned up after the
idle timeout (model session closed, trace written); the model leg failing mid-call gives the
caller an ``error`` control event while another call goes on; a slow model does not stall
another call. The model sits behind a small TCP proxy that can cut or delay one connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.caller.speech import synth
from clutchcall.prod.caller.ws_transport import WsCallerTransport
from clutchcall.prod.edge import Edge, EdgeConfig
from clutchcall.prod.model import ModelServerConfig, ReferenceModelServer
from clutchcall.traces.recorded import read_trace
from clutchcall.traces.replay import first_mismatch

pytestmark = pytest.mark.timeout(60)


class ModelProxy:
    """A TCP proxy in front of the model; ``faults[i]`` acts on the i-th connection:
    ``("cut", s)`` aborts both sides ``s`` seconds after the first model->edge byte of a reply
    (after the session is set up), ``("delay", s)`` delivers model->edge bytes ``s`` late once the session is set up (0.5 s)."""

    def __init__(self, upstream_port: int, faults: dict[int, tuple[str, float]]) -> None:
        self.upstream_port = upstream_port
        self.faults = faults
        self.connections = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/realtime"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        fault = self.faults.get(n)
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        loop = asyncio.get_running_loop()

        async def up() -> None:
            while data := await cr.read(65536):
                uw.write(data)
            uw.close()

        async def down() -> None:
            started = None
            t_conn = loop.time()
            q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
            pump = None
            if fault and fault[0] == "delay":
                async def deliver() -> None:
                    while True:
                        at, chunk = await q.get()
                        if at > loop.time():
                            await asyncio.sleep(at - loop.time())
                        cw.write(chunk)
                pump = asyncio.ensure_future(deliver())
                self._tasks.add(pump)
            while data := await ur.read(65536):
                if fault and fault[0] == "delay" and loop.time() - t_conn > 0.5:
                    q.put_nowait((loop.time() + fault[1], data))  # a constant extra latency
                    continue
                if fault and fault[0] == "delay" and not q.empty():
                    q.put_nowait((loop.time(), data))
                    continue
                if fault and fault[0] == "cut":
                    started = started or loop.time()
                    if loop.time() - started >= fault[1]:
                        self.cut += 1
                        cw.transport.abort()
                        uw.transport.abort()
                        return
                cw.write(data)
            if pump is not None:
                while not q.empty():
                    await asyncio.sleep(0.05)
                pump.cancel()
            cw.close()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)


def _speech(rate: int = 16000) -> bytes:
    one = synth("Could you tell me where my order is right now?", rate)
    return bytes(rate // 5 * 2) + one + bytes(rate * 2 * 6 // 5)


async def _quic_call(edge: Edge, call_id: str, pcm: bytes, tail: float = 1.0) -> Any:
    tr = QuicCallerTransport("127.0.0.1", edge.quic_port, token=edge.issue_token(call_id), call_id=call_id,
                             codec="pcm16", rate=16000, cafile=edge.cert_path)
    return await Caller(tr, call_id=call_id, codec="pcm16", rate=16000, tail_s=tail).run(pcm)


def test_vanished_caller_is_cleaned_up_after_idle_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = EdgeConfig(trace_dir=str(tmp_path / "tr"), cert_dir=str(tmp_path / "tls"), json_logs=False,
                     caller_idle_timeout_s=1.0)
    pcm = synth("Hello, is anybody there?", 16000)

    async def main() -> None:
        async with Edge(cfg) as edge:
            for transport in ("quic", "ws"):
                call_id = f"gone-{transport}"
                token = edge.issue_token(call_id)
                if transport == "quic":
                    tr: Any = QuicCallerTransport("127.0.0.1", edge.quic_port, token=token, call_id=call_id,
                                                  codec="pcm16", rate=16000, cafile=edge.cert_path)
                    rate, codec = 16000, "pcm16"
                else:
                    tr = WsCallerTransport(f"wss://localhost:{edge.ws_port}/media", token=token,
                                           call_id=call_id, cafile=edge.cert_path)
                    rate, codec = 8000, "g711_ulaw"
                tr.on_agent_audio = lambda p: None
                tr.on_control = lambda e: None
                tr.on_closed = lambda r: None
                await tr.connect()
                caller = Caller(tr, call_id=call_id, codec=codec, rate=rate)
                n = rate // 50 * 2
                data = pcm if rate == 16000 else pcm[::4]  # any audio will do for 8 kHz
                t0 = time.monotonic()
                for seq in range(30):  # 0.6 s of audio at 1x, then the caller vanishes (no hangup)
                    await tr.send_frame(seq, caller._encode(data[seq * n:(seq + 1) * n].ljust(n, b"\0")))
                    await asyncio.sleep(0.02)
                for _ in range(100):
                    if call_id in edge.handler.pipelines:
                        break
                    await asyncio.sleep(0.01)
                pipe = edge.handler.pipelines[call_id]
                summary = await edge.handler.wait_ended(call_id, 6.0)
                waited = time.monotonic() - t0
                assert summary.idle_closed and summary.end_reason == "caller idle"
                assert waited >= 1.0  # not before the idle timeout
                assert pipe.model.closed  # the model session was closed
                assert summary.trace is not None
                trace = read_trace(summary.trace)  # flushed and valid
                assert len(trace.inputs) >= 25 and first_mismatch(trace) is None
                assert call_id not in edge.handler.pipelines
                with contextlib.suppress(Exception):  # the edge already ended the session
                    await asyncio.wait_for(tr.hangup(), 2.0)
            assert edge.metrics.value("clutchcall_calls_idle_closed_total") == 2
            assert edge.metrics.value("clutchcall_calls_active") == 0

    asyncio.run(main())


def test_model_leg_failing_mid_call_errors_that_call_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pcm = _speech()

    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=100,
                                                          replies=("Sure, one moment please.",))) as model:
            proxy = ModelProxy(model.port, {0: ("cut", 1.0)})
            url = await proxy.start()
            cfg = EdgeConfig(trace_dir=str(tmp_path / "tr"), cert_dir=str(tmp_path / "tls"), json_logs=False,
                             model_url=url)
            async with Edge(cfg) as edge:
                bad = asyncio.ensure_future(_quic_call(edge, "doomed", pcm))
                while proxy.connections < 1:
                    await asyncio.sleep(0.01)
                good = asyncio.ensure_future(_quic_call(edge, "fine", pcm))
                res_bad, res_good = await asyncio.gather(bad, good)
                s_bad = await edge.handler.wait_ended("doomed", 5)
                s_good = await edge.handler.wait_ended("fine", 5)
                errors = edge.metrics.value("clutchcall_model_errors_total", {"type": "connection", "code": "closed"})
            await proxy.close()
        assert proxy.cut == 1
        # the failed call: a clear error event reached the caller, the call ended cleanly, trace kept
        errs = [c for c in res_bad.controls if c.get("type") == "error"]
        assert errs and errs[0]["code"] == "model_unavailable" and "model leg" in errs[0]["message"]
        assert s_bad.failed and "model leg closed" in s_bad.failed
        assert s_bad.trace is not None and first_mismatch(read_trace(s_bad.trace)) is None
        assert errors == 1
        # the other call, whose turn came after the cut, was untouched: its turn was answered
        assert s_good.failed is None and len(s_good.turns) == 1 and res_good.agent_frames_received > 20
        assert s_good.turns[0].first_audio_at is not None
        assert not [c for c in res_good.controls if c.get("type") == "error"]

    asyncio.run(main())


def test_slow_model_does_not_stall_other_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pcm = _speech()
    stall_s = 2.0

    async def main() -> tuple[Any, Any]:
        async with ReferenceModelServer(ModelServerConfig(time_to_first_audio_ms=100,
                                                          replies=("Sure, one moment please.",))) as model:
            proxy = ModelProxy(model.port, {0: ("delay", stall_s)})
            url = await proxy.start()
            cfg = EdgeConfig(trace_dir=str(tmp_path / "tr"), cert_dir=str(tmp_path / "tls"), json_logs=False,
                             model_url=url, pipeline={"drain_timeout_s": 1.0})
            async with Edge(cfg) as edge:
                slow = asyncio.ensure_future(_quic_call(edge, "slow", pcm, tail=stall_s + 1.5))
                while proxy.connections < 1:
                    await asyncio.sleep(0.01)
                fast = asyncio.ensure_future(_quic_call(edge, "fast", pcm))
                await asyncio.gather(slow, fast)
                s_slow = await edge.handler.wait_ended("slow", 10)
                s_fast = await edge.handler.wait_ended("fast", 10)
            await proxy.close()
        return s_slow, s_fast

    s_slow, s_fast = asyncio.run(main())
    assert s_fast.failed is None and len(s_fast.turns) == 1
    # the slow call's model answers stall_s late; the other call's turns do not wait for it
    # (a functional bound: far below the stall, far above any scheduling noise)
    for t in s_fast.turns:
        assert t.turn_latency_ms is not None and t.turn_latency_ms < 500 + 100 + stall_s * 1000 / 2
    slow_lat = [t.turn_latency_ms for t in s_slow.turns if t.turn_latency_ms is not None]
    assert slow_lat and min(slow_lat) > stall_s * 1000
