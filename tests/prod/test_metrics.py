"""Metrics registry, the /metrics HTTP endpoint over loopback, and JSON logs with the call id."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from clutchcall.engine.actions import (
    BackchannelFiltered,
    BargeArmed,
    BargeConfirmed,
    BargeDismissed,
    Commit,
)
from clutchcall.prod.metrics import (
    EdgeMetrics,
    JsonFormatter,
    MetricsServer,
    call_logger,
    current_call_id,
)


def test_outputs_map_to_counters_and_registries_are_separate() -> None:
    a, b = EdgeMetrics(), EdgeMetrics()
    for out in (
        BargeArmed(time=1.0, onset=0.9),
        BargeDismissed(time=1.1, speech_ms=100, reason="burst_ended"),
        BackchannelFiltered(time=1.1, speech_ms=100, over_agent=True),
        BackchannelFiltered(time=2.0, speech_ms=300, over_agent=False),
        BargeArmed(time=3.0, onset=2.9),
        BargeConfirmed(time=3.3, speech_ms=300, agent_played_ms=1200),
        Commit(time=4.0, turn=1, speech_ms=900, last_speech_at=3.5),
    ):
        a.observe_output(out)
    assert a.value("clutchcall_barge_ins_total", {"outcome": "armed"}) == 2
    assert a.value("clutchcall_barge_ins_total", {"outcome": "confirmed"}) == 1
    assert a.value("clutchcall_barge_ins_total", {"outcome": "dismissed"}) == 1
    assert a.value("clutchcall_backchannels_filtered_total", {"over_agent": "true"}) == 1
    assert a.value("clutchcall_backchannels_filtered_total", {"over_agent": "false"}) == 1
    assert b.value("clutchcall_barge_ins_total", {"outcome": "armed"}) == 0
    a.observe_turn(0.62, 0.0031)
    a.observe_turn(0.70, None)
    assert a.value("clutchcall_turn_latency_seconds_count") == 2
    assert a.value("clutchcall_edge_added_latency_seconds_count") == 1
    assert a.value("clutchcall_edge_added_latency_seconds_bucket", {"le": "0.004"}) == 1
    assert a.value("clutchcall_edge_added_latency_seconds_bucket", {"le": "0.003"}) == 0


def test_metrics_endpoint_serves_exposition_over_http() -> None:
    async def get(port: int, path: str) -> tuple[str, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return head.decode().split("\r\n")[0], body

    async def main() -> None:
        m = EdgeMetrics()
        m.calls_active.inc(3)
        m.frames_lost.inc(2)
        m.model_error("invalid_request_error", "input_audio_buffer_commit_empty")
        server = MetricsServer(m)
        port = await server.start()
        try:
            status, body = await get(port, "/metrics")
            assert status == "HTTP/1.1 200 OK"
            text = body.decode()
            assert "clutchcall_calls_active 3.0" in text
            assert "clutchcall_frames_lost_total 2.0" in text
            assert ('clutchcall_model_errors_total{code="input_audio_buffer_commit_empty",'
                    'type="invalid_request_error"} 1.0') in text
            assert "# TYPE clutchcall_turn_latency_seconds histogram" in text
            status, _ = await get(port, "/nope")
            assert status == "HTTP/1.1 404 Not Found"
            # garbage does not take the server down
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"\x00\xff garbage\r\n\r\n")
            w.close()
            status, _ = await get(port, "/metrics")
            assert status == "HTTP/1.1 200 OK"
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_json_logs_carry_the_call_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("clutchcall.test.metrics")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        call_logger(logger, "call-42").info("turn %d committed", 3, extra={"turn": 3})
        token = current_call_id.set("call-7")
        try:
            logger.warning("from the context")
        finally:
            current_call_id.reset(token)
        logger.info("no call")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["call_id"] == "call-42" and lines[0]["msg"] == "turn 3 committed"
    assert lines[0]["turn"] == 3 and lines[0]["level"] == "info"
    assert lines[1]["call_id"] == "call-7" and lines[1]["level"] == "warning"
    assert lines[2]["call_id"] is None
