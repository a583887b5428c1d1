"""``clutchcall serve --shards N``: N edge processes sharing one QUIC port and one WebSocket port.

Theory of operation: the parent binds N UDP sockets on the QUIC port with SO_REUSEPORT and
:mod:`clutchcall.native.shard`'s classic-BPF program attached (``bind_shard_sockets``), so the
kernel steers every datagram by its destination connection ID, and N SO_REUSEPORT TCP
listeners on the WebSocket port. It then forks one process per shard. Shard k makes aioquic's
server issue connection IDs that encode k (``use_shard_cids_in_aioquic_server``; a connection
stays on its shard even if the caller's address changes), and runs a complete
:class:`~clutchcall.prod.edge.Edge` on its two sockets: its own event loop, datagram I/O
(``--io``), calls, embedded model, ``/metrics`` (port + k when fixed) and traces. Each shard
reports ``ready`` (its info) and, on stop, its counters over a pipe; the parent prints one ready
line for all and relays SIGINT/SIGTERM through a shared stop event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import os
import signal
import socket
from typing import Any

from clutchcall.prod.edge.config import EdgeConfig


def _shard_main(k: int, n: int, cfg: EdgeConfig, udp: socket.socket, tcp: socket.socket, pipe: Any,
                stop: Any, tokens: list[str], ttl: float, summary_json: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from clutchcall.native.aio_bridge import use_shard_cids_in_aioquic_server
    from clutchcall.prod.edge.edge import Edge

    use_shard_cids_in_aioquic_server(k, n)
    if cfg.metrics_port > 0:
        cfg = dataclasses.replace(cfg, metrics_port=cfg.metrics_port + k)

    async def main() -> None:
        edge = Edge(cfg, quic_sock=udp, ws_sock=tcp)
        try:
            info = await edge.start()
        except Exception as exc:  # noqa: BLE001 -- reported to the parent
            pipe.send(("error", k, repr(exc)))
            return
        info.update(shard=k, pid=os.getpid(),
                    tokens={c: edge.issue_token(c, ttl) for c in tokens} if k == 0 else {})
        pipe.send(("ready", k, info))
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, stop.wait, 0.2):
            pass
        stats = edge.stats()
        await edge.stop(grace_s=1.0)
        if summary_json and edge.handler is not None:
            import json

            with open(f"{summary_json}.{k}", "w") as f:  # noqa: ASYNC230 -- once, at shutdown
                json.dump({"calls": [c.to_dict() for c in edge.handler.calls.values()],
                           "metrics": edge.metrics.exposition().decode()}, f)
        pipe.send(("stopped", k, {**stats, "shard": k}))

    asyncio.run(main())


class ShardedEdge:
    """N edge processes on shared ports (module docstring). ``start()`` returns the ready info;
    ``stop()`` returns the per-shard counters. Raises OSError if the ports cannot be bound and
    RuntimeError if a shard fails to start."""

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
        tcp0 = bind_tcp_reuseport(cfg.host, cfg.ws_port)
        ws_port = tcp0.getsockname()[1]
        self.tcp = [tcp0] + [bind_tcp_reuseport(cfg.host, ws_port) for _ in range(nshards - 1)]
        self.quic_port, self.ws_port = self.udp[0].getsockname()[1], ws_port
        self._ctx = mp.get_context("fork")
        self.stop_event = self._ctx.Event()
        self.procs: list[Any] = []
        self.pipes: list[Any] = []

    def start(self, call_ids: list[str], ttl: float, timeout: float = 60.0,
              summary_json: str | None = None) -> dict[str, Any]:
        """Fork the shards, wait until every one is serving; return the combined info. With
        ``summary_json``, shard k writes its call summaries to ``<summary_json>.k`` on stop."""
        for k in range(self.n):
            parent, child = self._ctx.Pipe()
            p = self._ctx.Process(target=_shard_main, daemon=True,
                                  args=(k, self.n, self.cfg, self.udp[k], self.tcp[k], child,
                                        self.stop_event, call_ids, ttl, summary_json))
            p.start()
            self.procs.append(p)
            self.pipes.append(parent)
        shards: list[dict[str, Any]] = []
        for k, pipe in enumerate(self.pipes):
            if not pipe.poll(timeout):
                self.stop()
                raise RuntimeError(f"edge shard {k} did not start")
            kind, _, info = pipe.recv()
            if kind != "ready":
                self.stop()
                raise RuntimeError(f"edge shard {k} failed: {info}")
            shards.append(info)
        first = shards[0]
        return {"host": self.cfg.host, "quic_port": self.quic_port, "ws_port": self.ws_port,
                "metrics_port": first["metrics_port"], "metrics_ports": [s["metrics_port"] for s in shards],
                "cert": first["cert"], "model_url": first["model_url"], "embedded_model": first["embedded_model"],
                "trace_dir": first["trace_dir"], "io": first["io"], "shards": self.n,
                "pids": [s["pid"] for s in shards], "tokens": first["tokens"]}

    def stop(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Stop every shard gracefully; return their counters."""
        self.stop_event.set()
        out = []
        for pipe in self.pipes:
            try:
                if pipe.poll(timeout):
                    kind, _, stats = pipe.recv()
                    if kind == "stopped":
                        out.append(stats)
            except (EOFError, OSError):
                pass
        for p in self.procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(2)
        for s in self.udp + self.tcp:
            s.close()
        self.procs.clear()
        self.pipes.clear()
        return out
