"""Shard-per-core serving: N processes on one QUIC port (and one WebSocket port), one class.

:class:`ShardedIngress` is the one way the project shards its ingress ports; what each shard
runs is a parameter (``shard_main``): :func:`ingress_shard` runs the QUIC ingress with a
:class:`~clutchcall.prod.ingress.call.CallHandler` (tests, embedders), and
:func:`clutchcall.prod.edge.shards.edge_shard` runs the whole production edge on the shard's
QUIC and WebSocket sockets (``clutchcall serve --shards N``). The QUIC echo service of
``native/`` (``clutchcall native echo``, :mod:`clutchcall.native.shard_server`) is the same
shape without ``prod``'s QUIC core.

Theory of operation
-------------------
The parent binds N UDP sockets to the one (host, port) with ``SO_REUSEPORT`` in shard order
and attaches the classic-BPF program that steers every datagram by the first byte of its
destination connection ID (``dcid[0] % N``) to socket ``dcid[0] % N``
(:mod:`clutchcall.native.shard`), then forks one process per shard. Shard k keeps socket k,
makes aioquic's server issue only connection IDs whose first byte is ``k mod N``
(:func:`~clutchcall.native.aio_bridge.use_shard_cids_in_aioquic_server`), and runs its own
event loop, its own datagram I/O (io_uring reactor or asyncio, ``config.io``), its own
:class:`~clutchcall.prod.ingress.quic.QuicIngress` and its own calls. A caller's first Initial
carries a DCID it chose at random: it lands on shard ``dcid[0] % N``, which creates the
connection and hands out CIDs that lead back to itself, so every later datagram of the call
reaches the process that holds its state, whatever the caller's source address or port
(a caller that rebinds its port stays on its shard). Token keys are shared (a token issued by
any process is valid on every shard); session tickets are per shard.

The processes are run by :class:`~clutchcall.native.shard_procs.ShardProcesses` (fork, ready,
events, stop, reports, clean-up on failure). Each shard tells the caller which shard serves it
with one control event at call start, ``{"type": "info", "shard": k, "nshards": N, "pid": PID}``
(``announce=True``), and tells the parent: ready (pid, io kind, port), a ``call`` event per
call (its id) and, at stop, a report with its ingress counters, the datagrams it received and
how many of them were *mis-steered* (their DCID names another shard: 0 when steering works),
and per call the peer addresses its connection used. Stop: the parent's
:meth:`ShardedIngress.stop` (or SIGTERM to the parent in :func:`run_sharded_ingress`, or
SIGTERM to a shard) makes each :func:`ingress_shard` send GOAWAY, end its calls, close its reactor and exit; a
shard that does not exit in time is killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

from clutchcall.prod.ingress.call import CallHandler, CallSession
from clutchcall.prod.ingress.config import IngressConfig

if TYPE_CHECKING:
    from clutchcall.native.shard_procs import ShardContext, ShardProcesses

log = logging.getLogger("clutchcall.ingress.shard")

HandlerFactory = Callable[[int], CallHandler]
Cleanup = Callable[[], Awaitable[None]]
ShardStart = Callable[[int, Any], Awaitable[Cleanup | None]]


class _ShardTaggedHandler:
    """Wraps a shard's handler: announces the shard to the caller, reports each call."""

    def __init__(self, inner: CallHandler, ctx: ShardContext, announce: bool) -> None:
        self.inner = inner
        self.ctx = ctx
        self.shard, self.nshards = ctx.shard, ctx.nshards
        self.announce = announce
        self.calls: list[dict[str, Any]] = []

    async def on_call(self, call: CallSession) -> None:
        rec: dict[str, Any] = {"call_id": call.call_id, "shard": self.shard}
        self.calls.append(rec)
        self.ctx.event("call", call.call_id)
        try:
            if self.announce:
                await call.send_control({"type": "info", "shard": self.shard,
                                         "nshards": self.nshards, "pid": os.getpid()})
            await self.inner.on_call(call)
        finally:
            proto = getattr(call, "_proto", None)
            quic = getattr(proto, "_quic", None)
            if quic is not None:
                core = proto.core  # type: ignore[union-attr]
                rec["peers"] = (sorted({str(p.addr) for p in quic._network_paths})
                                if hasattr(quic, "_network_paths") else [str(core.peer_address(quic))])
                rec["host_cids"] = ([c.cid.hex() for c in quic._host_cids] if hasattr(quic, "_host_cids")
                                    else [quic.host_cid.hex()])


def _count_steering(io: Any, shard: int, nshards: int, counters: dict[str, int]) -> None:
    """Wrap the I/O's batch callback to count received datagrams and mis-steered ones."""
    from clutchcall.native.shard import shard_of_datagram

    inner = io._on_batch

    def on_batch(batch: list[Any]) -> None:
        counters["datagrams"] += len(batch)
        for data, _addr in batch:
            if shard_of_datagram(data, nshards) != shard:
                counters["mis_steered"] += 1
        inner(batch)

    io._on_batch = on_batch


