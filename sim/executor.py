"""Fan-out of simulations: (config point, chunk of calls) tasks on one core, a process pool
or a Dask cluster, with per-turn tables written as partitioned Parquet.

Theory of operation. A *point* is one :class:`~clutchcall.sim.config.SimConfig` plus the labels
that name it (the swept knob values, a preset name, or none). Every point runs over the same
list of calls, cut into *chunks* of consecutive calls; one *task* simulates and scores one
chunk under one point (:func:`simulate_chunk`) and returns its tables (turns, segments, calls
rows) and the calls whose simulation raised, by name. The client puts a point's chunks back in
call order, concatenates them, writes them (``OUT/turns/KEY=VALUE/.../part-0.parquet``, the
same for ``segments`` and ``calls``; Hive-style partitions that ``polars.scan_parquet(...,
hive_partitioning=True)`` reads back as columns) and computes the point's summary from what it
wrote, then drops the point's tables: the client holds only the points in flight, so its memory
does not grow with the grid. A task that covers a whole point on a worker sharing this
machine's file system (the spawn pool, the embedded LocalCluster) does that itself
(:class:`WriteTo`) and returns only the summary: no tables are pickled back, and the client
process -- which on Dask also hosts the scheduler -- leaves the CPU to the workers. Since each call's random streams derive from (seed, call name)
only, neither the chunking nor the executor nor the order tasks finish in changes a result:
every executor gives byte-identical tables and summaries.

Executors (:class:`ExecutorSpec`):

* ``local``: ``workers`` <= 1 runs the tasks in this process; more uses a ``multiprocessing``
  spawn pool whose workers receive the calls once, at start-up.
* ``dask``: a ``distributed`` cluster -- the one at ``scheduler`` (``tcp://HOST:PORT``), or
  without one a ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes on
  this machine (no dashboard, slowed housekeeping and no profiler: :data:`LOCAL_CLUSTER_CONFIG`;
  heartbeats every :data:`WORKER_HEARTBEAT_S`; the workers are forked from a fork server that
  has imported ``distributed`` and the simulator once, :func:`worker_start_method`). The commands
  open it through an :class:`ExecutorSession`, which starts it while they load their calls
  and closes it while they write their output. The calls are scattered once and broadcast
  to every worker (a worker that joins later fetches them once, from a peer), never sent
  per task. Tasks whose tables come back are kept to a bounded window in flight; whole-point
  tasks that write themselves (only a summary comes back) are submitted in one batch. A
  worker that dies has its tasks rerun elsewhere by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` deaths per task); a task that raises outside a
  call's simulation is retried once; a task that still fails marks its chunk's calls failed.

Granularity (:func:`chunk_calls`): one task per point when there are at least ``4 x workers``
points (a sweep: each task is seconds of work, far above the scheduler's per-task cost), else
each point's calls are cut so that there are about ``4 x workers`` tasks (eval, compare).
One task per (call, config) is ``chunk=1``; see sim/README.md for the measured cost.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from clutchcall.engine.errors import ClutchCallError, ConfigError
from clutchcall.sim.calls import Call
from clutchcall.sim.config import SimConfig
from clutchcall.sim.metrics import summarize, tables
from clutchcall.sim.world import simulate_call

EXECUTORS = ("local", "dask")
TABLES = ("turns", "segments", "calls")
CONNECT_TIMEOUT_S = 10.0
"""How long to try reaching a ``--dask-scheduler`` address before giving up."""
TASKS_PER_WORKER = 4
"""Auto granularity aims at this many tasks per worker (load balance vs per-task cost)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorSpec:
    """Where tasks run. ``kind``: ``local`` or ``dask``; ``workers``: processes (local pool or
    LocalCluster; None = all cores); ``scheduler``: a Dask scheduler address (dask only;
    None = start a LocalCluster); ``chunk``: calls per task (None = automatic)."""

    kind: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    chunk: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.chunk is not None and self.chunk < 1:
            raise ConfigError(f"chunk must be >= 1, got {self.chunk}")
        if self.scheduler is not None and self.kind != "dask":
            raise ConfigError("--dask-scheduler needs --executor dask")


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One configuration to run every call under; ``labels`` name it (ordered), and become
    its Parquet partition (``KEY=VALUE/...``)."""

    cfg: SimConfig
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailure:
    """A call whose simulation (or scoring) raised under point ``point``."""

    point: int
    labels: dict[str, Any]
    call: str
    error: str


class SimulationFailed(ClutchCallError):
    """Calls raised in their simulation; ``failures`` lists them (:class:`CallFailure`)."""

    def __init__(self, failures: Sequence[CallFailure]) -> None:
        self.failures = list(failures)
        names = ", ".join(sorted({f.call for f in self.failures}))
        super().__init__(f"{len(self.failures)} call simulation(s) raised: {names}; first: "
                         f"{self.failures[0].error if self.failures else '-'}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkResult:
    """What one task returns: the chunk's tables (or, when the task wrote a whole point
    itself, no tables and the point's ``summary``) and the calls that failed, by name."""

    point: int
    lo: int
    hi: int
    tables: dict[str, pl.DataFrame]
    failures: tuple[tuple[str, str], ...]
    summary: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WriteTo:
    """Where a task that covers a whole point writes it: ``out_dir`` and the point's
    ``labels`` (its partition). Only given to workers that share this machine's file system."""

    out_dir: str
    labels: dict[str, Any]


