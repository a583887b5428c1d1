"""Two network namespaces joined by a veth pair, for the AF_XDP tests and benchmark.

Theory of operation: :class:`VethPair` creates namespaces ``<tag>e`` (the edge) and
``<tag>c`` (the caller), a veth pair between them with addresses in 198.18.0.0/15, transmit
checksum offload off on both ends (AF_XDP in copy mode hands frames over with partial
checksums otherwise) and permanent neighbour entries both ways. Leaving the context (also on
error) deletes both namespaces, which removes the veth pair with them. Needs root and iproute2.
"""

from __future__ import annotations

import subprocess
import uuid
from types import TracebackType
from typing import Self


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


def add_veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """Create a veth pair: interface ``if_a`` in namespace ``ns_a``, its peer ``if_b`` in
    ``ns_b`` (both namespaces exist). The one veth maker: :class:`VethPair` and the WAN
    emulator's unimpaired baseline (``clutchcall.netem.VethBaseline``) use it. Raises
    subprocess.CalledProcessError if iproute2 refuses."""
    _sh("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
        "netns", ns_b)


class VethPair:
    """Context manager for the namespace pair; ``.ns_edge``, ``.ns_caller``, ``.if_edge``,
    ``.if_caller``, ``.edge_ip``, ``.caller_ip``. Raises subprocess.CalledProcessError if a
    setup step fails (after cleaning up)."""

    def __init__(self, tag: str | None = None, edge_ip: str = "198.18.7.1",
                 caller_ip: str = "198.18.7.2") -> None:
        # random, not the pid: a pair left behind by a killed run (no cleanup ran) must not
        # collide with a later process that happens to get the same pid
        tag = tag or f"ccx{uuid.uuid4().hex[:8]}"
        self.ns_edge, self.ns_caller = f"{tag}e", f"{tag}c"
        self.if_edge, self.if_caller = f"{tag}e", f"{tag}c"
        self.edge_ip, self.caller_ip = edge_ip, caller_ip
        self._made: list[str] = []

    def __enter__(self) -> Self:
        try:
            for ns in (self.ns_edge, self.ns_caller):
                _sh("ip", "netns", "add", ns)
                self._made.append(ns)
            add_veth(self.ns_edge, self.if_edge, self.ns_caller, self.if_caller)
            for ns, ifn, ip in ((self.ns_edge, self.if_edge, self.edge_ip),
                                (self.ns_caller, self.if_caller, self.caller_ip)):
                _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifn)
                _sh("ip", "-n", ns, "link", "set", ifn, "up")
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
                _sh("ip", "netns", "exec", ns, "ethtool", "-K", ifn, "tx", "off")
            mac_e = self.mac(self.ns_edge, self.if_edge)
            mac_c = self.mac(self.ns_caller, self.if_caller)
            _sh("ip", "-n", self.ns_edge, "neigh", "replace", self.caller_ip, "lladdr", mac_c,
                "dev", self.if_edge, "nud", "permanent")
            _sh("ip", "-n", self.ns_caller, "neigh", "replace", self.edge_ip, "lladdr", mac_e,
                "dev", self.if_caller, "nud", "permanent")
        except BaseException:
            self.cleanup()
            raise
        return self

    @staticmethod
    def mac(ns: str, ifname: str) -> str:
        """Return the MAC address of ``ifname`` in namespace ``ns``."""
        return _sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()

    def cleanup(self) -> None:
        """Delete the namespaces this pair made (and with them the veth pair), never one of
        the same name that someone else made; never raises."""
        while self._made:
            _sh("ip", "netns", "del", self._made.pop(), check=False)

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
