"""The QUIC ACK delay both legs set (prod.ingress.ackdelay), on real aioquic connections
(sans-IO, a simulated clock in 1 ms steps, zero-latency wire)."""

from __future__ import annotations

import ssl

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.ingress.ackdelay import ACK_DELAY_MS, check_ack_delay, set_ack_delay
from clutchcall.prod.ingress.config import IngressConfig
from clutchcall.prod.ingress.tls import ensure_self_signed

ADDR = ("127.0.0.1", 4433)


def _audio_flow(tmp_path, ack_delay_ms: float | None) -> tuple[int, int, QuicConnection]:
    """Handshake, then 50 one-frame uni streams from the client 20 ms apart (a caller's second
    of audio); return (ack-eliciting packets the client sent, datagrams the server sent back
    after the handshake, the client connection)."""
    cert, key = ensure_self_signed(str(tmp_path / "tls"))
    cs = QuicConfiguration(is_client=False, alpn_protocols=["x"])
    cs.load_cert_chain(str(cert), str(key))
    cc = QuicConfiguration(is_client=True, alpn_protocols=["x"], verify_mode=ssl.CERT_NONE)
    client = QuicConnection(configuration=cc)
    server = QuicConnection(configuration=cs,
                            original_destination_connection_id=client.original_destination_connection_id)
    if ack_delay_ms is not None:
        set_ack_delay(server, ack_delay_ms)
        set_ack_delay(client, ack_delay_ms)
    client.connect(ADDR, now=0.0)
    counted = {"server_out": 0, "client_out": 0}
    sent_frames = 0
    handshake_over = False

    def pump(now: float) -> None:
        for conn in (client, server):
            t = conn.get_timer()
            if t is not None and t <= now:
                conn.handle_timer(now)
        moved = True
        while moved:
            moved = False
            for src, dst, key in ((client, server, "client_out"), (server, client, "server_out")):
                for data, _addr in src.datagrams_to_send(now=now):
                    moved = True
                    if handshake_over:
                        counted[key] += 1
                    dst.receive_datagram(data, ADDR, now=now)

    for ms in range(100):  # handshake and its ACKs settle
        pump(ms / 1000)
    assert client._handshake_complete and server._handshake_complete
    handshake_over = True
    for ms in range(100, 1400):
        now = ms / 1000
        if ms < 1100 and ms % 20 == 0:
            sid = client.get_next_available_stream_id(is_unidirectional=True)
            client.send_stream_data(sid, b"\x01" * 160, end_stream=True)
            sent_frames += 1
        pump(now)
    assert sent_frames == 50
    return counted["client_out"], counted["server_out"], client


def test_ack_delay_halves_the_ack_packets_and_loses_nothing(tmp_path) -> None:
    c_default, s_default, cl_default = _audio_flow(tmp_path, None)
    c_20, s_20, cl_20 = _audio_flow(tmp_path, ACK_DELAY_MS)
    assert c_default >= 50 and c_20 >= 50  # every frame went out in its own packet
    # aioquic's 1 ms delay: about one ACK per frame; 20 ms: about one per two frames
    assert s_default >= 45, s_default
    assert s_20 <= 0.65 * s_default, (s_20, s_default)
    for cl in (cl_default, cl_20):  # every frame was acknowledged: nothing left in flight
        assert cl._loss.bytes_in_flight == 0


def test_ack_delay_is_validated() -> None:
    assert check_ack_delay(20) == 20
    for bad in (0, -1, 25, 40):
        with pytest.raises(ConfigError):
            check_ack_delay(bad)
    with pytest.raises(ConfigError):
        IngressConfig(ack_delay_ms=30)
    assert IngressConfig().ack_delay_ms == ACK_DELAY_MS


def test_set_ack_delay_needs_the_aioquic_attribute() -> None:
    with pytest.raises(RuntimeError):
        set_ack_delay(object(), 20)
