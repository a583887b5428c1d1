"""``clutchcall sim sweep``: a grid over turn-engine knobs, in parallel on all cores or on a
Dask cluster (``--executor dask [--dask-scheduler tcp://HOST:PORT]``, see sim/README.md).

Writes ``sweep.parquet`` / ``sweep.csv`` (one row per grid point), the per-turn, per-segment
and per-call tables of every point (``turns/``, ``segments/``, ``calls/``, partitioned by the
swept knobs: ``turns/KNOB=V/.../part-0.parquet``; each point's summary is computed from them), the two Pareto fronts
(``pareto_barge.csv``: false barge-in rate vs p50 barge-in latency; ``pareto_backchannel.csv``:
backchannel wake-up rate vs missed-reply rate), PNG heatmaps over the first two swept knobs,
and ``recommended.json`` (the lowest-cost point, see :func:`clutchcall.sim.runner.cost`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import polars as pl

from clutchcall.engine import TurnConfig
from clutchcall.engine.errors import ClutchCallError
from clutchcall.sim import cli_common as cc
from clutchcall.sim.executor import CallFailure
from clutchcall.sim.runner import heatmaps, pareto, parse_range, recommend, sweep_grid

HEATMAP_METRICS = ["false_barge_in_rate", "missed_barge_in_rate", "backchannel_wakeup_rate",
                   "missed_reply_rate", "barge_latency_ms_p50", "turn_latency_ms_p95"]


def configure(parser: argparse.ArgumentParser) -> None:
    cc.add_calls(parser)
    cc.add_net(parser)
    cc.add_model(parser)
    cc.add_seed(parser)
    cc.add_agent(parser, "scripted")
    cc.add_split(parser, "train")
    parser.add_argument("--preset", default="clutchcall", help="base config for unswept knobs")
    for f in TurnConfig().to_dict():
        parser.add_argument("--" + f.replace("_", "-"), default=None, dest=f,
                            metavar="A:B:STEP", help="values of " + f)
    parser.add_argument("--out", default="sweep-out", metavar="DIR")
    cc.add_executor(parser)


def run(args: argparse.Namespace) -> int:
    fields = list(TurnConfig().to_dict())
    grid = {f: parse_range(getattr(args, f)) for f in fields if getattr(args, f) is not None}
    if not grid:
        grid = {"response_min_speech_ms": parse_range("200:1200:100"),
                "barge_confirm_ms": parse_range("0:800:50")}
    for f in fields:
        setattr(args, f, None)
    try:
        base = cc.sim_config(args)
        session = cc.executor_session(args)  # a Dask cluster starts while the calls load
    except ClutchCallError as exc:
        print(f"clutchcall sim sweep: {exc}", file=sys.stderr)
        return 2
    with session:
        try:
            calls = cc.calls_from(args, base.turn.frame_ms, base.turn.vad_aggressiveness)
            os.makedirs(args.out, exist_ok=True)
            df, failures = sweep_grid(calls, base, grid, executor=session.spec, out_dir=args.out,
                                      progress=not args.no_progress, client=session.client)
        except (ClutchCallError, OSError) as exc:
            print(f"clutchcall sim sweep: {exc}", file=sys.stderr)
            return 2
        return _write_outputs(args, df, list(grid), len(calls), failures)


def _write_outputs(args: argparse.Namespace, df: pl.DataFrame, keys: list[str], n_calls: int,
                   failures: list[CallFailure]) -> int:
    df.write_parquet(os.path.join(args.out, "sweep.parquet"), statistics=False)
    flat = df.select([c for c in df.columns if df[c].dtype.is_numeric() or c in keys])
    flat.write_csv(os.path.join(args.out, "sweep.csv"))
    fb = pareto(df, "false_barge_in_rate", "barge_latency_ms_p50")
    bw = pareto(df, "backchannel_wakeup_rate", "missed_reply_rate")
    cols_fb = keys + ["false_barge_in_rate", "barge_latency_ms_p50", "missed_barge_in_rate"]
    cols_bw = keys + ["backchannel_wakeup_rate", "missed_reply_rate", "turn_latency_ms_p95"]
    fb.select(cols_fb).write_csv(os.path.join(args.out, "pareto_barge.csv"))
    bw.select(cols_bw).write_csv(os.path.join(args.out, "pareto_backchannel.csv"))
    pngs = []
    if len(keys) >= 2:
        pngs = heatmaps(df, keys[0], keys[1], HEATMAP_METRICS, args.out)
    rec = recommend(df, keys)
    with open(os.path.join(args.out, "recommended.json"), "w") as fh:
        json.dump(rec, fh, indent=1)
    print(f"{df.height} grid points over {n_calls} calls -> {args.out}/")
    print("Pareto front: false barge-ins vs barge-in latency")
    print(cc.table(fb.select(cols_fb).to_dicts(), cols_fb))
    print("Pareto front: backchannel wake-ups vs missed replies")
    print(cc.table(bw.select(cols_bw).to_dicts(), cols_bw))
    print("recommended:", json.dumps(rec))
    if pngs:
        print("heatmaps:", ", ".join(os.path.basename(p) for p in pngs))
    return cc.report_failures("sim sweep", failures, args.out)