def write_point(out_dir: str | Path, labels: dict[str, Any], t: dict[str, pl.DataFrame]
                ) -> dict[str, pl.DataFrame]:
    """Write a point's tables under ``out_dir`` (one ``part-0.parquet`` per table, in its
    partition) and return them as read back from those files."""
    for name in TABLES:
        d = partition_dir(out_dir, name, labels)
        d.mkdir(parents=True, exist_ok=True)
        t[name].write_parquet(d / "part-0.parquet", compression="zstd", statistics=False)
    return read_point(out_dir, labels)


def simulate_chunk(calls: Sequence[Call], point: int, lo: int, hi: int,
                   cfg: SimConfig, write: WriteTo | None = None) -> ChunkResult:
    """Simulate and score ``calls[lo:hi]`` under ``cfg``; return a :class:`ChunkResult`.
    A call whose simulation raises is left out of the tables and listed in ``failures`` with
    its error; nothing is raised for it. With ``write`` (the chunk is a whole point), the
    tables are written there, the summary is computed from the files, and only the summary
    goes back (the same bytes and numbers the client would have produced)."""
    runs = []
    failures: list[tuple[str, str]] = []
    for call in calls[lo:hi]:
        try:
            runs.append(simulate_call(call, cfg))
        except Exception as exc:  # noqa: BLE001 - any error of one call is reported by name
            failures.append((call.name, f"{type(exc).__name__}: {exc}"))
    try:
        t = tables(runs, cfg)
    except Exception:  # noqa: BLE001 - scoring raised: find the call(s), keep the rest
        kept = []
        for run in runs:
            try:
                tables([run], cfg)
            except Exception as exc:  # noqa: BLE001
                failures.append((run.call.name, f"{type(exc).__name__}: {exc}"))
                continue
            kept.append(run)
        t = tables(kept, cfg)
    if write is not None:
        written = write_point(write.out_dir, write.labels,
                              {name: t[name].rechunk() for name in TABLES})
        return ChunkResult(point=point, lo=lo, hi=hi, tables={}, failures=tuple(failures),
                           summary=summarize(written))
    return ChunkResult(point=point, lo=lo, hi=hi, tables=t, failures=tuple(failures))


