"""``clutchcall model serve``: run the embedded reference model on its own (loopback by default).

Prints one JSON line ``{"url": ...}`` once listening, then serves until interrupted (or for
``--seconds``). Used by benchmarks to put the model in its own process, and handy for pointing
another client at an OpenAI-Realtime-compatible server that needs no network or key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from clutchcall.prod.model.server import DEFAULT_REPLIES, ModelServerConfig, ReferenceModelServer


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    parser.add_argument("--mode", choices=("speak", "echo"), default="speak",
                        help="reply with espeak-ng speech, or echo the caller's turn")
    parser.add_argument("--ttfa-ms", type=int, default=300, help="median time to first audio (ms)")
    parser.add_argument("--ttfa-sigma", type=float, default=0.35,
                        help="lognormal shape of the time to first audio (0: always the median)")
    parser.add_argument("--ttfa-seed", type=int, default=1, help="seed of the time-to-first-audio draws")
    parser.add_argument("--delta-ms", type=int, default=40, help="audio per delta (ms)")
    parser.add_argument("--reply", action="append", default=None,
                        help="a reply text (repeat for several; default: built-in replies)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")


def config_from_args(args: argparse.Namespace) -> ModelServerConfig:
    """Return the server config the parsed ``args`` describe; raises ConfigError."""
    return ModelServerConfig(host=args.host, port=args.port, mode=args.mode,
                             time_to_first_audio_ms=args.ttfa_ms, ttfa_sigma=args.ttfa_sigma,
                             ttfa_seed=args.ttfa_seed, delta_ms=args.delta_ms,
                             replies=tuple(args.reply) if args.reply else DEFAULT_REPLIES)


async def _serve(cfg: ModelServerConfig, seconds: float | None) -> None:
    async with ReferenceModelServer(cfg) as srv:
        print(json.dumps({"url": srv.url}), flush=True)
        if seconds is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(seconds)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code."""
    cfg = config_from_args(args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(cfg, args.seconds))
    sys.stdout.flush()
    return 0
