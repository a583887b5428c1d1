"""The production edge: both ingresses, the per-call pipeline, the model, metrics, traces.

Theory of operation: :class:`Edge` assembles the parts that already exist into one running
service on the current asyncio loop. ``await edge.start()``

1. starts the embedded reference model on loopback (``config.model_url`` None) or points the
   model leg at an external Realtime-compatible server (URL from config, API key from
   ``OPENAI_API_KEY``);
2. starts the QUIC/MoQT ingress and the WebSocket/TLS ingress, both handing calls to one
   :class:`~clutchcall.prod.edge.handler.EdgeHandler` (a recorded CallPipeline per call with
   the caller idle timeout);
3. starts the Prometheus ``/metrics`` endpoint on loopback and (optionally) JSON logs;
4. with ``config.web_port >= 0``, the browser caller: the page over HTTPS and the
   WebTransport ingress on the same port number (:mod:`clutchcall.prod.web.server`), handing
   calls to the same handler; :meth:`Edge.page_url` is the URL to open.

``await edge.stop()`` shuts down gracefully: GOAWAY to QUIC sessions, a grace period for calls
to end, then every remaining call is closed (each pipeline closes its model session and writes
its trace), and the ingresses, the metrics endpoint and the embedded model stop, in that order.
``async with Edge(cfg) as edge:`` does both. :meth:`Edge.issue_token` mints call tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any, Self

from clutchcall.prod.edge.config import EdgeConfig
from clutchcall.prod.edge.handler import EdgeHandler
from clutchcall.prod.ingress.auth import resolve_auth_key
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.ingress.ws import WsIngress
from clutchcall.prod.metrics import EdgeMetrics, MetricsServer, configure_json_logging
from clutchcall.prod.model.client import ModelLegConfig
from clutchcall.prod.model.server import (
    DEFAULT_REPLIES,
    ModelServerConfig,
    ReferenceModelServer,
)
from clutchcall.prod.web.server import WebCaller

log = logging.getLogger("clutchcall.edge")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _model_timeouts(cfg: EdgeConfig) -> dict[str, Any]:
    """Return the model leg's time-outs from the edge config (ModelLegConfig keyword args)."""
    return {"connect_timeout_s": cfg.model_connect_timeout_s,
            "session_timeout_s": cfg.model_session_timeout_s,
            "first_audio_timeout_s": cfg.model_first_audio_timeout_s}


