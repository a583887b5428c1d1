"""Issue 19 item 1: a caller that sends faster than real time (or whose sequence numbers jump)
is bounded by the call core and then ended by the edge with a typed close (WebSocket 1008 and
an ``error`` ``caller_violation`` control event), counted on /metrics; a legitimate call on the
same edge does not notice. Real Edge (embedded model), real WebSocket over TLS on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clutchcall.engine.call import HoldStats
from clutchcall.engine.errors import ConfigError
from clutchcall.prod.edge import Edge, EdgeConfig, EmbeddedModelConfig
from clutchcall.prod.edge.guard import GuardConfig, ViolationGuard

pytestmark = pytest.mark.timeout(90)

PAYLOAD = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of µ-law silence


# ----------------------------------------------------------------------------- the guard
def test_guard_sums_violating_frames_over_a_sliding_window() -> None:
    stats = HoldStats()
    queue = [0]
    g = ViolationGuard(stats, GuardConfig(limit_frames=10, window_s=1.0), ingress_dropped=lambda: queue[0])
    assert g.check(0.0) == (0, 0, None)
    stats.dropped_ahead = 4
    assert g.check(0.1) == (4, 0, None)
    stats.conceal_refused = 5
    assert g.check(0.5) == (0, 5, None)  # 9 in the window: not yet
    stats.dropped_ahead = 4  # nothing new; the first 4 leave the window
    assert g.check(1.2) == (0, 0, None)
    queue[0] = 6  # the ingress queue refused 6: 11 in the window
    new_a, new_c, reason = g.check(1.3)
    assert (new_a, new_c) == (6, 0) and reason is not None and "uplink bounds" in reason
    assert g.check(5.0)[2] == reason  # stays ended
    assert (g.ahead, g.conceal) == (10, 5)


def test_guard_spread_out_violations_never_end_the_call() -> None:
    stats = HoldStats()
    g = ViolationGuard(stats, GuardConfig())  # defaults: 250 in 5 s
    for i in range(600):  # 4 dropped frames every 100 ms for a minute: 200 per window
        stats.dropped_ahead += 4
        assert g.check(i * 0.1)[2] is None


def test_guard_does_not_blame_the_caller_for_the_edges_backlog() -> None:
    """Frames that queued while the edge was busy (its numbering not ahead of real time) are
    counted but never end the call; the same drops from a caller running ahead do."""
    stats = HoldStats()
    g = ViolationGuard(stats, GuardConfig(limit_frames=50, window_s=5.0))
    stats.dropped_ahead = 400  # a 10 s backlog drained at once after a slow model connect
    new_a, _, reason = g.check(1.0, caller_ahead_s=0.0)
    assert new_a == 400 and reason is None and g.ahead == 400
    stats.dropped_ahead = 460  # now the caller's numbering runs 3 s ahead of the clock
    assert g.check(2.0, caller_ahead_s=3.0)[2] is not None


def test_guard_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        GuardConfig(limit_frames=0)
    with pytest.raises(ConfigError):
        GuardConfig(window_s=0)


# ----------------------------------------------------------------------------- over a real edge
def _start(token: str, sid: str) -> str:
    return json.dumps({"event": "start", "streamSid": sid, "start": {
        "streamSid": sid, "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def _media(chunk: int, ts_ms: int) -> str:
    return json.dumps({"event": "media", "media": {"chunk": str(chunk), "timestamp": str(ts_ms),
                                                   "payload": PAYLOAD}})


async def _flood(uri: str, ctx: ssl.SSLContext, token: str, jump: int, limit_s: float) -> dict[str, Any]:
    """Send media as fast as the socket takes it (chunks advancing by ``jump``) for at most
    ``limit_s`` seconds; return how the edge ended it and the marks it sent."""
    out: dict[str, Any] = {"marks": [], "code": None, "sent": 0}

    async def read(ws: Any) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("event") == "mark":
                    out["marks"].append(msg["mark"]["name"])
        except ConnectionClosed:
            pass

    t0 = time.monotonic()
    try:
        async with connect(uri, ssl=ctx) as ws:
            reader = asyncio.ensure_future(read(ws))
            await ws.send(_start(token, "MZflood"))
            chunk = 1
            while time.monotonic() - t0 < limit_s:
                for _ in range(50):
                    await ws.send(_media(chunk, 20 * (chunk - 1)))
                    chunk += jump
                    out["sent"] += 1
                await asyncio.sleep(0)
            out["code"] = "not closed by the edge"
            reader.cancel()
    except ConnectionClosed as exc:
        out["code"] = exc.rcvd.code if exc.rcvd else None
        out["reason"] = exc.rcvd.reason if exc.rcvd else ""
    out["elapsed_s"] = time.monotonic() - t0
    return out


async def _legit(uri: str, ctx: ssl.SSLContext, token: str, seconds: float) -> dict[str, Any]:
    """A caller at 1x for ``seconds``, then ``stop``."""
    async with connect(uri, ssl=ctx) as ws:
        await ws.send(_start(token, "MZlegit"))
        t0 = time.monotonic()
        n = int(seconds * 50)
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
            await ws.send(_media(i + 1, 20 * i))
        await ws.send(json.dumps({"event": "stop"}))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 3)
        except (ConnectionClosed, TimeoutError):
            pass
        return {"code": ws.close_code, "sent": n}


@pytest.mark.parametrize("jump", [1, 100], ids=["flood", "chunk-jump"])
def test_flooding_caller_is_closed_1008_and_a_legit_call_does_not_notice(tmp_path, jump: int) -> None:  # type: ignore[no-untyped-def]
    cfg = EdgeConfig(cert_dir=str(tmp_path / "tls"), json_logs=False, metrics_port=-1,
                     trace_dir=str(tmp_path / "traces"),
                     model=EmbeddedModelConfig(time_to_first_audio_ms=100))

    async def main() -> tuple[dict[str, Any], dict[str, Any], Any, Any, str]:
        async with Edge(cfg) as edge:
            ctx = ssl.create_default_context(cafile=edge.cert_path)
            uri = f"wss://localhost:{edge.ws_port}/media"
            flood, legit = await asyncio.gather(
                _flood(uri, ctx, edge.issue_token("flood"), jump, limit_s=8.0),
                _legit(uri, ctx, edge.issue_token("legit"), seconds=3.0))
            assert edge.handler is not None
            fs = await edge.handler.wait_ended("flood", 10)
            ls = await edge.handler.wait_ended("legit", 10)
            from prometheus_client import generate_latest

            return flood, legit, fs, ls, generate_latest(edge.metrics.registry).decode()

    flood, legit, fs, ls, metrics = asyncio.run(asyncio.wait_for(main(), 60))
    print(flood["code"], flood.get("reason"), f"{flood['elapsed_s']:.2f} s", flood["sent"], "messages")
    assert flood["code"] == 1008, flood
    assert "uplink bounds" in flood["reason"]
    assert flood["elapsed_s"] < 5.0, flood
    assert "ctl:error:caller_violation" in flood["marks"], flood["marks"]
    assert fs.end_reason == "caller_violation" and fs.failed and fs.trace, fs
    assert "clutchcall_calls_closed_violation_total 1.0" in metrics
    counted = {ln.split('"')[1]: float(ln.split()[-1]) for ln in metrics.splitlines()
               if ln.startswith("clutchcall_caller_violations_total{")}
    # a jump of 100 is concealed (capped per gap and per second) into a hold that is then full
    # too: either bound may be the first to refuse, both count
    assert counted["ahead"] + counted["conceal"] >= 250, counted
    # the legitimate call on the same edge: ended by its own stop, every frame placed
    assert legit["code"] == 1000, legit
    assert ls.end_reason != "caller_violation" and not ls.failed, ls
    assert ls.frames >= legit["sent"] - 1, (ls.frames, legit)


def test_quic_flooding_caller_is_closed_protocol_violation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same over QUIC/MoQT: caller-audio objects far faster than real time end the session
    with MoQT PROTOCOL_VIOLATION (0x3) and the reason; the edge counts it."""
    from clutchcall.prod.caller.quic_transport import QuicCallerTransport
    from clutchcall.prod.moqt.wire import TerminationCode

    cfg = EdgeConfig(cert_dir=str(tmp_path / "tls"), json_logs=False, metrics_port=-1,
                     model=EmbeddedModelConfig(time_to_first_audio_ms=100))

    async def main() -> tuple[Any, Any, float, int]:
        async with Edge(cfg) as edge:
            tr = QuicCallerTransport("127.0.0.1", edge.quic_port, token=edge.issue_token("qflood"),
                                     call_id="qflood", codec="pcm16", rate=16000,
                                     cafile=edge.cert_path, timeout_s=10)
            await tr.connect()
            proto = tr.proto
            assert proto is not None
            frame = bytes(640)
            t0 = time.monotonic()
            seq = 0
            try:
                while proto.close_code is None and time.monotonic() - t0 < 8.0:
                    for _ in range(10):  # ~1000 frames/s, 20x real time (each on its own
                        await tr.send_frame(seq, frame)  # stream: faster would hit the
                        seq += 1  # edge's open-stream bound first, another typed close)
                    await asyncio.sleep(0.01)
                elapsed = time.monotonic() - t0
                for _ in range(100):
                    if proto.close_code is not None:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await tr.hangup()
            assert edge.handler is not None
            summary = await edge.handler.wait_ended("qflood", 10)
            from prometheus_client import generate_latest

            metrics = generate_latest(edge.metrics.registry).decode()
            assert "clutchcall_calls_closed_violation_total 1.0" in metrics
            return proto.close_code, summary, elapsed, seq

    code, summary, elapsed, sent = asyncio.run(asyncio.wait_for(main(), 60))
    print(f"closed with {code} after {elapsed:.2f} s, {sent} frames sent")
    assert code == TerminationCode.PROTOCOL_VIOLATION, code
    assert summary.end_reason == "caller_violation" and "uplink bounds" in (summary.failed or "")
    assert elapsed < 6.0
