"""ShardProcesses, the one shard-process manager: real forked processes on DCID-steered
sockets; ready / events / reports; a shard that fails or dies during start gives a typed error
naming it and the others are stopped; stop is bounded and kills stragglers; SIGTERM to a shard
and the parent's death stop shards gracefully; no process is left behind, not even a zombie."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clutchcall.engine.errors import ConfigError, LocalProtocolError
from clutchcall.native.shard import bind_shard_sockets
from clutchcall.native.shard_procs import ShardContext, ShardProcesses, ShardStartError

pytestmark = pytest.mark.timeout(60)


def _gone(pid: int) -> bool:
    """True if ``pid`` is neither running nor a zombie of ours."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    else:
        return False  # still our child (running or not yet reaped)
    return not os.path.exists(f"/proc/{pid}")


def _wait_until(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _udp_answer(ctx: ShardContext) -> dict[str, object]:
    """Answer every datagram with the shard index; report what the shard saw."""
    (sock,) = ctx.sockets
    sock.setblocking(True)
    sock.settimeout(0.05)
    ctx.ready({"pid": os.getpid()})
    answered = 0
    while not ctx.stop_requested():
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        sock.sendto(bytes([ctx.shard]) + data[:9], addr)
        ctx.event("answered", data[1])
        answered += 1
    return {"shard": ctx.shard, "answered": answered}


def test_shards_serve_steered_sockets_and_report() -> None:
    socks = bind_shard_sockets("127.0.0.1", 0, 3)
    addr = socks[0].getsockname()
    inodes = [os.fstat(s.fileno()).st_ino for s in socks]

    def target(ctx: ShardContext) -> dict[str, object]:
        rep = _udp_answer(ctx)
        rep["open"] = sorted(_socket_inodes() & set(inodes))
        return rep

    pool = ShardProcesses(3, target, [(s,) for s in socks])
    ready = pool.start(timeout=20)
    try:
        assert sorted(ready) == [0, 1, 2] and len({r["pid"] for r in ready.values()}) == 3
        cl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cl.bind(("127.0.0.1", 0))
        cl.settimeout(5)
        for first in range(12):
            pkt = b"\x40" + bytes([first]) + os.urandom(20)  # short header, DCID[0] = first
            cl.sendto(pkt, addr)
            reply = cl.recv(100)
            assert reply[0] == first % 3 and reply[1:] == pkt[:9]
        cl.close()
    finally:
        reports = pool.stop()
    assert pool.exitcodes == {0: 0, 1: 0, 2: 0} and pool.killed == [] and not pool.failures
    assert {k: r["answered"] for k, r in reports.items()} == {0: 4, 1: 4, 2: 4}
    for k, r in reports.items():  # each shard kept only its own socket open
        assert r["open"] == [inodes[k]], (k, r["open"])
    # events arrive in order with their shard
    assert sorted((k, first) for k, kind, first in pool.events if kind == "answered") == \
        sorted((f % 3, f) for f in range(12))
    assert all(s.fileno() == -1 for s in socks)  # the parent's copies are closed
    assert all(_gone(pid) for pid in pool.pids.values())
    assert not pool.running and pool.stop() == reports  # idempotent


def _socket_inodes() -> set[int]:
    """The inodes of every socket this process holds open."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def _serve_until_stopped(ctx: ShardContext) -> str:
    ctx.ready()
    ctx.wait_stop()
    return f"shard {ctx.shard} stopped"


def test_a_shard_that_dies_during_start_fails_fast_and_the_others_stop() -> None:
    def target(ctx: ShardContext) -> str:
        if ctx.shard == 1:
            time.sleep(0.2)
            os._exit(3)
        return _serve_until_stopped(ctx)

    pool = ShardProcesses(3, target)
    t0 = time.monotonic()
    with pytest.raises(ShardStartError, match="exit code 3") as err:
        pool.start(timeout=40)
    assert time.monotonic() - t0 < 20  # noticed from the process sentinel, not the deadline
    assert err.value.shard == 1 and isinstance(err.value, RuntimeError)
    assert not pool.running and pool.exitcodes[1] == 3
    # the healthy shards were stopped gracefully, not killed
    assert pool.reports == {0: "shard 0 stopped", 2: "shard 2 stopped"} and pool.killed == []
    assert all(_gone(pid) for pid in pool.pids.values())


def test_a_shard_that_raises_during_start_names_the_error() -> None:
    def target(ctx: ShardContext) -> str:
        if ctx.shard == 0:
            raise OSError("no such device: eth9")
        return _serve_until_stopped(ctx)

    sock = bind_shard_sockets("127.0.0.1", 0, 2)
    pool = ShardProcesses(2, target, [(s,) for s in sock])
    with pytest.raises(ShardStartError, match=r"shard 0 did not start: failed: OSError: no such device"):
        pool.start(timeout=20)
    assert pool.failures == {0: "OSError: no such device: eth9"} and pool.exitcodes[0] == 1
    assert all(s.fileno() == -1 for s in sock)
    assert all(_gone(pid) for pid in pool.pids.values())


def test_a_shard_never_ready_times_out() -> None:
    def target(ctx: ShardContext) -> None:
        if ctx.shard == 0:
            ctx.ready()
        ctx.wait_stop()

    pool = ShardProcesses(2, target)
    with pytest.raises(ShardStartError, match=r"shard 1 did not start: not ready within 0.5 s"):
        pool.start(timeout=0.5)
    assert pool.exitcodes == {0: 0, 1: 0}  # both obeyed the stop
    assert all(_gone(pid) for pid in pool.pids.values())


def test_stop_is_bounded_and_kills_stragglers() -> None:
    def target(ctx: ShardContext) -> str:
        ctx.ready()
        if ctx.shard == 1:  # a hung shard: ignores every stop request
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        ctx.wait_stop()
        return "shard 0 stopped"

    pool = ShardProcesses(2, target)
    pool.start(timeout=20)
    t0 = time.monotonic()
    reports = pool.stop(timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert reports == {0: "shard 0 stopped"}
    assert pool.killed == [1] and pool.exitcodes == {0: 0, 1: -signal.SIGKILL}
    assert all(_gone(pid) for pid in pool.pids.values())


def test_sigterm_stops_one_shard_gracefully_in_asyncio() -> None:
    def target(ctx: ShardContext) -> dict[str, object]:
        async def main() -> dict[str, object]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.ensure_future(tick())
            ctx.ready({"pid": os.getpid()})
            await ctx.wait_stop_async()
            task.cancel()
            return {"shard": ctx.shard, "loop_ran": ticks > 0}

        return asyncio.run(main())

    pool = ShardProcesses(2, target)
    ready = pool.start(timeout=20)
    try:
        time.sleep(0.2)  # let both loops run a little
        os.kill(ready[1]["pid"], signal.SIGTERM)
        assert _wait_until(lambda: (pool.poll(0.1), 1 in pool.reports)[1], 10)
        assert 0 not in pool.reports  # the other shard serves on
    finally:
        reports = pool.stop(timeout=10)
    assert reports == {0: {"shard": 0, "loop_ran": True}, 1: {"shard": 1, "loop_ran": True}}
    assert pool.exitcodes == {0: 0, 1: 0} and pool.killed == []


def test_events_never_block_a_shard_while_the_parent_does_not_read(tmp_path: Path) -> None:
    marker = tmp_path / "sent"

    def target(ctx: ShardContext) -> int:
        ctx.ready()
        for i in range(20000):  # ~2 MB: far more than the pipe holds
            ctx.event("n", (i, b"x" * 80))
        marker.write_text("done")
        ctx.wait_stop()
        return 20000

    pool = ShardProcesses(1, target)
    pool.start(timeout=20)
    try:
        assert _wait_until(marker.exists, 20)  # the parent read nothing meanwhile
    finally:
        reports = pool.stop(timeout=20)
    assert reports == {0: 20000}
    assert [body[0] for _, _, body in pool.events] == list(range(20000))


_ORPHAN_SCRIPT = r"""
import json, os, sys, time
from clutchcall.native.shard_procs import ShardProcesses

out = sys.argv[1]

def target(ctx):
    ctx.ready({"pid": os.getpid()})
    ctx.wait_stop()
    with open(f"{out}.{ctx.shard}", "w") as f:
        f.write("stopped")
    return None

pool = ShardProcesses(2, target)
ready = pool.start(timeout=20)
print(json.dumps([r["pid"] for r in ready.values()]), flush=True)
time.sleep(60)
"""


def _set_subreaper(on: bool) -> None:
    """Make this process adopt its orphaned descendants (so the test can reap them)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, int(on), 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def test_shards_stop_by_themselves_when_the_parent_dies(tmp_path: Path) -> None:
    out = str(tmp_path / "shard")
    _set_subreaper(True)  # the orphaned shards become our children: we can reap them
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, out], stdout=subprocess.PIPE,
                            text=True)
    pids: list[int] = []
    status: dict[int, int] = {}
    try:
        pids = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert len(pids) == 2
        proc.kill()  # SIGKILL: the parent cannot stop its shards
        proc.wait(10)

        def reaped() -> bool:
            for pid in pids:
                if pid not in status:
                    done, code = os.waitpid(pid, os.WNOHANG)
                    if done:
                        status[pid] = os.waitstatus_to_exitcode(code)
            return len(status) == len(pids)

        assert _wait_until(reaped, 15)
        assert list(status.values()) == [0, 0]  # each stopped gracefully and exited
        assert all(Path(f"{out}.{k}").read_text() == "stopped" for k in (0, 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pid in pids:  # bounded cleanup if the test failed
            if pid not in status:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        _set_subreaper(False)


def test_misuse_is_refused() -> None:
    with pytest.raises(ConfigError):
        ShardProcesses(0, _serve_until_stopped)
    with pytest.raises(ConfigError):
        ShardProcesses(2, _serve_until_stopped, [()])
    with ShardProcesses(1, _serve_until_stopped) as pool, pytest.raises(LocalProtocolError):
        pool.start()
    assert pool.reports == {0: "shard 0 stopped"}
