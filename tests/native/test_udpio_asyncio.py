"""The asyncio datagram I/O (native/udpio.py, the edge's default ``--io asyncio``): what the
socket holds when the loop looks is read in one go and handed over as one batch (at most
``READ_BURST``), in order; sending and closing still go through asyncio's transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from clutchcall.native.udpio import READ_BURST, AsyncioUdpIO, bind_udp


async def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_waiting_datagrams_arrive_as_one_batch_in_order_and_echo_back() -> None:
    async def main() -> None:
        io = AsyncioUdpIO(bind_udp("127.0.0.1", 0))
        cl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cl.bind(("127.0.0.1", 0))
        cl.settimeout(2.0)
        batches: list[list[tuple[bytes, tuple]]] = []
        try:
            await io.start(batches.append)
            n = READ_BURST + 10
            sent = [bytes([i]) * (1 + i) for i in range(n)]
            for p in sent:  # all queued in the socket before the loop looks again
                cl.sendto(p, io.local_address)
            await _wait_for(lambda: sum(map(len, batches)) >= n)
            got = [d for b in batches for d in b]
            assert [d for d, _ in got] == sent
            assert {a for _, a in got} == {cl.getsockname()}
            # one readiness event takes READ_BURST datagrams, the rest the next one
            assert [len(b) for b in batches] == [READ_BURST, n - READ_BURST]
            assert io.send_batch(got[:3]) == 3
            assert [cl.recvfrom(2048)[0] for _ in range(3)] == sent[:3]
        finally:
            io.close()
            cl.close()
        # closed: the reader is gone with the transport, nothing more is delivered
        await asyncio.sleep(0.05)
        assert io._transport is None

    asyncio.run(main())
