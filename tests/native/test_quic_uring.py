"""A real aioquic handshake and stream echo over loopback through the io_uring reactor
(aioquic's own asyncio client on one side, QuicEchoServer on the reactor on the other)."""

from __future__ import annotations

import asyncio

import pytest
from aioquic.asyncio import connect

from clutchcall.native import udpio
from clutchcall.native.quic_echo import (
    QuicEchoClient,
    QuicEchoServer,
    client_configuration,
    server_configuration,
)
from clutchcall.native.tlscert import make_certificate
from clutchcall.native.udpio import UringUdpIO, open_udp_io

CERT = make_certificate()


@pytest.mark.parametrize("kind", [
    pytest.param("uring", marks=pytest.mark.skipif(not udpio.URING_BUILT, reason="no uring")),
    "asyncio"])
def test_aioquic_client_handshake_and_echo(kind: str) -> None:
    async def main() -> None:
        io = open_udp_io(kind, "127.0.0.1", 0)
        assert io.kind == kind
        server = QuicEchoServer(io, server_configuration(*CERT))
        await server.start()
        host, port = io.local_address[:2]
        try:
            async with asyncio.timeout(20):
                async with connect(host, port, configuration=client_configuration()) as client:
                    for size in (5, 3000, 200_000):
                        payload = bytes(i % 251 for i in range(size))
                        reader, writer = await client.create_stream()
                        writer.write(payload)
                        writer.write_eof()
                        assert await reader.read() == payload
                    await client.ping()
            if isinstance(io, UringUdpIO):
                st = io.stats()
                assert st["rx_pkts"] == server.datagrams_in and st["tx_errors"] == 0
                assert st["tx_pkts"] > 100  # the 200 kB echo went out through io_uring
        finally:
            server.close()
        assert server.handshakes == 1 and server.dropped == 0

    asyncio.run(main())


@pytest.mark.skipif(not udpio.URING_BUILT, reason="no uring")
def test_many_clients_and_migration_through_uring() -> None:
    async def main() -> None:
        io = open_udp_io("uring", "127.0.0.1", 0)
        server = QuicEchoServer(io, server_configuration(*CERT))
        await server.start()
        clients = [QuicEchoClient(io.local_address) for _ in range(8)]
        try:
            for c in clients:
                c.connect()
            async with asyncio.timeout(20):
                await asyncio.gather(*(c.handshake_done.wait() for c in clients))
                outs = await asyncio.gather(*(c.echo(b"call %d" % i) for i, c in enumerate(clients)))
                assert outs == [b"call %d" % i for i in range(8)]
                old = clients[0].local_address
                clients[0].rebind()
                assert clients[0].local_address != old
                assert await clients[0].echo(b"after rebind") == b"after rebind"
        finally:
            for c in clients:
                c.close()
            await asyncio.sleep(0.05)
            server.close()
        assert server.handshakes == 8 and len(server.connections) == 8
        conn0 = server.connections[0]
        assert len(server.peers[id(conn0)]) >= 2  # the migrated client showed up from 2 ports

    asyncio.run(main())