def chunk_calls(n_calls: int, n_points: int, workers: int, chunk: int | None = None) -> int:
    """Return the calls per task: ``chunk`` if given, else all calls of a point when there
    are at least ``TASKS_PER_WORKER x workers`` points, else a cut giving about that many
    tasks."""
    if n_calls <= 0:
        return 1
    if chunk is not None:
        return min(chunk, n_calls)
    want = TASKS_PER_WORKER * max(1, workers)
    if n_points >= want:
        return n_calls
    per_point = math.ceil(want / max(1, n_points))
    return max(1, math.ceil(n_calls / per_point))


def partition_dir(root: str | Path, table: str, labels: dict[str, Any]) -> Path:
    """Return ``ROOT/TABLE/K1=V1/K2=V2/...`` for a point's labels."""
    p = Path(root) / table
    for k, v in labels.items():
        p = p / f"{k}={v}"
    return p


def read_point(root: str | Path, labels: dict[str, Any]) -> dict[str, pl.DataFrame]:
    """Return the tables written for the point named by ``labels`` under ``root``."""
    return {name: pl.read_parquet(partition_dir(root, name, labels) / "part-0.parquet")
            for name in TABLES}


@dataclass
class GridResult:
    """Per point (in point order): its summary; plus every failed call. ``tables`` holds each
    point's tables only when asked for (``keep_tables``)."""

    summaries: list[dict[str, Any]]
    failures: list[CallFailure]
    tables: list[dict[str, pl.DataFrame]] | None = None


class _Assembler:
    """Collect chunk results; finish a point (write, summarize, drop) when all its chunks are
    in."""

    def __init__(self, points: Sequence[Point], n_calls: int, chunk: int, out_dir: str | None,
                 keep_tables: bool) -> None:
        self.points = points
        self.n_calls = n_calls
        self.bounds = [(lo, min(lo + chunk, n_calls)) for lo in range(0, n_calls, chunk)] or [(0, 0)]
        self.out_dir = out_dir
        self.pending: dict[int, dict[int, ChunkResult]] = {}
        self.summaries: list[dict[str, Any] | None] = [None] * len(points)
        self.kept: list[dict[str, pl.DataFrame]] | None = [{}] * len(points) if keep_tables else None
        self.failures: list[CallFailure] = []

    def tasks(self) -> Iterator[tuple[int, int, int]]:
        for p in range(len(self.points)):
            for lo, hi in self.bounds:
                yield p, lo, hi

    def write_to(self, p: int, shared_fs: bool) -> WriteTo | None:
        """Return where the task of point ``p`` writes it itself: when it covers the whole
        point, there is an output directory the worker can reach (``shared_fs``) and the
        tables are not wanted back here; else None (the tables come back to be written)."""
        if (not shared_fs or self.out_dir is None or self.kept is not None
                or len(self.bounds) != 1):
            return None
        return WriteTo(os.path.abspath(self.out_dir), self.points[p].labels)

    def add(self, res: ChunkResult) -> None:
        got = self.pending.setdefault(res.point, {})
        got[res.lo] = res
        if len(got) == len(self.bounds):
            del self.pending[res.point]
            self._finish(res.point, [got[lo] for lo, _hi in self.bounds])

    def _finish(self, p: int, chunks: list[ChunkResult]) -> None:
        labels = self.points[p].labels
        for c in chunks:
            self.failures += [CallFailure(point=p, labels=labels, call=name, error=err)
                              for name, err in c.failures]
        if len(chunks) == 1 and chunks[0].summary is not None:  # the worker wrote the point
            self.summaries[p] = chunks[0].summary
            return
        t = {name: pl.concat([c.tables[name] for c in chunks], how="vertical").rechunk()
             for name in TABLES}
        if self.out_dir is not None:
            # the summary is computed from what was written
            t = write_point(self.out_dir, labels, t)
        self.summaries[p] = summarize(t)
        if self.kept is not None:
            self.kept[p] = t

    def result(self) -> GridResult:
        assert not self.pending and all(s is not None for s in self.summaries)
        return GridResult(summaries=[s for s in self.summaries if s is not None],
                          failures=sorted(self.failures, key=lambda f: (f.point, f.call)),
                          tables=self.kept)


