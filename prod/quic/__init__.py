"""QUIC behind one small adapter: aioquic or qh3 2.x, chosen by name (see :mod:`.core`)."""

from clutchcall.prod.quic.core import (
    DEFAULT_QUIC_CORE,
    INITIAL_RTT_S,
    QUIC_CORES,
    QuicCore,
    available_cores,
    check_quic_core,
    default_quic_core,
    get_core,
)

__all__ = ["DEFAULT_QUIC_CORE", "INITIAL_RTT_S", "QUIC_CORES", "QuicCore", "available_cores",
           "check_quic_core", "default_quic_core", "get_core"]
