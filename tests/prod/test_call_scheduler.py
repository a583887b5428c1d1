"""The batched call loop's scheduler: one loop timer for every call's core deadline, every due
call run in one pass in deadline order; and real pipelines driven by it (barge-in call, agent
audio) whose recorded engine inputs replay to exactly the outputs they produced."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from clutchcall.engine import Cancel, Commit, TurnConfig
from clutchcall.engine.call import replay as replay_outputs
from clutchcall.prod.call_scheduler import CallScheduler
from clutchcall.prod.model import ReferenceModelServer
from clutchcall.prod.pipeline import CallPipeline, MemoryDownlink, PipelineConfig
from tests.prod.test_pipeline import RATE, model_cfg, play, silence, speech

pytestmark = pytest.mark.timeout(60)


class _Call:
    def __init__(self, name: str, log: list[tuple[str, float, float]], sched: CallScheduler,
                 rearm: float | None = None, fail: bool = False) -> None:
        self.name, self.log, self.sched, self.rearm, self.fail = name, log, sched, rearm, fail

    def on_deadline(self, deadline: float) -> None:
        self.log.append((self.name, deadline, self.sched.loop.time()))
        if self.fail:
            raise RuntimeError("boom")
        if self.rearm is not None:
            self.sched.arm(self, deadline + self.rearm)
            self.rearm = None


def test_due_calls_run_in_one_pass_in_deadline_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = CallScheduler()
        log: list[tuple[str, float, float]] = []
        t0 = loop.time()
        calls = {n: _Call(n, log, sched) for n in "abcd"}
        # c and a share one deadline, b is earlier, d is moved later, then later still
        sched.arm(calls["a"], t0 + 0.03)
        sched.arm(calls["b"], t0 + 0.02)
        sched.arm(calls["c"], t0 + 0.03)
        sched.arm(calls["d"], t0 + 0.025)
        sched.arm(calls["d"], t0 + 0.6)
        sched.arm(calls["d"], t0 + 0.6)  # the same deadline again: nothing changes
        assert len(sched) == 4
        await asyncio.sleep(0.06)  # (a loaded machine may wake us late: d has 0.5 s of margin)
        assert [x[0] for x in log] == ["b", "a", "c"]
        # a, c fired in one pass, at or after their deadline, never before
        assert all(now >= d for _, d, now in log)
        assert sched.stats["fired"] == 3 and sched.stats["max_batch"] >= 2
        assert sched.stats["passes"] <= 3  # b, then a+c (a stale d entry may add one)
        await asyncio.sleep(max(0.0, t0 + 0.65 - loop.time()))
        assert [x[0] for x in log] == ["b", "a", "c", "d"]
        assert log[-1][1] == pytest.approx(t0 + 0.6)
        assert len(sched) == 0 and sched._timer is None

    asyncio.run(main())


def test_cancel_rearm_and_a_failing_call() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = CallScheduler()
        log: list[tuple[str, float, float]] = []
        t0 = loop.time()
        bad = _Call("bad", log, sched, fail=True)
        again = _Call("again", log, sched, rearm=0.02)
        gone = _Call("gone", log, sched)
        for c in (bad, again, gone):
            sched.arm(c, t0 + 0.01)
        sched.cancel(gone)
        sched.arm(_Call("none", log, sched), None)  # None = no deadline: nothing armed
        await asyncio.sleep(0.06)
        # the failing call is counted and dropped; the one behind it still ran, and its
        # re-arm from inside the pass fired on time
        assert [x[0] for x in log] == ["bad", "again", "again"]
        assert sched.stats["errors"] == 1
        assert log[2][1] == pytest.approx(t0 + 0.03)
        sched.arm(gone, loop.time() + 10)
        sched.close()
        assert len(sched) == 0 and sched._timer is None

    asyncio.run(main())


def test_stale_entries_stay_bounded() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = CallScheduler()
        calls = [_Call(str(i), [], sched) for i in range(10)]
        # every call re-armed 500 times (a frame each): the heap is compacted, not 5000 long
        for k in range(500):
            for c in calls:
                sched.arm(c, loop.time() + 5 + k * 0.02)
        assert len(sched) == 10
        assert len(sched._heap) <= 4 * 10 + 64 + 1
        sched.close()

    asyncio.run(main())


def test_a_slack_runs_nearby_deadlines_in_one_pass_never_early() -> None:
    """``slack_s``: the pass runs that long after the earliest deadline and takes every
    deadline due by then (one wake-up for deadlines that close together), none before its
    deadline; a deadline beyond the slack waits for its own pass. A negative slack is refused."""
    with pytest.raises(ValueError):
        CallScheduler(asyncio.new_event_loop(), slack_s=-0.001)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = CallScheduler(slack_s=0.05)
        log: list[tuple[str, float, float]] = []
        t0 = loop.time()
        calls = {n: _Call(n, log, sched) for n in "abc"}
        sched.arm(calls["a"], t0 + 0.01)
        sched.arm(calls["b"], t0 + 0.04)  # within the slack of a's deadline: a's pass
        sched.arm(calls["c"], t0 + 0.5)  # beyond it: a pass of its own
        await asyncio.sleep(0.3)
        assert [x[0] for x in log] == ["a", "b"]
        assert sched.stats["passes"] == 1 and sched.stats["max_batch"] == 2
        assert all(now >= d for _, d, now in log)  # late by up to the slack, never early
        assert log[0][2] >= t0 + 0.06 - 0.002  # the pass ran a's deadline + the slack
        await asyncio.sleep(max(0.0, t0 + 0.65 - loop.time()))
        assert [x[0] for x in log] == ["a", "b", "c"] and sched.stats["passes"] == 2
        assert log[2][2] >= t0 + 0.55 - 0.002
        sched.close()

    asyncio.run(main())


@pytest.mark.parametrize(("shared", "pushed", "slack_s"),
                         [(True, False, 0.0), (False, False, 0.0), (True, True, 0.0), (True, True, 0.002)],
                         ids=["batched", "per-call", "batched-pushed", "batched-pushed-slack"])
def test_pipelines_on_one_scheduler_replay_exactly(shared: bool, pushed: bool, slack_s: float) -> None:
    """Two real calls at once (one answered, one barging in on the reply), on the shard's one
    scheduler or on their own timers, the uplink pulled by a task per call (``run``) or pushed
    into the pipeline as each frame comes (``push``/``run_pushed``, the edge's batched loop):
    same behaviour; inputs replay to the same outputs (also with a pass slack: its deadlines
    run late, which the recorded inputs carry)."""
    answered = np.concatenate([silence(300), speech("Where is my order?"), silence(2500)])
    barge = np.concatenate([silence(300), speech("Where is my order?"), silence(900),
                            speech("Wait, stop, one more thing please."), silence(1500)])

    async def main() -> None:
        async with ReferenceModelServer(model_cfg(replies=("Okay, your order is on its way, "
                                                           "it left the warehouse this morning.",))) as srv:
            sched = CallScheduler(slack_s=slack_s) if shared else None
            downs = [MemoryDownlink(), MemoryDownlink()]
            pipes = [CallPipeline(d, call_id=f"c{i}", model_url=srv.url, scheduler=sched,
                                  config=PipelineConfig(caller_rate=RATE, drain_timeout_s=5))
                     for i, d in enumerate(downs)]
            if pushed:
                async def push_all(p: CallPipeline, pcm: np.ndarray, attached: asyncio.Event) -> None:
                    await attached.wait()
                    async for f in play(pcm):
                        assert p.push(f)

                async def run_one(p: CallPipeline, pcm: np.ndarray) -> Any:
                    attached = asyncio.Event()
                    feeder = asyncio.ensure_future(push_all(p, pcm, attached))
                    return await p.run_pushed(attached.set, feeder)

                await asyncio.gather(run_one(pipes[0], answered), run_one(pipes[1], barge))
            else:
                await asyncio.gather(pipes[0].run(play(answered)), pipes[1].run(play(barge)))
            for p in pipes:
                assert p.failed is None
                assert p.inputs is not None and p.outputs is not None
                assert replay_outputs(TurnConfig(), p.inputs) == p.outputs
            outs: list[list[Any]] = [p.outputs or [] for p in pipes]
            assert sum(isinstance(o, Commit) for o in outs[0]) >= 1
            assert downs[0].frames, "the agent's reply reached the first caller"
            assert any(isinstance(o, Cancel) for o in outs[1]), "the second caller barged in"
            if sched is not None:
                assert sched.stats["fired"] > 100 and sched.stats["errors"] == 0
                assert len(sched) == 0  # closed pipelines leave nothing armed

    asyncio.run(asyncio.wait_for(main(), 50))


def test_uplink_jitter_buffers_share_the_loops_scheduler() -> None:
    """Caller legs (BaseCall) on a loop with a scheduler installed: their jitter-buffer
    deadlines run there; frames come out in order, a reordered frame in place, a lost one
    concealed, exactly as with a timer per call."""
    from clutchcall.prod.ingress.call import BaseCall

    async def one(install: bool) -> tuple[list[list[tuple[int, bool]]], int]:
        loop = asyncio.get_running_loop()
        sched = CallScheduler.install() if install else None
        assert CallScheduler.of_loop(loop) is sched
        # a deep jitter buffer: a late wake-up on a loaded machine must not turn into a loss
        calls = [BaseCall(call_id=f"u{i}", codec="pcm16", rate=16000, jitter_depth_ms=300)
                 for i in range(3)]
        got: list[list[tuple[int, bool]]] = [[] for _ in calls]

        async def reader(i: int) -> None:
            async for f in calls[i].frames():
                got[i].append((f.seq, f.concealed))

        readers = [asyncio.create_task(reader(i)) for i in range(3)]
        t0 = loop.time()
        for k in range(12):
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
            for i, c in enumerate(calls):
                # call 1 sends 5 and 4 swapped, call 2 loses frame 7
                seq = {4: 5, 5: 4}.get(k, k) if i == 1 else k
                if not (i == 2 and seq == 7):
                    c.feed_uplink(seq, bytes(640), timestamp_ms=seq * 20)
        await asyncio.sleep(0.5)
        for c in calls:
            c._end("done")
        await asyncio.gather(*readers)
        fired = 0 if sched is None else sched.stats["fired"]
        if sched is not None:
            assert len(sched) == 0
        return got, fired

    async def main() -> None:
        per_call, _ = await one(False)
        batched, fired = await one(True)
        assert batched == per_call
        assert [s for s, _ in batched[1]] == list(range(12))
        assert (7, True) in batched[2] and (7, False) not in batched[2]
        assert fired > 0

    asyncio.run(main())


def test_uplink_sink_gets_the_frames_of_the_iterator() -> None:
    """``BaseCall.attach_sink`` (the batched call loop's uplink): the frames queued before it
    is attached, then each frame as the jitter buffer releases it, then the flush at the end:
    the same frames in the same order as ``frames()`` gives; a sink that returns False gets
    no more (later frames queue as if unread)."""
    from clutchcall.prod.ingress.call import BaseCall

    async def one(sink_mode: str) -> tuple[list[tuple[int, bool]], BaseCall]:
        loop = asyncio.get_running_loop()
        call = BaseCall(call_id="s", codec="pcm16", rate=16000, jitter_depth_ms=300)
        got: list[tuple[int, bool]] = []
        reader = None
        if sink_mode == "iterator":
            async def read() -> None:
                async for f in call.frames():
                    got.append((f.seq, f.concealed))
            reader = asyncio.create_task(read())
        t0 = loop.time()
        for k in range(12):
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
            if k != 7:  # frame 7 is lost
                call.feed_uplink(k, bytes(640), timestamp_ms=k * 20)
        await asyncio.sleep(0.25)  # the first frames are released (300 ms deep) and queued
        if sink_mode != "iterator":
            def sink(f: Any) -> bool:
                got.append((f.seq, f.concealed))
                return not (sink_mode == "stop" and f.seq == 5)
            assert call._queue.qsize() > 0
            call.attach_sink(sink)
        await asyncio.sleep(0.3)
        call._end("done")
        if reader is not None:
            await reader
        assert call.closed
        return got, call

    async def main() -> None:
        pulled, _ = await one("iterator")
        pushed, _ = await one("sink")
        assert pushed == pulled
        assert [s for s, _ in pushed] == list(range(12)) and (7, True) in pushed
        stopped, call = await one("stop")
        assert stopped == pushed[:6]
        assert call._queue.qsize() == 12 - 6 + 1  # the rest (and the end) wait unread

    asyncio.run(main())


def test_a_pass_coalesces_each_connections_transmits() -> None:
    """During a pass a connection that asks to transmit (``defer_transmit``) transmits once,
    after every due call of the pass; outside a pass it is told to send now."""

    class Conn:
        def __init__(self) -> None:
            self.sent: list[float] = []

        def transmit(self) -> None:
            self.sent.append(asyncio.get_running_loop().time())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = CallScheduler()
        conns = [Conn(), Conn()]
        order: list[str] = []

        class Caller:
            def __init__(self, name: str, conn: Conn) -> None:
                self.name, self.conn = name, conn

            def on_deadline(self, deadline: float) -> None:
                order.append(self.name)
                for _ in range(3):  # e.g. an agent frame, a control object, another frame
                    assert sched.defer_transmit(self.conn)
                assert not self.conn.sent  # nothing left yet: the pass is still running

        now = loop.time()
        for i, name in enumerate(("a", "b", "c")):
            sched.arm(Caller(name, conns[i % 2]), now + 0.01)
        assert not sched.defer_transmit(conns[0])  # no pass running: send now
        await asyncio.sleep(0.05)
        assert order == ["a", "b", "c"]
        assert [len(c.sent) for c in conns] == [1, 1]
        assert sched.stats["coalesced"] == 3 * 3 - 2 and sched.stats["passes"] == 1
        sched.close()

    asyncio.run(main())
