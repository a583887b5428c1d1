"""The edge's call handler: one recorded pipeline per call, with a caller idle timeout.

Theory of operation: an ingress hands :class:`EdgeHandler` one ``CallSession`` per accepted
call (``on_call``). The handler builds a :class:`~clutchcall.prod.pipeline.CallPipeline` for
the call's codec, rate and frame length and passes it a
:class:`~clutchcall.traces.recorded.TraceRecorder`, so every engine input and every drained
output lands in the trace exactly as the call core's drive loop fed and drained them (the
core's one :class:`~clutchcall.engine.call.EngineDriver` records as it feeds). The pipeline
then runs until
the caller hangs up, the model leg fails (the caller gets an ``error`` control event from the
pipeline) or the caller goes quiet: a watchdog ends a call whose caller sent no frame (a
concealed frame does not count) for ``idle_timeout_s``, which ends the uplink iterator, so the
pipeline closes the model session and returns. Whatever ended the call, its trace is written to
``trace_dir/<call_id>.parquet`` (a later call with the same id gets ``<call_id>.2.parquet``, ...:
one file per call instance, never overwritten) off the event loop (a thread; with no ``trace_dir`` nothing is
recorded), and a :class:`CallSummary` is
kept. A fault in one call never raises into the ingress or another call.

The batched call loop (``call_loop = "batched"``, the default): the handler's calls share one
:class:`~clutchcall.prod.call_scheduler.CallScheduler` (one per edge shard process), which runs
every call's core deadlines from one loop timer, all due calls in one pass, and the caller leg
pushes each frame its jitter buffer releases straight into the pipeline
(``BaseCall.attach_sink`` -> :meth:`CallPipeline.push`: no uplink task or queue per call; the
call's ``on_call`` task only waits for the end); ``"per-call"`` gives each pipeline its own
loop timer and uplink task (``call.frames()`` -> :meth:`CallPipeline.run`), the A/B of
``bench edge --call-loop``.

A caller that keeps breaking the call core's uplink bounds (frames far ahead of real time,
concealment beyond its caps) is ended by the edge: before each caller frame a
:class:`~clutchcall.prod.edge.guard.ViolationGuard` is asked, and once it says so the caller gets
an ``error`` control event (code ``caller_violation``) and the call is closed with the
transport's policy code (WebSocket 1008, MoQT PROTOCOL_VIOLATION); end reason
``caller_violation``, counted on /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clutchcall.engine import TurnConfig
from clutchcall.engine.call import TurnRecord
from clutchcall.engine.call.jitter import JitterBuffer
from clutchcall.engine.errors import ConfigError
from clutchcall.prod.call_scheduler import CallScheduler
from clutchcall.prod.edge.guard import GuardConfig, ViolationGuard
from clutchcall.prod.metrics import EdgeMetrics, call_logger
from clutchcall.prod.model.client import ModelLegConfig
from clutchcall.prod.pipeline import (
    CallerFrame,
    CallPipeline,
    CallSessionDownlink,
    PipelineConfig,
)
from clutchcall.traces.recorded import TraceRecorder

log = logging.getLogger("clutchcall.edge")

CALL_LOOPS = ("batched", "per-call")
"""How the calls' core deadlines run: one scheduler per shard, or a loop timer per call."""

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def trace_path(trace_dir: str | Path, call_id: str, instance: int = 1) -> Path:
    """Return where the trace of instance ``instance`` (1, 2, ...) of ``call_id`` goes:
    ``<call_id>.parquet`` for the first, ``<call_id>.<instance>.parquet`` after (unsafe
    characters replaced by ``_``)."""
    stem = _SAFE.sub("_", call_id)[:120] or "call"
    return Path(trace_dir) / (f"{stem}.parquet" if instance == 1 else f"{stem}.{instance}.parquet")


def reserve_trace_path(trace_dir: str | Path, call_id: str) -> Path:
    """Return a trace path for a new instance of ``call_id`` that no other call has: the first
    free :func:`trace_path`, created empty (O_EXCL) so that no later call can take it. A
    trace is never overwritten. Raises OSError if the directory is not writable."""
    import os

    for instance in range(1, 1_000_000):
        path = trace_path(trace_dir, call_id, instance)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise OSError(f"no free trace name for call {call_id!r} in {trace_dir}")


