"""``clutchcall serve --shards N``: what one edge shard runs, and the shards' combined ready info.

Theory of operation: the shards are a
:class:`~clutchcall.prod.ingress.sharding.ShardedIngress` with ``ws=True`` (the one sharding of
the ingress ports: N UDP sockets on the QUIC port with the DCID-steering program, N
SO_REUSEPORT TCP listeners on the WebSocket port, one process per shard, the QUIC server of
shard k issuing connection IDs that lead back to k, so a connection stays on its shard even if
the caller's address changes) whose shard body is :func:`edge_shard`: a complete
:class:`~clutchcall.prod.edge.Edge` on the shard's two sockets:
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
    from clutchcall.native.shard_procs import ShardContext
    from clutchcall.prod.ingress.sharding import ShardedIngress


def edge_shard(ctx: ShardContext, cfg: EdgeConfig, *, tokens: list[str], ttl: float,
               summary_json: str | None) -> dict[str, Any]:
    """Shard body (a :data:`~clutchcall.prod.ingress.sharding.ShardMain`, bind the keywords
    with ``functools.partial``): run an Edge on the shard's (UDP, TCP) sockets until asked to
    stop; return its counters. Shard 0 issues a token for each of ``tokens`` (call ids, valid
    ``ttl`` s); with ``summary_json``, shard k writes its call summaries to
    ``<summary_json>.k`` on stop."""
    from clutchcall.prod.edge.edge import Edge

    k = ctx.shard
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


def sharded_edge(cfg: EdgeConfig, nshards: int, call_ids: list[str], ttl: float,
                 summary_json: str | None = None) -> ShardedIngress:
    """Return (not started) the ``nshards`` edge processes of ``serve --shards N`` on shared
    ports: a :class:`~clutchcall.prod.ingress.sharding.ShardedIngress` running
    :func:`edge_shard`. ``start()`` raises ShardStartError (every shard is stopped then)."""
    from clutchcall.prod.ingress.sharding import ShardedIngress

    body = functools.partial(edge_shard, tokens=list(call_ids), ttl=ttl, summary_json=summary_json)
    return ShardedIngress(nshards, cfg, body, ws=True, name="edge-shard", stop_timeout=15.0)


def ready_info(sharded: ShardedIngress) -> dict[str, Any]:
    """Return the combined ready info of started edge shards (one line for all: ports, the
    per-shard metrics ports and pids, shard 0's tokens)."""
    shards = [sharded.shards[k] for k in range(sharded.nshards)]
    first = shards[0]
    return {"host": sharded.config.host, "quic_port": sharded.port, "ws_port": sharded.ws_port,
            "metrics_port": first["metrics_port"], "metrics_ports": [s["metrics_port"] for s in shards],
            "cert": first["cert"], "model_url": first["model_url"], "embedded_model": first["embedded_model"],
            "trace_dir": first["trace_dir"], "io": first["io"], "shards": sharded.nshards,
            "pids": [s["pid"] for s in shards], "tokens": first["tokens"]}
