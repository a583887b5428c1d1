"""aioquic's own asyncio server API (QuicServer + a QuicConnectionProtocol subclass) running
over the io_uring reactor through the batch transport, with shard-encoding CIDs."""

from __future__ import annotations

import asyncio

import pytest
from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.quic import events

from clutchcall.native import udpio
from clutchcall.native.aio_bridge import serve_quic, use_shard_cids_in_aioquic_server
from clutchcall.native.quic_echo import client_configuration, server_configuration
from clutchcall.native.tlscert import make_certificate

CERT = make_certificate()


class EchoProtocol(QuicConnectionProtocol):
    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()


@pytest.mark.parametrize("kind", [
    pytest.param("uring", marks=pytest.mark.skipif(not udpio.URING_BUILT, reason="no uring")),
    "asyncio"])
def test_aioquic_server_api_over_native_io(kind: str) -> None:
    undo = use_shard_cids_in_aioquic_server(1, 3)

    async def main() -> None:
        io = udpio.open_udp_io(kind, "127.0.0.1", 0)
        server = await serve_quic(io, configuration=server_configuration(*CERT),
                                  create_protocol=EchoProtocol)
        host, port = io.local_address[:2]
        try:
            async with asyncio.timeout(20):
                async with connect(host, port, configuration=client_configuration()) as client:
                    for size in (10, 100_000):
                        reader, writer = await client.create_stream()
                        payload = bytes(i % 256 for i in range(size))
                        writer.write(payload)
                        writer.write_eof()
                        assert await reader.read() == payload
                    # the client addresses the server by a CID of shard 1, and every CID
                    # the server's connection issued encodes shard 1
                    assert client._quic._peer_cid.cid[0] % 3 == 1
                    protos = set(server._protocols.values())
                    assert len(protos) == 1
                    for proto in protos:
                        cids = [c.cid for c in proto._quic._host_cids]
                        assert len(cids) >= 2 and all(c[0] % 3 == 1 for c in cids)
        finally:
            server.close()

    try:
        asyncio.run(main())
    finally:
        undo()
