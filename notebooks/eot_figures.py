"""Issue 16's end-of-turn figures: ``fixed`` vs ``prosodic`` on a corpus split, one table row
each (the eval's own keys). Reproduces the tables in sim/README.md ("The prosodic end-of-turn
rule").

Run (from the checkout root)::

    python notebooks/eot_figures.py traces/corpus --split train
    # corpus v2 (the generator before the hold cues), as committed at 4d5cd11:
    mkdir -p /tmp/corpus_v2 && git archive 4d5cd11 traces/corpus | tar -x -C /tmp/corpus_v2
    python notebooks/eot_figures.py /tmp/corpus_v2/traces/corpus --split train

Each row is ``python -m clutchcall eval CORPUS --split SPLIT --json --end-of-turn-rule RULE``
(plus ``--end-of-turn-final-ms N`` for the shortening variant, ``--end-of-turn-barge-ms N`` /
``--end-of-turn-held-ms N`` for the call-context variants: ``--barge-ms N``, ``--held-ms N``);
the simulator is deterministic, so the same command gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

KEYS = ("premature_reply_rate", "premature_replies", "released_replies", "missed_reply_rate",
        "turn_latency_from_speech_end_ms_p50", "turn_latency_from_speech_end_ms_p95",
        "turn_latency_from_speech_end_ms_p99", "false_barge_in_rate", "missed_barge_in_rate",
        "backchannel_disruption_rate", "speculations_started", "speculations_released",
        "speculations_retracted", "speculation_wasted_model_s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--split", default="train", choices=("train", "test"))
    ap.add_argument("--final-ms", type=int, action="append", default=[],
                    help="also the prosodic rule shortening to this silence after a final fall")
    ap.add_argument("--barge-ms", type=int, action="append", default=[],
                    help="also both rules with end_of_turn_barge_ms = this")
    ap.add_argument("--held-ms", type=int, action="append", default=[],
                    help="also the fixed rule with end_of_turn_held_ms = this")
    a = ap.parse_args()
    rows = [("fixed", []), ("prosodic", [])]
    rows += [(f"prosodic final {n}", ["--end-of-turn-final-ms", str(n)]) for n in a.final_ms]
    rows += [(f"{r} barge {n}", ["--end-of-turn-barge-ms", str(n)])
             for n in a.barge_ms for r in ("fixed", "prosodic")]
    rows += [(f"fixed held {n}", ["--end-of-turn-held-ms", str(n)]) for n in a.held_ms]
    print("| rule | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for name, extra in rows:
        rule = name.split()[0]
        out = subprocess.run([sys.executable, "-m", "clutchcall", "eval", a.corpus, "--split", a.split,
                              "--json", "--no-progress", "--end-of-turn-rule", rule, *extra],
                             capture_output=True, text=True, check=True).stdout
        d = json.loads(out)
        print(f"| {name} | " + " | ".join(str(d[k]) for k in KEYS) + " |", flush=True)


if __name__ == "__main__":
    main()
