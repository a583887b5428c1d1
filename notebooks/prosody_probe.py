"""Probe: do prosodic cues at the end of a burst separate mid-turn pauses from turn ends?

Run: ``python notebooks/prosody_probe.py [CORPUS_DIR]`` (the manifest's train split). For each labelled
caller ``turn`` segment, every burst end followed by at least 200 ms of VAD silence is a pause:
*mid* if the segment goes on after it, *end* if it is the segment's last. Two cues over the
last 400 ms of the burst (40 ms windows, 20 ms hop): the energy slope (dB per window) and the
pitch slope (log-Hz per window, autocorrelation pitch 70-300 Hz, voiced windows only). The
printed AUC is the probability that a mid-turn pause has a larger cue than a turn end (0.5: the
cue does not separate them). An exploratory check before building an acoustic end-of-turn
rule (engine/endpoint.py), not a product metric.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from clutchcall.engine.audio.vad import vad_decisions
from clutchcall.traces.labels import read_call

CORPUS = Path(__file__).resolve().parent.parent / "traces" / "corpus"


def pitch_hz(x: np.ndarray, rate: int) -> float:
    """Return the autocorrelation pitch of ``x`` (70-300 Hz), or nan if unvoiced."""
    x = x - x.mean()
    if np.sqrt(np.mean(x**2)) < 1e-3:
        return float("nan")
    r = np.correlate(x, x, "full")[len(x) - 1:]
    lo, hi = rate // 300, rate // 70
    k = lo + int(np.argmax(r[lo:hi]))
    return rate / k if r[k] > 0.3 * r[0] else float("nan")


def cues(pcm: np.ndarray, rate: int, end_s: float) -> dict[str, float] | None:
    """Return the energy and pitch slopes of the 400 ms before ``end_s`` (None if too early)."""
    w = int(0.04 * rate)
    e = int(end_s * rate)
    seg = pcm[max(0, e - int(0.4 * rate)):e].astype(float) / 32768
    if len(seg) < int(0.4 * rate):
        return None
    wins = [seg[i:i + w] for i in range(0, len(seg) - w + 1, w // 2)]
    en = np.array([10 * np.log10(np.mean(v**2) + 1e-9) for v in wins])
    t = np.arange(len(en))
    p = np.array([pitch_hz(v, rate) for v in wins])
    ok = ~np.isnan(p)
    return {"energy_slope": float(np.polyfit(t, en, 1)[0]),
            "pitch_slope": float(np.polyfit(t[ok], np.log(p[ok]), 1)[0]) if ok.sum() >= 3
            else float("nan")}


def auc(pos: list[float], neg: list[float]) -> float:
    """Return P(pos > neg) (ties count half), nan values left out."""
    a, b = np.asarray(pos), np.asarray(neg)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return float("nan")
    return float(np.mean([(x > y) + 0.5 * (x == y) for x in a for y in b]))


def main() -> None:
    rows: dict[str, list[dict[str, float]]] = {"end": [], "mid": []}
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS
    man = json.loads((root / "MANIFEST.json").read_text())
    for e in man["entries"]:
        if e["split"] != "train":
            continue
        c = read_call(root / f"{e['name']}.json")
        vad = vad_decisions(c.pcm, c.rate, 20)
        for s in c.labels.segments:
            if s.expect != "reply" or s.kind != "turn":
                continue
            k, stop = s.start_ms // 20, min(len(vad), s.end_ms // 20 + 10)
            while k < stop - 1:
                if not (vad[k] and not vad[k + 1]):
                    k += 1
                    continue
                j = k + 1
                while j < len(vad) and not vad[j]:
                    j += 1
                if (j - k - 1) * 20 >= 200:
                    ft = cues(c.pcm, c.rate, (k + 1) * 0.02)
                    if ft:
                        rows["mid" if j * 20 < s.end_ms else "end"].append(ft)
                k = j
    print({k: len(v) for k, v in rows.items()})
    for name in ("energy_slope", "pitch_slope"):
        end = [r[name] for r in rows["end"]]
        mid = [r[name] for r in rows["mid"]]
        print(f"{name}: median end {np.nanmedian(end):.4f}, mid {np.nanmedian(mid):.4f}, "
              f"AUC(mid > end) {auc(mid, end):.2f}")


if __name__ == "__main__":
    main()
