"""The production edge behind AF_XDP (``clutchcall serve --io xdp --iface IF``).

End to end for real: two network namespaces joined by a veth pair (198.18.0.0/15, unique
names per run, removed also on failure); ``clutchcall serve --io xdp`` in the edge namespace
(our XDP program + an AF_XDP socket on the edge's veth end, SKB/copy mode), the real caller
(``clutchcall call --transport quic``) speaking a corpus WAV in the caller namespace; the call
completes with agent audio heard, and SIGTERM stops the edge cleanly. Also: the settings
``io=xdp`` needs are ConfigErrors, and an AF_XDP that cannot work gives exactly one log line
and an asyncio ingress that still serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.native import xdp
from clutchcall.prod.edge.config import EdgeConfig
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.dataplane import open_ingress_io

pytestmark = pytest.mark.timeout(60)

CORPUS_WAV = Path(__file__).resolve().parents[2] / "traces" / "corpus" / "call0081_clean16.wav"
# one 1.8 s turn (expect: reply) in 4.3 s of audio: the embedded model answers it
EDGE_IP, CALLER_IP = "198.18.9.1", "198.18.9.2"
QUIC_PORT = 4460


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kw, what", [
    ({"xdp_iface": None, "quic_port": 4460, "host": "198.18.9.1"}, "interface"),
    ({"xdp_iface": "veth0", "quic_port": 0, "host": "198.18.9.1"}, "fixed QUIC port"),
    ({"xdp_iface": "veth0", "quic_port": 4460, "host": "::1"}, "IPv4"),
    ({"xdp_iface": "veth0", "quic_port": 4460, "host": "0.0.0.0"}, "IPv4"),
    ({"xdp_iface": "veth0", "quic_port": 4460, "host": "localhost"}, "IPv4"),
])
def test_xdp_settings_are_config_errors(kw: dict[str, object], what: str) -> None:
    for cls in (IngressConfig, EdgeConfig):
        with pytest.raises(ConfigError, match=what):
            cls(io="xdp", **kw)  # type: ignore[arg-type]
    IngressConfig(io="xdp", xdp_iface="veth0", quic_port=4460, host="198.18.9.1")
    EdgeConfig(io="xdp", xdp_iface="veth0", quic_port=4460, host="198.18.9.1")


def test_xdp_on_a_pre_bound_socket_is_a_config_error() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ConfigError, match="pre-bound"):
            open_ingress_io("xdp", "127.0.0.1", 4460, sock=sock, iface="lo")
    finally:
        sock.close()


def test_serve_shards_with_xdp_is_refused() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "clutchcall.cli", "serve", "--io", "xdp", "--iface", "lo", "--host",
         "127.0.0.1", "--quic-port", "4460", "--shards", "2", "--seconds", "1"],
        capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2 and "--shards 1" in res.stderr, res.stderr


def test_unusable_af_xdp_logs_one_line_and_serves_on_asyncio(caplog: pytest.LogCaptureFixture) -> None:
    """No such interface: exactly one warning (on the ingress's logger) and a working asyncio
    socket on (host, port), never an exception."""
    port = _free_udp_port()
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[str, bytes]:
        io = open_ingress_io("xdp", "127.0.0.1", port, iface="nosuch-cc0")
        got: asyncio.Queue[bytes] = asyncio.Queue()
        await io.start(lambda batch: [got.put_nowait(d) for d, _a in batch])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.sendto(b"ping", ("127.0.0.1", port))
                data = await asyncio.wait_for(got.get(), 5)
            return io.kind, data
        finally:
            io.close()

    kind, data = asyncio.run(main())
    assert kind == "asyncio" and data == b"ping"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "clutchcall.ingress.io"
    assert "io=xdp on nosuch-cc0" in warnings[0].getMessage() and "asyncio" in warnings[0].getMessage()


@pytest.fixture
def netns_pair():  # type: ignore[no-untyped-def]
    """Two fresh namespaces joined by veth (unique names), deleted at the end, also on failure."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ethtool") is None:
        pytest.skip("AF_XDP edge test needs root, iproute2 and ethtool")
    if not xdp.XDP_BUILT:
        pytest.skip("AF_XDP path not built (clutchcall.native._xdp missing: libxdp/libbpf at build time)")
    from clutchcall.native.netns import VethPair

    with VethPair(tag=f"cx{uuid.uuid4().hex[:6]}", edge_ip=EDGE_IP, caller_ip=CALLER_IP) as pair:
        yield pair


def test_edge_call_through_af_xdp(netns_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pair = netns_pair
    assert CORPUS_WAV.is_file(), CORPUS_WAV
    xdp.compile_program()  # clang, cached: keep it out of the edge's start-up time
    # a non-loopback bind needs a configured auth key (no public default key)
    env = dict(os.environ, LIBXDP_SKIP_DISPATCHER="1", CLUTCHCALL_AUTH_KEY=uuid.uuid4().hex)
    edge = subprocess.Popen(
        ["ip", "netns", "exec", pair.ns_edge, sys.executable, "-m", "clutchcall.cli", "serve",
         "--io", "xdp", "--iface", pair.if_edge, "--host", EDGE_IP, "--quic-port", str(QUIC_PORT),
         "--ws-port", "0", "--metrics-port", "-1", "--ready-json", "--tokens", "1", "--no-trace",
         "--ttfa-ms", "100", "--cert-dir", str(tmp_path / "tls"), "--seconds", "50"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert edge.stdout is not None
        line = edge.stdout.readline()
        assert line, edge.stderr.read() if edge.stderr else "edge exited"
        ready = json.loads(line)
        assert ready["ready"] is True and ready["io"] == "xdp", ready
        assert ready["quic_port"] == QUIC_PORT
        (call_id, token), = ready["tokens"].items()
        call = subprocess.run(
            ["ip", "netns", "exec", pair.ns_caller, sys.executable, "-m", "clutchcall.cli", "call",
             "--edge", f"{EDGE_IP}:{QUIC_PORT}", "--transport", "quic", "--wav", str(CORPUS_WAV),
             "--json", "--token", token, "--call-id", call_id, "--cafile", ready["cert"],
             "--out", str(tmp_path / "heard.wav"), "--tail", "1.5"],
            capture_output=True, text=True, timeout=35, env=env, check=False)
        assert call.returncode == 0, call.stdout[-2000:] + call.stderr[-3000:]
        summary = json.loads(call.stdout)
        assert summary["transport"] == "quic" and summary["frames_sent"] > 100, summary
        assert summary["agent_frames_received"] > 0, summary
        assert any(t.get("mouth_to_ear_ms") is not None for t in summary["turns"]), summary
        edge.send_signal(signal.SIGTERM)
        rest, err = edge.communicate(timeout=20)
        assert edge.returncode == 0, err[-3000:]
        stopped = json.loads(rest.strip().splitlines()[-1])
        assert stopped["stopped"] is True and stopped["quic"].get("calls_started") == 1, stopped
        # the call's datagrams went through the AF_XDP socket both ways (the caller sent 200+
        # audio frames, the edge 100+ agent frames), and every reply found its neighbour
        io = stopped["quic_io"]
        assert io["rx_frames"] > 200 and io["tx_frames"] > 100, io
        assert io["dropped_no_neighbour"] == 0 and io["dropped_malformed"] == 0, io
        # the fast path really served: no fallback line from the ingress
        assert "io=xdp on" not in err, err[-2000:]
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait(5)
