"""The QUIC-core adapter (prod.quic): both cores behind one surface, their differences handled,
and audio in MoQT OBJECT_DATAGRAMs where both ends negotiate QUIC DATAGRAM frames.

Real calls on loopback: each core against itself and against the other one (the adapter's
interop), a peer that does not offer DATAGRAMs (audio falls back to subgroup streams), and the
edge's packet counters."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.caller.client import Caller
from clutchcall.prod.caller.quic_transport import QuicCallerTransport
from clutchcall.prod.ingress.call import EchoHandler
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.quic import QuicIngress
from clutchcall.prod.ingress.tls import ensure_self_signed
from clutchcall.prod.moqt.wire import MOQT_ALPN
from clutchcall.prod.quic.core import (
    INITIAL_RTT_S,
    QUIC_CORE_ENV,
    QUIC_CORES,
    available_cores,
    check_quic_core,
    default_quic_core,
    get_core,
)

pytestmark = pytest.mark.timeout(90)


def _need(*names: str) -> None:
    missing = [n for n in names if n not in available_cores()]
    if missing:
        pytest.skip(f"QUIC core(s) not installed here: {missing}")


def test_unknown_core_is_a_config_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="quic core"):
        check_quic_core("quiche")
    with pytest.raises(ConfigError):
        IngressConfig(quic_core="quiche")
    monkeypatch.setenv(QUIC_CORE_ENV, "nope")
    with pytest.raises(ConfigError):
        default_quic_core()
    monkeypatch.setenv(QUIC_CORE_ENV, "aioquic")
    assert default_quic_core() == "aioquic" and IngressConfig().quic_core == "aioquic"


@pytest.mark.parametrize("name", QUIC_CORES)
def test_configurations_pem_only_and_same_initial_rtt(tmp_path, name) -> None:  # type: ignore[no-untyped-def]
    _need(name)
    core = get_core(name)
    cert, key = map(str, ensure_self_signed(tmp_path / "tls"))
    server = core.server_configuration(cert=cert, key=key, alpn=[MOQT_ALPN], idle_timeout_s=10)
    client = core.client_configuration(alpn=[MOQT_ALPN], server_name="localhost", cafile=cert)
    assert server.initial_rtt == client.initial_rtt == INITIAL_RTT_S  # qh3 2.x would say 0.333
    assert server.max_datagram_frame_size == client.max_datagram_frame_size == 65536
    # a DER certificate fails the same clear way on both cores
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = tmp_path / "cert.der"
    der.write_bytes(x509.load_pem_x509_certificate(Path(cert).read_bytes()).public_bytes(serialization.Encoding.DER))
    with pytest.raises(ConfigError, match="not PEM"):
        core.server_configuration(cert=str(der), key=key, alpn=[MOQT_ALPN], idle_timeout_s=10)
    with pytest.raises(ConfigError, match="not PEM"):
        core.client_configuration(alpn=[MOQT_ALPN], server_name="localhost", cafile=str(der))
    with pytest.raises(ConfigError):
        core.server_configuration(cert=str(tmp_path / "missing.pem"), key=key, alpn=[MOQT_ALPN], idle_timeout_s=10)


async def _call(tmp_path, edge_core: str, caller_core: str, *, frames: int = 40,  # type: ignore[no-untyped-def]
                offer_datagrams: bool = True) -> tuple[QuicIngress, QuicCallerTransport, object]:
    edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), quic_core=edge_core, jitter_depth_ms=0),
                       EchoHandler())
    port = await edge.start()
    tr = QuicCallerTransport("127.0.0.1", port, token=edge.authority.issue("c", time.time() + 60), call_id="c",
                             codec="pcm16", rate=16000, cafile=edge.cert_path, quic_core=caller_core,
                             offer_datagrams=offer_datagrams, timeout_s=10)
    pcm = b"".join(bytes([k % 251 + 1, 0]) * 320 for k in range(frames))
    res = await Caller(tr, call_id="c", codec="pcm16", rate=16000, tail_s=0.5, keep_payloads=True).run(pcm)
    await edge.stop()
    return edge, tr, res


@pytest.mark.parametrize("edge_core,caller_core", [(a, b) for a in QUIC_CORES for b in QUIC_CORES])
def test_datagram_audio_both_ways_every_core_pair(tmp_path, edge_core, caller_core) -> None:  # type: ignore[no-untyped-def]
    _need(edge_core, caller_core)
    edge, tr, res = asyncio.run(asyncio.wait_for(_call(tmp_path, edge_core, caller_core), 60))
    n = 40
    assert res.frames_sent == n  # type: ignore[attr-defined]
    assert tr.proto.audio_transport() == "datagram" and tr.proto.datagram_frames_sent == n
    assert edge.stats["audio_transport_datagram"] == 1 and edge.stats["uplink_datagrams"] == n
    # echo: on loopback nothing is lost, so every frame came back (as a datagram), in order
    assert edge.stats["agent_datagrams"] == n and edge.stats["agent_stream_frames"] == 0
    assert res.received_payloads == [bytes([k % 251 + 1, 0]) * 320 for k in range(n)]  # type: ignore[attr-defined]
    pk = edge.packet_stats()
    assert pk["uplink_frames"] == n and pk["agent_frames"] == n
    # every caller frame is one datagram at least; ACKs and the handshake add a few more
    assert n <= pk["udp_rx_datagrams"] <= 3 * n and n <= pk["udp_tx_datagrams"] <= 3 * n
    assert get_core(edge_core).peer_address is not None


def test_peer_without_datagrams_gets_streams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A caller that does not advertise max_datagram_frame_size (aioquic with it unset): both
    directions fall back to one subgroup stream per frame, on either edge core."""
    _need("aioquic")
    for edge_core in available_cores():
        edge, tr, res = asyncio.run(asyncio.wait_for(
            _call(tmp_path / edge_core, edge_core, "aioquic", frames=20, offer_datagrams=False), 60))
        assert tr.proto.audio_transport() == "stream" and tr.proto.datagram_frames_sent == 0
        assert edge.stats["audio_transport_stream"] == 1 and edge.stats["agent_datagrams"] == 0
        assert edge.stats["agent_stream_frames"] == 20 and edge.stats["uplink_datagrams"] == 0
        assert len(res.received_payloads) == 20  # type: ignore[attr-defined]