# ---------------------------------------------------------------- local (multiprocessing)
_CALLS: Sequence[Call] = ()


def _init(calls: Sequence[Call]) -> None:
    global _CALLS
    _CALLS = calls


def _pool_task(args: tuple[int, int, int, SimConfig, WriteTo | None]) -> ChunkResult:
    return simulate_chunk(_CALLS, *args)


def _run_local(calls: Sequence[Call], points: Sequence[Point], asm: _Assembler, workers: int,
               tick: Callable[[int], None]) -> None:
    if workers <= 1 or len(asm.points) * len(asm.bounds) <= 1:
        for p, lo, hi in asm.tasks():
            asm.add(simulate_chunk(calls, p, lo, hi, points[p].cfg))
            tick(hi - lo)
        return
    # the pool's workers share this machine's file system: a whole-point task writes itself
    tasks = [(p, lo, hi, points[p].cfg, asm.write_to(p, True)) for p, lo, hi in asm.tasks()]
    # spawn, not fork: polars (and numpy's BLAS) keep thread pools that a fork can leave
    # locked in the child
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(workers, len(tasks)), initializer=_init, initargs=(list(calls),)) as pool:
        for res in pool.imap_unordered(_pool_task, tasks):
            asm.add(res)
            tick(res.hi - res.lo)


# ---------------------------------------------------------------- dask
@contextlib.contextmanager
def dask_client(spec: ExecutorSpec) -> Iterator[Any]:
    """Yield a ``distributed.Client``: connected to ``spec.scheduler``, or to a LocalCluster
    of ``spec.workers`` single-threaded worker processes started here and closed on exit.
    Raises ConfigError when the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError(f"--executor dask needs the 'distributed' package: {exc}") from None
    if spec.scheduler is not None:
        try:
            client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler {spec.scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = spec.workers or os.cpu_count() or 1
    # results straight from the workers (one hop), not relayed by the scheduler, which runs in
    # this process: 187 small results cost 0.39-0.40 CPU-s here instead of 0.49-0.54 (measured)
    with local_cluster(n) as cluster, Client(cluster, direct_to_workers=True) as client:
        yield client


LOCAL_CLUSTER_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}
"""Housekeeping of the embedded LocalCluster, slowed down or off: the event-loop tick (20 ms by
default; it only feeds "event loop blocked" warnings), the system monitor (500 ms; dashboard
plots), the memory monitor (100 ms; 1 s still catches a runaway worker) and the workers'
statistical profiler (a stack sample of the running task every 10 ms, for the dashboard's
profile page). Measured on this box: an idle 2-worker cluster burns 0.078-0.084 CPU-s/s with
the defaults, 0.041 with the slower housekeeping, 0.015 with this (profiler off too); while a
~0.7 s task of 62 calls runs, the profiler costs 0.025-0.036 CPU-s (4 %; off: 0.003) -- CPU the
simulations share on a 2-core machine."""


WORKER_PRELOAD = ["clutchcall.sim.executor"]
"""Modules an embedded LocalCluster's workers import while they start (before they register):
the simulator and everything it imports (polars, numpy, the engine), which the calls' scatter
and the first task would otherwise import on the critical path (~0.3-0.9 s on this box)."""

FORKSERVER_PRELOAD = ["distributed", *WORKER_PRELOAD]
"""Modules the fork server imports once, before it forks the embedded LocalCluster's workers
(:func:`worker_start_method`). The server is a fresh interpreter that only imports these (it
never runs a polars or numpy operation, so no thread pool of theirs is forked half-used)."""

WORKER_HEARTBEAT_S = 5.0
"""Seconds between an embedded LocalCluster's worker heartbeats (:func:`slow_heartbeats`)."""


