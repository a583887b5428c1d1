"""Run an edge in one namespace and callers in the other; collect their JSON output.

Theory of operation: :func:`run_pair` starts the edge command in the edge namespace and
waits (bounded) for it to print a JSON line with ``"ready": true`` -- the probes in
:mod:`clutchcall.netem.probe` and functions run through :mod:`clutchcall.netem.runner` (which
call ``signal_ready``) do. Then it starts every caller command at once in the caller
namespace, waits for all of them (bounded by ``timeout``; a caller past it is killed and
marked ``timed_out``), and finally stops the edge: it waits ``edge_grace`` seconds for it to
exit by itself, then sends SIGTERM to its process group (a runner function with a ``stop``
parameter returns its figures then), then SIGKILL. One reader thread per process collects
stdout so a chatty process can never block on a full pipe. Every stdout line that parses as
a JSON object is kept in :attr:`SideResult.messages` in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clutchcall.netem.emulator import NamespacePair
from clutchcall.netem.tun import NetemError

__all__ = ["SideResult", "run_pair"]


@dataclass(slots=True)
class SideResult:
    """What one process did: its argv, exit code, JSON messages, raw stdout and stderr."""

    side: str
    argv: list[str]
    returncode: int | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def last(self) -> dict[str, Any] | None:
        """Return the last JSON object printed (None if there was none)."""
        return self.messages[-1] if self.messages else None

    @property
    def result(self) -> Any:
        """Return the ``"result"`` of the last runner message, else the last message."""
        last = self.last
        if last is not None and "result" in last and len(last) == 1:
            return last["result"]
        return last


class _Proc:
    def __init__(self, wan: NamespacePair, side: str, argv: Sequence[str],
                 env: Mapping[str, str] | None) -> None:
        self.res = SideResult(side=side, argv=list(argv))
        self.ready = threading.Event()
        self.p = wan.popen_in(side, argv, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._out.append(line)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                self.res.messages.append(msg)
                if msg.get("ready") is True:
                    self.ready.set()
        self.ready.set()  # EOF: nothing more will come; the waiter checks the exit code

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self._err.append(line)

    def wait(self, until: float) -> bool:
        try:
            self.p.wait(timeout=max(0.0, until - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            return False

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def finish(self) -> SideResult:
        if self.p.poll() is None:
            self.signal(signal.SIGKILL)
            self.p.wait()
        for t in self._threads:
            t.join(timeout=5.0)
        self.res.returncode = self.p.returncode
        self.res.stdout = "".join(self._out)
        self.res.stderr = "".join(self._err)
        return self.res


def run_pair(wan: NamespacePair, edge_argv: Sequence[str],
             caller_argvs: Sequence[Sequence[str]], *, ready_timeout: float = 15.0,
             timeout: float = 60.0, edge_grace: float = 0.5, edge_stop_timeout: float = 5.0,
             edge_env: Mapping[str, str] | None = None,
             caller_env: Mapping[str, str] | None = None) -> tuple[SideResult, list[SideResult]]:
    """Run ``edge_argv`` in the edge namespace and every ``caller_argvs`` entry in the caller
    namespace (concurrently), as described in the module docstring.

    Returns ``(edge_result, [caller_result, ...])`` in the order given. Raises
    :class:`NetemError` if the edge does not print a ready line within ``ready_timeout``
    seconds (after stopping it; its stderr is in the message).
    """
    edge = _Proc(wan, "edge", edge_argv, edge_env)
    try:
        if not edge.ready.wait(ready_timeout) or not any(
                m.get("ready") is True for m in edge.res.messages):
            res = edge.finish()
            raise NetemError(f"edge did not become ready (exit {res.returncode}): "
                             f"{res.stderr.strip()[-2000:]}")
        callers = [_Proc(wan, "caller", argv, caller_env) for argv in caller_argvs]
        until = time.monotonic() + timeout
        for c in callers:
            if not c.wait(until):
                c.res.timed_out = True
        results = [c.finish() for c in callers]
        if not edge.wait(time.monotonic() + edge_grace):
            edge.signal(signal.SIGTERM)
            if not edge.wait(time.monotonic() + edge_stop_timeout):
                edge.res.timed_out = True
    finally:
        edge_res = edge.finish()
    return edge_res, results
