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
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clutchcall.engine.errors import ClutchCallError
from clutchcall.sim import cli_common as cc
from clutchcall.sim.metrics import CALL_COUNTS, EVAL_KEYS, summarize, tables
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


def events_line(run: CallRun, agent: str) -> str:
    """Return the ``--events-out`` JSON line of one simulated call."""
    return json.dumps({"call": run.call.name, "agent": agent,
                       "events": [{"t_ms": t, "kind": k} for t, k in run.events]})


def run(args: argparse.Namespace) -> int:
    args.calls = [args.dir] if args.dir else []
    try:
        if args.peer:
            cfg = cc.sim_config(args, PEER_TURN[args.peer])
            calls = load_peer_calls(args.calls, args.peer, split=args.split,
                                    frame_ms=cfg.turn.frame_ms)
        else:
            cfg = cc.sim_config(args)
            calls = cc.calls_from(args, cfg.turn.frame_ms, cfg.turn.vad_aggressiveness)
        runs = [simulate_call(c, cfg) for c in calls]
        summary = summarize(tables(runs, cfg))
        if args.events_out:
            with open(args.events_out, "w", encoding="utf-8") as fh:
                for r in runs:
                    fh.write(events_line(r, cfg.agent) + "\n")
    except (ClutchCallError, OSError) as exc:
        print(f"clutchcall eval: {exc}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {k: summary[k] for k in EVAL_KEYS}
    out.update({k: summary[k] for k in ("calls", "call_hours", *CALL_COUNTS)})
    out["agent"] = cfg.agent
    out["split"] = args.split
    out["policy"] = cfg.turn.policy
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
    return 0
