"""TUN devices created inside named network namespaces, from one process.

Theory of operation: a TUN device belongs to the network namespace of the file that was
opened on ``/dev/net/tun``, which is the namespace of the thread that opened it. So the
forwarder, for each namespace, enters it with ``setns(2)`` (``/var/run/netns/NAME``, made by
``ip netns add``), opens ``/dev/net/tun``, attaches a new non-persistent device with the
``TUNSETIFF`` ioctl (``IFF_TUN | IFF_NO_PI``: raw IP packets, no header), turns IPv6 off on
it (so no router solicitations or MLD reports ride the link), and returns to its own
namespace. The fd keeps the device in its namespace; it is the only reference, so the device
disappears when the forwarder exits, however it exits. Python 3.11 has no ``os.setns``, so
``setns`` is called through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

from clutchcall.engine.errors import ClutchCallError

__all__ = ["NETNS_DIR", "NetemError", "open_tun_in_netns"]

NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class NetemError(ClutchCallError):
    """The WAN emulator could not set up or run (namespaces, TUN devices, forwarder)."""


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise NetemError(f"setns(CLONE_NEWNET) failed: {os.strerror(e)} (errno {e})")


def open_tun_in_netns(netns: str, ifname: str) -> int:
    """Create TUN device ``ifname`` inside the named namespace ``netns``.

    Returns a non-blocking, close-on-exec fd carrying the device's raw IP packets. The
    calling thread is back in its original namespace when this returns or raises.
    Raises :class:`NetemError` if the namespace or ``/dev/net/tun`` is unusable.
    """
    if len(ifname.encode()) > 15:
        raise NetemError(f"interface name too long: {ifname!r}")
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetemError(f"cannot open own netns: {e}") from None
    try:
        try:
            nsfd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NetemError(f"network namespace {netns!r} not found: {e}") from None
        try:
            _setns(nsfd)
        finally:
            os.close(nsfd)
        try:
            try:
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                raise NetemError(f"cannot open /dev/net/tun: {e}") from None
            try:
                ifr = struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI)
                fcntl.ioctl(fd, TUNSETIFF, ifr)
            except OSError as e:
                os.close(fd)
                raise NetemError(f"TUNSETIFF {ifname!r} in {netns!r} failed: {e}") from None
            # /proc/sys/net resolves against the opener's namespace: this thread's, now.
            try:
                with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
                    f.write("1")
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EROFS):
                    raise NetemError(f"cannot disable IPv6 on {ifname!r}: {e}") from None
        finally:
            _setns(own)
    finally:
        os.close(own)
    return fd
