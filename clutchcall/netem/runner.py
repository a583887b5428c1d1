"""Run a Python function (plain or coroutine) as a process and print its result as JSON.

Theory of operation: ``python -m clutchcall.netem.runner MODULE:FUNCTION [JSON_KWARGS]``
imports the function and calls it with the keyword arguments. A coroutine function runs
under ``asyncio.run``. If the function has a parameter named ``stop`` it receives an event
(``asyncio.Event`` for coroutine functions, ``threading.Event`` otherwise) that is set on
SIGTERM or SIGINT, so a server can shut down cleanly and still return its figures; without
that parameter the signal ends the process as usual. A server calls :func:`signal_ready`
once it listens, which prints ``{"ready": true, ...}``; the harness waits for that line.
The return value is printed as ``{"result": VALUE}`` on one line (it must be JSON-ready).
A raised exception prints ``{"error": "Type: message"}`` and exits with status 1.

This is how the twin check runs "a given coroutine" inside a namespace: the process is
started with :meth:`WanEmulator.popen_in`, so every socket it opens lives in that namespace.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["main", "python_argv", "signal_ready"]


def signal_ready(**info: Any) -> None:
    """Print ``{"ready": true, **info}`` on stdout (one line, flushed): the server listens."""
    sys.stdout.write(json.dumps({"ready": True, **info}) + "\n")
    sys.stdout.flush()


def python_argv(target: str, /, **kwargs: Any) -> list[str]:
    """Return the argv that runs ``target`` ("module:function") with ``kwargs`` through this
    runner, using the current interpreter."""
    return [sys.executable, "-m", "clutchcall.netem.runner", target,
            json.dumps(kwargs, sort_keys=True)]


def _resolve(target: str) -> Callable[..., Any]:
    mod_name, _, fn_name = target.partition(":")
    if not mod_name or not fn_name:
        raise ValueError(f"target must be 'module:function', got {target!r}")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    if not callable(fn):
        raise TypeError(f"{target} is not callable")
    return fn


async def _run_async(fn: Callable[..., Any], kwargs: dict[str, Any], wants_stop: bool) -> Any:
    if wants_stop:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        kwargs = {**kwargs, "stop": stop}
    return await fn(**kwargs)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success, 1 if the function raised, 2 on bad usage."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        sys.stderr.write("usage: python -m clutchcall.netem.runner MODULE:FUNCTION [JSON]\n")
        return 2
    try:
        fn = _resolve(args[0])
        kwargs = json.loads(args[1]) if len(args) == 2 else {}
        if not isinstance(kwargs, dict):
            raise ValueError("keyword arguments must be a JSON object")
    except Exception as e:  # noqa: BLE001 -- any bad request is reported, exit 2
        sys.stderr.write(f"runner: {type(e).__name__}: {e}\n")
        return 2
    wants_stop = "stop" in inspect.signature(fn).parameters
    try:
        if inspect.iscoroutinefunction(fn):
            result = asyncio.run(_run_async(fn, kwargs, wants_stop))
        else:
            if wants_stop:
                stop = threading.Event()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: stop.set())
                kwargs = {**kwargs, "stop": stop}
            result = fn(**kwargs)
    except Exception as e:  # noqa: BLE001 -- the target's failure goes to the parent as JSON
        sys.stdout.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        sys.stdout.flush()
        return 1
    sys.stdout.write(json.dumps({"result": result}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
