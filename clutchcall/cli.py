"""The one ``clutchcall`` command line, with subcommands.

Each subcommand lives in the part of the tree it belongs to, as a module exposing
``configure(parser: argparse.ArgumentParser) -> None`` and ``run(args) -> int``.
The table below maps command words to those modules; a module is imported only when its
command runs, so ``clutchcall --help`` stays fast and one part's heavy imports (aioquic,
polars) never slow another's command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command words -> (module, one-line help). Add a line here for a new subcommand.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("engine", "demo"): ("clutchcall.engine.demo", "run the turn engine on a scripted call and print its actions"),
    ("bench", "engine"): ("clutchcall.engine.bench", "benchmark the turn engine (frames/s, us per frame)"),
    ("native", "echo"): ("clutchcall.native.echo_cmd", "run the shard-per-core QUIC echo service (io_uring/asyncio), optionally self-test it"),
    ("bench", "native"): ("clutchcall.native.bench", "benchmark the native data plane (ring msgs/s, UDP echo io_uring vs asyncio)"),
}


def _usage() -> str:
    lines = ["usage: clutchcall COMMAND [ARGS...]", "", "commands:"]
    width = max(len(" ".join(k)) for k in COMMANDS)
    for words, (_, help_text) in sorted(COMMANDS.items()):
        lines.append(f"  {' '.join(words):<{width}}  {help_text}")
    lines.append("")
    lines.append("Run 'clutchcall COMMAND --help' for a command's options.")
    return "\n".join(lines)


def _match(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]] | None:
    best: tuple[str, ...] | None = None
    for words in COMMANDS:
        if tuple(argv[: len(words)]) == words and (best is None or len(words) > len(best)):
            best = words
    if best is None:
        return None
    return best, list(argv[len(best):])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named by ``argv`` (default ``sys.argv[1:]``); return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from clutchcall import __version__

        print(f"clutchcall {__version__}")
        return 0
    found = _match(args)
    if found is None:
        print(f"clutchcall: unknown command: {' '.join(args[:2])}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    words, rest = found
    module_name, help_text = COMMANDS[words]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="clutchcall " + " ".join(words), description=help_text)
    module.configure(parser)
    ns = parser.parse_args(rest)
    from clutchcall.engine.errors import ConfigError

    try:
        return int(module.run(ns) or 0)
    except ConfigError as exc:
        print(f"clutchcall {' '.join(words)}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
