"""AF_XDP for real: two network namespaces joined by a veth pair (198.18.0.0/15), the QUIC
echo edge behind our XDP program + an AF_XDP socket (SKB/copy mode) in one, an aioquic caller
in the other; the call completes and the frames provably went through the XSK. ARP and ICMP
and other UDP ports
still reach the kernel (the program passes them). Namespaces are removed also on failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from clutchcall.native import xdp

pytestmark = [
    pytest.mark.skipif(not xdp.XDP_BUILT, reason="AF_XDP path not built"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root + ip"),
]

EDGE_IP, CALLER_IP, PORT = "198.18.7.1", "198.18.7.2", 4433

CLIENT = """
import asyncio, sys
from clutchcall.native.quic_echo import QuicEchoClient
async def main():
    c = QuicEchoClient((sys.argv[1], int(sys.argv[2])), bind_host=sys.argv[3])
    c.connect()
    async with asyncio.timeout(15):
        await c.handshake_done.wait()
        a = await c.echo(b"hello over af_xdp")
        b = await c.echo(bytes(range(256)) * 40)
    c.close()
    await asyncio.sleep(0.1)
    print("ECHO", a == b"hello over af_xdp", b == bytes(range(256)) * 40)
asyncio.run(main())
"""


PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 9))
s.send(b"x")
try:
    s.recv(10)
    print("ANSWERED")
except ConnectionRefusedError:
    print("REFUSED")
except TimeoutError:
    print("TIMEOUT")
"""


@pytest.fixture
def veth_pair():
    from clutchcall.native.netns import VethPair

    with VethPair(edge_ip=EDGE_IP, caller_ip=CALLER_IP) as pair:
        yield pair.ns_edge, pair.ns_caller, pair.if_edge


def test_quic_call_through_af_xdp(veth_pair: tuple[str, str, str]) -> None:
    ns_e, ns_c, if_e = veth_pair
    xdp.compile_program()  # clang, cached
    env = dict(os.environ, LIBXDP_SKIP_DISPATCHER="1")
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_e, sys.executable, "-m", "clutchcall.native.xdp", "serve",
         "--iface", if_e, "--ip", EDGE_IP, "--port", str(PORT), "--seconds", "40",
         "--handshakes", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.strip() == "READY", server.stderr.read() if server.stderr else line
        # UDP to another port is passed to the edge's kernel, which answers ICMP port
        # unreachable: the caller's connected socket sees ConnectionRefusedError
        probe = subprocess.run(
            ["ip", "netns", "exec", ns_c, sys.executable, "-c", PROBE, EDGE_IP],
            capture_output=True, text=True, timeout=20, check=False)
        assert "REFUSED" in probe.stdout, probe.stdout + probe.stderr
        client = subprocess.run(
            ["ip", "netns", "exec", ns_c, sys.executable, "-c", CLIENT, EDGE_IP, str(PORT),
             CALLER_IP], capture_output=True, text=True, timeout=40, env=env, check=False)
        assert "ECHO True True" in client.stdout, client.stdout + client.stderr
        out, _err = server.communicate(timeout=40)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["handshakes"] == 1
    # every datagram the server handled came through the AF_XDP socket, replies went out on it
    assert report["rx_frames"] >= report["datagrams_in"] > 5
    assert report["tx_frames"] >= report["datagrams_out"] - report["dropped_no_neighbour"] > 5


def test_bench_veth_echo_runs_every_kind() -> None:
    from clutchcall.native.cmd_bench_native import veth_run

    res = veth_run(total=2000, window=16, size=100)
    assert set(res) >= {"asyncio", "xdp"}
    for k, r in res.items():
        assert r["echoes"] >= 2000 and r["pps"] > 0, k
