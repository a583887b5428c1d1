"""Prometheus metrics and JSON logs for the production edge.

Theory of operation: one :class:`EdgeMetrics` per edge instance owns its own
``prometheus_client.CollectorRegistry`` (never the global one), so several edges -- or several
tests -- in one process never collide. The per-call pipeline feeds it engine outputs
(:meth:`EdgeMetrics.observe_output` maps backchannel / barge-in events to counters), per-turn
latencies, frame lateness/loss and model-leg errors. :class:`MetricsServer` serves the text
exposition format on ``GET /metrics`` from an asyncio handler (loopback by default), so it
shares the edge's event loop and needs no thread.

Logs: :class:`JsonFormatter` renders every record as one JSON object per line carrying the
call id, taken from the record (``extra={"call_id": ...}`` or :func:`call_logger`) or from the
:data:`current_call_id` context variable that the pipeline sets for its tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from clutchcall.engine.actions import (
    BackchannelFiltered,
    BargeArmed,
    BargeConfirmed,
    BargeDismissed,
    Output,
    Release,
    Retract,
    Speculate,
)

TURN_LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
"""Seconds; turn latency includes the end-of-turn silence (~0.5 s) and the model's time to
first audio, so the interesting range is 0.3-2 s."""

EDGE_ADDED_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
)
"""Seconds; the edge-added latency goal is p99 <= 5 ms, so the buckets are dense below 10 ms."""

current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clutchcall_call_id", default=None
)
"""The call id of the task running now; set by the pipeline, read by :class:`JsonFormatter`."""


class EdgeMetrics:
    """All metrics of one edge instance, in its own registry.

    Attributes are the prometheus-client metric objects; names follow docs/architecture.md §6.
    """

    def __init__(self, namespace: str = "clutchcall") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turn_latency = Histogram(
            "turn_latency_seconds",
            "Turn latency at the edge: last inbound caller speech frame to first outbound agent "
            "audio frame.",
            namespace=namespace, registry=r, buckets=TURN_LATENCY_BUCKETS,
        )
        self.edge_added_latency = Histogram(
            "edge_added_latency_seconds",
            "Part of the turn latency spent inside ClutchCall: turn latency minus the "
            "end-of-turn silence minus the model's own time to first audio.",
            namespace=namespace, registry=r, buckets=EDGE_ADDED_BUCKETS,
        )
        self.backchannels_filtered = Counter(
            "backchannels_filtered",
            "Bursts too short to be a turn that were not committed.",
            ["over_agent"], namespace=namespace, registry=r,
        )
        self.barge_ins = Counter(
            "barge_ins",
            "Barge-ins by outcome: armed (pending), confirmed (Cancel), dismissed.",
            ["outcome"], namespace=namespace, registry=r,
        )
        self.agent_yields = Counter(
            "agent_yields",
            "Soft barge-in actions on the agent's playout by kind: duck, pause (a pending "
            "barge-in), restore, resume (it was dismissed).",
            ["kind"], namespace=namespace, registry=r,
        )
        self.frames_late = Counter(
            "frames_late", "Caller frames that arrived later than their playout deadline.",
            namespace=namespace, registry=r,
        )
        self.frames_lost = Counter(
            "frames_lost", "Caller frames missing from the uplink (sequence gaps).",
            namespace=namespace, registry=r,
        )
        self.model_errors = Counter(
            "model_errors", "Errors on the model leg, by type and code.",
            ["type", "code"], namespace=namespace, registry=r,
        )
        self.calls_active = Gauge(
            "calls_active", "Calls in progress.", namespace=namespace, registry=r,
        )
        # speculative commit (engine/turn.py): started / released / retracted, and the model
        # time retracted speculations wasted (Speculate -> Retract, as the engine counts it)
        self.speculations = Counter(
            "speculations",
            "Speculative commits by outcome: started (Speculate), released (end of turn "
            "confirmed: the held reply played), retracted (the caller spoke again: nothing played).",
            ["outcome"], namespace=namespace, registry=r,
        )
        self.speculation_wasted = Counter(
            "speculation_wasted_model_seconds",
            "Model time spent on speculative replies that were retracted (Speculate -> Retract).",
            namespace=namespace, registry=r,
        )
        for outcome in ("started", "released", "retracted"):
            self.speculations.labels(outcome=outcome)
        # per caller-leg transport (quic, ws, webtransport): counted and measured alike
        self.calls = Counter(
            "calls", "Calls started, by caller-leg transport (quic, ws, webtransport).",
            ["transport"], namespace=namespace, registry=r,
        )
        self.transport_turn_latency = Histogram(
            "transport_turn_latency_seconds",
            "Turn latency at the edge (as turn_latency_seconds) by caller-leg transport; "
            "observed when the call ends.",
            ["transport"], namespace=namespace, registry=r, buckets=TURN_LATENCY_BUCKETS,
        )
        for transport in ("quic", "ws", "webtransport"):
            self.calls.labels(transport=transport)
        self._hardening_metrics(namespace)
        for outcome in ("armed", "confirmed", "dismissed"):
            self.barge_ins.labels(outcome=outcome)
        for over in ("true", "false"):
            self.backchannels_filtered.labels(over_agent=over)

    def _hardening_metrics(self, namespace: str) -> None:
        """Counters of the edge's defences (issue 19): model time-outs and retries, callers
        that exceed their bounds, and calls closed for it."""
        r = self.registry
        self.model_timeouts = Counter(
            "model_timeouts", "Model-leg time-outs by stage: connect (handshake), session (no "
            "session.created), first_audio (a response's first audio delta did not come in time).",
            ["stage"], namespace=namespace, registry=r,
        )
        self.model_retries = Counter(
            "model_response_retries", "Responses asked again (response.create) after their first "
            "audio timed out (at most once per response).", namespace=namespace, registry=r,
        )
        self.caller_violations = Counter(
            "caller_violations", "Caller frames or gaps beyond the call's bounds, dropped: kind "
            "ahead (held ahead of the media clock beyond the bound), conceal (concealment beyond "
            "the per-gap or per-second cap).", ["kind"], namespace=namespace, registry=r,
        )
        self.calls_closed_violation = Counter(
            "calls_closed_violation", "Calls closed because the caller kept violating its bounds "
            "(WebSocket close 1008, MoQT PROTOCOL_VIOLATION).", namespace=namespace, registry=r,
        )
        for stage in ("connect", "session", "first_audio"):
            self.model_timeouts.labels(stage=stage)
        for kind in ("ahead", "conceal"):
            self.caller_violations.labels(kind=kind)

    def observe_output(self, out: Output) -> None:
        """Count the engine events that have a metric; other outputs are ignored."""
        if isinstance(out, BackchannelFiltered):
            self.backchannels_filtered.labels(over_agent=str(out.over_agent).lower()).inc()
        elif isinstance(out, BargeArmed):
            self.barge_ins.labels(outcome="armed").inc()
        elif isinstance(out, BargeConfirmed):
            self.barge_ins.labels(outcome="confirmed").inc()
        elif isinstance(out, BargeDismissed):
            self.barge_ins.labels(outcome="dismissed").inc()
        elif isinstance(out, Speculate):
            self.speculations.labels(outcome="started").inc()
        elif isinstance(out, Release):
            self.speculations.labels(outcome="released").inc()
        elif isinstance(out, Retract):
            self.speculations.labels(outcome="retracted").inc()
            self.speculation_wasted.inc(out.held_ms / 1000.0)
        elif out.kind in ("duck", "pause", "restore", "resume"):
            self.agent_yields.labels(kind=out.kind).inc()

    def model_error(self, err_type: str, code: str) -> None:
        """Count one model-leg error (``err_type`` e.g. ``invalid_request_error``)."""
        self.model_errors.labels(type=err_type or "unknown", code=code or "unknown").inc()

    def observe_turn(self, turn_latency_s: float, edge_added_s: float | None) -> None:
        """Record one turn's latencies (seconds); ``edge_added_s`` None when not measurable."""
        self.turn_latency.observe(max(0.0, turn_latency_s))
        if edge_added_s is not None:
            self.edge_added_latency.observe(max(0.0, edge_added_s))

    def observe_call(self, transport: str, turn_latencies_ms: list[float] | None = None) -> None:
        """Count one call of ``transport`` (at its start) or, with ``turn_latencies_ms``,
        record its turns' edge turn latencies (at its end). Returns None."""
        if turn_latencies_ms is None:
            self.calls.labels(transport=transport).inc()
            return
        for ms in turn_latencies_ms:
            self.transport_turn_latency.labels(transport=transport).observe(max(0.0, ms / 1000.0))

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Return a sample's current value (e.g. ``clutchcall_frames_lost_total``); 0.0 if absent."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else float(v)

    def exposition(self) -> bytes:
        """Return the registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class MetricsServer:
    """A minimal HTTP/1.1 server on asyncio that answers ``GET /metrics`` (else 404).

    Bound to loopback by default; one request per connection; request heads over 8 KiB or
    slower than 5 s are dropped.
    """

    def __init__(self, metrics: EdgeMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Start listening; return the bound port."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and wait for the server to close."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            if len(head) > 8192:
                raise ValueError("request head too large")
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) == 3 and parts[0] in (b"GET", b"HEAD") and parts[1].split(b"?")[0] == b"/metrics":
                body = self.metrics.exposition()
                status, ctype = b"200 OK", CONTENT_TYPE_LATEST.encode()
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + (body if parts[:1] != [b"HEAD"] else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, msg, call_id, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single-line JSON string."""
        call_id = getattr(record, "call_id", None) or current_call_id.get()
        obj: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "call_id": call_id,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in obj and not key.startswith("_"):
                obj[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, separators=(",", ":"))


class _CallAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def call_logger(logger: logging.Logger, call_id: str) -> logging.LoggerAdapter[logging.Logger]:
    """Return an adapter that stamps ``call_id`` on every record it logs (a call's own
    ``extra`` keys are kept too)."""
    return _CallAdapter(logger, {"call_id": call_id})


def configure_json_logging(level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Install a :class:`JsonFormatter` handler on the ``clutchcall`` logger; return it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("clutchcall")
    log.addHandler(handler)
    log.setLevel(level)
    return handler

