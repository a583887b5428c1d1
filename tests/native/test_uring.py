"""io_uring UDP reactor over loopback: echo, batching, buffer exhaustion and re-arm, the
asyncio fallback with the same interface, and open_udp_io's fallback on kernel refusal."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from clutchcall.native import udpio
from clutchcall.native.udpio import AsyncioUdpIO, UringUdpIO, open_udp_io

pytestmark = pytest.mark.skipif(not udpio.URING_BUILT, reason="io_uring reactor not built")


def _client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def test_reactor_receives_and_sends_batches_without_asyncio() -> None:
    io = open_udp_io("uring", "127.0.0.1", 0)
    assert isinstance(io, UringUdpIO)
    try:
        # SINGLE_ISSUER (1<<12) | DEFER_TASKRUN (1<<13) are accepted on this kernel
        assert io.setup_flags & (3 << 12) == 3 << 12
        cl = _client()
        sent = [bytes([i]) * (1 + i * 7) for i in range(100)]
        for p in sent:
            cl.sendto(p, io.local_address)
        got: list[tuple[bytes, tuple]] = []
        deadline = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += io.recv_batch(wait=True)
        assert [d for d, _ in got] == sent
        assert {a for _, a in got} == {cl.getsockname()}
        assert io.send_batch(got) == 100
        echoes = [cl.recvfrom(2048) for _ in range(100)]
        assert [d for d, _ in echoes] == sent
        assert all(a == io.local_address for _, a in echoes)
        st = io.stats()
        assert st["rx_pkts"] == 100 and st["tx_errors"] == 0
        cl.close()
    finally:
        io.close()


def test_buffer_exhaustion_rearms_multishot_recv() -> None:
    """With 8 provided buffers, a burst of 200 datagrams runs the kernel out of buffers
    (-ENOBUFS ends the multishot recvmsg); the reactor re-arms and keeps receiving."""
    io = UringUdpIO(udpio.bind_udp("127.0.0.1", 0), nbufs=8, entries=16, max_batch=4)
    try:
        cl = _client()
        total = 0
        for _round in range(5):
            for i in range(40):
                cl.sendto(i.to_bytes(4, "little"), io.local_address)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                b = io.recv_batch()
                total += len(b)
                if not b:
                    time.sleep(0.001)
        st = io.stats()
        assert st["rearms"] >= 1 and st["rx_enobufs"] >= 1
        # still alive after re-arming: a new datagram arrives
        cl.sendto(b"after", io.local_address)
        got: list = []
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            got = io.recv_batch(wait=False) or (time.sleep(0.001) or [])
        assert got and got[-1][0] == b"after"
        assert total + len(got) == st["rx_pkts"] + 1 <= 201
        cl.close()
    finally:
        io.close()


@pytest.mark.parametrize("kind", ["uring", "asyncio"])
def test_same_interface_under_asyncio(kind: str) -> None:
    async def main() -> list[bytes]:
        io = open_udp_io(kind, "127.0.0.1", 0)
        assert io.kind == kind
        batches: list[int] = []

        def on_batch(batch: list) -> None:
            batches.append(len(batch))
            io.send_batch([(d.upper(), a) for d, a in batch])

        await io.start(on_batch)
        loop = asyncio.get_running_loop()
        cl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cl.bind(("127.0.0.1", 0))
        cl.setblocking(False)
        for i in range(50):
            cl.sendto(b"ping%d" % i, io.local_address)
        got = []
        for _ in range(50):
            data = await asyncio.wait_for(loop.sock_recv(cl, 2048), 5)
            got.append(data)
        assert sum(batches) == 50
        if kind == "uring":
            assert len(batches) < 50  # batched (asyncio's selector reads one per wake-up)
        cl.close()
        io.close()
        return got

    got = asyncio.run(main())
    assert sorted(got) == sorted(b"PING%d" % i for i in range(50))


def test_fallback_on_kernel_refusal(caplog: pytest.LogCaptureFixture) -> None:
    """More SQ entries than the kernel allows (IORING_MAX_ENTRIES) makes io_uring_setup fail
    with EINVAL: open_udp_io logs one line and hands back the asyncio I/O."""
    with caplog.at_level(logging.WARNING, logger="clutchcall.native"):
        io = open_udp_io("auto", "127.0.0.1", 0, entries=1 << 20)
    assert isinstance(io, AsyncioUdpIO)
    assert len([r for r in caplog.records if "io_uring unavailable" in r.message]) == 1
    io.close()
    with pytest.raises(ValueError):
        open_udp_io("bogus")


def test_ipv6_addresses_round_trip() -> None:
    io = open_udp_io("uring", "::1", 0)
    try:
        cl = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        cl.bind(("::1", 0))
        cl.settimeout(2)
        cl.sendto(b"v6", io.local_address)
        got = io.recv_batch(wait=True)
        assert got[0][0] == b"v6" and got[0][1][:2] == cl.getsockname()[:2]
        io.send_batch(got)
        assert cl.recvfrom(100)[0] == b"v6"
        cl.close()
    finally:
        io.close()


def test_gso_batches_arrive_as_separate_datagrams() -> None:
    """Equal-size datagrams to one peer leave as UDP GSO sends (one sendmsg each run, the
    kernel segments); the peer receives every datagram separately, intact and in order."""
    io = open_udp_io("uring", "127.0.0.1", 0)
    try:
        cl = _client()
        dst = cl.getsockname()
        out = [bytes([i]) * 1200 for i in range(100)] + [b"tail"]
        assert io.send_batch([(d, dst) for d in out]) == len(out)
        got = [cl.recvfrom(4096)[0] for _ in range(len(out))]
        assert got == out
        deadline = time.monotonic() + 2
        while io.stats()["tx_pkts"] < len(out) and time.monotonic() < deadline:
            io.recv_batch()  # reaps send completions
            time.sleep(0.001)
        st = io.stats()
        assert st["tx_pkts"] == len(out) and st["tx_errors"] == 0
        assert 1 <= st["tx_gso_sends"] <= 3  # 101 datagrams in runs of <= 64
        cl.close()
    finally:
        io.close()


def test_received_datagrams_are_published_into_the_ring_for_other_consumers() -> None:
    """The reactor publishes each completion into its mcache/dcache ring: a second consumer
    (a tap, e.g. a recorder thread) sees exactly the stream recv_batch delivers."""
    io = UringUdpIO(udpio.bind_udp("127.0.0.1", 0))
    try:
        tap = io.ring.consumer()
        cl = _client()
        for i in range(30):
            cl.sendto(b"dgram %d" % i, io.local_address)
        got: list = []
        deadline = time.monotonic() + 5
        while len(got) < 30 and time.monotonic() < deadline:
            got += io.recv_batch(wait=True)
        frags = tap.drain(100)
        assert [f.payload[udpio.ADDR_SZ:] for f in frags] == [d for d, _ in got]
        port = cl.getsockname()[1]
        assert all(int.from_bytes(f.payload[2:4], "big") == port for f in frags)
        assert tap.overruns == 0 and io.overruns == 0
        cl.close()
    finally:
        io.close()
