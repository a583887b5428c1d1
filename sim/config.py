"""The configuration of one simulated run: the caller leg (:class:`NetConfig`), the modelled
model (:class:`ModelConfig`) and the whole run (:class:`SimConfig`), each frozen and validated
at construction. The world that runs them is :mod:`clutchcall.sim.world`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from clutchcall.engine import TurnConfig
from clutchcall.engine.errors import ConfigError
from clutchcall.sim.link import LinkConfig

TRANSPORTS = ("quic", "tcp", "quic-exact")
AGENTS = ("reactive", "scripted")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    """The caller leg: transport and the link of each direction."""

    transport: str = "quic"
    """"quic" (fast model), "tcp" (TCP+TLS 1.3 model) or "quic-exact" (aioquic)."""
    uplink: LinkConfig = field(default_factory=LinkConfig)
    downlink: LinkConfig = field(default_factory=LinkConfig)
    late_frame_ms: float = 60.0
    """Edge jitter-buffer depth: a caller frame later than this past its nominal arrival
    (send + RTT/2) is skipped."""
    frame_bytes: int = 160
    """Audio payload per 20 ms frame (Opus at 64 kbit/s)."""
    zero_rtt: bool = False
    """QUIC resumption with 0-RTT (handshake costs nothing)."""
    playout_delay_ms: float = 0.0
    """Fixed jitter-buffer depth: no caller frame is fed before ``send + RTT/2 +
    playout_delay_ms`` (a playout schedule, as the production QUIC ingress's
    ``IngressConfig.jitter_depth_ms``); 0 = fed on arrival. The late deadline is at least it."""
    jitter_buffer: str = "adaptive"
    """"adaptive": fed on arrival (see :func:`~clutchcall.sim.feed.feed_schedule`); "playout": the production
    ingress's buffer itself (:class:`~clutchcall.engine.call.JitterBuffer`, run by
    :func:`~clutchcall.sim.feed.jitter_releases`: a schedule ``playout_delay_ms`` deep anchored on the first frame,
    re-anchored on a late frame, draining its lag in silence)."""
    media_clock: bool = False
    """The call core places each caller frame by its media time (send time + the smallest
    transit seen, laid end to end, never before the engine's clock) even when the frame is
    fed later (TCP head-of-line blocking), as the production pipeline does; False = by the
    time it is fed (its arrival at the core)."""
    quic_ack_every: int = 2
    """Fast QUIC model: the receiver ACKs every N-th ack-eliciting packet (RFC 9000: 2)."""
    quic_ack_delay_ms: float = 25.0
    """Fast QUIC model: ...or this long after the first unacknowledged one (RFC 9000: 25 ms;
    aioquic uses 1 ms with every packet)."""
    quic_datagrams: bool = False
    """Fast QUIC model: audio frames in QUIC DATAGRAMs (MoQT OBJECT_DATAGRAM, as the edge sends
    them when both ends negotiate DATAGRAM frames): a lost frame is never retransmitted (the
    jitter buffer conceals it); False = one reliable stream per frame."""

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"NetConfig.transport: one of {TRANSPORTS}, got {self.transport!r}")
        if self.late_frame_ms < 0 or not math.isfinite(self.late_frame_ms):
            raise ConfigError("NetConfig.late_frame_ms: must be a finite number >= 0")
        if self.frame_bytes < 1:
            raise ConfigError("NetConfig.frame_bytes: must be >= 1")
        if self.jitter_buffer not in ("adaptive", "playout"):
            raise ConfigError("NetConfig.jitter_buffer: 'adaptive' or 'playout', "
                              f"got {self.jitter_buffer!r}")
        if self.playout_delay_ms < 0 or not math.isfinite(self.playout_delay_ms):
            raise ConfigError("NetConfig.playout_delay_ms: must be a finite number >= 0")

    @classmethod
    def symmetric(cls, *, transport: str = "quic", rtt_ms: float = 50.0, loss: float = 0.0,
                  jitter_ms: float = 0.0, **link: Any) -> NetConfig:
        """Return a config with the same link parameters both ways."""
        extra = {k: link.pop(k) for k in ("late_frame_ms", "frame_bytes", "zero_rtt",
                                          "quic_ack_every", "quic_ack_delay_ms", "quic_datagrams",
                                          "playout_delay_ms", "media_clock", "jitter_buffer")
                 if k in link}
        lc = LinkConfig(rtt_ms=rtt_ms, loss=loss, jitter_ms=jitter_ms, **link)
        return cls(transport=transport, uplink=lc, downlink=lc, **extra)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The modelled speech-to-speech model."""

    ttfa_median_ms: float = 350.0
    """Median time to first audio after the final commit reaches the model."""
    ttfa_sigma: float = 0.35
    """Lognormal shape of the time to first audio (0 = always the median)."""
    prefill: bool = True
    """Continuous prefill; False adds ``no_prefill_ms_per_s`` per second of turn speech."""
    no_prefill_ms_per_s: float = 80.0
    reply_min_ms: int = 1200
    reply_max_ms: int = 3500
    cancel_delay_ms: float = 50.0
    """How long after a cancel reaches it the model stops and is ready again."""
    model_leg_ms: float = 5.0
    """One-way delay edge <-> model."""

    def __post_init__(self) -> None:
        for name in ("ttfa_median_ms", "ttfa_sigma", "no_prefill_ms_per_s", "cancel_delay_ms",
                     "model_leg_ms"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"ModelConfig.{name}: must be a finite number >= 0")
        if not 0 < self.reply_min_ms <= self.reply_max_ms:
            raise ConfigError("ModelConfig: need 0 < reply_min_ms <= reply_max_ms")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything one simulated run depends on (with the calls)."""

    turn: TurnConfig = field(default_factory=TurnConfig)
    net: NetConfig = field(default_factory=NetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 1
    agent: str = "reactive"
    """Which agent plays downlink (see "agent speech" in the module docstring):
    ``"reactive"`` -- the model's replies start at its own first audio after a commit (a
    missed reply leaves the agent silent): for latency prediction; ``"scripted"`` -- the agent
    plays the labelled ``agent_speech`` timeline whatever the engine decided, so every
    labelled segment is scored (``clutchcall eval``'s default)."""

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ConfigError(f"SimConfig.agent: one of {AGENTS}, got {self.agent!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the config as nested plain dicts."""
        return {"turn": self.turn.to_dict(), "net": asdict(self.net), "model": asdict(self.model),
                "seed": self.seed, "agent": self.agent}