def _ingress_shard(ctx: ShardContext, config: IngressConfig, *, handler_factory: HandlerFactory,
                   announce: bool, goaway_grace_s: float,
                   on_shard_start: ShardStart | None) -> dict[str, Any]:
    """Shard body of :func:`ingress_shard`: serve the QUIC ingress until asked to stop; return
    the shard's report."""
    from clutchcall.prod.ingress.quic import QuicIngress

    shard, nshards = ctx.shard, ctx.nshards

    async def main() -> dict[str, Any]:
        handler = _ShardTaggedHandler(handler_factory(shard), ctx, announce)
        ingress = QuicIngress(config, handler, sock=ctx.sockets[0])
        await ingress.start()
        cleanup = None
        if on_shard_start is not None:
            try:
                cleanup = await on_shard_start(shard, ingress)
            except Exception as exc:
                await ingress.stop()
                raise RuntimeError(f"on_shard_start: {type(exc).__name__}: {exc}") from exc
        counters = {"datagrams": 0, "mis_steered": 0}
        # started above: the server and its native transport exist
        io = ingress._server._transport.io
        _count_steering(io, shard, nshards, counters)
        ctx.ready({"pid": os.getpid(), "io": ingress.io_kind, "port": ingress.port})
        await ctx.wait_stop_async()
        reactor = io.stats() if hasattr(io, "stats") else None
        await ingress.stop(goaway_grace_s=goaway_grace_s if ingress.calls else 0.0)
        if cleanup is not None:
            await cleanup()
        report = {"shard": shard, "pid": os.getpid(), "io": ingress.io_kind,
                  "stats": dict(ingress.stats), "calls": handler.calls, **counters}
        if reactor is not None:
            report["reactor"] = reactor
        return report

    return asyncio.run(main())