@dataclass(slots=True)
class CallSummary:
    """What happened on one call: its turns, how it ended, where its trace is."""

    call_id: str
    transport: str
    codec: str
    rate: int
    started_at: float
    ended_at: float | None = None
    end_reason: str = ""
    failed: str | None = None
    idle_closed: bool = False
    frames: int = 0
    agent_frames_sent: int = 0
    turns: list[TurnRecord] = field(default_factory=list)
    trace: str | None = None
    engine_inputs: int = 0
    engine_outputs: int = 0
    uplink_dropped: int = 0
    """Caller frames the caller leg's bounded queue refused (prod/ingress/call.py)."""
    uplink_jitter: dict[str, Any] | None = None
    """The caller leg's uplink jitter buffer counters at the end of the call
    (:class:`~clutchcall.engine.call.jitter.JitterStats`: ``lag_ms`` left undrained,
    ``reanchored``, ``drained``, ...); None where the transport has no jitter buffer."""

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-able dict."""
        d = {k: getattr(self, k) for k in self.__slots__}
        d["turns"] = [t.to_dict() for t in self.turns]
        return d


class EdgeHandler:
    """A ``CallHandler`` running one recorded :class:`CallPipeline` per call (module doc)."""

    def __init__(self, *, model_url: str, model_config: ModelLegConfig | None = None,
                 turn_config: TurnConfig | None = None, metrics: EdgeMetrics | None = None,
                 pipeline_options: dict[str, Any] | None = None, trace_dir: str | Path | None = None,
                 idle_timeout_s: float = 10.0, keep_calls: int = 1000,
                 call_loop: str = "batched", guard_config: GuardConfig | None = None,
                 call_loop_slack_s: float = 0.0) -> None:
        self.model_url = model_url
        if call_loop not in CALL_LOOPS:
            raise ConfigError(f"call_loop must be one of {', '.join(CALL_LOOPS)}, got {call_loop!r}")
        self.call_loop = call_loop
        self.call_loop_slack_s = call_loop_slack_s
        """The batched loop's pass slack (``EdgeConfig.call_loop_slack_ms``, in seconds)."""
        self.scheduler: CallScheduler | None = None
        """``call_loop = "batched"``: the one scheduler of this handler's event loop (created
        with the first call) that runs every call's core deadlines."""
        self.model_config = model_config or ModelLegConfig()
        self.turn_config = turn_config or TurnConfig()
        self.metrics = metrics or EdgeMetrics()
        # at the edge the uplink ends only when the call has ended (hangup, idle, shutdown):
        # nobody is left to hear a reply, so the pipeline does not wait for it to play out
        self.options = {"drain_timeout_s": 0.0, **(pipeline_options or {})}
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        if self.trace_dir is not None:
            self.trace_dir.mkdir(parents=True, exist_ok=True)
        self.idle_timeout_s = idle_timeout_s
        self.keep_calls = keep_calls
        self.guard_config = guard_config or GuardConfig()
        """When a caller that keeps breaking its uplink bounds is ended (edge/guard.py)."""
        self.pipelines: dict[str, CallPipeline] = {}
        self.calls: dict[str, CallSummary] = {}
        self._ended: dict[str, asyncio.Event] = {}
        from prometheus_client import Counter

        self.idle_closed = Counter("calls_idle_closed", "Calls ended because the caller sent nothing "
                                   "for the idle timeout.", namespace="clutchcall",
                                   registry=self.metrics.registry)
        self.traces_written = Counter("traces_written", "Recorded call traces written.",
                                      namespace="clutchcall", registry=self.metrics.registry)

    # ------------------------------------------------------------------ the call
    async def on_call(self, call: Any) -> None:
        """Run the pipeline for ``call`` until it ends; never raises for a peer's or the
        model's fault (the ingress closes the call when this returns)."""
        clog = call_logger(log, call.call_id)
        summary = CallSummary(call.call_id, getattr(call, "transport", "?"), call.codec, call.rate,
                              started_at=time.time())
        self.calls[call.call_id] = summary
        old = self._ended.get(call.call_id)
        if old is not None and old.is_set():  # a previous call with this id
            del self._ended[call.call_id]
        while len(self.calls) > self.keep_calls:
            del self.calls[next(iter(self.calls))]
        try:
            cfg = PipelineConfig(caller_rate=call.rate, caller_codec=call.codec,
                                 caller_frame_ms=call.frame_ms, **self.options)
        except ConfigError as exc:
            summary.failed = f"unsupported codec: {exc}"
            summary.end_reason = "unsupported_codec"
            await call.send_control({"type": "error", "code": "unsupported_codec", "message": str(exc)})
            self._done(summary)
            return
        recorder = TraceRecorder(call_id=call.call_id, codec=cfg.caller_codec, rate=cfg.caller_rate,
                                 config=self.turn_config,
                                 extra={"transport": summary.transport, "source": "clutchcall edge"})
        pipe = CallPipeline(CallSessionDownlink(call), call_id=call.call_id,
                            scheduler=self.call_scheduler(),
                            turn_config=self.turn_config, config=cfg,
                            model_config=self.model_config, model_url=self.model_url,
                            metrics=self.metrics, record_outputs=False,
                            # record only what will be written
                            recorder=recorder if self.trace_dir is not None else None)
        self.pipelines[call.call_id] = pipe
        last = [asyncio.get_running_loop().time()]
        watchdog = asyncio.create_task(self._watchdog(call, summary, last, clog))
        guard = ViolationGuard(pipe.core.stats, self.guard_config,
                               ingress_dropped=lambda: int(getattr(call, "uplink_dropped", 0)))
        clog.info("call started (%s, %s/%d Hz)", summary.transport, call.codec, call.rate)
        self.metrics.observe_call(summary.transport)
        violation: list[asyncio.Task[None]] = []
        try:
            if self.call_loop == "batched" and callable(getattr(call, "attach_sink", None)):
                # the batched call loop: the caller leg pushes each released frame into the
                # pipeline (no uplink task per call); this task only waits for the end
                sink = self._sink(call, summary, last, guard, pipe, violation, clog)
                summary.turns = await pipe.run_pushed(lambda: call.attach_sink(sink), call.wait_closed())
            else:
                summary.turns = await pipe.run(self._frames(call, summary, last, guard))
            for t in violation:
                await t
        except Exception:  # noqa: BLE001 -- a pipeline bug must not take other calls down
            clog.exception("pipeline failed")
            summary.failed = summary.failed or "internal error"
            with contextlib.suppress(Exception):
                await pipe.close()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            self.pipelines.pop(call.call_id, None)
            summary.failed = summary.failed or pipe.failed
            self.metrics.observe_call(summary.transport, [t.turn_latency_ms for t in summary.turns
                                                          if t.turn_latency_ms is not None])
            summary.agent_frames_sent = pipe.agent_frames_sent
            summary.uplink_dropped = int(getattr(call, "uplink_dropped", 0))
            jb = getattr(call, "jitter", None)
            if isinstance(jb, JitterBuffer):
                summary.uplink_jitter = dataclasses.asdict(jb.stats)
            summary.end_reason = summary.end_reason or getattr(call, "close_reason", "") or "ended"
            trace = recorder.trace()
            summary.engine_inputs = len(trace.inputs)
            summary.engine_outputs = len(trace.rows) - summary.engine_inputs
            if self.trace_dir is not None:
                try:
                    path = await asyncio.to_thread(reserve_trace_path, self.trace_dir, call.call_id)
                    await asyncio.to_thread(recorder.write, path)
                    summary.trace = str(path)
                    self.traces_written.inc()
                except Exception:  # noqa: BLE001 -- logged; the call still ends cleanly
                    clog.exception("writing the trace failed")
            self._done(summary)
            clog.info("call ended: %s; %d turns; trace %s", summary.end_reason, len(summary.turns),
                      summary.trace)

    def call_scheduler(self) -> CallScheduler | None:
        """Return the running loop's scheduler of the batched call loop, installing it on first
        use (None with ``call_loop = "per-call"``: a loop timer per call)."""
        if self.call_loop != "batched":
            return None
        if self.scheduler is None:
            # the loop's one scheduler: the ingress's calls (uplink jitter buffers) share it
            self.scheduler = CallScheduler.install(slack_s=self.call_loop_slack_s)
        return self.scheduler

    async def _frames(self, call: Any, summary: CallSummary, last: list[float],
                      guard: ViolationGuard | None = None) -> AsyncIterator[CallerFrame]:
        loop = asyncio.get_running_loop()
        first: tuple[int, float] | None = None  # (seq, ingress release time) of the first frame
        async for f in call.frames():
            # when the caller leg took the frame in (its queue may have held it since)
            released = getattr(f, "released_at", None) or loop.time()
            if first is None:
                first = (f.seq, released)
            # how far the caller's numbering runs ahead of real time (edge/guard.py)
            ahead = (f.seq - first[0]) * call.frame_ms / 1000 - (released - first[1])
            if guard is not None and await self._violated(call, summary, guard, loop.time(), ahead):
                return
            if not f.concealed:
                last[0] = loop.time()
            summary.frames += 1
            yield CallerFrame(f.payload, seq=f.seq, ts=None if f.timestamp_ms is None else f.timestamp_ms / 1000,
                              concealed=f.concealed)

    def _sink(self, call: Any, summary: CallSummary, last: list[float], guard: ViolationGuard,
              pipe: CallPipeline, violation: list[asyncio.Task[None]], clog: Any
              ) -> Callable[[Any], bool]:
        """Return the batched call loop's uplink sink for ``call`` (``BaseCall.attach_sink``):
        per frame what :meth:`_frames` + :meth:`CallPipeline.run` do, called synchronously as
        the caller leg releases the frame. False stops the delivery (the guard ended the call,
        or the pipeline failed)."""
        loop = asyncio.get_running_loop()
        first: list[float] = []  # [seq, ingress release time] of the first frame
        frame_s = call.frame_ms / 1000

        def sink(f: Any) -> bool:
            try:
                now = loop.time()
                released = f.released_at or now
                if not first:
                    first.extend((f.seq, released))
                # how far the caller's numbering runs ahead of real time (edge/guard.py)
                ahead = (f.seq - first[0]) * frame_s - (released - first[1])
                reason = self._check_guard(call, summary, guard, now, ahead)
                if reason is not None:
                    violation.append(asyncio.ensure_future(self._end_violation(call, reason)))
                    pipe.stop()
                    return False
                if not f.concealed:
                    last[0] = now
                summary.frames += 1
                return pipe.push(CallerFrame(f.payload, seq=f.seq,
                                             ts=None if f.timestamp_ms is None else f.timestamp_ms / 1000,
                                             concealed=f.concealed))
            except Exception:  # noqa: BLE001 -- a pipeline bug must not take other calls down
                clog.exception("pipeline failed")
                summary.failed = summary.failed or "internal error"
                pipe.stop()
                return False

        return sink

    def _check_guard(self, call: Any, summary: CallSummary, guard: ViolationGuard,
                     now: float, caller_ahead_s: float | None = None) -> str | None:
        """Count the caller's new violating frames on /metrics; once the guard says the call
        must end, mark and count it and return the reason (edge/guard.py), else None."""
        new_ahead, new_conceal, reason = guard.check(now, caller_ahead_s)
        if new_ahead:
            self.metrics.caller_violations.labels(kind="ahead").inc(new_ahead)
        if new_conceal:
            self.metrics.caller_violations.labels(kind="conceal").inc(new_conceal)
        if reason is None:
            return None
        summary.end_reason = "caller_violation"
        summary.failed = reason
        self.metrics.calls_closed_violation.inc()
        call_logger(log, call.call_id).warning("ending the call: %s", reason)
        return reason

    async def _violated(self, call: Any, summary: CallSummary, guard: ViolationGuard,
                        now: float, caller_ahead_s: float | None = None) -> bool:
        """Count the caller's new violating frames on /metrics; once the guard says the call
        must end, tell the caller (``error`` ``caller_violation``), close it with the
        transport's policy code, count it and return True (edge/guard.py)."""
        reason = self._check_guard(call, summary, guard, now, caller_ahead_s)
        if reason is None:
            return False
        await self._end_violation(call, reason)
        return True

    async def _end_violation(self, call: Any, reason: str) -> None:
        """Tell the caller (``error`` ``caller_violation``) and close the call with the
        transport's policy code."""
        with contextlib.suppress(Exception):
            await call.send_control({"type": "error", "code": "caller_violation", "message": reason})
        with contextlib.suppress(Exception):
            close = getattr(call, "close_violation", None)
            await (close(reason) if close is not None else call.close(reason))

    async def _watchdog(self, call: Any, summary: CallSummary, last: list[float], clog: Any) -> None:
        loop = asyncio.get_running_loop()
        period = min(1.0, self.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            if loop.time() - last[0] >= self.idle_timeout_s:
                summary.idle_closed = True
                summary.end_reason = "caller idle"
                self.idle_closed.inc()
                clog.warning("caller sent nothing for %.1f s: ending the call", self.idle_timeout_s)
                with contextlib.suppress(Exception):
                    await call.close("caller idle")
                return

    def _done(self, summary: CallSummary) -> None:
        summary.ended_at = time.time()
        self._ended.setdefault(summary.call_id, asyncio.Event()).set()
        while len(self._ended) > self.keep_calls:
            del self._ended[next(iter(self._ended))]

    async def wait_ended(self, call_id: str, timeout: float) -> CallSummary:
        """Return the summary of ``call_id`` once it has ended (trace written). Raises
        TimeoutError after ``timeout`` seconds."""
        await asyncio.wait_for(self._ended.setdefault(call_id, asyncio.Event()).wait(), timeout)
        return self.calls[call_id]
