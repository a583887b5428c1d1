"""``clutchcall engine demo``: run the turn engine on a scripted call and print what it decided."""

from __future__ import annotations

import argparse
import dataclasses
import json

from clutchcall.engine.config import TurnConfig
from clutchcall.engine.turn import TurnEngine
from clutchcall.tools.scenario import run_inputs, scripted_call


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the scripted call")
    parser.add_argument("--seed", type=int, default=1, help="seed of the scripted call")
    parser.add_argument("--response-min-speech-ms", type=int, default=TurnConfig().response_min_speech_ms)
    parser.add_argument("--barge-confirm-ms", type=int, default=TurnConfig().barge_confirm_ms)
    parser.add_argument("--end-of-turn-silence-ms", type=int, default=TurnConfig().end_of_turn_silence_ms)
    parser.add_argument("--json", action="store_true", help="print the outputs as JSON lines")


def run(args: argparse.Namespace) -> int:
    config = TurnConfig(
        response_min_speech_ms=args.response_min_speech_ms,
        barge_confirm_ms=args.barge_confirm_ms,
        end_of_turn_silence_ms=args.end_of_turn_silence_ms,
    )
    outputs = run_inputs(TurnEngine(config), scripted_call(args.seed, args.seconds, config.frame_ms))
    appends = 0
    counts: dict[str, int] = {}
    for out in outputs:
        counts[out.kind] = counts.get(out.kind, 0) + 1
        if out.kind == "append":
            appends += 1
            continue
        fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if f.name != "time"}
        if args.json:
            print(json.dumps({"time": out.time, "kind": out.kind, **fields}))
        else:
            detail = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            print(f"{out.time:8.3f}s  {out.kind:<22} {detail}")
    if not args.json:
        print(f"\n{appends} frames appended; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "append"))
    return 0
