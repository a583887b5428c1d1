"""The Dask executor with the real engine: results byte-identical to the serial run.

Two real clusters on loopback: a ``distributed.LocalCluster`` of two worker processes (and the
embedded default the CLI starts itself), and a separately started ``dask scheduler`` plus two
``dask worker`` processes (random free ports, found through a scheduler file; stopped at the end,
also on failure). Each sweep / eval on them must equal the serial run for the same seed: the
summary rows, and every per-point Parquet file byte for byte. A call whose simulation raises is
reported by name while the rest finishes; a worker killed mid-sweep has its tasks rerun.
Sub-grids and calls are small so the whole file stays well under a minute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from clutchcall.cli import main
from clutchcall.sim.calls import synthetic_call
from clutchcall.sim.config import NetConfig, SimConfig
from clutchcall.sim.executor import (
    WORKER_PRELOAD,
    ExecutorSession,
    ExecutorSpec,
    Point,
    WriteTo,
    local_cluster,
    read_point,
    run_grid,
    shares_this_machine,
    simulate_chunk,
)
from clutchcall.sim.metrics import summarize
from clutchcall.sim.runner import grid_points, point_row, sweep_grid

distributed = pytest.importorskip("distributed")

GRID = {"response_min_speech_ms": [200, 600], "barge_confirm_ms": [0, 300]}
BASE = SimConfig(net=NetConfig.symmetric(loss=0.02, jitter_ms=2), seed=5)


def _calls() -> list:
    return [synthetic_call(s, 30) for s in (1, 2, 3)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".parquet", ".csv", ".json")}


@pytest.fixture(scope="module")
def local_client() -> Iterator[object]:
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, dict[str, bytes]]:
    out = tmp_path_factory.mktemp("serial")
    df, failures = sweep_grid(_calls(), BASE, GRID, executor=ExecutorSpec(workers=1),
                              out_dir=str(out), progress=False)
    assert failures == []
    return df, _files(out)


@pytest.mark.parametrize("chunk", [None, 1])
def test_local_cluster_sweep_is_byte_identical_to_serial(
        tmp_path: Path, local_client: object, serial: tuple[pl.DataFrame, dict[str, bytes]],
        chunk: int | None) -> None:
    """Per point (chunk None) and per (call, config) (chunk 1) on two workers."""
    df, failures = sweep_grid(_calls(), BASE, GRID, executor=ExecutorSpec(kind="dask", chunk=chunk),
                              out_dir=str(tmp_path), progress=False, client=local_client)
    assert failures == []
    assert df.equals(serial[0]) and df.height == 4
    files = _files(tmp_path)
    assert len(files) == 3 * 4
    assert files == serial[1]
    # the partitions read back as columns, one per swept knob
    turns = pl.scan_parquet(str(tmp_path / "turns" / "**" / "*.parquet"),
                            hive_partitioning=True).collect()
    assert {"response_min_speech_ms", "barge_confirm_ms"} <= set(turns.columns)
    assert turns.height > 0


def test_failing_call_is_reported_by_name_and_the_rest_finishes(
        local_client: object, serial: tuple[pl.DataFrame, dict[str, bytes]]) -> None:
    # a real error inside the simulation: 25 ms caller frames, which the engine cannot take
    broken = dataclasses.replace(synthetic_call(9, 20), name="broken-call", frame_ms=25)
    calls = _calls()
    calls.insert(1, broken)
    df, failures = sweep_grid(calls, BASE, GRID, executor=ExecutorSpec(kind="dask", chunk=2),
                              progress=False, client=local_client)
    assert [f.call for f in failures] == ["broken-call"] * 4
    assert {f.point for f in failures} == {0, 1, 2, 3}
    assert all(f.error.startswith("InvalidInput: ") and "10, 20 or 30" in f.error
               for f in failures)
    assert df.equals(serial[0])  # the other calls' results are complete and unchanged


@pytest.mark.parametrize("spec", [ExecutorSpec(kind="dask", chunk=3),
                                  ExecutorSpec(kind="local", workers=2, chunk=3)],
                         ids=["localcluster", "pool"])
def test_whole_point_tasks_write_their_point_themselves(
        tmp_path: Path, local_client: object, serial: tuple[pl.DataFrame, dict[str, bytes]],
        spec: ExecutorSpec) -> None:
    """One task per point on workers that share this file system (LocalCluster, spawn pool):
    the worker writes the point and sends back only its summary -- the same bytes and rows,
    also with a call that raises (left out, reported by name)."""
    assert shares_this_machine(local_client)
    broken = dataclasses.replace(synthetic_call(9, 20), name="broken-call", frame_ms=25)
    calls = _calls()
    calls.insert(1, broken)
    spec = dataclasses.replace(spec, chunk=len(calls))
    df, failures = sweep_grid(calls, BASE, GRID, executor=spec, out_dir=str(tmp_path),
                              progress=False, client=local_client if spec.kind == "dask" else None)
    assert [f.call for f in failures] == ["broken-call"] * 4
    assert df.equals(serial[0])
    assert _files(tmp_path) == serial[1]


def test_a_task_given_a_place_writes_and_returns_only_the_summary(tmp_path: Path) -> None:
    labels = {"preset": "x"}
    res = simulate_chunk(_calls(), 0, 0, 3, BASE, WriteTo(str(tmp_path), labels))
    assert res.tables == {} and res.failures == ()
    assert res.summary == summarize(read_point(tmp_path, labels))
    assert res.summary["calls"] == 3


def test_embedded_local_cluster_eval_equals_serial(capsys: pytest.CaptureFixture[str]) -> None:
    """``eval --executor dask`` without an address starts its own LocalCluster."""
    argv = ["eval", "--synthetic", "2", "--synthetic-seconds", "10", "--json", "--seed", "4"]
    assert main(argv) == 0
    want = json.loads(capsys.readouterr().out)
    assert main([*argv, "--executor", "dask", "--workers", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == want


def _children() -> set[int]:
    """This process's descendants, but for multiprocessing's fork server and its resource
    tracker: they are started once per process (by the first embedded LocalCluster, see
    worker_start_method), outlive the clusters and exit with this process (checked on the
    command itself: test_command_leaves_no_process_behind)."""
    psutil = pytest.importorskip("psutil")
    kids = set()
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            # (the workers forked by the server share its command line, not its parent)
            cmd = " ".join(p.cmdline())
            if p.ppid() == os.getpid() and ("multiprocessing.forkserver" in cmd
                                            or "multiprocessing.resource_tracker" in cmd):
                continue
        kids.add(p.pid)
    return kids


def test_embedded_cluster_sweep_leaves_no_process_behind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI starts its LocalCluster while the calls load and closes it while the outputs
    are written; when the command returns, every worker process is gone and the outputs are
    the serial run's."""
    before = _children()
    sweep = ["sim", "sweep", "--synthetic", "2", "--synthetic-seconds", "10", "--seed", "3",
             "--response-min-speech-ms", "200,600", "--no-progress"]
    assert main([*sweep, "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert main([*sweep, "--out", str(tmp_path / "b"), "--executor", "dask", "--workers", "2"]) == 0
    assert _children() <= before
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert "raised" not in capsys.readouterr().err


def test_command_leaves_no_process_behind(tmp_path: Path) -> None:
    """``sim sweep --executor dask`` run as its own process: once it has exited, no process
    it started (workers, the fork server) is still alive a few seconds later."""
    psutil = pytest.importorskip("psutil")
    mark = f"CLUTCHCALL_TEST_MARK={os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    cmd = [sys.executable, "-m", "clutchcall", "sim", "sweep", "--synthetic", "2",
           "--synthetic-seconds", "10", "--seed", "3", "--response-min-speech-ms", "200,600",
           "--no-progress", "--executor", "dask", "--workers", "2", "--out", str(tmp_path)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)

    def marked() -> list[int]:
        pids = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.environ().get(mark.split("=")[0]) == mark.split("=")[1]:
                    pids.append(p.pid)
        return pids

    deadline = time.monotonic() + 5
    while marked() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked() == []


def test_embedded_cluster_workers_come_from_the_fork_server() -> None:
    """Where the platform has a fork server, the LocalCluster's workers are forked from it
    (they start with WORKER_PRELOAD already imported) and heartbeat every WORKER_HEARTBEAT_S."""
    from clutchcall.sim.executor import WORKER_HEARTBEAT_S, worker_start_method

    method = worker_start_method()
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        started = client.run(lambda: __import__("multiprocessing").get_start_method(True))
        deadline = time.monotonic() + 10  # the first reply of the scheduler sets the interval
        while time.monotonic() < deadline:
            beats = client.run(lambda dask_worker: dask_worker.periodic_callbacks[
                "heartbeat"].callback_time)
            if all(b == WORKER_HEARTBEAT_S * 1000 for b in beats.values()):
                break
            time.sleep(0.2)
    assert list(beats.values()) == [WORKER_HEARTBEAT_S * 1000] * 2
    if method == "forkserver":
        assert list(started.values()) == ["forkserver"] * 2


def test_session_starts_ahead_and_closes_behind() -> None:
    """An ExecutorSession's LocalCluster is up (its workers have imported WORKER_PRELOAD) by
    the time ``client`` returns; release() closes it without waiting; leaving the block waits
    for the close, so no worker is left."""
    before = _children()
    with ExecutorSession(ExecutorSpec(kind="dask", workers=2)) as session:
        client = session.client
        assert shares_this_machine(client)
        assert len(client.nthreads()) == 2
        loaded = client.run(lambda: all(m in __import__("sys").modules for m in WORKER_PRELOAD))
        assert list(loaded.values()) == [True, True]
        assert len(_children() - before) >= 2
        session.release()
    assert _children() <= before
    with ExecutorSession(ExecutorSpec(kind="local", workers=2)) as local:
        assert local.client is None


def test_session_start_error_is_raised_by_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from clutchcall.engine.errors import ConfigError
    from clutchcall.sim import executor

    monkeypatch.setattr(executor, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = ExecutorSpec(kind="dask", scheduler=f"tcp://127.0.0.1:{port}")
    with (ExecutorSession(spec) as session,
          pytest.raises(ConfigError, match="cannot reach the Dask scheduler")):
        _ = session.client


# ------------------------------------------------------------ separately started cluster
def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """``dask scheduler`` + two ``dask worker`` processes on loopback, random ports."""
    sched_file = tmp_path_factory.mktemp("dask") / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert procs[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
                 "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--death-timeout", "30"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout="20s") as c:
            c.wait_for_workers(2, timeout=60)
        yield address, procs
    finally:
        _stop(procs[::-1])


def test_separate_scheduler_and_workers_equal_serial(
        tmp_path: Path, dask_cluster: tuple[str, list[subprocess.Popen[bytes]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    address, _procs = dask_cluster
    with distributed.Client(address, timeout="20s") as c:  # other hosts, maybe: tables come back
        assert not shares_this_machine(c)
    sweep = ["sim", "sweep", "--synthetic", "3", "--synthetic-seconds", "30", "--seed", "5",
             "--loss", "0.02", "--response-min-speech-ms", "200,400,600", "--no-progress"]
    assert main([*sweep, "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert main([*sweep, "--out", str(tmp_path / "b"), "--executor", "dask",
                 "--dask-scheduler", address]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    # the per-point tables; sweep.parquet/.csv, the two fronts, recommended.json
    assert len(a) == 3 * 3 + 5
    assert a == b
    capsys.readouterr()
    ev = ["eval", "--synthetic", "2", "--synthetic-seconds", "20", "--json"]
    assert main(ev) == 0
    want = capsys.readouterr().out
    assert main([*ev, "--executor", "dask", "--dask-scheduler", address]) == 0
    assert capsys.readouterr().out == want


def test_every_executor_gives_the_same_bytes(
        tmp_path: Path, local_client: object,
        dask_cluster: tuple[str, list[subprocess.Popen[bytes]]],
        serial: tuple[pl.DataFrame, dict[str, bytes]]) -> None:
    """Same (config, calls, seed): the serial run, a two-process spawn pool, the two-worker
    LocalCluster and the separately started scheduler + workers write identical bytes (every
    per-point Parquet file) and identical summary rows; chunking differs on purpose."""
    address, _procs = dask_cluster
    specs = {"pool": (ExecutorSpec(kind="local", workers=2, chunk=2), None),
             "localcluster": (ExecutorSpec(kind="dask", chunk=1), local_client),
             "scheduler": (ExecutorSpec(kind="dask", scheduler=address), None)}
    for name, (spec, client) in specs.items():
        df, failures = sweep_grid(_calls(), BASE, GRID, executor=spec, out_dir=str(tmp_path / name),
                                  progress=False, client=client)
        assert failures == [], name
        assert df.equals(serial[0]), name
        assert df.write_ipc(None).getvalue() == serial[0].write_ipc(None).getvalue(), name
        assert _files(tmp_path / name) == serial[1], name


def test_unreachable_scheduler_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from clutchcall.sim import executor

    monkeypatch.setattr(executor, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["eval", "--synthetic", "1", "--executor", "dask", "--dask-scheduler",
               f"tcp://127.0.0.1:{port}"])
    assert rc == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_point_labels_partition_the_tables(tmp_path: Path) -> None:
    """Serial path: compare-style labels become ``preset=NAME`` partitions."""
    res = run_grid(_calls()[:1], [Point(cfg=BASE, labels={"preset": "x"})],
                   out_dir=str(tmp_path))
    assert (tmp_path / "turns" / "preset=x" / "part-0.parquet").exists()
    assert res.summaries[0]["calls"] == 1


# last in the file: it kills one of the module's two workers
def test_worker_killed_mid_sweep_has_its_tasks_rerun(
        dask_cluster: tuple[str, list[subprocess.Popen[bytes]]],
        serial: tuple[pl.DataFrame, dict[str, bytes]]) -> None:
    address, procs = dask_cluster
    points = grid_points(BASE, GRID)
    killed: list[int] = []

    def tick(_n: int) -> None:  # after the first finished task, kill one worker outright
        if not killed:
            procs[1].kill()
            killed.append(procs[1].pid)

    res = run_grid(_calls(), points, ExecutorSpec(kind="dask", scheduler=address, chunk=1),
                   progress=tick)
    assert killed and procs[1].wait(timeout=10) == -signal.SIGKILL
    assert res.failures == [], res.failures
    rows = [point_row(p.labels, s) for p, s in zip(points, res.summaries, strict=True)]
    assert pl.DataFrame(rows, infer_schema_length=None).equals(serial[0])
