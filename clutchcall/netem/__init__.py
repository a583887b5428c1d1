"""clutchcall.netem: a userspace WAN emulator (mahimahi-style) for tests and the twin check.

Two network namespaces, "edge" and "caller", joined through TUN devices by a forwarding
process that gives every IP packet, per direction, a one-way delay, jitter, Bernoulli or
Gilbert-Elliott loss and a token-bucket rate limit (see :mod:`clutchcall.netem.model` for the
impairment, :mod:`clutchcall.netem.emulator` for the namespaces and cleanup).
"""

from clutchcall.netem.emulator import (
    CALLER_ADDR,
    EDGE_ADDR,
    NamespacePair,
    VethBaseline,
    WanEmulator,
    sweep_stale,
)
from clutchcall.netem.model import GilbertElliott, PathConfig, PathModel, WanLinkConfig, parse_ge
from clutchcall.netem.tun import NetemError

__all__ = [
    "CALLER_ADDR",
    "EDGE_ADDR",
    "GilbertElliott",
    "NamespacePair",
    "NetemError",
    "PathConfig",
    "PathModel",
    "VethBaseline",
    "WanEmulator",
    "WanLinkConfig",
    "parse_ge",
    "sweep_stale",
]
