"""The asymmetric end-of-turn wait on the train splits: a grid, and the choice (issue 16).

The ``prosodic`` rule (``engine/endpoint.py`` ``ProsodicRule``) waits per pause of a long turn:
``end_of_turn_final_ms`` when the final burst sounds final (P(end) >= ``end_of_turn_final_pct``
%), ``end_of_turn_max_ms`` (1000) when it sounds continuing, ``end_of_turn_neutral_ms`` when
neither. This script runs, for every point of the grid, on corpus v3's train split and on
corpus v2's train split (the robustness check: v2's mid-turn holds end like turn ends)::

    python -m clutchcall eval CORPUS --split train --json --end-of-turn-rule prosodic \\
        --end-of-turn-final-pct P --end-of-turn-final-ms F --end-of-turn-neutral-ms N

plus the product (``fixed``, 500 ms), and prints one row per point and the chosen point.

Run (from the checkout root)::

    mkdir -p /tmp/corpus_v2 && git archive 4d5cd11 traces/corpus | tar -x -C /tmp/corpus_v2
    python notebooks/eot_grid.py traces/corpus /tmp/corpus_v2/traces/corpus --out grid.json

The selection rule, written down before any test-split run (``choose``):

1. Eligible only if, on BOTH train splits (v3 and v2): missed replies not more than the
   product's; premature replies (count) not more than the product's; from-end-of-speech p50
   not above the product's (+0.5 ms); p95 not above the product's + 200 ms.
2. And strictly fewer premature replies than the product on v3 train.
3. Among the eligible: fewest premature replies on v3 + v2 train together; then the lowest
   v3 p50; then the lowest v3 p95; then the *higher* ``final_ms`` and the *lower*
   ``neutral_ms`` and the *higher* ``final_pct`` (the most conservative change).

The test split is then run once for the product and the chosen point (``--split test``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from typing import Any

KEYS = ("premature_replies", "released_replies", "missed_replies", "reply_segments",
        "turn_latency_from_speech_end_ms_p50", "turn_latency_from_speech_end_ms_p95",
        "turn_latency_from_speech_end_ms_p99", "speculation_wasted_model_s")
PCTS = (60, 70, 80, 90)
FINALS = (300, 350, 400, 450, 500)
NEUTRALS = (500, 700, 800, 900)


def run(corpus: str, split: str, flags: list[str]) -> dict[str, Any]:
    """One ``clutchcall eval`` run's figures (the eval's own keys)."""
    out = subprocess.run([sys.executable, "-m", "clutchcall", "eval", corpus, "--split", split,
                          "--json", *flags], check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    return {k: d[k] for k in KEYS}


def flags_of(pct: int, fin: int, neu: int) -> list[str]:
    return ["--end-of-turn-rule", "prosodic", "--end-of-turn-final-pct", str(pct),
            "--end-of-turn-final-ms", str(fin), "--end-of-turn-neutral-ms", str(neu)]


def eligible(row: dict[str, Any], base: dict[str, Any]) -> bool:
    """Rules 1 and 2 of the module docstring."""
    for c in ("v3", "v2"):
        r, b = row[c], base[c]
        if (r["missed_replies"] > b["missed_replies"] or r["premature_replies"] > b["premature_replies"]
                or r["turn_latency_from_speech_end_ms_p50"] > b["turn_latency_from_speech_end_ms_p50"] + 0.5
                or r["turn_latency_from_speech_end_ms_p95"] > b["turn_latency_from_speech_end_ms_p95"] + 200):
            return False
    return bool(row["v3"]["premature_replies"] < base["v3"]["premature_replies"])


def choose(rows: list[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any] | None:
    """Rule 3 of the module docstring over the eligible rows (None if there is none)."""
    ok = [r for r in rows if eligible(r, base)]
    if not ok:
        return None
    return min(ok, key=lambda r: (r["v3"]["premature_replies"] + r["v2"]["premature_replies"],
                                  r["v3"]["turn_latency_from_speech_end_ms_p50"],
                                  r["v3"]["turn_latency_from_speech_end_ms_p95"],
                                  -r["final_ms"], r["neutral_ms"], -r["final_pct"]))


def fmt(name: str, r: dict[str, Any]) -> str:
    def one(d: dict[str, Any]) -> str:
        return (f"{d['premature_replies']}/{d['released_replies']} miss {d['missed_replies']} "
                f"{d['turn_latency_from_speech_end_ms_p50']:.1f}/{d['turn_latency_from_speech_end_ms_p95']:.0f}/"
                f"{d['turn_latency_from_speech_end_ms_p99']:.0f} w {d['speculation_wasted_model_s']:.1f}")
    return f"{name:18} v3 {one(r['v3']):42} v2 {one(r['v2'])}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("v3")
    ap.add_argument("v2")
    ap.add_argument("--split", default="train", choices=("train", "test"))
    ap.add_argument("--out", default=None, help="write every row as JSON here")
    a = ap.parse_args()
    base = {"v3": run(a.v3, a.split, []), "v2": run(a.v2, a.split, [])}
    print(fmt("fixed 500", base), flush=True)
    rows = []
    for pct, fin, neu in itertools.product(PCTS, FINALS, NEUTRALS):
        f = flags_of(pct, fin, neu)
        r = {"final_pct": pct, "final_ms": fin, "neutral_ms": neu,
             "v3": run(a.v3, a.split, f), "v2": run(a.v2, a.split, f)}
        rows.append(r)
        print(fmt(f"{pct}% {fin}/{neu}", r) + ("  *" if eligible(r, base) else ""), flush=True)
    best = choose(rows, base)
    print("chosen:", "none" if best is None else fmt(f"{best['final_pct']}% {best['final_ms']}/{best['neutral_ms']}", best))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"base": base, "rows": rows, "chosen": best}, fh, indent=1)


if __name__ == "__main__":
    main()
