"""``clutchcall corpus validate DIR``: check every labelled call and recorded trace."""

from __future__ import annotations

import argparse
import sys

from clutchcall.traces.corpus import validate_dir
from clutchcall.traces.errors import TraceFormatError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("dir", help="corpus directory")
    parser.add_argument("--no-replay", action="store_true",
                        help="do not replay recorded traces through the turn engine")


def run(args: argparse.Namespace) -> int:
    """Print one line per bad file (stderr) and a summary; return 0 if all are valid, else 1."""
    try:
        checked, errors = validate_dir(args.dir, replay=not args.no_replay)
    except TraceFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for err in errors:
        print(str(err), file=sys.stderr)
    print(f"checked {checked} files: {len(errors)} bad")
    return 1 if errors else 0
