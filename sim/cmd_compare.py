"""``clutchcall sim compare``: replay the same calls under each peer-policy preset
(:mod:`clutchcall.sim.presets`) and print one row per preset."""

from __future__ import annotations

import argparse
import json
import sys

from clutchcall.engine.errors import ClutchCallError
from clutchcall.sim import cli_common as cc
from clutchcall.sim.metrics import EVAL_KEYS
from clutchcall.sim.presets import PRESETS
from clutchcall.sim.runner import run as run_calls

COLUMNS = ["preset", *EVAL_KEYS, "false_barge_ins_per_hour", "backchannel_wakeups_per_hour"]


def configure(parser: argparse.ArgumentParser) -> None:
    cc.add_calls(parser)
    cc.add_net(parser)
    cc.add_model(parser)
    cc.add_seed(parser)
    cc.add_agent(parser, "scripted")
    cc.add_split(parser, "test")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")


def run(args: argparse.Namespace) -> int:
    rows = []
    try:
        calls = None
        for name, turn in PRESETS.items():
            cfg = cc.sim_config(args, turn)
            if calls is None:
                calls = cc.calls_from(args, turn.frame_ms, turn.vad_aggressiveness)
            _t, s = run_calls(calls, cfg)
            rows.append({"preset": name, **s})
    except (ClutchCallError, OSError) as exc:
        print(f"clutchcall sim compare: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{k: r[k] for k in COLUMNS} for r in rows]))
    else:
        print(cc.table(rows, COLUMNS))
    return 0
