"""``clutchcall eval DIR``: score a directory of labelled calls against their labels with one
config; print the rates (``--json``: one JSON object: the eval keys of
:data:`clutchcall.sim.metrics.EVAL_KEYS` first, then the counts flat and as ``counts``, and
the per-kind breakdown ``by_kind``; every metric's definition is in
:mod:`clutchcall.sim.metrics`).

Defaults: the scripted agent (``--agent scripted``: every labelled segment is scored whatever
happened before it) and the corpus's *test* split (``--split test``; tune on train). With
``--events-out FILE`` it also writes one JSON line per call with every decision the engine
made, so anyone can re-score: ``{"call": NAME, "agent": AGENT, "events": [{"t_ms": T,
"kind": K}, ...]}`` with ``K`` in commit / prime / cancel / duck / pause / resume / restore /
filtered and ``T`` on the call's audio clock (the end of the deciding caller frame).

The calls run on the chosen executor (``--executor local|dask``, :mod:`clutchcall.sim.executor`);
``--out DIR`` also writes the per-turn/segment/call Parquet tables the summary is computed from.
``--peer pipecat|livekit`` runs the peer library's own VAD and turn logic instead of a preset
(:mod:`clutchcall.sim.peers`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clutchcall.engine.errors import ClutchCallError
from clutchcall.sim import cli_common as cc
from clutchcall.sim.config import SimConfig
from clutchcall.sim.executor import CallFailure, Point
from clutchcall.sim.metrics import CALL_COUNTS, EVAL_KEYS, SPECULATION_KEYS
from clutchcall.sim.peers import PEER_NAMES, PEER_TURN, load_peer_calls
from clutchcall.sim.world import CallRun, simulate_call


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", nargs="?", default=None,
                        help="directory of labelled calls (default: traces/corpus)")
    parser.add_argument("--synthetic", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--synthetic-seconds", type=float, default=120.0, help=argparse.SUPPRESS)
    cc.add_net(parser)
    cc.add_model(parser)
    cc.add_turn(parser)
    cc.add_agent(parser, "scripted")
    cc.add_split(parser, "test")
    cc.add_seed(parser)
    parser.add_argument("--events-out", metavar="FILE", default=None,
                        help="write one JSON line per call with every engine decision")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--peer", choices=PEER_NAMES, default=None,
                        help="run the peer library's own VAD and turn logic on the calls "
                             "(sim/peers.py; needs the [peers] extra) instead of a preset")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write DIR/turns/part-0.parquet, segments/..., calls/...")
    cc.add_executor(parser, default_workers="1 (this process)")


def events_line(run: CallRun, agent: str) -> str:
    """Return the ``--events-out`` JSON line of one simulated call."""
    return json.dumps({"call": run.call.name, "agent": agent,
                       "events": [{"t_ms": t, "kind": k} for t, k in run.events]})


def run(args: argparse.Namespace) -> int:
    args.calls = [args.dir] if args.dir else []
    try:
        cfg = cc.sim_config(args, PEER_TURN[args.peer]) if args.peer else cc.sim_config(args)
        session = cc.executor_session(args, default_workers=1)  # starts while the calls load
    except ClutchCallError as exc:
        print(f"clutchcall eval: {exc}", file=sys.stderr)
        return 2
    with session:
        try:
            if args.peer:
                calls = load_peer_calls(args.calls, args.peer, split=args.split,
                                        frame_ms=cfg.turn.frame_ms)
            else:
                calls = cc.calls_from(args, cfg.turn.frame_ms, cfg.turn.vad_aggressiveness)
            res = cc.run_points(args, calls, [Point(cfg=cfg)], "eval", out_dir=args.out,
                                session=session)
            summary = res.summaries[0]
            if args.events_out:
                # the decisions of every call (deterministic: the same runs the executor scored)
                with open(args.events_out, "w", encoding="utf-8") as fh:
                    for c in calls:
                        fh.write(events_line(simulate_call(c, cfg), cfg.agent) + "\n")
        except (ClutchCallError, OSError) as exc:
            print(f"clutchcall eval: {exc}", file=sys.stderr)
            return 2
        return _print(args, cfg, summary, res.failures)


def _print(args: argparse.Namespace, cfg: SimConfig, summary: dict[str, Any],
           failures: list[CallFailure]) -> int:
    out: dict[str, Any] = {k: summary[k] for k in EVAL_KEYS}
    out.update({k: summary[k] for k in SPECULATION_KEYS})
    out.update({k: summary[k] for k in ("calls", "call_hours", *CALL_COUNTS)})
    out.update({k: summary[k] for k in ("released_replies", "premature_replies",
                                        "speculation_wasted_model_s_per_turn")})
    out["agent"] = cfg.agent
    out["split"] = args.split
    out["policy"] = cfg.turn.policy
    if not args.peer:
        out["vad"] = args.vad  # the VAD backend that judged the calls (a peer runs its own)
    if args.peer:
        out["peer"] = args.peer
    out["counts"] = summary["counts"]
    out["by_kind"] = summary["by_kind"]
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for k, v in out.items():
            if isinstance(v, dict):
                continue
            print(f"{k:<{width}}  {cc.fmt(v)}")
        for kind, row in out["by_kind"].items():
            print(f"{kind}: " + ", ".join(f"{k} {cc.fmt(v)}" for k, v in row.items()))
    return cc.report_failures("eval", failures, args.out)
