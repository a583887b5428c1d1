"""Caller-leg configuration: one dataclass, documented defaults, validated at construction."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from clutchcall.engine.errors import ConfigError
from clutchcall.prod.ingress.ackdelay import ACK_DELAY_MS, check_ack_delay
from clutchcall.prod.ingress.auth import process_key
from clutchcall.prod.quic.core import check_quic_core, default_quic_core

NAMESPACE_ROOT = b"clutchcall"
TRACK_CALLER_AUDIO = b"caller-audio"
TRACK_AGENT_AUDIO = b"agent-audio"
TRACK_CONTROL = b"control"
# ClutchCall's own setup parameter (odd type: bytes) carrying "codec/rate/frame_ms",
# e.g. b"pcm16/16000/20". Unknown parameters are ignored by other MoQT peers.
PARAM_CODEC = 0x3C3B
AUDIO_TRANSPORTS = ("auto", "stream")
"""Audio transport choices: "auto" (DATAGRAMs where negotiated, else streams), "stream"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressConfig:
    """Settings of both ingresses.

    host: address both ingresses bind (loopback by default).
    quic_port / ws_port: UDP / TCP ports; 0 picks a free one.
    cert / key: PEM paths of a real certificate; None -> a self-signed one in ``cert_dir``.
    cert_dir: where the self-signed certificate is created on first run.
    auth_key: HMAC key for call tokens (>= 16 bytes; default: this process's random key, see
        clutchcall.prod.ingress.auth.resolve_auth_key; there is no fixed key in the source).
    frame_ms: caller frame duration (20 ms).
    jitter_depth_ms: uplink jitter buffer depth for QUIC (40 ms; WebSocket/TCP uses 0).
    max_object_bytes: largest MoQT object accepted (oversized -> PROTOCOL_VIOLATION).
    setup_timeout_s: a QUIC session must complete setup and its subscriptions in this time.
    max_calls: concurrent calls before new ones are refused.
    max_zero_rtt_bytes: 0-RTT bytes buffered (not acted on) until the handshake completes.
    idle_timeout_s: QUIC idle timeout.
    io: the QUIC ingress's datagram I/O: "uring" (the native io_uring reactor; an error if it
        cannot be used), "asyncio", or "auto" (default: uring where it works, else asyncio with
        one log line), or "xdp" (an AF_XDP socket on ``xdp_iface``; needs an IPv4 ``host``,
        the interface's address, and a fixed ``quic_port``; where AF_XDP cannot work, one log
        line and asyncio). See clutchcall.prod.ingress.dataplane.
    xdp_iface: the network interface of ``io="xdp"`` (required with it, unused otherwise).
    max_unauthenticated: connections per ingress that have not authenticated yet (TLS or QUIC
        handshake, setup) before new ones are refused at once (see ingress.admission).
    quic_retry_above: from this many pending QUIC handshakes on, a new caller must first
        answer a QUIC Retry (address validation); 0: always.
    ack_delay_ms: how long the edge waits before acknowledging callers' 1-RTT packets (20 ms:
        about one ACK per two audio frames instead of one per frame; see ingress.ackdelay).
    quic_core: the QUIC implementation, "aioquic" or "qh3" (2.x, native transport core);
        default: $CLUTCHCALL_QUIC_CORE, else the one ``bench edge`` chose
        (clutchcall.prod.quic.DEFAULT_QUIC_CORE).
    audio_transport: "auto" (default: agent audio as MoQT OBJECT_DATAGRAMs when the caller
        negotiated QUIC DATAGRAM frames, subgroup streams otherwise) or "stream" (always streams).
    """

    host: str = "127.0.0.1"
    quic_port: int = 0
    ws_port: int = 0
    cert: str | None = None
    key: str | None = None
    cert_dir: str = ".clutchcall/tls"
    auth_key: bytes = field(default_factory=process_key)
    frame_ms: int = 20
    jitter_depth_ms: int = 40
    max_object_bytes: int = 16384
    setup_timeout_s: float = 5.0
    max_calls: int = 1000
    max_zero_rtt_bytes: int = 65536
    idle_timeout_s: float = 30.0
    io: str = "auto"
    xdp_iface: str | None = None
    ack_delay_ms: float = ACK_DELAY_MS
    quic_core: str = field(default_factory=default_quic_core)
    audio_transport: str = "auto"
    max_unauthenticated: int = 256
    quic_retry_above: int = 32

    def __post_init__(self) -> None:
        check_quic_core(self.quic_core)
        if self.audio_transport not in AUDIO_TRANSPORTS:
            raise ConfigError(f"audio_transport must be auto or stream, got {self.audio_transport!r}")
        if self.frame_ms not in (10, 20, 30, 40, 60):
            raise ConfigError(f"frame_ms must be one of 10/20/30/40/60, got {self.frame_ms}")
        if not 0 <= self.jitter_depth_ms <= 1000:
            raise ConfigError("jitter_depth_ms must be within 0..1000")
        if len(self.auth_key) < 16:
            raise ConfigError("auth_key must be at least 16 bytes")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("cert and key go together")
        if self.max_object_bytes < 64 or self.setup_timeout_s <= 0 or self.max_calls < 1:
            raise ConfigError("max_object_bytes >= 64, setup_timeout_s > 0, max_calls >= 1")
        if self.io not in ("auto", "uring", "asyncio", "xdp"):
            raise ConfigError(f"io must be auto, uring, asyncio or xdp, got {self.io!r}")
        check_ack_delay(self.ack_delay_ms)
        if self.max_unauthenticated < 1 or self.quic_retry_above < 0:
            raise ConfigError("max_unauthenticated >= 1 and quic_retry_above >= 0")
        if self.io == "xdp":
            check_xdp_settings(self.host, self.quic_port, self.xdp_iface)


def check_xdp_settings(host: str, port: int, iface: str | None) -> None:
    """Check the settings ``io="xdp"`` needs: an interface, an IPv4 host address (the
    interface's own; the XDP program matches it) and a fixed port. Returns None; raises
    ConfigError naming what is wrong."""
    if not iface:
        raise ConfigError("io xdp needs an interface (xdp_iface / --iface)")
    if not port:
        raise ConfigError("io xdp needs a fixed QUIC port (quic_port / --quic-port > 0)")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"io xdp needs the interface's IPv4 address as host, got {host!r}") from None
    if addr.version != 4 or addr.is_unspecified:
        raise ConfigError(f"io xdp needs the interface's IPv4 address as host, got {host!r}")


def parse_codec_param(value: bytes) -> tuple[str, int, int]:
    """Parse b"codec/rate/frame_ms" -> (codec, rate, frame_ms); raises ValueError."""
    parts = value.decode("ascii").split("/")
    if len(parts) != 3:
        raise ValueError("codec parameter must be codec/rate/frame_ms")
    return parts[0], int(parts[1]), int(parts[2])


def codec_param(codec: str, rate: int, frame_ms: int) -> bytes:
    return f"{codec}/{rate}/{frame_ms}".encode("ascii")
