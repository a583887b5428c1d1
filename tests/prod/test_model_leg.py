"""The model leg client against the embedded reference model, over real loopback WebSockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model import (
    AudioChunk,
    ModelLeg,
    ModelLegConfig,
    ModelServerConfig,
    ModelServerError,
    ReferenceModelServer,
)
from clutchcall.prod.model.protocol import BYTES_PER_MS, ModelProtocolError
from clutchcall.prod.model.speech import render_speech_sync


def run(coro: Any, timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def tone(ms: int, hz: float = 220.0, amp: int = 8000) -> bytes:
    t = np.arange(ms * 24) / 24000
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


class Collector:
    def __init__(self) -> None:
        self.chunks: list[AudioChunk] = []
        self.done: list[tuple[str, str]] = []
        self.errors: list[Exception] = []
        self.done_event = asyncio.Event()
        self.audio_event = asyncio.Event()

    def on_audio(self, c: AudioChunk) -> None:
        self.chunks.append(c)
        self.audio_event.set()

    def on_done(self, rid: str, status: str) -> None:
        self.done.append((rid, status))
        self.done_event.set()

    def on_error(self, e: Exception) -> None:
        self.errors.append(e)

    def leg(self, url: str, metrics: EdgeMetrics | None = None, **cfg: Any) -> ModelLeg:
        return ModelLeg(ModelLegConfig(url=url, **cfg), on_audio=self.on_audio,
                        on_response_done=self.on_done, on_error=self.on_error, metrics=metrics)


REPLY = "Hello there."


def test_commit_streams_real_speech_at_1x() -> None:
    expected = render_speech_sync(REPLY)

    async def main() -> None:
        cfg = ModelServerConfig(replies=(REPLY,), time_to_first_audio_ms=150, delta_ms=40)
        async with ReferenceModelServer(cfg) as srv:
            col = Collector()
            leg = col.leg(srv.url)
            await leg.connect()
            for _ in range(25):  # 500 ms of caller audio in 20 ms frames
                leg.append(tone(20))
            leg.commit()
            t_commit = asyncio.get_running_loop().time()
            await asyncio.wait_for(col.done_event.wait(), 15)
            await leg.close()
            pcm = b"".join(c.pcm for c in col.chunks)
            assert pcm == expected  # the espeak-ng rendering, byte for byte
            x = np.frombuffer(pcm, "<i2").astype(float)
            assert np.sqrt(np.mean(x**2)) > 300  # real speech, not silence
            assert col.done == [(col.chunks[0].response_id, "completed")]
            assert col.chunks[0].first and col.chunks[0].model_ttfa_s is not None
            assert col.chunks[0].model_ttfa_s >= 0.15
            assert all(len(c.pcm) == 40 * BYTES_PER_MS for c in col.chunks[:-1])
            # 1x after the 80 ms lead: chunk k cannot arrive before the commit + 150 ms time to
            # first audio + k * 40 ms - 80 ms. (Measured from the commit, not from the first
            # chunk's arrival: on a loaded machine that arrival is late and the later chunks,
            # sent on the server's schedule, would look early.)
            for k, c in enumerate(col.chunks):
                assert c.received_at - t_commit >= 0.150 + k * 0.040 - 0.080 - 0.002, k
            assert len(col.chunks) > 10  # enough chunks for the bound to test pacing
            assert srv.stats.appended_bytes == 500 * BYTES_PER_MS
            assert srv.stats.commits == 1 and leg.stats.appends == 5  # 100 ms batches
            assert not col.errors

    run(main())


def test_cancel_truncates_at_audio_sent_to_caller() -> None:
    async def main() -> None:
        cfg = ModelServerConfig(replies=(REPLY,), time_to_first_audio_ms=50, delta_ms=20)
        async with ReferenceModelServer(cfg) as srv:
            col = Collector()
            leg = col.leg(srv.url)
            await leg.connect()
            leg.append(tone(300))
            leg.commit()
            while sum(len(c.pcm) for c in col.chunks) < 200 * BYTES_PER_MS:
                await asyncio.sleep(0.01)
            item = col.chunks[0].item_id
            end = leg.cancel(played_ms=180, item_id=item, sent_ms=160)
            assert end == 160
            n_at_cancel = len(col.chunks)
            await asyncio.wait_for(col.done_event.wait(), 5)
            await asyncio.sleep(0.1)
            assert col.done[-1][1] == "cancelled"
            assert len(col.chunks) == n_at_cancel  # nothing forwarded after the cancel
            assert srv.stats.truncations == [(item, 160)]
            assert srv.stats.cancelled == 1
            # a second truncate never claims more than the (now truncated) item holds
            assert leg.cancel(played_ms=10_000, item_id=item) == 160
            await leg.flushed()
            await asyncio.sleep(0.05)
            assert srv.stats.truncations[-1] == (item, 160)
            # after the cancel the session is usable: a new turn gets a new response
            col.done_event.clear()
            leg.append(tone(200))
            leg.commit()
            await asyncio.wait_for(col.done_event.wait(), 10)
            assert col.done[-1][1] == "completed"
            # played_ms beyond the audio received is clamped to what was received
            item2 = col.chunks[-1].item_id
            received_ms = leg.item_audio_bytes[item2] // BYTES_PER_MS
            assert leg.cancel(played_ms=100_000, item_id=item2) == received_ms
            await leg.flushed()
            await asyncio.sleep(0.05)
            assert srv.stats.truncations[-1] == (item2, received_ms)
            assert not col.errors, col.errors
            await leg.close()

    run(main())


def test_server_errors_are_typed_counted_and_survived() -> None:
    async def main() -> None:
        cfg = ModelServerConfig(replies=(REPLY,), time_to_first_audio_ms=300, delta_ms=40)
        async with ReferenceModelServer(cfg) as srv:
            metrics = EdgeMetrics()
            col = Collector()
            leg = col.leg(srv.url, metrics)
            await leg.connect()
            leg.append(tone(60))
            leg._send({"type": "input_audio_buffer.commit"})  # < 100 ms: misuse on purpose
            leg._send({"type": "no.such.event"})
            leg._send({"type": "input_audio_buffer.append", "audio": "!!not base64!!"})
            leg.append(tone(200))
            leg.commit()
            leg._send({"type": "response.create"})  # while the first is active
            await asyncio.wait_for(col.done_event.wait(), 10)
            codes = [e.code for e in col.errors if isinstance(e, ModelServerError)]
            assert codes == ["input_audio_buffer_commit_empty", "unknown_event_type",
                             "invalid_value", "conversation_already_has_active_response"]
            assert metrics.value("clutchcall_model_errors_total", {
                "type": "invalid_request_error", "code": "input_audio_buffer_commit_empty"}) == 1
            assert metrics.value("clutchcall_model_errors_total", {
                "type": "invalid_request_error", "code": "unknown_event_type"}) == 1
            assert leg.stats.errors == 4
            # the refused response.create did not skew the next response's time to first audio
            assert col.chunks[0].model_ttfa_s is not None and col.chunks[0].model_ttfa_s >= 0.3
            assert col.done[-1][1] == "completed" and not leg.closed
            leg._send({"type": "response.cancel"})  # nothing active
            await leg.flushed()
            await asyncio.sleep(0.05)
            assert isinstance(col.errors[-1], ModelServerError)
            assert col.errors[-1].code == "response_cancel_not_active"
            await leg.close()

    run(main())


def test_prime_commit_and_backchannel_clear() -> None:
    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(replies=(REPLY,), time_to_first_audio_ms=0)) as srv:
            col = Collector()
            leg = col.leg(srv.url, append_batch_ms=20)
            await leg.connect()
            leg.append(tone(300))
            assert leg.backchannel_filtered()  # nothing primed: clear
            leg.append(tone(400))
            assert leg.prime()
            leg.append(tone(40))  # < 100 ms after the prime: commit is skipped, reply requested
            assert not leg.backchannel_filtered()  # a prime is pending: keep the buffer
            leg.commit()
            await asyncio.wait_for(col.done_event.wait(), 10)
            assert srv.stats.clears == 1 and srv.stats.commits == 1
            assert leg.stats.skipped_commits == 1 and leg.stats.primes == 1
            assert not col.errors, col.errors
            await leg.close()

    run(main())


def test_echo_mode_plays_the_callers_turn_back() -> None:
    async def main() -> None:
        cfg = ModelServerConfig(mode="echo", time_to_first_audio_ms=0, delta_ms=20)
        async with ReferenceModelServer(cfg) as srv:
            col = Collector()
            leg = col.leg(srv.url)
            await leg.connect()
            turn = tone(400, 300)
            leg.append(bytes(200 * BYTES_PER_MS))  # leading silence is trimmed
            leg.append(turn)
            leg.commit()
            await asyncio.wait_for(col.done_event.wait(), 10)
            out = b"".join(c.pcm for c in col.chunks)
            assert turn[: 300 * BYTES_PER_MS] in out
            assert len(out) < len(turn) + 100 * BYTES_PER_MS
            await leg.close()

    run(main())


def test_raw_client_bad_json_and_binary_get_errors() -> None:
    async def main() -> None:
        async with ReferenceModelServer(ModelServerConfig(replies=(REPLY,))) as srv:
            async with connect(srv.url) as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"
                await ws.send("{not json")
                e1 = json.loads(await ws.recv())
                await ws.send(b"\x00\x01")
                e2 = json.loads(await ws.recv())
                await ws.send(json.dumps({"type": "session.update", "session": {
                    "type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}}))
                e3 = json.loads(await ws.recv())
                await ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": "x",
                                          "content_index": 0, "audio_end_ms": 5}))
                e4 = json.loads(await ws.recv())
            assert [e["type"] for e in (e1, e2, e3, e4)] == ["error"] * 4
            assert e1["error"]["code"] == "invalid_json"
            assert e3["error"]["param"] == "turn_detection"
            assert e4["error"]["param"] == "item_id"

    run(main())


def test_client_survives_a_misbehaving_server() -> None:
    """A server that sends garbage: typed errors, counted, and the leg keeps reading."""

    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        await ws.send("garbage")
        await ws.send(json.dumps({"type": "response.created", "response": {"id": "r1"}}))
        await ws.send(json.dumps({"type": "response.output_audio.delta", "response_id": "r1",
                                  "item_id": "i1", "delta": "%%%"}))
        await ws.send(json.dumps({"type": "response.audio.delta", "response_id": "r1",
                                  "item_id": "i1", "delta": "AAAAAA=="}))  # older name
        await ws.send(json.dumps({"type": "error", "error": {"type": "server_error",
                                                             "code": "overloaded", "message": "busy"}}))
        await ws.send(json.dumps({"type": "response.done", "response": {"id": "r1", "status": "failed"}}))
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            metrics = EdgeMetrics()
            col = Collector()
            leg = col.leg(f"ws://127.0.0.1:{port}", metrics)
            await leg.connect()
            await asyncio.wait_for(col.done_event.wait(), 5)
            assert [type(e) for e in col.errors] == [ModelProtocolError, ModelProtocolError, ModelServerError]
            assert [c.pcm for c in col.chunks] == [b"\x00" * 4]
            assert metrics.value("clutchcall_model_errors_total", {"type": "server_error", "code": "overloaded"}) == 1
            assert metrics.value("clutchcall_model_errors_total", {"type": "protocol", "code": "invalid_event"}) == 2
            assert col.done == [("r1", "failed")] and not leg.closed
            await leg.close()

    run(main())


def test_unreachable_model_is_a_typed_error() -> None:
    from clutchcall.engine.errors import ConfigError, RemoteProtocolError

    async def main() -> None:
        leg = ModelLeg(ModelLegConfig(url="ws://127.0.0.1:9", connect_timeout_s=2))
        with pytest.raises(RemoteProtocolError):
            await leg.connect()

    run(main())
    with pytest.raises(ConfigError):
        ModelLegConfig(url="http://x")
    cfg = ModelLegConfig.from_env({"CLUTCHCALL_MODEL_URL": "wss://api.example/v1/realtime",
                                   "OPENAI_API_KEY": "k"})
    assert cfg.url == "wss://api.example/v1/realtime" and cfg.api_key == "k"
    assert ModelLegConfig.from_env({}).url is None


def test_a_model_that_stops_reading_is_given_up_not_buffered_forever() -> None:
    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        await ws.wait_closed()  # never reads: the websockets queue fills, then TCP backpressure

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, max_queue=1, close_timeout=0.5) as server:
            port = server.sockets[0].getsockname()[1]
            metrics = EdgeMetrics()
            closed: list[BaseException | None] = []
            leg = ModelLeg(ModelLegConfig(url=f"ws://127.0.0.1:{port}", append_batch_ms=1000,
                                          max_backlog=20), metrics=metrics, on_closed=closed.append)
            await leg.connect()
            second = tone(1000)
            for _ in range(2000):  # up to ~96 MB: far more than the socket buffers hold
                leg.append(second)
                await asyncio.sleep(0)
                if leg.closed:
                    break
            assert leg.closed and closed and closed[0] is not None
            assert metrics.value("clutchcall_model_errors_total", {"type": "connection", "code": "backlog"}) == 1
            await leg.close()

    run(main(), timeout=30)


def test_a_create_refused_for_an_active_response_is_sent_again_after_it() -> None:
    async def main() -> None:
        cfg = ModelServerConfig(replies=(REPLY,), time_to_first_audio_ms=50, delta_ms=40)
        async with ReferenceModelServer(cfg) as srv:
            col = Collector()
            leg = col.leg(srv.url)
            await leg.connect()
            leg.append(tone(300))
            leg.commit()
            leg.append(tone(300))
            leg.commit()  # refused (a response is active), then retried after it
            while len(col.done) < 2:
                await asyncio.wait_for(col.done_event.wait(), 10)
                col.done_event.clear()
            assert [s for _, s in col.done] == ["completed", "completed"]
            assert [e.code for e in col.errors if isinstance(e, ModelServerError)] == [
                "conversation_already_has_active_response"]
            firsts = [c for c in col.chunks if c.first]
            assert len(firsts) == 2 and all(c.model_ttfa_s is not None for c in firsts)
            assert srv.stats.responses == 2
            await leg.close()

    run(main())


def test_append_message_is_the_json_of_the_event() -> None:
    """Issue 17: the append message is written out by hand (no json.dumps per batch); it must
    be exactly the compact JSON of the event the other actions send through ``dumps``."""
    import base64

    from clutchcall.prod.model.protocol import dumps

    async def main() -> None:
        leg = ModelLeg(ModelLegConfig(url="ws://127.0.0.1:9", append_batch_ms=20))
        pcm = bytes(range(256)) * (20 * BYTES_PER_MS // 256) + b"\x01\xff" * (20 * BYTES_PER_MS % 256 // 2)
        leg.append(pcm)  # one batch: flushed at once
        leg.append(pcm[:100])
        leg.commit()  # flushes the partial batch first, then its own events through dumps
        sent = [leg._out.get_nowait() for _ in range(leg._out.qsize())]
        assert [m[2] for m in sent] == ["evt_c1", "evt_c2", "evt_c3", "evt_c4"]
        for m, audio in zip(sent[:2], (pcm, pcm[:100]), strict=True):
            want = {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode(), "event_id": m[2]}
            assert m[0] == dumps(want) and json.loads(m[0]) == want
        assert json.loads(sent[2][0])["type"] == "input_audio_buffer.commit"
        assert leg.stats.appends == 2 and leg.stats.appended_bytes == len(pcm) + 100

    asyncio.run(main())
