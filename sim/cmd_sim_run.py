"""``clutchcall sim run``: simulate labelled calls over a modelled caller leg, print a
summary table and write per-turn / per-segment / per-call Parquet files."""

from __future__ import annotations

import argparse
import json
import os
import sys

from clutchcall.engine.errors import ClutchCallError
from clutchcall.progress import add_flag, bar, wanted
from clutchcall.sim import cli_common as cc
from clutchcall.sim.calls import Call
from clutchcall.sim.config import SimConfig
from clutchcall.sim.metrics import EVAL_KEYS, write_tables
from clutchcall.sim.runner import run as run_calls


def configure(parser: argparse.ArgumentParser) -> None:
    cc.add_calls(parser)
    cc.add_net(parser)
    cc.add_model(parser)
    cc.add_turn(parser)
    cc.add_seed(parser)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write turns/segments/calls.parquet and summary.json here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="also write each call's engine inputs/outputs as a recorded "
                             "trace DIR/NAME.parquet (replay with 'clutchcall sim replay')")
    add_flag(parser)


def record_traces(calls: list[Call], cfg: SimConfig, out_dir: str) -> list[str]:
    """Simulate each call with a ``clutchcall.traces`` TraceRecorder attached and write
    ``OUT/NAME.parquet``; return the paths."""
    from clutchcall.sim.world import simulate_call
    from clutchcall.traces.recorded import TraceRecorder

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for call in calls:
        rec = TraceRecorder(call_id=call.name, codec="pcm16", rate=16000, config=cfg.turn,
                            extra={"shell": "clutchcall.sim", "seed": cfg.seed,
                                   "transport": cfg.net.transport})
        simulate_call(call, cfg, rec)
        path = os.path.join(out_dir, f"{call.name}.parquet")
        rec.write(path)
        paths.append(path)
    return paths


def run(args: argparse.Namespace) -> int:
    try:
        cfg = cc.sim_config(args)
        calls = cc.calls_from(args, cfg.turn.frame_ms, cfg.turn.vad_aggressiveness)
        if args.record:
            record_traces(calls, cfg, args.record)
        with bar(len(calls), "sim run", enabled=wanted(args), unit="call") as b:
            t, summary = run_calls(calls, cfg, progress=b.update)
    except (ClutchCallError, OSError) as exc:
        print(f"clutchcall sim run: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_tables(t, args.out)
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump({"config": cfg.to_dict(), "summary": summary}, f, indent=1)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{len(calls)} calls, {summary['call_hours'] * 60:.1f} min, transport "
          f"{cfg.net.transport}, rtt {cfg.net.uplink.rtt_ms:g} ms, loss {cfg.net.uplink.loss:g}, "
          f"seed {cfg.seed}")
    keys = list(EVAL_KEYS) + [k for k in summary if k not in EVAL_KEYS
                              and not isinstance(summary[k], dict)]
    width = max(len(k) for k in keys)
    for k in keys:
        print(f"  {k:<{width}}  {cc.fmt(summary[k])}")
    if args.out:
        print(f"wrote {args.out}/turns.parquet, segments.parquet, calls.parquet, summary.json")
    return 0
