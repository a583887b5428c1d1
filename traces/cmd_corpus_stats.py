"""``clutchcall corpus stats DIR``: counts by kind and channel, durations."""

from __future__ import annotations

import argparse
import json
import sys

from clutchcall.traces.corpus import corpus_stats, format_stats
from clutchcall.traces.errors import TraceFormatError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("dir", help="corpus directory")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the stats; return 0 (1 if DIR is not a directory)."""
    try:
        st = corpus_stats(args.dir)
    except TraceFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(st, indent=1) if args.json else format_stats(st))
    return 0
