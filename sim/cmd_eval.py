"""``clutchcall eval DIR``: score a directory of labelled calls against their labels with one
config; print the rates (``--json``: one JSON object with exactly the eval keys plus counts).
The calls run on the chosen executor (``--executor local|dask``, :mod:`clutchcall.sim.executor`);
``--out DIR`` also writes the per-turn/segment/call Parquet tables the summary is computed from.
"""

from __future__ import annotations

import argparse
import json
import sys

from clutchcall.engine.errors import ClutchCallError
from clutchcall.sim import cli_common as cc
from clutchcall.sim.executor import Point
from clutchcall.sim.metrics import CALL_COUNTS, EVAL_KEYS, SPECULATION_KEYS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", nargs="?", default=None,
                        help="directory of labelled calls (default: traces/corpus)")
    parser.add_argument("--synthetic", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--synthetic-seconds", type=float, default=120.0, help=argparse.SUPPRESS)
    cc.add_net(parser)
    cc.add_model(parser)
    cc.add_turn(parser)
    cc.add_seed(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write DIR/turns/part-0.parquet, segments/..., calls/...")
    cc.add_executor(parser, default_workers="1 (this process)")


def run(args: argparse.Namespace) -> int:
    args.calls = [args.dir] if args.dir else []
    try:
        cfg = cc.sim_config(args)
        calls = cc.calls_from(args, cfg.turn.frame_ms, cfg.turn.vad_aggressiveness)
        res = cc.run_points(args, calls, [Point(cfg=cfg)], "eval", out_dir=args.out)
        summary = res.summaries[0]
    except (ClutchCallError, OSError) as exc:
        print(f"clutchcall eval: {exc}", file=sys.stderr)
        return 2
    out = {k: summary[k] for k in EVAL_KEYS}
    out.update({k: summary[k] for k in SPECULATION_KEYS})
    out.update({k: summary[k] for k in ("calls", "call_hours", *CALL_COUNTS)})
    out.update({k: summary[k] for k in ("released_replies", "premature_replies",
                                        "speculation_wasted_model_s_per_turn")})
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for k, v in out.items():
            print(f"{k:<{width}}  {cc.fmt(v)}")
    return cc.report_failures("eval", res.failures, args.out)
