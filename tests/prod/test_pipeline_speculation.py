"""Speculative commit through the production pipeline on loopback: real espeak-ng caller speech
at 1x, the call core's hold, the model leg against the embedded model. A pause the caller ends
by speaking again retracts the speculation (response.cancel + conversation.item.delete, its
held audio never sent); the turn's real end releases the held reply at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from clutchcall.engine import Release, Retract, Speculate, TurnConfig
from clutchcall.engine.call import replay as replay_outputs
from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model import ModelServerConfig, ReferenceModelServer
from clutchcall.prod.model.speech import render_speech_sync
from clutchcall.prod.pipeline import CallerFrame, CallPipeline, MemoryDownlink, PipelineConfig

pytestmark = pytest.mark.timeout(60)

RATE = 16000
FRAME = RATE // 50
SPEC = TurnConfig(speculate=True, speculate_silence_ms=60)


def speech(text: str) -> np.ndarray:
    return np.frombuffer(render_speech_sync(text, RATE), dtype="<i2")


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


async def play(pcm: np.ndarray) -> AsyncIterator[CallerFrame]:
    """Yield 20 ms frames at 1x real time."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k in range(len(pcm) // FRAME):
        delay = t0 + (k + 1) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield CallerFrame(pcm[k * FRAME:(k + 1) * FRAME].tobytes(), seq=k, ts=k * 0.02)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 50))


def test_a_pause_retracts_and_the_real_end_releases_the_held_reply() -> None:
    # a ~350 ms pause inside the turn (espeak-ng ends each phrase with ~300 ms of silence):
    # speculated at 60 ms, the reply (TTFA 40 ms) arrives and is held, then the caller goes
    # on; after the turn's last words the reply is released
    caller = np.concatenate([silence(300), speech("I would like to order"), silence(50),
                             speech("a large pizza"), silence(2500)])

    async def main() -> None:
        cfg = ModelServerConfig(replies=("Sure, one large pizza.",), time_to_first_audio_ms=40,
                                delta_ms=40)
        async with ReferenceModelServer(cfg) as srv:
            metrics = EdgeMetrics()
            down = MemoryDownlink()
            pipe = CallPipeline(down, call_id="s1", metrics=metrics, model_url=srv.url,
                                turn_config=SPEC,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5))
            turns = await pipe.run(play(caller))
            assert pipe.failed is None
            outs = pipe.outputs or []
            spec = [o for o in outs if isinstance(o, Speculate)]
            ret = [o for o in outs if isinstance(o, Retract)]
            rel = [o for o in outs if isinstance(o, Release)]
            assert len(rel) == 1 and len(spec) == len(ret) + 1 and ret
            assert all(r.reason == "speech" for r in ret)
            # the model leg withdrew each retracted reply: cancelled, its item deleted
            assert srv.stats.cancelled >= 1 and srv.stats.deletions
            assert pipe.model.stats.retractions == len(ret)
            # held audio of a retracted reply reached the core and was dropped there
            assert pipe.core.speculation.retracted == len(ret)
            pl = pipe.core.playout
            assert any(pl.has_audio(rid) and pl.is_dropped(rid) for rid in pipe.model.responses)
            assert pipe.core.speculation.released == 1
            # only the released reply was sent, and not before its release
            assert len(turns) == 1
            t = turns[0]
            assert t.speculative_silence_ms == pytest.approx(60, abs=21)
            assert t.released_at is not None and t.first_audio_at is not None
            assert down.frames and down.frames[0][0] >= t.released_at - 1e-6
            assert len(pipe.core.playout.sent_ms) == 1  # one item ever played: the released one
            # its model wait overlapped the silence: the edge waited for the end of turn only
            assert t.model_ttfa_ms is not None and t.model_ttfa_ms < 500
            assert t.turn_latency_ms == pytest.approx(500, abs=60)
            assert t.edge_added_ms is not None and t.edge_added_ms < 60
            spec_total = "clutchcall_speculations_total"
            assert metrics.value(spec_total, {"outcome": "retracted"}) == len(ret)
            assert metrics.value(spec_total, {"outcome": "released"}) == 1
            assert metrics.value("clutchcall_speculation_wasted_model_seconds_total") == \
                pytest.approx(sum(r.held_ms for r in ret) / 1000)
            # the recorded inputs replay to the same outputs
            assert pipe.inputs is not None
            assert replay_outputs(SPEC, pipe.inputs) == outs

    run(main())


def test_off_switch_commits_and_waits_for_the_model() -> None:
    caller = np.concatenate([silence(300), speech("I would like to order"), silence(2000)])

    async def main() -> None:
        cfg = ModelServerConfig(replies=("Sure.",), time_to_first_audio_ms=150, delta_ms=40)
        async with ReferenceModelServer(cfg) as srv:
            down = MemoryDownlink()
            pipe = CallPipeline(down, call_id="s2", model_url=srv.url,
                                turn_config=SPEC.replace(speculate=False),
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5))
            turns = await pipe.run(play(caller))
            outs = pipe.outputs or []
            assert not any(isinstance(o, (Speculate, Release, Retract)) for o in outs)
            assert len(turns) == 1 and turns[0].speculative_silence_ms is None
            assert turns[0].turn_latency_ms >= 500 + 150 and srv.stats.deletions == []

    run(main())