def test_audio_transport_stream_forces_streams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    core = available_cores()[0] if available_cores() else pytest.skip("no QUIC core")

    async def main() -> tuple[QuicIngress, QuicCallerTransport]:
        edge = QuicIngress(IngressConfig(cert_dir=str(tmp_path / "tls"), quic_core=core, audio_transport="stream",
                                         jitter_depth_ms=0), EchoHandler())
        port = await edge.start()
        tr = QuicCallerTransport("127.0.0.1", port, token=edge.authority.issue("s", time.time() + 60), call_id="s",
                                 codec="pcm16", rate=16000, cafile=edge.cert_path, quic_core=core,
                                 audio_transport="stream")
        await Caller(tr, call_id="s", codec="pcm16", rate=16000, tail_s=0.3).run(bytes(640 * 10))
        await edge.stop()
        return edge, tr

    edge, tr = asyncio.run(asyncio.wait_for(main(), 60))
    assert tr.proto.audio_transport() == "stream" and edge.stats["audio_transport_stream"] == 1
    assert edge.stats["uplink_datagrams"] == 0 and edge.stats["agent_datagrams"] == 0
    with pytest.raises(ConfigError):
        IngressConfig(audio_transport="datagrams")
    with pytest.raises(ConfigError):
        QuicCallerTransport("127.0.0.1", 1, token="t", call_id="x", codec="pcm16", rate=16000, audio_transport="x")