def worker_start_method() -> str:
    """Return how the embedded LocalCluster's nannies start their worker processes, and get it
    ready: ``forkserver`` where the platform has it, else ``spawn`` (``distributed``'s default).

    A spawned worker is a new interpreter that imports ``distributed`` and
    :data:`WORKER_PRELOAD` itself: ~0.55 CPU-s per worker on this box, during the command's
    own start (calls loading, scheduler starting) and ahead of its first task. The fork server
    imports :data:`FORKSERVER_PRELOAD` once and forks each worker from that: 0.04 CPU-s per
    worker, and a worker's exit skips the interpreter's teardown (the close: 0.02 s instead of
    0.15-0.33 s). It is started here, before the cluster, so that it has this preload (not
    ``distributed``'s own list, set when a nanny first starts a process) and the environment
    of the command (not the one a nanny sets before spawning). The server is this process's
    (shared by every later cluster here, and by any forkserver pool) and exits with it."""
    if "forkserver" not in mp.get_all_start_methods():
        return "spawn"
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(list(FORKSERVER_PRELOAD))
    forkserver.ensure_running()
    return "forkserver"


def slow_heartbeats(scheduler: Any, interval_s: float = WORKER_HEARTBEAT_S) -> None:
    """Have ``scheduler``'s workers heartbeat every ``interval_s`` seconds at most.

    ``distributed``'s scheduler tells each worker in its heartbeat reply when to send the next
    one, every 0.5 s for clusters of 10 workers or fewer (not configurable). Our LocalCluster's
    scheduler runs in the command's process; a heartbeat costs CPU there and in the worker
    (~0.01 CPU-s/s for two workers, measured) on the cores the simulations use. Nothing of a
    LocalCluster waits on them: a worker that dies is seen when its connection drops, and the
    scheduler drops a silent one only after ``distributed.scheduler.worker-ttl`` (5 minutes).
    The reply of this scheduler instance's handler is raised to ``interval_s``; a scheduler
    without that handler (another ``distributed`` version) is left as it is."""
    handlers = getattr(scheduler, "handlers", None)
    beat = handlers.get("heartbeat_worker") if isinstance(handlers, dict) else None
    if beat is None or handlers is None:
        return

    def slower(*args: Any, **kwargs: Any) -> Any:
        reply = beat(*args, **kwargs)
        if isinstance(reply, dict) and isinstance(reply.get("heartbeat-interval"), int | float):
            reply["heartbeat-interval"] = max(reply["heartbeat-interval"], interval_s)
        return reply

    handlers["heartbeat_worker"] = slower


def local_cluster(n_workers: int) -> Any:
    """Return a new ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker
    processes on loopback, without dashboard (its HTTP endpoint on a random loopback port),
    with :data:`LOCAL_CLUSTER_CONFIG` and :data:`WORKER_PRELOAD`, its workers started by
    :func:`worker_start_method` and heartbeating every :data:`WORKER_HEARTBEAT_S`."""
    import dask
    from distributed import LocalCluster

    config = {**LOCAL_CLUSTER_CONFIG,
              "distributed.worker.multiprocessing-method": worker_start_method()}
    with dask.config.set(config):  # the nannies pass it on to their workers
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                               silence_logs=logging.ERROR, preload=list(WORKER_PRELOAD))
    slow_heartbeats(cluster.scheduler)
    return cluster


