"""The QUIC-core adapter: one small surface over aioquic and qh3 2.x.

Theory of operation
-------------------
The edge's QUIC ingress, the real caller and the twin check never import a QUIC library
directly: they ask :func:`get_core` for a :class:`QuicCore` by name (``"aioquic"`` or
``"qh3"``) and use only what it holds: the configuration class, the asyncio protocol base
class and server, ``connect``, the event classes, the stream-ID helpers, and a few functions
that paper over the two cores' differences:

* **certificates**: qh3 loads PEM only (its ``load_cert_chain`` takes PEM text or PEM files);
  :meth:`QuicCore.server_configuration` checks that the files are PEM for both cores and
  raises ConfigError otherwise, so a DER file fails the same clear way on either core;
* **initial RTT**: qh3 2.x defaults to 0.333 s (RFC 9002), aioquic to 0.1 s; both are set to
  :data:`INITIAL_RTT_S` (0.1 s, the loopback / LAN figure the edge's loss timers were tuned
  with) so the cores differ in their code only, not in their timers;
* **peer address**: neither core has a public ``get_peer_address``; :meth:`QuicCore.peer_address`
  reads the active path (aioquic ``_network_paths[0]``, qh3 its native core's ``active_path``,
  which follows a migrating peer, else ``_remote_addr``, the first address);
* **congestion control**: qh3 has no ``congestion_control_algorithm`` setting (its Rust core
  runs its own); the adapter never sets it, so both cores run their default (NewReno/Reno-like);
* **ACK delay**: aioquic acknowledges after ``_ack_delay`` (a private attribute we set, see
  :mod:`clutchcall.prod.ingress.ackdelay`); qh3's native core is built with
  ``max_ack_delay`` = 25 ms and delays ACKs by itself, so :meth:`QuicCore.set_ack_delay` is
  a checked no-op there (the delay is validated the same way);
* **errors on a closed connection**: qh3 raises ``QuicConnectionError`` from sends on a
  connection that is closed (aioquic ignores them); the core's class is
  ``QuicCore.QuicConnectionError`` for the shells to catch;
* **DATAGRAM negotiation**: :meth:`QuicCore.peer_max_datagram_frame_size` returns what the peer
  advertised (``max_datagram_frame_size`` transport parameter), ``None`` if it did not.

qh3 2.x and aiomoqt 0.5.3 (the interop test's client) share one install: aiomoqt still imports
``qh3.quic.packet_builder`` (gone in 2.x) to set a constant; :func:`qh3_aiomoqt_shim` provides
that module, and everything else aiomoqt uses is unchanged in 2.x.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from dataclasses import dataclass
from typing import Any

from clutchcall.engine.errors import ConfigError

QUIC_CORES = ("aioquic", "qh3")
"""The QUIC cores the adapter knows."""
DEFAULT_QUIC_CORE = "qh3"
"""The default core, chosen by ``clutchcall bench edge`` (figures in prod/edge/README.md)."""
QUIC_CORE_ENV = "CLUTCHCALL_QUIC_CORE"
"""Environment variable that overrides :data:`DEFAULT_QUIC_CORE` (tests run every QUIC test
once per core with it; subprocesses inherit it)."""
INITIAL_RTT_S = 0.1
"""Initial RTT estimate for both cores (aioquic's default; qh3 2.x would use 0.333 s)."""
DATAGRAM_FRAME_SIZE = 65536
"""The ``max_datagram_frame_size`` both ends advertise: DATAGRAM frames are accepted."""


_PROTOCOL_CLASSES: dict[tuple[str, type], type] = {}
_AIOQUIC_ONE_RTT: Any = None  # aioquic.tls.Epoch.ONE_RTT (a key of QuicConnection._spaces), once read


@dataclass(frozen=True, slots=True)
class QuicCore:
    """One QUIC implementation behind the adapter (see module docstring)."""

    name: str
    version: str
    QuicConfiguration: Any
    QuicConnectionProtocol: Any
    QuicServer: Any
    connect: Any
    StreamDataReceived: Any
    DatagramFrameReceived: Any
    HandshakeCompleted: Any
    ConnectionTerminated: Any
    ProtocolNegotiated: Any
    StreamReset: Any
    QuicConnectionError: Any
    stream_is_client_initiated: Any
    stream_is_unidirectional: Any

    def server_configuration(self, *, cert: str, key: str, alpn: list[str], idle_timeout_s: float,
                             max_datagram_frame_size: int | None = DATAGRAM_FRAME_SIZE) -> Any:
        """Return a server ``QuicConfiguration`` with the PEM certificate chain ``cert`` and
        key ``key`` loaded. Raises ConfigError if either file is missing or not PEM."""
        for path in (cert, key):
            _check_pem(path)
        qc = self.QuicConfiguration(is_client=False, alpn_protocols=alpn,
                                    max_datagram_frame_size=max_datagram_frame_size,
                                    idle_timeout=idle_timeout_s)
        qc.initial_rtt = INITIAL_RTT_S
        qc.load_cert_chain(cert, key)
        return qc

    def client_configuration(self, *, alpn: list[str], server_name: str, cafile: str | None,
                             max_datagram_frame_size: int | None = DATAGRAM_FRAME_SIZE,
                             session_ticket: Any = None) -> Any:
        """Return a client ``QuicConfiguration`` verifying the server against ``cafile`` (a PEM
        file; None: no verification, for loopback tools only). Raises ConfigError for a
        ``cafile`` that is missing or not PEM."""
        import ssl

        qc = self.QuicConfiguration(is_client=True, alpn_protocols=alpn, server_name=server_name,
                                    max_datagram_frame_size=max_datagram_frame_size)
        qc.initial_rtt = INITIAL_RTT_S
        if cafile:
            _check_pem(cafile)
            qc.load_verify_locations(cafile)
        else:
            qc.verify_mode = ssl.CERT_NONE
        if session_ticket is not None:
            qc.session_ticket = session_ticket
        return qc

    def set_ack_delay(self, quic: Any, ms: float) -> None:
        """Make connection ``quic`` wait ``ms`` before acknowledging (aioquic; qh3's core
        uses its own 25 ms bound). Returns None; raises ConfigError for ms outside (0, 25)."""
        from clutchcall.prod.ingress.ackdelay import check_ack_delay, set_ack_delay

        if self.name == "aioquic":
            set_ack_delay(quic, ms)
        else:
            check_ack_delay(ms)

    def ack_with_next_send(self, quic: Any, now: float) -> None:
        """Make the connection's next packet carry the ACK it owes, if any (the ACK rides an
        outgoing packet instead of waiting for its own timer). aioquic writes an ACK frame only
        once its ``ack_at`` has passed, so a pending one is brought forward to ``now``; qh3's
        native core puts a pending ACK in every packet it builds (a no-op). Returns None."""
        if self.name != "aioquic":
            return
        global _AIOQUIC_ONE_RTT
        if _AIOQUIC_ONE_RTT is None:
            _AIOQUIC_ONE_RTT = importlib.import_module("aioquic.tls").Epoch.ONE_RTT
        space = quic._spaces.get(_AIOQUIC_ONE_RTT)  # private: test_caller_ack_coalesce pins it
        if space is not None and space.ack_at is not None and space.ack_at > now:
            space.ack_at = now

    def receive_datagram(self, quic: Any, data: bytes, addr: Any, now: float) -> None:
        """Feed one received UDP datagram to connection ``quic``. aioquic: its
        ``receive_datagram``. qh3: its batch entry point with a batch of one -- past the
        handshake it hands the datagram whole to the native core, without
        ``receive_datagram``'s shell work per datagram (client-only Retry / version checks, a
        header parse and a copy per packet); before the handshake it falls back to
        ``receive_datagram`` itself. Raises the core's ``QuicConnectionError`` as they do."""
        if self.name == "qh3":
            quic.receive_many_datagrams([data], addr, now=now)
        else:
            quic.receive_datagram(data, addr, now=now)

    def protocol_class(self, session: type) -> type:
        """Return ``session`` (a per-connection protocol mixin: the edge's or the caller's
        session) on top of this core's ``QuicConnectionProtocol``, with ``core`` = this core
        as a class attribute; made once per (core, session)."""
        key = (self.name, session)
        cls = _PROTOCOL_CLASSES.get(key)
        if cls is None:
            cls = type(f"{session.__name__}_{self.name}", (session, self.QuicConnectionProtocol),
                       {"core": self})
            _PROTOCOL_CLASSES[key] = cls
        return cls

    def peer_max_datagram_frame_size(self, quic: Any) -> int | None:
        """Return the peer's advertised ``max_datagram_frame_size`` (None before the handshake
        or if the peer does not accept DATAGRAM frames)."""
        value = getattr(quic, "_remote_max_datagram_frame_size", None)
        return int(value) if value else None

    def peer_address(self, quic: Any) -> Any:
        """Return the peer's address on the active path, or None if not known yet."""
        if self.name == "aioquic":
            paths = getattr(quic, "_network_paths", None)
            return paths[0].addr if paths else None
        native = getattr(quic, "_core", None)
        if native is not None:  # qh3's native core follows a migrating peer; _remote_addr not
            try:
                path = native.active_path  # (path id, local address, remote address, ...)
            except Exception:  # noqa: BLE001 - a closed core: fall back to the first address
                path = None
            if path is not None and len(path) > 2 and path[2] is not None:
                return path[2]
        return getattr(quic, "_remote_addr", None)


def _check_pem(path: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ConfigError(f"TLS file {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in head:
        raise ConfigError(f"TLS file {path} is not PEM (both QUIC cores load PEM only)")


def qh3_aiomoqt_shim() -> None:
    """Let aiomoqt 0.5.3 import on qh3 2.x: provide the ``qh3.quic.packet_builder`` module it
    imports only to set ``PACKET_MAX_SIZE``. Returns None; a no-op on qh3 1.x or without qh3."""
    try:
        quic_pkg = importlib.import_module("qh3.quic")
    except ImportError:
        return
    try:
        importlib.import_module("qh3.quic.packet_builder")
    except ImportError:
        mod = types.ModuleType("qh3.quic.packet_builder")
        mod.PACKET_MAX_SIZE = 1200  # type: ignore[attr-defined]
        sys.modules["qh3.quic.packet_builder"] = mod
        quic_pkg.packet_builder = mod  # type: ignore[attr-defined]


_CACHE: dict[str, QuicCore] = {}


def default_quic_core() -> str:
    """Return the QUIC core to use when none is named: ``$CLUTCHCALL_QUIC_CORE`` if set, else
    :data:`DEFAULT_QUIC_CORE`. Raises ConfigError if the variable names no known core."""
    name = os.environ.get(QUIC_CORE_ENV) or DEFAULT_QUIC_CORE
    return check_quic_core(name)


def check_quic_core(name: str) -> str:
    """Return ``name`` if it names a known core; raise ConfigError otherwise (the library
    itself is imported only by :func:`get_core`)."""
    if name not in QUIC_CORES:
        raise ConfigError(f"quic core must be one of {', '.join(QUIC_CORES)}, got {name!r}")
    return name


def get_core(name: str | None = None) -> QuicCore:
    """Return the :class:`QuicCore` called ``name`` (None: :func:`default_quic_core`). Raises ConfigError for an unknown name,
    a core that is not installed, or qh3 older than 2.0 (no native transport core)."""
    name = default_quic_core() if name is None else check_quic_core(name)
    core = _CACHE.get(name)
    if core is not None:
        return core
    try:
        lib = importlib.import_module(name)
        asyncio_mod = importlib.import_module(f"{name}.asyncio")
        server_mod = importlib.import_module(f"{name}.asyncio.server")
        conf_mod = importlib.import_module(f"{name}.quic.configuration")
        conn_mod = importlib.import_module(f"{name}.quic.connection")
        ev = importlib.import_module(f"{name}.quic.events")
    except ImportError as exc:
        raise ConfigError(f"quic core {name!r} is not installed ({exc})") from None
    version = str(getattr(lib, "__version__", "?"))
    major = version.split(".")[0]
    if name == "qh3" and (not major.isdigit() or int(major) < 2):
        raise ConfigError(f"quic core qh3 needs qh3 >= 2.0 (native transport core), found {version}")
    core = QuicCore(
        name=name, version=version, QuicConfiguration=conf_mod.QuicConfiguration,
        QuicConnectionProtocol=asyncio_mod.QuicConnectionProtocol, QuicServer=server_mod.QuicServer,
        connect=asyncio_mod.connect, StreamDataReceived=ev.StreamDataReceived,
        DatagramFrameReceived=ev.DatagramFrameReceived, HandshakeCompleted=ev.HandshakeCompleted,
        ConnectionTerminated=ev.ConnectionTerminated, ProtocolNegotiated=ev.ProtocolNegotiated,
        StreamReset=ev.StreamReset, QuicConnectionError=conn_mod.QuicConnectionError,
        stream_is_client_initiated=conn_mod.stream_is_client_initiated,
        stream_is_unidirectional=conn_mod.stream_is_unidirectional,
    )
    _CACHE[name] = core
    return core


def use_shard_cids(core: QuicCore, shard: int, nshards: int) -> None:
    """Make ``core``'s server (in this process) give its connections host connection IDs that
    encode ``shard`` of ``nshards`` (the SO_REUSEPORT program steers datagrams by them, see
    :mod:`clutchcall.native.shard`). Returns None; raises ConfigError for a bad shard.

    aioquic: every host CID (also the NEW_CONNECTION_ID ones) encodes the shard. qh3 2.x: the
    connection's first host CID, the one the peer's packets carry unless the peer migrates
    (qh3's native core draws later CIDs itself, so a migrating peer may land on another
    shard)."""
    from clutchcall.native.aio_bridge import use_shard_cids_in_aioquic_server
    from clutchcall.native.shard import shard_cid

    if core.name == "aioquic":
        use_shard_cids_in_aioquic_server(shard, nshards)
        return
    shard_cid(shard, nshards)  # validate
    srv = importlib.import_module("qh3.asyncio.server")
    base = importlib.import_module("qh3.quic.connection").QuicConnection

    class _ShardConnection(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.host_cid = shard_cid(shard, nshards, self._configuration.connection_id_length)

    setattr(srv, "QuicConnection", _ShardConnection)  # noqa: B010 - a module attribute


def available_cores() -> list[str]:
    """Return the names of the cores usable here (installed, right version)."""
    out = []
    for name in QUIC_CORES:
        try:
            get_core(name)
        except ConfigError:
            continue
        out.append(name)
    return out
