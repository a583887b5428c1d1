"""The end-of-turn evidence of every pause in the corpus's caller turns, and how well each
cue separates a turn end from a mid-turn pause (issue 16; the data behind the ``prosodic``
end-of-turn rule, ``engine/endpoint.py``).

Run: ``python notebooks/eot_evidence.py [CORPUS_DIR] [--split train|test|all] [--fit]``.
For each labelled caller ``turn`` segment of the split, every VAD burst end with >= 3 voiced frames (webrtcvad, 20 ms
frames, the engine's ``vad_decisions``) followed by >= 200 ms of VAD silence inside the
segment (or right after its end) is a pause: *end* if no speech of the segment follows it,
else *mid*. Its evidence is what the engine sees at that moment: the final burst's prosody
(:class:`~clutchcall.engine.endpoint.ProsodyTrack` fed the frames' features,
``engine/audio/features.py`` ``signal_features``) and the burst's length. Printed: counts and,
per cue, the AUC = P(cue of a turn end > cue of a mid-turn pause) (0.5: no separation; < 0.5
means it separates the other way). ``--fit`` also fits the rule's logistic model on the split
(numpy Newton/IRLS with a small ridge) and prints its coefficients and in-sample AUC, plus a
leave-one-call-out AUC (each call's pauses scored by a model fitted without that call).
An offline analysis, not a product metric; the engine computes the same features frame by frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from clutchcall.engine.audio.features import signal_features
from clutchcall.engine.audio.vad import vad_decisions
from clutchcall.engine.endpoint import ProsodyTrack, prosody_vector
from clutchcall.traces.labels import read_call

CORPUS = Path(__file__).resolve().parent.parent / "traces" / "corpus"
FRAME_MS = 20
CUES = ("slope_st_per_s", "rel_f0_st", "rel_db", "drop_st", "tail_ms", "burst_ms", "range_st")


def pauses(path: Path) -> list[dict[str, float]]:
    """The pauses of one call's caller turns with their evidence (module docstring)."""
    c = read_call(path)
    vad = vad_decisions(c.pcm, c.rate, FRAME_MS)
    feats = signal_features(c.pcm, c.rate, FRAME_MS, vad)
    track = ProsodyTrack()
    out = []
    burst_start = 0.0
    last_end = -1.0
    for k, (sp, f) in enumerate(zip(vad, feats, strict=False)):
        now = (k + 1) * FRAME_MS / 1000.0
        if not sp:
            continue
        onset = now - FRAME_MS / 1000.0
        if onset - last_end >= 0.2 - 1e-9:
            burst_start = onset
        track.add(now, f)
        last_end = now
        nxt = k + 1
        if nxt < len(vad) and vad[nxt]:
            continue
        j = nxt
        while j < len(vad) and not vad[j]:
            j += 1
        if (j - nxt) * FRAME_MS < 200:
            continue
        end_ms = now * 1000.0
        seg = next((s for s in c.labels.segments if s.kind == "turn"
                    and s.start_ms <= end_ms <= s.end_ms + 300), None)
        if seg is None:
            continue
        fin = track.final(burst_start, now)
        row = {"end": float(j * FRAME_MS >= seg.end_ms), "pause_ms": (j - nxt) * FRAME_MS,
               "burst_ms": round((now - burst_start) * 1000.0), "call": path.stem}
        if fin is not None:
            row.update(slope_st_per_s=fin.slope_st_per_s, rel_f0_st=fin.rel_f0_st,
                       rel_db=fin.rel_db, drop_st=fin.drop_st, tail_ms=fin.tail_ms,
                       range_st=fin.range_st)
        if fin is not None:
            row["x"] = prosody_vector(fin)
            out.append(row)
    return out


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg), ties half."""
    if not len(pos) or not len(neg):
        return float("nan")
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def fit(x: np.ndarray, y: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Logistic regression by Newton steps with an L2 ridge (not on the intercept); returns
    ``[intercept, weights...]``."""
    a = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(a.shape[1])
    pen = np.full(a.shape[1], ridge)
    pen[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        g = a.T @ (p - y) + pen * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(pen)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    return w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=str(CORPUS))
    ap.add_argument("--split", default="train", choices=("train", "test", "all"))
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--min-pause-ms", type=int, default=250)
    a = ap.parse_args()
    root = Path(a.corpus)
    man = json.loads((root / "MANIFEST.json").read_text())
    rows = []
    for e in man["entries"]:
        if a.split == "all" or e["split"] == a.split:
            rows += [r for r in pauses(root / f"{e['name']}.json")
                     if r["end"] or r["pause_ms"] >= a.min_pause_ms]
    y = np.array([r["end"] for r in rows])
    print(f"{root} {a.split}: {int(y.sum())} turn ends, {int((1 - y).sum())} mid-turn pauses "
          f">= {a.min_pause_ms} ms")
    for cue in CUES:
        v = np.array([r.get(cue, np.nan) for r in rows], dtype=float)
        ok = ~np.isnan(v)
        print(f"  {cue:16} median end {np.median(v[ok & (y == 1)]):8.2f}  mid "
              f"{np.median(v[ok & (y == 0)]):8.2f}  AUC {auc(v[ok & (y == 1)], v[ok & (y == 0)]):.2f}")
    x = np.array([r["x"] for r in rows])
    if a.fit:
        w = fit(x, y)
        s = np.hstack([np.ones((len(x), 1)), x]) @ w
        print("  coefficients [intercept, " + ", ".join(PROSODY_FEATURES) + "]:")
        print("   ", ", ".join(f"{c:.3f}" for c in w))
        print(f"  in-sample AUC {auc(s[y == 1], s[y == 0]):.2f}")
        calls = np.array([r["call"] for r in rows])
        loo = np.zeros(len(rows))
        for c in sorted(set(calls)):
            m = calls == c
            wc = fit(x[~m], y[~m])
            loo[m] = np.hstack([np.ones((int(m.sum()), 1)), x[m]]) @ wc
        print(f"  leave-one-call-out AUC {auc(loo[y == 1], loo[y == 0]):.2f}")
    else:
        from clutchcall.engine.endpoint import PROSODIC_WEIGHTS
        s = np.hstack([np.ones((len(x), 1)), x]) @ np.asarray(PROSODIC_WEIGHTS)
        print(f"  checked-in model's AUC {auc(s[y == 1], s[y == 0]):.2f}")


PROSODY_FEATURES = ("slope/10", "drop_st/3", "rel_f0_st/3", "rel_db/3")

if __name__ == "__main__":
    main()