class ExecutorSession:
    """The executor of one command, started ahead of need and closed behind its output.

    For ``--executor dask`` the client -- a new LocalCluster's, or the connection to
    ``--dask-scheduler`` -- is made in a background thread as soon as the session is, so the
    cluster starts (~1-2 s: the scheduler, worker processes importing ``distributed`` and
    :data:`WORKER_PRELOAD`) while the command loads its calls; :attr:`client` waits for it.
    :meth:`release` starts closing it in the background; leaving the ``with`` block does that
    and waits for the close, so no worker process outlives the command. (The commands do not
    release before writing their output: a close racing the heatmaps for the GIL let a worker's
    heartbeat hit the closed scheduler, which logged a traceback at exit in 2 of ~20 sweeps.) For ``local``, nothing is started and :attr:`client` is None. An
    error of the start (ConfigError: unreachable scheduler) is raised by :attr:`client`; one
    of the close by ``__exit__`` (unless the block raised)."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self._client: Any = None
        self._start_error: BaseException | None = None
        self._close_error: BaseException | None = None
        self._started = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        if spec.kind == "dask":
            # imported here, not in the thread: two threads of pure-Python work (this import,
            # the command loading its calls) share one GIL and slow each other down more than
            # running them one after the other (measured: the calls took 1.3-2.6 s instead of
            # 0.8-1.3 s); what the thread then does is mostly waiting for the workers to start
            with contextlib.suppress(ImportError):  # dask_client says it in the thread
                import distributed  # noqa: F401
            # one thread opens and closes the client: distributed keeps the current client
            # in a context variable, which must be reset in the context that set it
            self._thread = threading.Thread(target=self._own, daemon=True,
                                            name="clutchcall-dask-session")
            self._thread.start()

    def _own(self) -> None:
        try:
            with dask_client(self.spec) as client:
                self._client = client
                self._started.set()
                self._release.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asks
            if self._started.is_set():
                self._close_error = exc
            else:
                self._start_error = exc
        finally:
            self._started.set()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (None for ``local``), once started."""
        if self._thread is not None:
            self._started.wait()
        if self._start_error is not None:
            raise self._start_error
        return self._client

    def release(self) -> None:
        """Start closing the client and its cluster in the background."""
        self._release.set()

    def __enter__(self) -> ExecutorSession:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()
        if self._thread is not None:
            self._thread.join()
        if self._close_error is not None and exc_type is None:
            raise self._close_error


def shares_this_machine(client: Any) -> bool:
    """True when ``client``'s workers are a LocalCluster's, started by this process: they see
    this machine's file system, so a task can write its point under the output directory.
    Workers of a cluster given by address may be on other hosts: their tables come back."""
    from distributed import LocalCluster

    return isinstance(getattr(client, "cluster", None), LocalCluster)


LOST_RESUBMITS = 2
"""How often a chunk whose finished result was lost with its worker is submitted again before
its calls are reported as failed (``task lost``)."""


