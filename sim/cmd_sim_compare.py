"""``clutchcall sim compare``: replay the same calls under each peer-policy preset
(:mod:`clutchcall.sim.presets`) and print one row per preset. The presets run as the points of
one grid on the chosen executor (``--executor local|dask``, :mod:`clutchcall.sim.executor`);
``--out DIR`` also writes each preset's tables (``DIR/turns/preset=NAME/part-0.parquet``, ...).
"""

from __future__ import annotations

import argparse
import json
import sys

from clutchcall.engine.errors import ClutchCallError
from clutchcall.sim import cli_common as cc
from clutchcall.sim.executor import Point
from clutchcall.sim.metrics import EVAL_KEYS
from clutchcall.sim.presets import PRESETS

COLUMNS = ["preset", *EVAL_KEYS, "false_barge_ins_per_hour", "backchannel_wakeups_per_hour"]


def configure(parser: argparse.ArgumentParser) -> None:
    cc.add_calls(parser)
    cc.add_net(parser)
    cc.add_model(parser)
    cc.add_seed(parser)
    cc.add_agent(parser, "scripted")
    cc.add_split(parser, "test")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write per-turn/segment/call Parquet, partitioned by preset")
    cc.add_executor(parser, default_workers="1 (this process)")


def run(args: argparse.Namespace) -> int:
    try:
        points = [Point(cfg=cc.sim_config(args, turn), labels={"preset": name})
                  for name, turn in PRESETS.items()]
        first = next(iter(PRESETS.values()))
        session = cc.executor_session(args, default_workers=1)  # starts while the calls load
    except ClutchCallError as exc:
        print(f"clutchcall sim compare: {exc}", file=sys.stderr)
        return 2
    with session:
        try:
            calls = cc.calls_from(args, first.frame_ms, first.vad_aggressiveness)
            res = cc.run_points(args, calls, points, "sim compare", out_dir=args.out,
                                session=session)
        except (ClutchCallError, OSError) as exc:
            print(f"clutchcall sim compare: {exc}", file=sys.stderr)
            return 2
        rows = [{**p.labels, **s} for p, s in zip(points, res.summaries, strict=True)]
        if args.json:
            print(json.dumps([{k: r[k] for k in COLUMNS} for r in rows]))
        else:
            print(cc.table(rows, COLUMNS))
        return cc.report_failures("sim compare", res.failures, args.out)
