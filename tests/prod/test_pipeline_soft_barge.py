"""Soft barge-in on the wire (issue 15): the real pipeline, the real turn engine and call core,
the real model leg against the embedded reference model over loopback, real espeak-ng caller
speech at 1x. A short burst over the agent makes the core pause its playout (the downlink
goes quiet, then the rest of the reply follows: nothing lost, no clear, no cancel) or duck it
(the frames sent meanwhile are the reply's own frames at -duck_db, ramped in and out)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from clutchcall.engine import Cancel, TurnConfig
from clutchcall.engine.actions import Duck, Pause, Restore, Resume
from clutchcall.engine.audio import Transcoder
from clutchcall.engine.call import replay
from clutchcall.prod.metrics import EdgeMetrics
from clutchcall.prod.model import ReferenceModelServer
from clutchcall.prod.model.protocol import BYTES_PER_MS
from clutchcall.prod.pipeline import CallPipeline, MemoryDownlink, PipelineConfig
from tests.prod.test_pipeline import RATE, model_cfg, play, silence, speech

REPLY = "Your order left our warehouse this morning and should arrive on Friday afternoon."


def _caller() -> np.ndarray:
    # a turn, then ~1 s into the agent's reply a short "okay" over it, then silence
    first = np.concatenate([silence(200), speech("Where is my order?")])
    return np.concatenate([first, silence(500 + 120 + 1000), speech("okay"), silence(4500)])


def _run(turn: TurnConfig) -> tuple[CallPipeline, MemoryDownlink, EdgeMetrics, bytes]:
    async def main() -> tuple[CallPipeline, MemoryDownlink, EdgeMetrics, bytes]:
        async with ReferenceModelServer(model_cfg(replies=(REPLY,))) as srv:
            metrics = EdgeMetrics()
            down = MemoryDownlink()
            pipe = CallPipeline(down, call_id="soft", metrics=metrics, model_url=srv.url,
                                turn_config=turn,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=6))
            await pipe.run(play(_caller()))
            assert pipe.failed is None
            return pipe, down, metrics, await srv.speech.get(REPLY)

    return asyncio.run(asyncio.wait_for(main(), 40))


def test_pause_holds_the_downlink_and_resumes_without_losing_audio() -> None:
    # threshold policy: yield (pause) after 100 ms of speech over the agent, cancel only
    # after 2 s, so the "okay" pauses the agent and is then dismissed (Resume)
    turn = TurnConfig(barge_yield="pause", barge_yield_ms=100, barge_confirm_ms=2000)
    pipe, down, metrics, reply = _run(turn)
    outs = pipe.outputs or []
    kinds = [type(o) for o in outs if isinstance(o, (Pause, Resume, Cancel))]
    assert kinds == [Pause, Resume], kinds
    pause = next(o for o in outs if isinstance(o, Pause))
    resume = next(o for o in outs if isinstance(o, Resume))
    held_s = resume.time - pause.time
    assert 0.2 < held_s < 2.0
    # on the wire: one gap of about the pause's length, and the whole reply still arrives
    times = [t for t, _ in down.frames]
    gaps = np.diff(times)
    assert abs(float(gaps.max()) - held_s) <= 0.08, (gaps.max(), held_s)
    assert sum(g > 0.1 for g in gaps) == 1
    reply_ms = len(reply) // BYTES_PER_MS
    assert abs(len(down.frames) * 20 - reply_ms) <= 40
    assert not down.clears and not [c for c in down.controls if c["type"] == "cancel"]
    assert metrics.value("clutchcall_agent_yields_total", {"kind": "pause"}) == 1
    assert metrics.value("clutchcall_agent_yields_total", {"kind": "resume"}) == 1
    assert replay(turn, pipe.inputs or []) == outs


def _rms(b: bytes) -> float:
    x = np.frombuffer(b, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x)))


def test_duck_lowers_the_frames_sent_and_restores_them() -> None:
    # the evidence policy (acoustic features computed by the pipeline, recorded with each
    # frame) with its soft cues switched off: yield (duck 12 dB) after 100 ms, cancel after 2 s
    turn = TurnConfig(policy="evidence", barge_yield="duck", barge_yield_ms=100,
                      barge_confirm_ms=2000, evidence_soft_db=60, evidence_edge_ms=0,
                      duck_db=12, duck_ramp_ms=20)
    pipe, down, metrics, reply = _run(turn)
    outs = pipe.outputs or []
    kinds = [type(o) for o in outs if isinstance(o, (Duck, Restore, Cancel))]
    assert kinds == [Duck, Restore], kinds
    assert any(i.features is not None for i in pipe.inputs or [])
    # the reply as the pipeline would send it unducked (the same transcoder, offline)
    tc = Transcoder("pcm16", RATE, 24000, frame_ms=20)
    ref = tc.downlink(reply) + tc.downlink_flush()
    assert len(down.frames) == len(ref)
    ratios = [(_rms(p) / _rms(r)) if _rms(r) > 300 else None
              for (_t, p), r in zip(down.frames, ref, strict=True)]
    ducked = [k for k, q in enumerate(ratios) if q is not None and abs(q - 10 ** (-12 / 20)) < 0.03]
    full = [k for k, q in enumerate(ratios) if q is not None and abs(q - 1.0) < 0.01]
    assert len(ducked) >= 5, ratios
    # full level before the duck and after the restore; the ducked frames form one stretch
    assert full and min(full) < min(ducked) and max(full) > max(ducked)
    assert not [k for k in full if min(ducked) < k < max(ducked)]
    assert not down.clears
    assert metrics.value("clutchcall_agent_yields_total", {"kind": "duck"}) == 1
    assert replay(turn, pipe.inputs or []) == outs


class BufferingFarEnd(MemoryDownlink):
    """A far end that buffers audio and plays it at 1x, like Twilio: every written frame goes
    to its buffer; a ``mark`` follows every 5th frame (``p<N>``, N = frames written) and is
    echoed to the pipeline when the player reaches it; ``clear`` drops the buffer (and the
    marks in it, whose echoes Twilio sends at once and the edge ignores)."""

    def __init__(self) -> None:
        super().__init__()
        self.pipe: CallPipeline | None = None
        self.buffer: list[tuple[str, Any]] = []
        self.written = 0
        self.played: list[tuple[float, bytes]] = []
        self.task: asyncio.Task[None] | None = None

    async def send_agent_audio(self, payload: bytes) -> None:
        await super().send_agent_audio(payload)
        self.written += 1
        self.buffer.append(("audio", payload))
        if self.written % 5 == 0:
            self.buffer.append(("mark", self.written))
        if self.task is None:
            self.task = asyncio.create_task(self._play())

    async def clear_playout(self) -> None:
        await super().clear_playout()
        self.buffer.clear()

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.buffer:
                await asyncio.sleep(0.005)
                continue
            kind, item = self.buffer.pop(0)
            if kind == "mark":
                assert self.pipe is not None
                self.pipe.agent_played(item)
                continue
            self.played.append((loop.time(), item))
            await asyncio.sleep(0.02)


def test_pause_takes_back_what_a_buffering_far_end_has_not_played() -> None:
    # the model streams 1 s ahead, so the far end's buffer fills: a pause must clear it and
    # send the unplayed frames again after the resume (the played audio has no gap, no repeat)
    turn = TurnConfig(barge_yield="pause", barge_yield_ms=100, barge_confirm_ms=2000)

    async def main() -> tuple[CallPipeline, BufferingFarEnd, bytes]:
        async with ReferenceModelServer(model_cfg(replies=(REPLY,), lead_ms=1000)) as srv:
            far = BufferingFarEnd()
            pipe = CallPipeline(far, call_id="far", model_url=srv.url, turn_config=turn,
                                config=PipelineConfig(caller_rate=RATE, drain_timeout_s=6))
            far.pipe = pipe
            await pipe.run(play(_caller()))
            await asyncio.sleep(0.5)
            if far.task is not None:
                far.task.cancel()
            assert pipe.failed is None
            return pipe, far, await srv.speech.get(REPLY)

    pipe, far, reply = asyncio.run(asyncio.wait_for(main(), 40))
    outs = pipe.outputs or []
    assert [type(o) for o in outs if isinstance(o, (Pause, Resume, Cancel))] == [Pause, Resume]
    assert len(far.clears) == 1  # the rewind's clear
    tc = Transcoder("pcm16", RATE, 24000, frame_ms=20)
    ref = tc.downlink(reply) + tc.downlink_flush()
    # what the caller heard: the whole reply once, in order (frames cleared were sent again)
    assert [p for _t, p in far.played] == ref
    assert len(far.frames) > len(ref)  # some frames were written twice
    # ... with one gap: the pause
    gaps = np.diff([t for t, _ in far.played])
    pause = next(o for o in outs if isinstance(o, Pause))
    resume = next(o for o in outs if isinstance(o, Resume))
    assert float(gaps.max()) >= 0.5 * (resume.time - pause.time)
