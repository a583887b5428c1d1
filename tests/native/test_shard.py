"""Shard-per-core: the reuseport classic-BPF program steers datagrams by DCID to the socket
of the shard the CID encodes, also after the client changes its port; aioquic connections
made with ShardQuicConnection only ever issue CIDs of their shard; N forked shard processes
serve real QUIC calls on one port and keep each call on its shard across a client rebind."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.native.quic_echo import QuicEchoClient, client_configuration
from clutchcall.native.shard import (
    ShardQuicConnection,
    bind_shard_sockets,
    reuseport_cbpf,
    shard_cid,
    shard_of_datagram,
)
from clutchcall.native.shard_server import ShardedEchoService


def _which_socket(socks: list[socket.socket], timeout: float = 2.0) -> dict[bytes, int]:
    found: dict[bytes, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = False
        for i, s in enumerate(socks):
            try:
                data = s.recv(2048)
            except BlockingIOError:
                continue
            found[data] = i
            got = True
        if not got:
            if found:
                break
            time.sleep(0.01)
    return found


@pytest.mark.parametrize("nshards", [2, 3, 4])
def test_bpf_steers_by_dcid_across_client_ports(nshards: int) -> None:
    socks = bind_shard_sockets("127.0.0.1", 0, nshards)
    try:
        port = socks[0].getsockname()[1]
        assert all(s.getsockname()[1] == port for s in socks)
        packets = []
        for first in range(0, 256, 7):
            cid = bytes([first]) + os.urandom(7)
            packets.append(b"\x41" + cid + os.urandom(30))  # short header
            packets.append(b"\xc3\x00\x00\x00\x01\x08" + cid + b"\x08" + os.urandom(40))  # long
        for _rebind in range(3):  # three different client ports
            cl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            cl.bind(("127.0.0.1", 0))
            for p in packets:
                cl.sendto(p, ("127.0.0.1", port))
            found = _which_socket(socks)
            cl.close()
            assert len(found) == len(packets)
            for p in packets:
                assert found[p] == shard_of_datagram(p, nshards)
            # every shard got traffic (the first bytes cover every residue)
            assert set(found.values()) == set(range(nshards))
    finally:
        for s in socks:
            s.close()


def test_shard_cid_and_program_validation() -> None:
    for shard in range(5):
        for _ in range(50):
            cid = shard_cid(shard, 5, 8)
            assert len(cid) == 8 and cid[0] % 5 == shard and cid[0] < 255
    with pytest.raises(ConfigError):
        shard_cid(3, 3)
    with pytest.raises(ConfigError):
        reuseport_cbpf(0)
    assert shard_of_datagram(b"", 4) == 0 and shard_of_datagram(b"\x40\x07", 4) == 3


def test_shard_connection_issues_only_shard_cids() -> None:
    """Drive a real handshake between an aioquic client and a ShardQuicConnection in memory
    and check every CID the server ever issued (initial and NEW_CONNECTION_ID ones)."""
    from aioquic.quic.connection import QuicConnection

    from clutchcall.native.quic_echo import server_configuration
    from clutchcall.native.tlscert import make_certificate

    cert, key = make_certificate()
    client = QuicConnection(configuration=client_configuration())
    server = ShardQuicConnection(shard=2, nshards=3, configuration=server_configuration(cert, key),
                                 original_destination_connection_id=client._peer_cid.cid)
    now = 0.0
    client.connect(("1.2.3.4", 443), now=now)
    for _ in range(20):
        for data, _ in client.datagrams_to_send(now=now):
            server.receive_datagram(data, ("5.6.7.8", 1234), now=now)
        for data, _ in server.datagrams_to_send(now=now):
            client.receive_datagram(data, ("1.2.3.4", 443), now=now)
        now += 0.01
    assert client._handshake_complete
    cids = server.host_cids()
    assert len(cids) >= 2 and all(c[0] % 3 == 2 for c in cids)
    assert client._peer_cid.cid[0] % 3 == 2  # the client addresses the server by a shard CID


def _client_for_shard(addr: tuple, shard: int, nshards: int) -> QuicEchoClient:
    c = QuicEchoClient(addr)
    # pick the client's random initial DCID so its first datagram lands on `shard`
    cid = shard_cid(shard, nshards, len(c.conn._peer_cid.cid))
    c.conn._peer_cid.cid = cid
    c.conn._original_destination_connection_id = cid
    return c


@pytest.mark.parametrize("kind", ["uring", "asyncio"])
def test_forked_shards_serve_quic_and_keep_calls_after_rebind(kind: str) -> None:
    nshards = 2
    plan = [0, 1, 1, 0, 1, 0]  # the shard each client's first datagram is steered to

    async def calls(addr: tuple) -> None:
        clients = [_client_for_shard(addr, s, nshards) for s in plan]
        try:
            for c in clients:
                c.connect()
            async with asyncio.timeout(20):
                await asyncio.gather(*(c.handshake_done.wait() for c in clients))
                assert await asyncio.gather(*(c.echo(b"a%d" % i) for i, c in enumerate(clients))) \
                    == [b"a%d" % i for i in range(len(plan))]
                for c in clients:
                    c.rebind()  # new source port: the 5-tuple hash would pick any socket
                assert await asyncio.gather(*(c.echo(b"b%d" % i) for i, c in enumerate(clients))) \
                    == [b"b%d" % i for i in range(len(plan))]
        finally:
            for c in clients:
                c.close()
            await asyncio.sleep(0.05)

    with ShardedEchoService(nshards, "127.0.0.1", 0, kind=kind) as svc:
        assert svc.io_kinds == [kind] * nshards
        asyncio.run(calls(svc.address))
        reports = svc.stop()
    assert sorted(r["shard"] for r in reports) == [0, 1]
    assert len({r["pid"] for r in reports}) == nshards  # separate processes
    for r in reports:
        want = plan.count(r["shard"])
        assert r["handshakes"] == want and len(r["connections"]) == want
        for conn in r["connections"]:
            assert all(bytes.fromhex(c)[0] % nshards == r["shard"] for c in conn["host_cids"])
            assert len(conn["peers"]) >= 2  # the same call seen from two client ports
