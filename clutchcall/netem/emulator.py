"""WanEmulator: two network namespaces joined by an impaired, userspace-forwarded link.

Theory of operation: :meth:`WanEmulator.start` makes two named namespaces with ``ip netns
add`` (``cc-edge-PID-N`` and ``cc-caller-PID-N``: the creating process's pid in the name lets
a later run recognise and remove leftovers of a run that was killed with SIGKILL), then
starts the forwarder (``python -m clutchcall.netem.forwarder``) as a child process. The
forwarder creates a TUN device ``cc0`` inside each namespace (entering it with setns) and
reports ready; the emulator then gives the edge's device 198.18.0.1/30 and the caller's
198.18.0.2/30 and brings the devices and ``lo`` up. Each namespace's only route is the /30
through its TUN device, so every IP packet between the two sides -- TCP and UDP alike --
crosses the forwarder and gets the configured delay, jitter, loss and rate limit.

Commands run inside a namespace with ``ip netns exec`` (:meth:`~WanEmulator.popen_in`,
:meth:`~WanEmulator.run_in`), each in its own session so the emulator can stop it and all its
children. :meth:`~WanEmulator.close` (also run by ``__exit__``, on exceptions, at interpreter
exit, and on SIGTERM/SIGHUP while an emulator is live; SIGINT arrives as KeyboardInterrupt)
stops those processes, kills anything still inside the namespaces, stops the forwarder (its
TUN devices vanish with its fds) and deletes the namespaces. Whatever a SIGKILLed run leaves
behind is removed by :func:`sweep_stale`, which every start calls first.

:class:`NamespacePair` holds all of this except the link itself; :class:`VethBaseline` is the
unimpaired baseline with the same API (a kernel veth pair instead of TUN + forwarder).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

from clutchcall.native.netns import add_veth
from clutchcall.netem.model import GilbertElliott, WanLinkConfig, parse_ge
from clutchcall.netem.tun import NETNS_DIR, NetemError

__all__ = [
    "CALLER_ADDR", "EDGE_ADDR", "NamespacePair", "NetemError", "VethBaseline", "WanEmulator",
    "new_tag", "sweep_stale",
]

EDGE_ADDR = "198.18.0.1"
CALLER_ADDR = "198.18.0.2"
PREFIX_LEN = 30
IFNAME = "cc0"
_NS_RE = re.compile(r"^cc-(edge|caller)-(\d+)-(\d+)$")
_counter = iter(range(1 << 62))
_live: set[NamespacePair] = set()  # strong refs: an unclosed pair is still closed at exit
_sig_lock = threading.Lock()
_saved_handlers: dict[int, Any] = {}


def _ip(*args: str, input: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], input=input, capture_output=True, text=True, timeout=30,
                       check=False)
    if check and r.returncode != 0:
        raise NetemError(f"ip {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_pids(ns: str) -> None:
    r = _ip("netns", "pids", ns, check=False)
    for tok in r.stdout.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def _delete_netns(ns: str) -> None:
    _kill_netns_pids(ns)
    _ip("netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Delete emulator namespaces whose creating process no longer exists.

    Returns the names removed. Namespaces of live emulators (any process) are left alone.
    """
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    removed = []
    for name in sorted(names):
        m = _NS_RE.match(name)
        if m and not _pid_alive(int(m.group(2))):
            _delete_netns(name)
            removed.append(name)
    return removed


def _on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    with _sig_lock:
        if _saved_handlers:
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old = signal.getsignal(sig)
            if old in (signal.SIG_DFL, None):
                _saved_handlers[sig] = old
                signal.signal(sig, _on_term)


def _restore_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    with _sig_lock:
        if len(_live) > 0:
            return
        for sig, old in _saved_handlers.items():
            if signal.getsignal(sig) is _on_term:
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
        _saved_handlers.clear()


@atexit.register
def _close_all() -> None:
    for emu in list(_live):
        emu.close()


def new_tag() -> str:
    """Return a fresh ``PID-N`` suffix for namespace names (see :func:`sweep_stale`)."""
    return f"{os.getpid()}-{next(_counter)}"


