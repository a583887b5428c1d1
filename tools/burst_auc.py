"""Issue 15 analysis: do syllable nuclei, spectral flux or high-band share separate a
backchannel from an interruption at a fixed decision point? (train split only)

For every backchannel / interruption over the labelled agent speech, take the VAD speech
frames from its start to its end + 400 ms; at the point where the burst has N ms of speech
(N = 300, 500, 700, 900: the product's confirm / yield points lie there) compute, over the
frames so far: ``nuc`` (level peaks separated by >= 4 dB dips among voiced frames, as in
tools/burst_failures.py), ``hf`` (share of speech frames with ``hf_db`` > -15 dB), ``hfmax``,
``rel`` (mean level vs the caller's running voiced level), ``flux`` (mean |change| of
``hf_db`` between speech frames: spectral variation), ``vfrac`` (voiced share), ``levsd``
(level spread over voiced frames), ``f0sd`` (pitch spread, semitones). Prints each feature's
median per class and its AUC (P(interruption > backchannel); 0.5 = no information, < 0.5 =
backchannels higher).

Usage: python tools/burst_auc.py traces/corpus [--split train]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from burst_failures import nuclei, over_agent_segments

POINTS_MS = (300, 500, 700, 900)


def rows(corpus: Path, split: str) -> list[dict]:
    out = []
    for _e, c, s in over_agent_segments(corpus, split):
        fm = c.frame_ms
        f = c.features or ()
        k0 = max(0, int((s.start_ms - 40) // fm))
        k1 = min(len(c.speech), int((s.end_ms + 400) // fm) + 1)
        ks = [k for k in range(k0, k1) if c.speech[k]]
        if not ks:
            continue
        row: dict = {"kind": s.kind}
        for n_ms in POINTS_MS:
            sel = ks[: n_ms // fm]
            if len(sel) < n_ms // fm:
                continue
            span = range(sel[0], sel[-1] + 1)
            lev = np.array([f[k].level_db for k in span])
            vo = np.array([f[k].f0_hz > 0 and c.speech[k] for k in span])
            hf = np.array([f[k].hf_db for k in sel])
            vsel = [k for k in sel if f[k].f0_hz > 0]
            f0 = np.array([f[k].f0_hz for k in vsel])
            rel = [f[k].rel_db for k in (vsel if len(vsel) >= 3 else sel)]
            row[n_ms] = {
                "nuc": nuclei(lev, vo), "hf": float(np.mean(hf > -15.0)),
                "hfmax": float(hf.max()), "rel": float(np.mean(rel)),
                "flux": float(np.mean(np.abs(np.diff(hf)))), "vfrac": len(vsel) / len(sel),
                "levsd": float(np.std(lev[vo])) if vo.sum() > 1 else 0.0,
                "f0sd": float(np.std(12 * np.log2(f0 / 100.0))) if len(f0) > 2 else 0.0,
            }
        out.append(row)
    return out


def auc(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(tie)."""
    if not len(neg) or not len(pos):
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return float(np.mean((d > 0) + 0.5 * (d == 0)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--split", default="train")
    a = ap.parse_args()
    rs = rows(Path(a.corpus), a.split)
    for n_ms in POINTS_MS:
        bc = [r[n_ms] for r in rs if r["kind"] == "backchannel" and n_ms in r]
        it = [r[n_ms] for r in rs if r["kind"] == "interruption" and n_ms in r]
        print(f"at {n_ms} ms of speech: {len(bc)} backchannels, {len(it)} interruptions")
        if not bc or not it:
            continue
        for k in bc[0]:
            x = np.array([r[k] for r in bc])
            y = np.array([r[k] for r in it])
            print(f"  {k:6s} backchannel {np.median(x):7.2f}  interruption {np.median(y):7.2f}"
                  f"  AUC {auc(x, y):.2f}")


if __name__ == "__main__":
    main()
