"""Shard processes: run N forked worker processes, one per shard, each on its own pre-bound
sockets, and manage their whole life from the parent (start, ready, events, stop, reports).

Theory of operation
-------------------
The parent binds every socket first (for QUIC: :func:`~clutchcall.native.shard.bind_shard_sockets`,
N SO_REUSEPORT sockets in shard order with the DCID-steering program attached) and hands them
to :class:`ShardProcesses`, one tuple of sockets per shard. :meth:`ShardProcesses.start` forks
one process per shard (``fork``, not ``spawn``: sockets, certificates and closures such as
handler factories pass without pickling). Shard k keeps only its own sockets open (it closes
its copies of the other shards' ones) and runs ``target(ctx)`` with a :class:`ShardContext`:
its index, the shard count, its sockets and its end of a duplex pipe to the parent.

Messages, child to parent: ``ready`` (an info dict, once the shard serves), any number of
``event`` messages (e.g. a call served), and at the end either ``report`` (what ``target``
returned) or ``failed`` (the exception it raised, as text). The child pickles a message at the
call site and writes it from a small sender thread, so sending never blocks a shard's event
loop, even while the parent is not reading; the thread is flushed before the process exits.
Parent to child there is one message, ``stop``.

A shard is asked to stop when the parent sends ``stop``, when the parent dies (its end of the
pipe closes, so an orphaned shard stops by itself), or on SIGTERM. SIGINT is ignored in the
shards: Ctrl-C reaches the whole process group and the parent decides. ``target`` sees the
request with :meth:`ShardContext.stop_requested`, :meth:`ShardContext.wait_stop` (blocking) or
:meth:`ShardContext.wait_stop_async` (asyncio: no polling, the pipe and a SIGTERM self-pipe are
watched with ``add_reader``), then finishes its work and returns its report.

:meth:`ShardProcesses.start` returns once every shard said ``ready``. If a shard fails, exits or
misses the deadline first, every shard is stopped and :class:`ShardStartError` names the shard
and why; a dead shard is noticed at once (its process sentinel), not at the deadline.
:meth:`ShardProcesses.stop` asks every shard to stop, takes in messages until all exited or the
deadline passed, kills the stragglers (SIGKILL, listed in ``killed``), reaps every process (no
zombies), and closes the pipes and the parent's copies of the sockets. It is idempotent.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Self

from clutchcall.engine.errors import ClutchCallError, ConfigError, LocalProtocolError

ShardTarget = Callable[["ShardContext"], Any]
EventCallback = Callable[[int, str, Any], None]

_FLUSH_TIMEOUT_S = 5.0  # how long an exiting shard waits for its last messages to be written


class ShardStartError(ClutchCallError, RuntimeError):
    """A shard failed, exited or missed the deadline during :meth:`ShardProcesses.start`; every
    shard has been stopped. ``shard`` is its index, ``reason`` says what happened."""

    def __init__(self, shard: int, reason: str) -> None:
        super().__init__(f"shard {shard} did not start: {reason}")
        self.shard = shard
        self.reason = reason


class ShardContext:
    """The shard's side, given to ``target`` in the shard process: ``shard`` (its index),
    ``nshards``, ``sockets`` (its own, bound by the parent), and the calls that talk to the
    parent. Made by :class:`ShardProcesses`; not for use in the parent."""

    def __init__(self, shard: int, nshards: int, sockets: tuple[socket.socket, ...],
                 conn: mpc.Connection) -> None:
        self.shard = shard
        self.nshards = nshards
        self.sockets = sockets
        self._conn = conn
        self._stopping = False
        self._ready_sent = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name=f"shard{shard}-send",
                                        daemon=True)
        self._sender.start()

    # -- to the parent --------------------------------------------------------------------

    def ready(self, info: dict[str, Any] | None = None) -> None:
        """Tell the parent this shard serves, with ``info`` (picklable; what
        :meth:`ShardProcesses.start` returns for this shard). Raises LocalProtocolError if
        called twice, and what pickling raises for an unpicklable ``info``."""
        if self._ready_sent:
            raise LocalProtocolError(f"shard {self.shard}: ready() called twice")
        self._post("ready", info if info is not None else {})
        self._ready_sent = True

    def event(self, kind: str, body: Any = None) -> None:
        """Send the parent an event (``kind``, picklable ``body``); it reaches the
        parent's ``on_event`` callback (or ``ShardProcesses.events``) when the parent next reads.
        Never blocks. Raises what pickling raises."""
        self._post("event", (kind, body))

    def _post(self, tag: str, body: Any) -> None:
        self._outbox.put(pickle.dumps((tag, body), pickle.HIGHEST_PROTOCOL))

    def _send_loop(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                self._conn.send_bytes(data)
            except OSError:  # the parent is gone: nobody to tell
                return

    def _flush(self) -> None:
        self._outbox.put(None)
        self._sender.join(_FLUSH_TIMEOUT_S)

    # -- stop requests -----------------------------------------------------------------------

    def _on_sigterm(self, _signum: int, _frame: object) -> None:
        self._stopping = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # full (already woken) or closed
            pass

    def _stop_fds(self) -> list[int]:
        return [self._conn.fileno(), self._wake_r]

    def stop_requested(self) -> bool:
        """Return True once a stop was requested (parent's ``stop``, parent gone, SIGTERM)."""
        return self.wait_stop(0.0)

    def wait_stop(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or ``timeout`` seconds passed (None: no limit);
        return True if a stop was requested."""
        if not self._stopping:
            poller = select.poll()
            for fd in self._stop_fds():
                poller.register(fd, select.POLLIN)
            self._stopping = bool(poller.poll(None if timeout is None else timeout * 1000))
        return self._stopping

    async def wait_stop_async(self) -> None:
        """Return (in the running asyncio loop) once a stop is requested; the loop keeps
        serving meanwhile."""
        if self.stop_requested():
            return
        loop = asyncio.get_running_loop()
        requested = loop.create_future()

        def wake() -> None:
            if not requested.done():
                requested.set_result(None)

        fds = self._stop_fds()
        for fd in fds:
            loop.add_reader(fd, wake)
        try:
            await requested
        finally:
            for fd in fds:
                loop.remove_reader(fd)
        self._stopping = True


class ShardProcesses:
    """``nshards`` forked shard processes running ``target(ctx)`` (module docstring); a context
    manager (start on enter, stop on exit).

    ``sockets``: one sequence of bound sockets per shard (or None: no sockets); the pool owns
    them: shard k closes the others' copies, the parent closes its copies in :meth:`stop`.
    ``on_event(shard, kind, body)`` is called in the parent for each event a shard sends, from
    within :meth:`start`, :meth:`poll` and :meth:`stop`; without it, events are kept in
    ``events`` (a long-running server should pass ``on_event``). Raises ConfigError for a bad shard
    count or a socket list of the wrong length.

    In the parent after a run: ``ready`` (shard -> info), ``reports`` (shard -> report),
    ``failures`` (shard -> the error text), ``events`` ((shard, kind, body) in arrival order,
    when there is no ``on_event``),
    ``exitcodes`` (shard -> exit code, negative: killed by that signal), ``killed`` (shards
    killed because they did not stop in time), ``pids``.
    """

    def __init__(self, nshards: int, target: ShardTarget,
                 sockets: Sequence[Sequence[socket.socket]] | None = None, *,
                 on_event: EventCallback | None = None, name: str = "shard",
                 stop_timeout: float = 10.0) -> None:
        if nshards < 1:
            raise ConfigError(f"shard count must be >= 1, got {nshards}")
        if sockets is not None and len(sockets) != nshards:
            raise ConfigError(f"{len(sockets)} socket sets for {nshards} shards")
        self.nshards = nshards
        self._target = target
        self._sockets = [tuple(s) for s in sockets] if sockets is not None else [()] * nshards
        self._on_event = on_event
        self.name = name
        self.stop_timeout = stop_timeout
        self._procs: dict[int, Any] = {}  # shard -> multiprocessing.Process
        self._conns: dict[int, mpc.Connection] = {}  # shard -> the parent's open pipe end
        self._started = False
        self.ready: dict[int, Any] = {}
        self.reports: dict[int, Any] = {}
        self.failures: dict[int, str] = {}
        self.events: list[tuple[int, str, Any]] = []
        self.exitcodes: dict[int, int | None] = {}
        self.killed: list[int] = []
        self.pids: dict[int, int] = {}

    @property
    def running(self) -> bool:
        """Return True between a :meth:`start` and the :meth:`stop` that ends it."""
        return bool(self._procs)

    # -- the shard process -------------------------------------------------------------------

    def _shard_main(self, shard: int, conn: mpc.Connection) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C hits the group: the parent decides
        for k, socks in enumerate(self._sockets):
            if k != shard:
                for s in socks:
                    s.close()
        for other in self._conns.values():  # the parent's pipe ends, ours too: EOF = parent gone
            other.close()
        ctx = ShardContext(shard, self.nshards, self._sockets[shard], conn)
        signal.signal(signal.SIGTERM, ctx._on_sigterm)
        code = 0
        try:
            result = self._target(ctx)
            ctx._post("report", result)
        except BaseException as exc:  # noqa: BLE001 -- reported to the parent, then exit 1
            traceback.print_exc()
            ctx._post("failed", f"{type(exc).__name__}: {exc}")
            code = 1
        ctx._flush()
        sys.stdout.flush()
        sys.stderr.flush()
        if code:
            sys.exit(code)

    # -- the parent ----------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> dict[int, Any]:
        """Fork the shards and wait until every one said ready; return shard -> ready info.
        Raises ShardStartError (every shard stopped then) if a shard fails, exits or is not
        ready within ``timeout`` seconds; LocalProtocolError if called twice."""
        if self._started:
            raise LocalProtocolError("ShardProcesses.start() called twice")
        self._started = True
        ctx = mp.get_context("fork")
        try:
            for k in range(self.nshards):
                parent_end, child_end = ctx.Pipe(duplex=True)
                self._conns[k] = parent_end
                proc = ctx.Process(target=self._shard_main, args=(k, child_end),
                                   name=f"{self.name}{k}", daemon=True)
                try:
                    proc.start()
                finally:
                    child_end.close()
                self._procs[k] = proc
                assert proc.pid is not None  # started
                self.pids[k] = proc.pid
            deadline = time.monotonic() + timeout
            while len(self.ready) < self.nshards:
                failure = self._start_failure(deadline, timeout)
                if failure is not None:
                    raise ShardStartError(*failure)
                self._pump(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        return dict(self.ready)

    def _start_failure(self, deadline: float, timeout: float) -> tuple[int, str] | None:
        """Return (shard, reason) if start has failed, None while it may still succeed."""
        for k in range(self.nshards):
            if k in self.ready:
                continue
            if k not in self.failures and (k in self.reports or not self._procs[k].is_alive()):
                self._pump(0.0)  # its last messages may still be in the pipe
            if k in self.failures:
                return k, f"failed: {self.failures[k]}"
            if k in self.reports or not self._procs[k].is_alive():
                return k, f"exited before it was ready (exit code {self._procs[k].exitcode})"
        if time.monotonic() >= deadline:
            missing = [k for k in range(self.nshards) if k not in self.ready]
            return missing[0], f"not ready within {timeout:g} s (not ready: {missing})"
        return None

    def poll(self, timeout: float = 0.0) -> None:
        """Take in every message the shards sent so far, waiting up to ``timeout`` seconds for
        the first one (events go to ``events`` and ``on_event``)."""
        self._pump(timeout)

    def _pump(self, timeout: float) -> None:
        waitables: list[Any] = list(self._conns.values())
        waitables += [p.sentinel for p in self._procs.values() if p.exitcode is None]
        if waitables and timeout > 0:
            mpc.wait(waitables, timeout)
        for k, conn in list(self._conns.items()):
            try:
                while conn.poll(0):
                    self._take(k, conn.recv())
            except (EOFError, OSError):
                conn.close()
                del self._conns[k]

    def _take(self, shard: int, msg: tuple[str, Any]) -> None:
        tag, body = msg
        if tag == "ready":
            self.ready[shard] = body
        elif tag == "event":
            kind, payload = body
            if self._on_event is not None:
                self._on_event(shard, kind, payload)
            else:
                self.events.append((shard, kind, payload))
        elif tag == "report":
            self.reports[shard] = body
        elif tag == "failed":
            self.failures[shard] = body

    def stop(self, timeout: float | None = None) -> dict[int, Any]:
        """Ask every shard to stop; wait up to ``timeout`` seconds (default ``stop_timeout``)
        for them to report and exit, then kill the stragglers; reap every process, close the
        pipes and the parent's sockets. Return shard -> report (shards that reported).
        Idempotent; never raises for a shard that died or hung."""
        timeout = self.stop_timeout if timeout is None else timeout
        for conn in self._conns.values():
            try:
                conn.send("stop")
            except OSError:  # that shard is gone already
                pass
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self._procs.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._pump(left)
        for k, proc in self._procs.items():
            if proc.is_alive():
                proc.kill()
                self.killed.append(k)
        for k, proc in self._procs.items():
            proc.join(5.0)  # exited or SIGKILLed: prompt; reaps it
            self.exitcodes[k] = proc.exitcode
        self._pump(0.0)
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._procs.clear()
        for socks in self._sockets:
            for s in socks:
                s.close()
        return dict(self.reports)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