class NamespacePair:
    """Two named namespaces, "edge" and "caller", joined by a link a subclass makes.

    Holds what every pair shares: the names and addresses, the lifecycle (context manager,
    :meth:`start`, :meth:`close` with the cleanup guarantees of the module docstring) and the
    helpers that run processes inside (:meth:`popen_in`, :meth:`run_in`).
    """

    def __init__(self) -> None:
        tag = new_tag()
        self.edge_ns = f"cc-edge-{tag}"
        self.caller_ns = f"cc-caller-{tag}"
        self.edge_addr = EDGE_ADDR
        self.caller_addr = CALLER_ADDR
        self.ifname = IFNAME
        self._children: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []
        self._started = False
        self._closed = False
        self.link: WanLinkConfig | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_link(self) -> None:
        raise NotImplementedError

    def _unmake_link(self) -> None:
        pass

    def start(self) -> Self:
        """Create the namespaces and the link, configure addresses; return ``self``.

        Raises :class:`NetemError` (after undoing whatever was done) if any step fails.
        """
        if self._started:
            raise NetemError(f"{type(self).__name__} already started")
        self._started = True
        _live.add(self)
        _install_signal_handlers()
        try:
            sweep_stale()
            for ns in (self.edge_ns, self.caller_ns):
                _ip("netns", "add", ns)
                self._made.append(ns)
            self._make_link()
            for ns, local in ((self.edge_ns, self.edge_addr), (self.caller_ns, self.caller_addr)):
                _ip("-n", ns, "-batch", "-", input=(
                    "link set lo up\n"
                    f"addr add {local}/{PREFIX_LEN} dev {self.ifname}\n"
                    f"link set {self.ifname} up\n"))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process started in the namespaces, take the link down and delete the
        namespaces (and so their devices). Idempotent; never raises for cleanup trouble.
        """
        if self._closed or not self._started:
            return
        self._closed = True
        try:
            self._stop_children()
            for ns in self._made:
                _kill_netns_pids(ns)
            self._unmake_link()
        finally:
            for ns in self._made:
                try:
                    _delete_netns(ns)
                except Exception:  # noqa: BLE001 -- best-effort cleanup of every namespace
                    pass
            _live.discard(self)
            _restore_signal_handlers()

    def _stop_children(self) -> None:
        alive = [p for p in self._children if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2.0
        for p in alive:
            try:
                p.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        for p in self._children:
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except Exception:  # noqa: BLE001 -- best-effort close while tearing down
                        pass

    # -- running things inside ------------------------------------------------------------

    def ns(self, side: str) -> str:
        """Return the namespace name for ``side`` ("edge", "caller", or a full name)."""
        if side == "edge":
            return self.edge_ns
        if side == "caller":
            return self.caller_ns
        if side in (self.edge_ns, self.caller_ns):
            return side
        raise NetemError(f"unknown side {side!r}: use 'edge' or 'caller'")

    def addr(self, side: str) -> str:
        """Return the IPv4 address of ``side`` ("edge" or "caller") on the emulated link."""
        return self.edge_addr if self.ns(side) == self.edge_ns else self.caller_addr

    def env(self) -> dict[str, str]:
        """Return the environment variables describing the link, set for every command run
        inside: ``CLUTCHCALL_NETEM_EDGE_ADDR``, ``..._CALLER_ADDR``, ``..._EDGE_NS``,
        ``..._CALLER_NS`` and ``..._LINK`` (the link config as JSON)."""
        return {
            "CLUTCHCALL_NETEM_EDGE_ADDR": self.edge_addr,
            "CLUTCHCALL_NETEM_CALLER_ADDR": self.caller_addr,
            "CLUTCHCALL_NETEM_EDGE_NS": self.edge_ns,
            "CLUTCHCALL_NETEM_CALLER_NS": self.caller_ns,
            "CLUTCHCALL_NETEM_LINK": json.dumps(
                None if self.link is None else self.link.to_dict(), sort_keys=True),
        }

    def argv_in(self, side: str, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` wrapped to run inside ``side``'s namespace."""
        return ["ip", "netns", "exec", self.ns(side), *argv]

    def popen_in(self, side: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``side``'s namespace (in a new session); return the Popen.

        The process gets ``os.environ`` plus :meth:`env` plus ``env``; other keyword arguments
        go to :class:`subprocess.Popen`. It is stopped by :meth:`close` if still running.
        Raises :class:`NetemError` if the emulator is not running.
        """
        if not self._started or self._closed:
            raise NetemError("WanEmulator is not running")
        full_env = dict(os.environ)
        full_env.update(self.env())
        if env:
            full_env.update(env)
        kwargs.setdefault("start_new_session", True)
        p = subprocess.Popen(self.argv_in(side, argv), env=full_env, **kwargs)
        self._children.append(p)
        return p

    def run_in(self, side: str, argv: Sequence[str], *, timeout: float = 60.0,
               input: str | bytes | None = None, check: bool = False, text: bool = True,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``side``'s namespace to completion, capturing its output.

        Returns the CompletedProcess. Raises :class:`subprocess.TimeoutExpired` (after killing
        the process group) past ``timeout`` seconds, :class:`subprocess.CalledProcessError` if
        ``check`` and the exit code is not 0.
        """
        p = self.popen_in(side, argv, env=env, stdin=subprocess.PIPE if input is not None else
                          subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=text)
        try:
            out, err = p.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()
            raise
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        if check:
            r.check_returncode()
        return r


class WanEmulator(NamespacePair):
    """An emulated WAN link between an "edge" and a "caller" network namespace.

    Use as a context manager (``with WanEmulator(rtt_ms=50, loss=0.01) as wan: ...``) or call
    :meth:`start` / :meth:`close`. Either the symmetric keyword arguments or a full ``link``
    (:class:`~clutchcall.netem.model.WanLinkConfig`, per direction) configure the impairment;
    ``ge`` may be a :class:`GilbertElliott` or its ``"p,r[,loss_bad[,loss_good]]"`` string.
    Raises :class:`~clutchcall.engine.errors.ConfigError` for bad settings and
    :class:`NetemError` when the namespaces or the forwarder cannot be set up. After
    :meth:`close`, :attr:`stats` holds the forwarder's per-direction counters, and with
    ``trace_path`` that file holds one CSV row per packet (``forwarder.TRACE_HEADER``).
    """

    def __init__(self, *, rtt_ms: float = 0.0, loss: float = 0.0, jitter_ms: float = 0.0,
                 ge: GilbertElliott | str | None = None, rate_kbps: float | None = None,
                 reorder: bool = False, queue_packets: int = 1000, burst_bytes: int = 1500,
                 seed: int = 0, link: WanLinkConfig | None = None,
                 ready_timeout: float = 10.0, trace_path: str | None = None) -> None:
        if isinstance(ge, str):
            ge = parse_ge(ge)
        if link is None:
            link = WanLinkConfig.symmetric(rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss=loss, ge=ge,
                                        rate_kbps=rate_kbps, reorder=reorder,
                                        queue_packets=queue_packets, burst_bytes=burst_bytes,
                                        seed=seed)
        super().__init__()
        self.link = link
        self.ready_timeout = ready_timeout
        self.trace_path = None if trace_path is None else os.path.abspath(trace_path)
        self.stats: dict[str, dict[str, float]] | None = None
        self._forwarder: subprocess.Popen[bytes] | None = None

    def _make_link(self) -> None:
        self._start_forwarder()

    def _unmake_link(self) -> None:
        self._stop_forwarder()

    def _start_forwarder(self) -> None:
        assert self.link is not None
        spec = {"link": self.link.to_dict(), "edge_ns": self.edge_ns,
                "caller_ns": self.caller_ns, "ifname": self.ifname, "parent_pid": os.getpid(),
                "trace_path": self.trace_path}
        fwd = subprocess.Popen(
            [sys.executable, "-m", "clutchcall.netem.forwarder"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self._forwarder = fwd
        assert fwd.stdin is not None and fwd.stdout is not None
        fwd.stdin.write((json.dumps(spec) + "\n").encode())
        fwd.stdin.flush()
        ready, _, _ = select.select([fwd.stdout], [], [], self.ready_timeout)
        line = fwd.stdout.readline() if ready else b""
        try:
            ok = bool(json.loads(line).get("ready")) if line else False
        except ValueError:
            ok = False
        if not ok:
            if fwd.poll() is None:
                fwd.kill()
            err = fwd.stderr.read().decode(errors="replace") if fwd.stderr else ""
            raise NetemError(f"forwarder did not become ready: {err.strip()[-2000:]}")

    def _stop_forwarder(self) -> None:
        fwd = self._forwarder
        if fwd is None:
            return
        try:  # communicate() closes its stdin: the forwarder sees EOF and stops
            out, _ = fwd.communicate(timeout=3.0)
        except subprocess.TimeoutExpired:
            fwd.kill()
            out, _ = fwd.communicate()
        for line in out.decode(errors="replace").splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and "stats" in msg:
                self.stats = msg["stats"]



class VethBaseline(NamespacePair):
    """The unimpaired baseline: the same two namespaces and addresses joined by a kernel
    veth pair (no forwarder, no impairment; made by :func:`clutchcall.native.netns.add_veth`,
    the project's one veth maker). Same API as :class:`WanEmulator`; used by the benchmark to
    measure what the userspace forwarder adds."""

    def _make_link(self) -> None:
        try:
            add_veth(self.edge_ns, self.ifname, self.caller_ns, self.ifname)
        except subprocess.CalledProcessError as exc:
            raise NetemError(f"veth pair: {(exc.stderr or '').strip() or exc}") from exc
