"""A real ``clutchcall serve`` in a child process, and what it costs: the harness of
``bench hostile``, ``bench fuzz`` and ``bench soak``.

:class:`ServedEdge` starts ``serve`` on free loopback ports (its own PYTHONPATH may be another
checkout, to measure a before/after), waits for its ready line and stops it (SIGTERM, then
SIGKILL), also on failure. :class:`Sampler` samples a process's resident memory
(:func:`rss_kb`, ``VmRSS`` from ``/proc/PID/status``) and open file descriptors
(:func:`open_fds`) in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any


def rss_kb(pid: int) -> int:
    """Return the resident set size of process ``pid`` in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    """Return the number of open file descriptors of process ``pid`` (0 if unknown)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler:
    """Samples RSS and fds of ``pid`` every ``period`` s in the background."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.pid, self.period = pid, period
        self.rss: list[int] = []
        self.fds: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.rss.append(rss_kb(self.pid))
            self.fds.append(open_fds(self.pid))
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self.rss.append(rss_kb(self.pid))
        self.fds.append(open_fds(self.pid))
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.rss.append(rss_kb(self.pid))
        self.fds.append(open_fds(self.pid))
        return {"rss_start_kb": self.rss[0], "rss_peak_kb": max(self.rss), "rss_end_kb": self.rss[-1],
                "fds_start": self.fds[0], "fds_peak": max(self.fds), "fds_end": self.fds[-1]}


class ServedEdge:
    """``clutchcall serve`` in a child process (module docstring; ``bench hostile`` documents
    the attacks run against it)."""

    def __init__(self, pythonpath: str | None, extra: list[str] | None = None,
                 trace_dir: str | None = None, auth_key: str | None = None) -> None:
        """``trace_dir``: record one trace per call there (default: no traces); ``auth_key``:
        the edge's token key (``CLUTCHCALL_AUTH_KEY``; :meth:`issue_token` then works)."""
        self.dir = tempfile.TemporaryDirectory(prefix="cc-hostile-")
        traces = ["--no-trace"] if trace_dir is None else ["--trace-dir", trace_dir]
        self.auth_key = auth_key
        env = dict(os.environ)
        if auth_key is not None:
            env["CLUTCHCALL_AUTH_KEY"] = auth_key
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clutchcall.cli", "serve", "--quic-port", "0", "--ws-port", "0",
             "--metrics-port", "-1", "--ready-json", "--tokens", "2", *traces, "--ttfa-ms", "100",
             "--cert-dir", os.path.join(self.dir.name, "tls"), "--log-level", "error", "--grace", "0.2",
             *(extra or [])],
            cwd=self.dir.name, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("serve exited before it was ready")
        self.ready: dict[str, Any] = json.loads(line)

    def issue_token(self, call_id: str, ttl_s: float = 3600.0) -> str:
        """Return a token for ``call_id`` signed with the ``auth_key`` the edge was started
        with. Raises ValueError if it was started without one."""
        from clutchcall.prod.ingress.auth import TokenAuthority

        if self.auth_key is None:
            raise ValueError("ServedEdge started without auth_key: it cannot issue tokens")
        return TokenAuthority(self.auth_key.encode()).issue(call_id, time.time() + ttl_s)

    def stop(self) -> dict[str, Any]:
        """Stop the child; return its last (``stopped``) line, or {}."""
        last: dict[str, Any] = {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=20)
                for line in out.splitlines():
                    with contextlib.suppress(ValueError):
                        last = json.loads(line)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()
        return last