class Edge:
    """One edge instance (see module docstring)."""

    def __init__(self, config: EdgeConfig | None = None, *, log_stream: Any = None,
                 quic_sock: socket.socket | None = None, ws_sock: socket.socket | None = None) -> None:
        """``quic_sock`` / ``ws_sock``: already-bound sockets to serve on (shards) instead of
        binding ``config.quic_port`` / ``config.ws_port``."""
        self.config = config or EdgeConfig()
        self._quic_sock, self._ws_sock = quic_sock, ws_sock
        self.io_kind: str | None = "asyncio"
        self.metrics = EdgeMetrics()
        self.model_server: ReferenceModelServer | None = None
        self.model_url: str | None = None
        self.handler: EdgeHandler | None = None
        self.quic: QuicIngress | None = None
        self.ws: WsIngress | None = None
        self.metrics_server: MetricsServer | None = None
        self.web: WebCaller | None = None
        self.quic_port = self.ws_port = self.metrics_port = self.web_port = 0
        self.cert_path: str | None = None
        self._log_stream = log_stream
        self._log_handler: logging.Handler | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> dict[str, Any]:
        """Start everything; return :meth:`info`. Raises ConfigError for a bad config and
        OSError when a port cannot be bound (what was started is stopped again)."""
        cfg = self.config
        if cfg.json_logs:
            self._log_handler = configure_json_logging(_LEVELS[cfg.log_level], self._log_stream)
        try:
            await self._start()
        except BaseException:
            await self.stop(grace_s=0)
            raise
        self._started = True
        log.info("edge ready", extra=self.info())
        return self.info()

    async def _start(self) -> None:
        cfg = self.config
        resolve_auth_key(cfg.host, cfg.auth_key)  # a public bind without a key: refuse first
        if cfg.model_url is None:
            m = cfg.model
            self.model_server = ReferenceModelServer(ModelServerConfig(
                mode=m.mode, time_to_first_audio_ms=m.time_to_first_audio_ms, ttfa_sigma=m.ttfa_sigma,
                ttfa_seed=m.ttfa_seed, delta_ms=m.delta_ms,
                replies=m.replies if m.replies is not None else DEFAULT_REPLIES))
            self.model_url = await self.model_server.start()
            model_cfg = ModelLegConfig(url=self.model_url, **_model_timeouts(cfg))
        else:
            self.model_url = cfg.model_url
            model_cfg = ModelLegConfig.from_env(url=cfg.model_url, dialect=cfg.model_dialect,
                                                **_model_timeouts(cfg))
        self.handler = EdgeHandler(model_url=self.model_url, model_config=model_cfg,
                                   turn_config=cfg.turn, metrics=self.metrics,
                                   pipeline_options=cfg.pipeline, trace_dir=cfg.trace_dir or None,
                                   idle_timeout_s=cfg.caller_idle_timeout_s,
                                   call_loop=cfg.call_loop,
                                   call_loop_slack_s=cfg.call_loop_slack_ms / 1000)
        self.handler.call_scheduler()  # before any call: the ingress's calls find it too
        kw: dict[str, Any] = {"auth_key": resolve_auth_key(cfg.host, cfg.auth_key)}
        icfg = IngressConfig(host=cfg.host, quic_port=cfg.quic_port, ws_port=cfg.ws_port, cert=cfg.cert,
                             key=cfg.key, cert_dir=cfg.cert_dir, frame_ms=cfg.turn.frame_ms,
                             jitter_depth_ms=cfg.jitter_depth_ms, max_calls=cfg.max_calls,
                             idle_timeout_s=cfg.quic_idle_timeout_s, io=cfg.io,
                             xdp_iface=cfg.xdp_iface, quic_core=cfg.quic_core,
                             audio_transport=cfg.audio_transport, **kw)
        # The QUIC ingress runs on clutchcall.native's datagram I/O of kind cfg.io (io_uring,
        # or asyncio with one log line where io_uring cannot work), on the shard's socket if any.
        self.quic = QuicIngress(icfg, self.handler, sock=self._quic_sock)
        self.quic_port = await self.quic.start()
        self.io_kind = self.quic.io_kind
        self.ws = WsIngress(icfg, self.handler, authority=self.quic.authority, sock=self._ws_sock)
        self.ws.cert_path, self.ws.key_path = self.quic.cert_path, self.quic.key_path
        self.ws_port = await self.ws.start()
        self.cert_path = (os.path.abspath(self.quic.cert_path)  # noqa: ASYNC240 -- once at start
                          if self.quic.cert_path else None)
        if cfg.web_port >= 0:
            await self._start_web(icfg)
        if cfg.metrics_port >= 0:
            self.metrics_server = MetricsServer(self.metrics, cfg.metrics_host, cfg.metrics_port)
            self.metrics_port = await self.metrics_server.start()

    async def _start_web(self, icfg: IngressConfig) -> None:
        """Start the browser caller (page + WebTransport ingress) on ``config.web_port``."""
        import ipaddress

        from clutchcall.prod.ingress.tls import pinnable_cert_sha256
        from clutchcall.prod.ingress.webtransport import WebTransportIngress

        cfg = self.config
        quic = self.quic
        assert quic is not None
        cert, key = quic.cert_path, quic.key_path
        assert cert is not None and key is not None
        # the development certificate (no --cert): browsers accept it only pinned by its hash
        dev_cert = cfg.cert is None

        def ingress(sock: socket.socket) -> WebTransportIngress:
            return WebTransportIngress(icfg, quic.handler, authority=quic.authority, sock=sock)

        try:
            loopback = ipaddress.ip_address(cfg.host).is_loopback
        except ValueError:
            loopback = cfg.host == "localhost"
        self.web = WebCaller(host=cfg.host, port=cfg.web_port, cert=cert, key=key,
                             cert_hash=pinnable_cert_sha256(cert) if dev_cert else None,
                             ingress_factory=ingress, loopback_http=dev_cert and loopback)
        self.web_port = await self.web.start()

    @property
    def webtransport(self) -> Any:
        """The WebTransport ingress (a QuicIngress subclass) or None."""
        return self.web.ingress if self.web is not None else None

    def page_url(self, call_id: str, ttl_s: float = 3600.0, *, plain_http: bool = False) -> str:
        """Return the browser caller's URL for ``call_id`` with a fresh token (see
        :meth:`WebCaller.page_url`). Raises LocalProtocolError without a running web caller."""
        if self.web is None:
            from clutchcall.engine.errors import LocalProtocolError

            raise LocalProtocolError("Edge.page_url: no web caller (web_port is -1)")
        return self.web.page_url(call_id, self.issue_token(call_id, ttl_s), plain_http=plain_http)

    async def stop(self, grace_s: float = 1.0) -> None:
        """Graceful shutdown (module docstring): calls get ``grace_s`` seconds to end, then are
        closed; their traces are written before this returns. Idempotent."""
        handler = self.handler
        if self.quic is not None and grace_s > 0:
            for proto in list(self.quic._protocols):
                proto.send_goaway()
        if handler is not None and handler.pipelines and grace_s > 0:
            end = time.monotonic() + grace_s
            while handler.pipelines and time.monotonic() < end:
                await asyncio.sleep(0.05)
        # close the calls still running: each pipeline ends, closes its model leg, writes its trace
        open_calls = []
        for ingress in (self.quic, self.ws, self.webtransport):
            if ingress is not None:
                open_calls += list(ingress.calls.values())
        for call in open_calls:
            with contextlib.suppress(Exception):
                await call.close("edge shutting down")
        if handler is not None:
            for call in open_calls:
                with contextlib.suppress(Exception):
                    await handler.wait_ended(call.call_id, 5.0)
        if self.quic is not None:
            await self.quic.stop()
            self.quic = None
        if self.ws is not None:
            await self.ws.stop()
            self.ws = None
        if self.web is not None:
            if self.web.ingress is not None:
                await self.web.ingress.stop()  # type: ignore[attr-defined]
            await self.web.stop()
            self.web = None
        if self.metrics_server is not None:
            await self.metrics_server.close()
            self.metrics_server = None
        if self.model_server is not None:
            await self.model_server.close()
            self.model_server = None
        if self._log_handler is not None:
            logging.getLogger("clutchcall").removeHandler(self._log_handler)
            self._log_handler = None
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ helpers
    def issue_token(self, call_id: str, ttl_s: float = 3600.0) -> str:
        """Return a call token for ``call_id`` valid ``ttl_s`` seconds (both ingresses accept
        it). Raises LocalProtocolError before :meth:`start`."""
        if self.quic is None:
            from clutchcall.engine.errors import LocalProtocolError

            raise LocalProtocolError("Edge.issue_token: the edge is not started")
        return self.quic.authority.issue(call_id, time.time() + ttl_s)

    def info(self) -> dict[str, Any]:
        """Return where the edge listens: host, ports, certificate, model URL, trace dir."""
        return {"host": self.config.host, "quic_port": self.quic_port, "ws_port": self.ws_port,
                "metrics_port": self.metrics_port,
                "metrics_url": (f"http://{self.config.metrics_host}:{self.metrics_port}/metrics"
                                if self.metrics_server else None),
                "cert": self.cert_path, "model_url": self.model_url, "web_port": self.web_port,
                "embedded_model": self.model_server is not None, "trace_dir": self.config.trace_dir,
                "io": self.io_kind, "quic_core": self.config.quic_core,
                "audio_transport": self.config.audio_transport}

    def stats(self) -> dict[str, Any]:
        """Return the ingresses' counters, the QUIC datagram I/O's own counters (``quic_io``)
        and the number of calls in progress."""
        return {"quic": dict(self.quic.stats) if self.quic else {},
                "quic_io": self.quic.io_stats() if self.quic else {},
                "quic_packets": self.quic.packet_stats() if self.quic else {},
                "ws": dict(self.ws.stats) if self.ws else {},
                "webtransport": ({**self.webtransport.stats, **self.web.stats}
                                 if self.web is not None and self.webtransport is not None else {}),
                "calls_active": len(self.handler.pipelines) if self.handler else 0,
                # the batched call loop's scheduler: timer passes, calls run, most in one pass
                "call_loop": (dict(self.handler.scheduler.stats)
                              if self.handler is not None and self.handler.scheduler is not None else {})}