def _run_dask(client: Any, calls: Sequence[Call], points: Sequence[Point], asm: _Assembler,
              tick: Callable[[int], None]) -> None:
    shared_fs = shares_this_machine(client)
    from distributed import as_completed

    nthreads = sum(client.nthreads().values()) or 1
    n_tasks = len(points) * len(asm.bounds)
    # Tasks that write their point themselves return only a summary: submit them all at once
    # (one batch to the scheduler, which queues them and hands each worker the next as it
    # frees up) -- nothing piles up on the workers. Tasks whose tables come back are kept to
    # a window, so that the finished tables waiting to be fetched stay bounded.
    all_write = all(asm.write_to(p, shared_fs) is not None for p in range(len(points)))
    window = n_tasks if all_write else max(8, 4 * nthreads)
    # one object for all calls, sent to every worker once (hash=False: no token of the data)
    calls_f = client.scatter([list(calls)], broadcast=True, hash=False)[0]
    run_id = uuid.uuid4().hex[:12]
    tasks = asm.tasks()
    info: dict[str, tuple[int, int, int]] = {}
    lost: dict[tuple[int, int, int], int] = {}  # chunk -> times its result was lost

    def key_of(task: tuple[int, int, int], again: bool = False) -> str:
        p, lo, _hi = task
        key = f"clutchcall-sim-{run_id}-{p}-{lo}" + (f"-again{lost[task]}" if again else "")
        info[key] = task
        return key

    def submit(again: tuple[int, int, int] | None = None) -> Any | None:
        nxt = again or next(tasks, None)
        if nxt is None:
            return None
        p, lo, hi = nxt
        return client.submit(simulate_chunk, calls_f, p, lo, hi, points[p].cfg,
                             asm.write_to(p, shared_fs), key=key_of(nxt, bool(again)),
                             retries=1, pure=False)

    # the first window in one message (client.map: one graph update, not one per task)
    batch = [t for _, t in zip(range(window), tasks, strict=False)]
    first = client.map(simulate_chunk, [calls_f] * len(batch), *zip(*batch, strict=True),
                       [points[p].cfg for p, _lo, _hi in batch],
                       [asm.write_to(p, shared_fs) for p, _lo, _hi in batch],
                       key=[key_of(t) for t in batch], retries=1, pure=False) if batch else []
    # on this client's loop: as_completed defaults to the process's *default* client, which is
    # another one when several are open (a notebook's, a test's) -- its futures' events would
    # then be awaited on two loops
    ac = as_completed(first, loop=client.loop)
    for fut in ac:
        p, lo, hi = info.pop(fut.key)
        if fut.status == "lost" and lost.get((p, lo, hi), 0) < LOST_RESUBMITS:
            # it ran, but its result lived on a worker that died before we fetched it (Dask's
            # retries cover a death while running, not this): run the chunk again
            lost[(p, lo, hi)] = lost.get((p, lo, hi), 0) + 1
            fut.release()
            ac.add(submit(again=(p, lo, hi)))
            continue
        if fut.status == "finished":
            res = fut.result()
        else:  # the task itself failed (worker deaths beyond the limit, ...): its calls fail
            exc = fut.exception() if fut.status == "error" else None
            err = f"{type(exc).__name__}: {exc}" if exc is not None else f"task {fut.status}"
            empty = simulate_chunk([], p, 0, 0, points[p].cfg).tables
            res = ChunkResult(point=p, lo=lo, hi=hi, tables=empty,
                              failures=tuple((c.name, err) for c in calls[lo:hi]))
        fut.release()
        asm.add(res)
        tick(hi - lo)
        nf = submit()
        if nf is not None:
            ac.add(nf)
    client.cancel(calls_f)


# ---------------------------------------------------------------- entry point
def run_grid(calls: Sequence[Call], points: Sequence[Point], spec: ExecutorSpec | None = None, *,
             out_dir: str | None = None, keep_tables: bool = False,
             progress: Callable[[int], None] | None = None,
             client: Any = None) -> GridResult:
    """Run every call under every point on the executor ``spec`` (default: local, serial);
    return a :class:`GridResult` in point order. With ``out_dir``, each point's tables are
    written under it (``OUT_DIR/{turns,segments,calls}/K=V/.../part-0.parquet``; an existing
    tree there is replaced) and its summary is computed from those files. ``progress`` is
    called with the number of call simulations each finished task did. ``client``: an open
    ``distributed.Client`` to use instead of one made from ``spec``. Raises ConfigError for a
    bad spec or an unreachable scheduler; a call that raises is reported in ``failures``."""
    spec = spec or ExecutorSpec()
    tick = progress or (lambda _n: None)
    if out_dir is not None:
        for name in TABLES:
            shutil.rmtree(Path(out_dir) / name, ignore_errors=True)
    if spec.kind == "dask":
        with contextlib.ExitStack() as stack:
            if client is None:
                client = stack.enter_context(dask_client(spec))
            workers = sum(client.nthreads().values()) or 1
            chunk = chunk_calls(len(calls), len(points), workers, spec.chunk)
            asm = _Assembler(points, len(calls), chunk, out_dir, keep_tables)
            _run_dask(client, calls, points, asm, tick)
    else:
        workers = spec.workers or os.cpu_count() or 1
        chunk = chunk_calls(len(calls), len(points), workers, spec.chunk)
        asm = _Assembler(points, len(calls), chunk, out_dir, keep_tables)
        _run_local(calls, points, asm, workers, tick)
    return asm.result()
