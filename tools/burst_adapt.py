"""Issue 15 analysis (follow-up 3): would per-call adaptation help? (train split only)

Idea: a caller's earlier bursts over the agent that ended without going on (backchannels, as
the engine sees them: dismissed voiced bursts) calibrate that caller's backchannel level, so a
later burst no louder than those is held, not cancelled. For every backchannel / noise /
interruption over the agent, in call order, take the mean level relative to the caller's
running voiced level (``rel_db``, voiced frames if >= 3) over the first 300 ms of gated speech
(the product's confirm point), and for those with an earlier dismissed voiced burst in the same
call, the level minus the loudest such earlier burst. Prints the AUC (P(interruption >
backchannel)) of the plain level and of the level relative to the caller's earlier
backchannels. Train, corpus v3 / v2: plain 0.74 / 0.75 (33 / 39 backchannels, 28
interruptions); relative 0.70 / 0.79, but only 9 / 13 backchannels and 3 interruptions have
an earlier dismissed voiced burst -- most interruptions come before any backchannel of their
caller, and the two backchannels the 300 ms confirm cancelled on v3 train were 2.6 and
11.6 dB *louder* than their caller's earlier ones. Not used.

Usage: python tools/burst_adapt.py traces/corpus [--split train] [--ms 300]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clutchcall.sim.calls import load_call

MIN_SNR_DB = 6.0


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a positive > a negative), ties half."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--split", default="train")
    ap.add_argument("--ms", type=int, default=300)
    a = ap.parse_args()
    if a.split == "test":
        print("note: analysis on TEST is for the final report only", file=sys.stderr)
    corpus = Path(a.corpus)
    man = json.loads((corpus / "MANIFEST.json").read_text())
    rel: dict[str, list[float]] = {"backchannel": [], "interruption": []}
    rel_prior: dict[str, list[float]] = {"backchannel": [], "interruption": []}
    for e in man["entries"]:
        if e["split"] != a.split:
            continue
        c = load_call(corpus / e["name"])
        f = c.features or ()
        fm = c.frame_ms
        prior: list[float] = []
        for s in sorted(c.segments, key=lambda s: s.start_ms):
            if s.kind not in ("backchannel", "interruption", "noise") or not f or not any(
                    x < s.end_ms and s.start_ms < y for x, y in c.agent_speech):
                continue
            k0 = max(0, int((s.start_ms - 40) // fm))
            k1 = min(len(c.speech), int((s.end_ms + 400) // fm) + 1)
            ks = [k for k in range(k0, k1) if c.speech[k] and f[k].snr_db >= MIN_SNR_DB][:a.ms // fm]
            if len(ks) < a.ms // fm:
                continue  # ended before the decision point: never at risk
            voiced = [k for k in ks if f[k].f0_hz > 0]
            r = float(np.mean([f[k].rel_db for k in (voiced if len(voiced) >= 3 else ks)]))
            if s.kind in rel:
                rel[s.kind].append(r)
                if prior:
                    rel_prior[s.kind].append(r - max(prior))
            if s.kind != "interruption" and len(voiced) >= 3:
                prior.append(r)
    bc, it = rel["backchannel"], rel["interruption"]
    pb, pi = rel_prior["backchannel"], rel_prior["interruption"]
    print(f"{corpus} {a.split}: bursts reaching {a.ms} ms: backchannels {len(bc)}, interruptions "
          f"{len(it)}; AUC level {auc(it, bc):.2f}")
    print(f"  with an earlier dismissed voiced burst: backchannels {len(pb)}, interruptions {len(pi)}; "
          f"AUC level - loudest earlier {auc(pi, pb):.2f}; medians "
          f"{np.median(pb) if pb else float('nan'):+.1f} / {np.median(pi) if pi else float('nan'):+.1f} dB")


if __name__ == "__main__":
    main()
