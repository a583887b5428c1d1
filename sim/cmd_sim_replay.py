"""``clutchcall sim replay TRACE``: replay a recorded trace's engine inputs through the
simulator and check that the engine's outputs are reproduced exactly (exit 1 if not)."""

from __future__ import annotations

import argparse
import json
import sys

from clutchcall.engine.errors import ClutchCallError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", nargs="+", help="recorded trace(s) (.parquet)")
    parser.add_argument("--json", action="store_true", help="one JSON object per trace")


def run(args: argparse.Namespace) -> int:
    try:
        from clutchcall.sim.replay import load_trace, replay_in_sim
    except ImportError as exc:  # pragma: no cover - clutchcall.traces missing
        print(f"clutchcall sim replay: needs clutchcall.traces ({exc})", file=sys.stderr)
        return 2
    status = 0
    for path in args.trace:
        try:
            res = replay_in_sim(load_trace(path))
        except (ClutchCallError, OSError, ImportError) as exc:
            print(f"clutchcall sim replay: {path}: {exc}", file=sys.stderr)
            status = 2
            continue
        if res.mismatch is not None:
            status = max(status, 1)
        if args.json:
            print(json.dumps({"trace": path, "exact": res.mismatch is None, "inputs": res.inputs,
                              "outputs": res.outputs, "actions": res.actions,
                              "mismatch": res.mismatch}))
        else:
            verdict = "reproduced exactly" if res.mismatch is None else "MISMATCH"
            acts = ", ".join(f"{k} {v}" for k, v in sorted(res.actions.items()))
            print(f"{path}: {res.inputs} inputs, {res.outputs} outputs ({acts}): {verdict}")
            if res.mismatch:
                print(f"  first difference: {res.mismatch}")
    return status
