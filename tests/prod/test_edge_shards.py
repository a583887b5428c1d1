"""The edge shards (``serve --shards N``: a ShardedIngress running edge_shard) when a shard cannot start: start() raises a typed error
naming the shard and why, the healthy shard is stopped, no process is left and both shared
ports are free again. (Serving real calls on shards: test_edge_serve.py.)"""

from __future__ import annotations

import os
import socket

import pytest

from clutchcall.native.shard_procs import ShardStartError
from clutchcall.prod.edge.config import EdgeConfig
from clutchcall.prod.edge.shards import sharded_edge

pytestmark = pytest.mark.timeout(90)


def _taken_port_after_a_free_one() -> tuple[int, socket.socket]:
    """Return (p, s): TCP port p is free on loopback and s listens on p + 1."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1] - 1
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", p))
        except OSError:
            s.close()
            continue
        finally:
            probe.close()
        s.listen()
        return p, s
    pytest.skip("no free pair of adjacent ports")


def test_a_shard_that_cannot_start_stops_them_all_and_frees_the_ports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    metrics_port, blocker = _taken_port_after_a_free_one()  # shard 1's /metrics port is taken
    cfg = EdgeConfig(cert_dir=str(tmp_path / "tls"), metrics_port=metrics_port, trace_dir="",
                     io="asyncio")
    edge = sharded_edge(cfg, 2, ["c0"], 60.0)
    try:
        with pytest.raises(ShardStartError, match=r"shard 1 did not start: failed: OSError") as err:
            edge.start(timeout=60)
        assert err.value.shard == 1
        procs = edge.procs
        assert procs is not None and not procs.running and procs.killed == []
        assert 0 in procs.reports  # the healthy shard was stopped gracefully and reported
        assert all(not os.path.exists(f"/proc/{pid}") for pid in procs.pids.values())
        # every copy of the shared sockets is closed: the ports bind again without REUSEPORT
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        udp.bind(("127.0.0.1", edge.port))
        tcp.bind(("127.0.0.1", edge.ws_port))
        udp.close()
        tcp.close()
        assert edge.stop() == {0: procs.reports[0]}  # stop after a failed start: harmless
    finally:
        blocker.close()
        edge.stop()