def bind_tcp_reuseport(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on (host, port) with SO_REUSEPORT (port 0: a free one):
    a shard's WebSocket/TLS listener, bound before the fork and passed to the shard's
    ``WsIngress(..., sock=...)``. Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        s.listen(1024)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


ShardMain = Callable[["ShardContext", Any], dict[str, Any]]
"""What one shard runs, in its own process: ``shard_main(ctx, config)`` serves on
``ctx.sockets`` ((UDP,) or (UDP, TCP)) until ``ctx`` asks it to stop, then returns its report.
``config`` is the sharded config with its certificate filled in."""


def ingress_shard(handler_factory: HandlerFactory, *, announce: bool = True,
                  goaway_grace_s: float = 0.2, on_shard_start: ShardStart | None = None) -> ShardMain:
    """Return the shard body that serves the QUIC ingress with ``handler_factory(shard)``'s
    handler (called in each shard process, after the fork). ``on_shard_start(shard, ingress)``,
    if given, is awaited in each shard once its QUIC ingress serves (start per-shard extras
    there: metrics, another ingress); it may return an async cleanup, awaited after the ingress
    stopped. ``announce``: tell each caller its shard (an ``info`` control event)."""
    return functools.partial(_ingress_shard, handler_factory=handler_factory, announce=announce,
                             goaway_grace_s=goaway_grace_s, on_shard_start=on_shard_start)


def _run_shard(ctx: ShardContext, *, shard_main: ShardMain, config: Any) -> dict[str, Any]:
    """Body of shard process ``ctx.shard``: make the QUIC server issue connection IDs that
    lead back to this shard, then run ``shard_main``."""
    from clutchcall.prod.quic.core import get_core, use_shard_cids

    use_shard_cids(get_core(config.quic_core), ctx.shard, ctx.nshards)
    return shard_main(ctx, config)


class ShardedIngress:
    """``nshards`` processes serving one QUIC port and, with ``ws=True``, one WebSocket port;
    what each runs is ``shard_main`` (:data:`ShardMain`; module docstring). A context manager.

    ``config`` is an :class:`~clutchcall.prod.ingress.config.IngressConfig` or an
    :class:`~clutchcall.prod.edge.config.EdgeConfig` (``host``, ``quic_port``, ``ws_port``,
    ``cert`` / ``key`` / ``cert_dir``, ``quic_core``); port 0 picks a free port (``self.port``,
    ``self.ws_port``). The self-signed certificate (if ``config.cert`` is None) is made once,
    before forking, so every shard serves the same one. Raises ConfigError for a bad shard
    count, OSError if binding fails, ShardStartError (a RuntimeError naming the shard and its
    error) if a shard fails to start (all shards are stopped then).
    """

    def __init__(self, nshards: int, config: Any, shard_main: ShardMain, *, ws: bool = False,
                 name: str = "ingress-shard", stop_timeout: float = 10.0) -> None:
        from clutchcall.engine.errors import ConfigError

        if not 1 <= nshards <= 256:
            raise ConfigError(f"shards must be within 1..256, got {nshards}")
        if config.cert is None:
            from clutchcall.prod.ingress.tls import ensure_self_signed

            cert, key = ensure_self_signed(config.cert_dir)
            config = dataclasses.replace(config, cert=str(cert), key=str(key))
        self.nshards = nshards
        self.config = config
        self.cert_path: str = config.cert
        self.ws = ws
        self.name = name
        self.stop_timeout = stop_timeout
        self._target = functools.partial(_run_shard, shard_main=shard_main, config=config)
        self.procs: ShardProcesses | None = None  # once started (kept for inspection)
        self.port = 0
        self.ws_port = 0
        self.shards: dict[int, dict[str, Any]] = {}  # shard -> ready info
        self.calls: list[tuple[int, str]] = []       # (shard, call id) as shards report them
        self.reports: dict[int, dict[str, Any]] = {}
        self.failures: dict[int, str] = {}

    @property
    def io_kinds(self) -> list[str]:
        """Return the datagram I/O kind each shard runs, in shard order."""
        return [self.shards[k]["io"] for k in sorted(self.shards)]

    def _on_event(self, shard: int, kind: str, body: Any) -> None:
        if kind == "call":
            self.calls.append((shard, body))

    def poll(self, timeout: float = 0.0) -> None:
        """Take in every message the shards have sent so far (calls served), waiting up to
        ``timeout`` seconds for the first."""
        if self.procs is not None and self.procs.running:
            self.procs.poll(timeout)
        elif timeout > 0:
            time.sleep(timeout)

    def _bind(self) -> list[tuple[socket.socket, ...]]:
        from clutchcall.native.shard import bind_shard_sockets

        udp = bind_shard_sockets(self.config.host, self.config.quic_port, self.nshards)
        self.port = int(udp[0].getsockname()[1])
        if not self.ws:
            return [(s,) for s in udp]
        tcp: list[socket.socket] = []
        try:
            tcp.append(bind_tcp_reuseport(self.config.host, self.config.ws_port))
            self.ws_port = int(tcp[0].getsockname()[1])
            tcp += [bind_tcp_reuseport(self.config.host, self.ws_port) for _ in range(self.nshards - 1)]
        except BaseException:
            for s in udp + tcp:
                s.close()
            raise
        return list(zip(udp, tcp, strict=True))

    def start(self, timeout: float = 20.0) -> int:
        """Bind, fork the shards and wait until all serve; return the QUIC port. Raises
        OSError if binding fails, ShardStartError if a shard fails to start."""
        from clutchcall.native.shard_procs import ShardProcesses

        procs = ShardProcesses(self.nshards, self._target, self._bind(), on_event=self._on_event,
                               name=self.name, stop_timeout=self.stop_timeout)
        self.procs = procs
        try:
            self.shards = procs.start(timeout)
        finally:
            self.failures.update(procs.failures)
        log.info("%s: %d shards on %s:%d (io=%s)", self.name, self.nshards, self.config.host,
                 self.port, ",".join(str(i.get("io")) for i in self.shards.values()))
        return self.port

    def stop(self, timeout: float | None = None) -> dict[int, dict[str, Any]]:
        """Stop every shard (each finishes its calls and reports); return their reports by
        shard. Shards that do not exit within ``timeout`` (default: ``stop_timeout``) are
        killed. Idempotent."""
        if self.procs is None:
            return self.reports
        self.reports = self.procs.stop(self.stop_timeout if timeout is None else timeout)
        self.failures.update(self.procs.failures)
        return self.reports

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sharded_ingress(nshards: int, config: IngressConfig, handler_factory: HandlerFactory,
                        *, on_ready: Callable[[ShardedIngress], None] | None = None,
                        duration_s: float | None = None,
                        **kwargs: Any) -> dict[int, dict[str, Any]]:
    """Serve the QUIC ingress on ``nshards`` processes until SIGTERM / SIGINT (or
    ``duration_s``); return the shards' reports. ``on_ready`` is called once all shards
    serve; ``kwargs`` go to :func:`ingress_shard` (``on_shard_start``, ``announce``,
    ``goaway_grace_s``). Call it from the main thread (it installs SIGTERM / SIGINT handlers
    and restores them on return). Raises as :class:`ShardedIngress` does."""
    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    svc = ShardedIngress(nshards, config, ingress_shard(handler_factory, **kwargs))
    try:
        svc.start()
        if on_ready is not None:
            on_ready(svc)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not done.is_set() and (deadline is None or time.monotonic() < deadline):
            svc.poll(0.2)
    finally:
        reports = svc.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return reports
