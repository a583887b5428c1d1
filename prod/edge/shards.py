"""``clutchcall serve --shards N``: N edge processes sharing one QUIC port and one WebSocket port.

Theory of operation: the parent binds N UDP sockets on the QUIC port with SO_REUSEPORT and
:mod:`clutchcall.native.shard`'s classic-BPF program attached (``bind_shard_sockets``), so the
kernel steers every datagram by its destination connection ID, and N SO_REUSEPORT TCP
listeners on the WebSocket port. It then runs one process per shard with
:class:`~clutchcall.native.shard_procs.ShardProcesses` (fork, ready, stop, reports, clean-up on
failure). Shard k makes aioquic's server issue connection IDs that encode k
(``use_shard_cids_in_aioquic_server``; a connection stays on its shard even if the caller's
address changes), and runs a complete :class:`~clutchcall.prod.edge.Edge` on its two sockets:
its own event loop, datagram I/O (``--io``), calls, embedded model, ``/metrics`` (port + k when
fixed) and traces. Each shard reports ready (its info) and, on stop, its counters; the parent
prints one ready line for all and stops every shard on SIGINT/SIGTERM (a shard that gets
SIGTERM itself stops gracefully too).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Any

from clutchcall.prod.edge.config import EdgeConfig

if TYPE_CHECKING:
    import socket

    from clutchcall.native.shard_procs import ShardContext, ShardProcesses


def _edge_shard(ctx: ShardContext, *, cfg: EdgeConfig, tokens: list[str], ttl: float,
                summary_json: str | None) -> dict[str, Any]:
    """Body of shard process ``ctx.shard``: run an Edge on the shard's (UDP, TCP) sockets until
    asked to stop; return its counters."""
    from clutchcall.prod.edge.edge import Edge
    from clutchcall.prod.quic.core import get_core, use_shard_cids

    k = ctx.shard
    use_shard_cids(get_core(cfg.quic_core), k, ctx.nshards)
    if cfg.metrics_port > 0:
        cfg = dataclasses.replace(cfg, metrics_port=cfg.metrics_port + k)
    if k > 0:  # the browser caller (page + WebTransport on web_port) runs on shard 0 only
        cfg = dataclasses.replace(cfg, web_port=-1)
    udp, tcp = ctx.sockets

    async def main() -> dict[str, Any]:
        edge = Edge(cfg, quic_sock=udp, ws_sock=tcp)
        try:
            info = await edge.start()
        except BaseException:
            await edge.stop(grace_s=0.0)  # release what did start; the error goes to the parent
            raise
        info.update(shard=k, pid=os.getpid(),
                    tokens={c: edge.issue_token(c, ttl) for c in tokens} if k == 0 else {})
        ctx.ready(info)
        await ctx.wait_stop_async()
        stats = edge.stats()
        await edge.stop(grace_s=1.0)
        if summary_json and edge.handler is not None:
            import json

            with open(f"{summary_json}.{k}", "w") as f:  # noqa: ASYNC230 -- once, at shutdown
                json.dump({"calls": [c.to_dict() for c in edge.handler.calls.values()],
                           "metrics": edge.metrics.exposition().decode()}, f)
        return {**stats, "shard": k}

    return asyncio.run(main())


class ShardedEdge:
    """N edge processes on shared ports (module docstring). ``start()`` returns the ready info;
    ``stop()`` returns the per-shard counters. Raises OSError if the ports cannot be bound;
    ``start`` raises ShardStartError (a RuntimeError naming the shard and its error) if a shard
    fails to start (every shard is stopped then)."""

    def __init__(self, cfg: EdgeConfig, nshards: int) -> None:
        from clutchcall.native.shard import bind_shard_sockets
        from clutchcall.prod.edge.native_io import bind_tcp_reuseport

        if cfg.cert is None:  # one certificate for all shards, made before they fork
            from clutchcall.prod.ingress.tls import ensure_self_signed

            cert, key = ensure_self_signed(cfg.cert_dir)
            cfg = dataclasses.replace(cfg, cert=str(cert), key=str(key))
        self.cfg = cfg
        self.n = nshards
        self.udp = bind_shard_sockets(cfg.host, cfg.quic_port, nshards)
        self.tcp: list[socket.socket] = []
        try:
            self.tcp.append(bind_tcp_reuseport(cfg.host, cfg.ws_port))
            ws_port = self.tcp[0].getsockname()[1]
            self.tcp += [bind_tcp_reuseport(cfg.host, ws_port) for _ in range(nshards - 1)]
        except BaseException:
            for s in self.udp + self.tcp:
                s.close()
            raise
        self.quic_port, self.ws_port = self.udp[0].getsockname()[1], ws_port
        self.procs: ShardProcesses | None = None  # once started

    def start(self, call_ids: list[str], ttl: float, timeout: float = 60.0,
              summary_json: str | None = None) -> dict[str, Any]:
        """Fork the shards, wait until every one is serving; return the combined info. With
        ``summary_json``, shard k writes its call summaries to ``<summary_json>.k`` on stop.
        Raises ShardStartError."""
        from clutchcall.native.shard_procs import ShardProcesses

        target = functools.partial(_edge_shard, cfg=self.cfg, tokens=list(call_ids), ttl=ttl,
                                   summary_json=summary_json)
        self.procs = ShardProcesses(self.n, target, list(zip(self.udp, self.tcp, strict=True)),
                                    name="edge-shard", stop_timeout=15.0)
        ready = self.procs.start(timeout)
        shards = [ready[k] for k in range(self.n)]
        first = shards[0]
        return {"host": self.cfg.host, "quic_port": self.quic_port, "ws_port": self.ws_port,
                "metrics_port": first["metrics_port"], "metrics_ports": [s["metrics_port"] for s in shards],
                "cert": first["cert"], "model_url": first["model_url"], "embedded_model": first["embedded_model"],
                "trace_dir": first["trace_dir"], "io": first["io"], "shards": self.n,
                "pids": [s["pid"] for s in shards], "tokens": first["tokens"]}

    def stop(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Stop every shard gracefully (a shard still running after ``timeout`` is killed);
        return the counters of those that reported, in shard order."""
        if self.procs is None:  # never started: just release the ports
            for s in self.udp + self.tcp:
                s.close()
            return []
        reports = self.procs.stop(timeout)
        return [reports[k] for k in sorted(reports)]
