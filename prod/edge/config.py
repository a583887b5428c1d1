"""Edge configuration: one dataclass, loaded from a TOML file and overridden by flags.

Theory of operation: :class:`EdgeConfig` holds every knob of a running edge (where it listens,
the model leg, traces, the caller idle timeout, the embedded model) plus the one
:class:`~clutchcall.engine.TurnConfig` section. :func:`load_config` reads a TOML file with
tables ``[edge]`` (the EdgeConfig fields), ``[turn]`` (TurnConfig fields), ``[pipeline]``
(PipelineConfig fields other than the caller codec, rate and frame length, which each call
negotiates) and ``[model]`` (embedded-model knobs); unknown keys are a ConfigError, so a typo
never passes silently. :meth:`EdgeConfig.with_overrides` applies command-line flags on top
(None means "not given"). Everything is validated at construction.

Example ``edge.toml``::

    [edge]
    host = "127.0.0.1"
    quic_port = 4443
    ws_port = 8443
    trace_dir = "traces/recorded"
    caller_idle_timeout_s = 10.0

    [turn]
    end_of_turn_silence_ms = 500
    response_min_speech_ms = 600

    [model]
    time_to_first_audio_ms = 300
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clutchcall.engine import TurnConfig
from clutchcall.engine.config import PRODUCT_TURN
from clutchcall.engine.errors import ConfigError
from clutchcall.prod.ingress.config import check_xdp_settings
from clutchcall.prod.quic.core import check_quic_core, default_quic_core

PIPELINE_KEYS = ("resample_quality", "late_after_ms", "underrun_finish_ms", "max_bad_frames",
                 "drain_timeout_s", "vad")
"""PipelineConfig fields an edge may set for all its calls (``[pipeline]`` table)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedModelConfig:
    """The embedded reference model's knobs (used when ``model_url`` is None)."""

    mode: str = "speak"
    """``speak`` (espeak-ng replies) or ``echo`` (the caller's turn played back)."""
    time_to_first_audio_ms: int = 300
    """The model's own time to first audio after ``response.create`` (the median)."""
    ttfa_sigma: float = 0.0
    """Lognormal shape of the time to first audio (0: always the median; ``serve`` and
    ``demo`` default to 0.35, the simulator's)."""
    ttfa_seed: int = 1
    """Seed of the time-to-first-audio draws."""
    delta_ms: int = 40
    """Audio per delta event."""
    replies: tuple[str, ...] | None = None
    """Reply texts (None: the reference model's built-in replies)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """Everything an :class:`~clutchcall.prod.edge.Edge` needs. Defaults run a loopback edge
    with the embedded model and no fixed ports."""

    host: str = "127.0.0.1"
    """Address both ingresses bind."""
    quic_port: int = 0
    """UDP port of the QUIC/MoQT ingress (0: a free one)."""
    ws_port: int = 0
    """TCP port of the WebSocket/TLS (Twilio Media Streams) ingress (0: a free one)."""
    web_port: int = -1
    """Port of the browser caller (:mod:`clutchcall.prod.web`): the page over HTTPS on this TCP
    port and the WebTransport/MoQT session (``/moq``) on the same UDP port (0: a free one;
    -1: off, the default for an embedded edge; ``clutchcall serve`` uses 4433)."""
    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus ``/metrics`` endpoint (loopback by default)."""
    metrics_port: int = 0
    """TCP port of ``/metrics`` (0: a free one; -1: no endpoint)."""
    cert: str | None = None
    """PEM certificate for both ingresses (None: self-signed, created in ``cert_dir``)."""
    key: str | None = None
    """PEM key matching ``cert``."""
    cert_dir: str = ".clutchcall/tls"
    """Where the self-signed certificate lives."""
    auth_key: str | None = None
    """HMAC key for call tokens (>= 16 bytes; None: env ``CLUTCHCALL_AUTH_KEY``, else on a
    loopback ``host`` a random per-process key; a non-loopback ``host`` without a key is
    refused at start, see clutchcall.prod.ingress.auth.resolve_auth_key)."""
    model_url: str | None = None
    """``ws://``/``wss://`` URL of an external Realtime-compatible model (None: start the
    embedded reference model on loopback). The API key comes from ``OPENAI_API_KEY``."""
    model_dialect: str = "ga"
    """Realtime protocol dialect of the external model: ``ga`` or ``beta``."""
    model_connect_timeout_s: float = 5.0
    """Model leg: TCP/TLS/WebSocket handshake time-out (the caller gets an ``error``)."""
    model_session_timeout_s: float = 3.0
    """Model leg: time-out for ``session.created`` after the handshake."""
    model_first_audio_timeout_s: float = 4.0
    """Model leg: a response's first audio must come this long after ``response.create``;
    else it is asked once more, then the caller gets an ``error`` (code ``model_timeout``)."""
    trace_dir: str | None = None
    """Directory for one recorded trace per call instance (``<call_id>.parquet``, then
    ``<call_id>.2.parquet``, ...: never overwritten); None or "" records none."""
    caller_idle_timeout_s: float = 10.0
    """A call whose caller sends nothing for this long is ended (model session closed, trace
    written)."""
    max_calls: int = 1000
    """Concurrent calls per ingress before new ones are refused."""
    jitter_depth_ms: int = 40
    """QUIC uplink jitter buffer depth."""
    quic_idle_timeout_s: float = 30.0
    """QUIC connection idle timeout."""
    io: str = "auto"
    """QUIC datagram I/O: ``uring`` (the io_uring reactor of clutchcall.native), ``asyncio``, or
    ``auto`` (default: io_uring where it works), or ``xdp`` (an AF_XDP socket on
    ``xdp_iface``; needs ``host`` = the interface's IPv4 address and a fixed ``quic_port``).
    Where the fast path cannot work, ``uring``, ``auto`` and ``xdp`` log one line and serve on
    asyncio."""
    xdp_iface: str | None = None
    """Network interface of ``io = "xdp"`` (required with it; one edge process only)."""
    quic_core: str = field(default_factory=default_quic_core)
    """QUIC implementation of the QUIC ingress: ``aioquic`` or ``qh3`` (2.x); default
    ``$CLUTCHCALL_QUIC_CORE``, else the core ``bench edge`` chose (prod/edge/README.md)."""
    audio_transport: str = "auto"
    """``auto``: audio in MoQT OBJECT_DATAGRAMs where the caller negotiated QUIC DATAGRAMs,
    subgroup streams otherwise; ``stream``: always subgroup streams."""
    call_loop: str = "batched"
    """``batched`` (default): one scheduler per edge process runs every call's core deadlines
    (:mod:`clutchcall.prod.call_scheduler`); ``per-call``: a loop timer per call."""
    call_loop_slack_ms: float = 0.0
    """Batched call loop: a pass runs this long after the earliest pending deadline, so the
    deadlines within it share one pass -- less CPU per frame, each deadline up to this much
    later (0..2 ms: a QUIC ACK left for ``ACK_COALESCE_MS`` = 23 ms must still leave within
    the 25 ms ``max_ack_delay``). 0 (default): every deadline on time."""
    json_logs: bool = True
    """Log one JSON object per line (with the call id) to stderr."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""
    turn: TurnConfig = PRODUCT_TURN
    """The turn engine's knobs (``[turn]``): the product's (speculative commit on; ``[turn]``
    ``speculate = false`` switches it off), with the table's keys applied."""
    pipeline: dict[str, Any] = field(default_factory=dict)
    """PipelineConfig overrides for every call (``[pipeline]``; keys in :data:`PIPELINE_KEYS`)."""
    model: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)
    """The embedded model's knobs (``[model]``)."""

    def __post_init__(self) -> None:
        for name in ("quic_port", "ws_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"EdgeConfig.{name}: must be 0..65535")
        if not -1 <= self.metrics_port <= 65535:
            raise ConfigError("EdgeConfig.metrics_port: must be -1..65535")
        if not -1 <= self.web_port <= 65535:
            raise ConfigError("EdgeConfig.web_port: must be -1..65535")
        if not self.caller_idle_timeout_s > 0:
            raise ConfigError("EdgeConfig.caller_idle_timeout_s: must be > 0")
        if self.io not in ("asyncio", "uring", "auto", "xdp"):
            raise ConfigError(f"EdgeConfig.io: asyncio, uring, auto or xdp, got {self.io!r}")
        if self.io == "xdp":
            try:
                check_xdp_settings(self.host, self.quic_port, self.xdp_iface)
            except ConfigError as exc:
                raise ConfigError(f"EdgeConfig: {exc}") from None
        if self.max_calls < 1:
            raise ConfigError("EdgeConfig.max_calls: must be >= 1")
        try:
            check_quic_core(self.quic_core)
        except ConfigError as exc:
            raise ConfigError(f"EdgeConfig: {exc}") from None
        if self.audio_transport not in ("auto", "stream"):
            raise ConfigError(f"EdgeConfig.audio_transport: auto or stream, got {self.audio_transport!r}")
        if self.call_loop not in ("batched", "per-call"):
            raise ConfigError(f"EdgeConfig.call_loop: batched or per-call, got {self.call_loop!r}")
        if (not isinstance(self.call_loop_slack_ms, (int, float)) or isinstance(self.call_loop_slack_ms, bool)
                or not 0.0 <= self.call_loop_slack_ms <= 2.0):
            raise ConfigError(f"EdgeConfig.call_loop_slack_ms: a number in 0..2, got {self.call_loop_slack_ms!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"EdgeConfig.log_level: debug/info/warning/error, got {self.log_level!r}")
        if self.model_url is not None and not self.model_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"EdgeConfig.model_url: must be ws:// or wss://, got {self.model_url!r}")
        if self.model_dialect not in ("ga", "beta"):
            raise ConfigError("EdgeConfig.model_dialect: 'ga' or 'beta'")
        if self.auth_key is not None and len(self.auth_key.encode()) < 16:
            raise ConfigError("EdgeConfig.auth_key: must be at least 16 bytes")
        bad = set(self.pipeline) - set(PIPELINE_KEYS)
        if bad:
            raise ConfigError(f"EdgeConfig.pipeline: unknown keys {sorted(bad)} (allowed: {PIPELINE_KEYS})")
        if "vad" in self.pipeline:  # an unknown or uninstalled VAD backend fails at start
            from clutchcall.engine.audio.vad import require_vad_backend

            require_vad_backend(self.pipeline["vad"])
        if not isinstance(self.turn, TurnConfig):
            raise ConfigError("EdgeConfig.turn: must be a TurnConfig")

    def with_overrides(self, **flags: Any) -> EdgeConfig:
        """Return a copy with every flag that is not None applied. ``turn_*`` keys go to the
        TurnConfig (``turn_end_of_turn_silence_ms=400``). Raises ConfigError."""
        turn = {k[5:]: v for k, v in flags.items() if k.startswith("turn_") and v is not None}
        top = {k: v for k, v in flags.items() if not k.startswith("turn_") and v is not None}
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(top) - names
        if unknown:
            raise ConfigError(f"EdgeConfig: unknown settings {sorted(unknown)}")
        if turn:
            top["turn"] = _turn(self.turn.to_dict() | turn)
        return dataclasses.replace(self, **top)


def _turn(values: dict[str, Any]) -> TurnConfig:
    names = {f.name for f in dataclasses.fields(TurnConfig)}
    bad = set(values) - names
    if bad:
        raise ConfigError(f"[turn]: unknown keys {sorted(bad)} (allowed: {sorted(names)})")
    return TurnConfig(**(PRODUCT_TURN.to_dict() | values))


def config_from_dict(doc: dict[str, Any]) -> EdgeConfig:
    """Return the EdgeConfig a parsed TOML document describes. Raises ConfigError."""
    unknown = set(doc) - {"edge", "turn", "pipeline", "model"}
    if unknown:
        raise ConfigError(f"config: unknown tables {sorted(unknown)} (edge, turn, pipeline, model)")
    edge = dict(doc.get("edge", {}))
    names = {f.name for f in dataclasses.fields(EdgeConfig)} - {"turn", "pipeline", "model"}
    bad = set(edge) - names
    if bad:
        raise ConfigError(f"[edge]: unknown keys {sorted(bad)}")
    model = dict(doc.get("model", {}))
    mnames = {f.name for f in dataclasses.fields(EmbeddedModelConfig)}
    if set(model) - mnames:
        raise ConfigError(f"[model]: unknown keys {sorted(set(model) - mnames)}")
    if "replies" in model:
        model["replies"] = tuple(model["replies"])
    try:
        return EdgeConfig(**edge, turn=_turn(dict(doc.get("turn", {}))),
                          pipeline=dict(doc.get("pipeline", {})), model=EmbeddedModelConfig(**model))
    except TypeError as exc:
        raise ConfigError(f"config: {exc}") from None


def load_config(path: str | Path | None) -> EdgeConfig:
    """Read the TOML file at ``path`` (None: the defaults); return its EdgeConfig. Raises
    ConfigError for a missing or malformed file or bad values."""
    if path is None:
        return EdgeConfig()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return config_from_dict(doc)
