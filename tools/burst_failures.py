"""Issue 15 analysis: every backchannel / interruption over the agent on a corpus split, its
burst as the engine hears it, and what the product policy did with it.

Usage (from the repo root; tune on TRAIN only)::

    python -m clutchcall eval traces/corpus --split train --json --events-out /tmp/ev.jsonl > /dev/null
    python tools/burst_failures.py traces/corpus --split train --events /tmp/ev.jsonl [--csv OUT]

Per segment (backchannel or interruption overlapping the labelled agent speech) it prints:
the labelled length, the VAD burst (speech frames from the segment's start to its end + 400 ms,
its internal silences), the burst's mean level relative to the caller's running voiced speech
level (``rel``), the onset's distance to the agent's nearest phrase end (``edge``), the
voiced share, the number of high-band frames (``hf`` > -15 dB: fricatives / stops), the number
of syllable nuclei (level peaks separated by a >= ``DIP_DB`` dip, over voiced frames) and the
outcome from the events file (the first pause / cancel matched like sim/metrics.py does).
Then the failures, and a per-feature comparison of backchannels vs soft interruptions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clutchcall.sim.calls import load_call

DIP_DB = 4.0
TAIL_MS = 400


def nuclei(levels: np.ndarray, voiced: np.ndarray, dip_db: float = DIP_DB) -> int:
    """Count level peaks among voiced frames separated by a dip of >= ``dip_db``."""
    n = 0
    peak = -math.inf
    low = math.inf
    rising = True
    for lv, v in zip(levels, voiced, strict=True):
        if not v:
            lv = -100.0
        if rising:
            if lv > peak:
                peak = lv
            elif peak - lv >= dip_db and peak > -90.0:
                n += 1
                rising = False
                low = lv
        else:
            if lv < low:
                low = lv
            elif lv - low >= dip_db:
                rising = True
                peak = lv
    if rising and peak > -90.0:
        n += 1
    return n


def over_agent_segments(corpus: Path, split: str):  # type: ignore[no-untyped-def]
    """Yield ``(manifest entry, call, segment)`` for every backchannel / interruption of
    ``split`` that overlaps the labelled agent speech (shared with tools/burst_auc.py)."""
    man = json.loads((corpus / "MANIFEST.json").read_text())
    for e in man["entries"]:
        if e["split"] != split:
            continue
        call = load_call(corpus / e["name"])
        for s in call.segments:
            if s.kind in ("backchannel", "interruption") and any(
                    a < s.end_ms and s.start_ms < b for a, b in call.agent_speech):
                yield e, call, s


def segment_rows(corpus: Path, split: str, events: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for e, call, s in over_agent_segments(corpus, split):
        fm = call.frame_ms
        feats = call.features or ()
        ev = events.get(e["name"], [])
        pause_starts = [a for a, _ in call.agent_pauses] + [b for _, b in call.agent_speech]
        k0 = max(0, int((s.start_ms - 40) // fm))
        k1 = min(len(call.speech), int((s.end_ms + TAIL_MS) // fm) + 1)
        sp = np.array(call.speech[k0:k1], dtype=bool)
        idx = np.flatnonzero(sp)
        if len(idx) == 0:
            rows.append({"call": e["name"], "channel": e["channel"], "kind": s.kind,
                         "start": s.start_ms, "lab_ms": s.end_ms - s.start_ms, "vad_ms": 0})
            continue
        b0, b1 = k0 + idx[0], k0 + idx[-1] + 1
        ff = feats[b0:b1]
        spb = np.array(call.speech[b0:b1], dtype=bool)
        lev = np.array([f.level_db for f in ff])
        rel = np.array([f.rel_db for f in ff])
        vo = np.array([f.f0_hz > 0 for f in ff]) & spb
        hf = np.array([f.hf_db for f in ff])
        gaps = int(np.sum(np.diff(spb.astype(int)) == 1))
        onset = b0 * fm
        edge = min((abs(onset - p) for p in pause_starts), default=math.inf)
        first = [x for x in ev if s.start_ms - 60 <= x["t_ms"] <= s.end_ms + 500]
        kinds = [x["kind"] for x in first]
        rows.append({
            "call": e["name"], "channel": e["channel"], "kind": s.kind, "start": s.start_ms,
            "lab_ms": s.end_ms - s.start_ms, "vad_ms": int(spb.sum()) * fm,
            "span_ms": (b1 - b0) * fm, "gaps": gaps,
            "rel": float(rel[vo].mean()) if vo.sum() >= 3 else float(rel[spb].mean()),
            "edge": edge, "voiced": float(vo.sum() / max(1, spb.sum())),
            "hf": int(np.sum((hf > -15.0) & spb)),
            "hf_sd": float(np.std(hf[spb])),
            "nuc": nuclei(lev, vo),
            "pause": "pause" in kinds, "cancel": "cancel" in kinds,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--split", default="train")
    ap.add_argument("--events", required=True)
    ap.add_argument("--csv")
    a = ap.parse_args()
    if a.split == "test":
        print("note: analysis on TEST is for the final report only", file=sys.stderr)
    events = {}
    for line in Path(a.events).read_text().splitlines():
        d = json.loads(line)
        events[d["call"]] = d["events"]
    rows = segment_rows(Path(a.corpus), a.split, events)
    cols = ["call", "channel", "kind", "start", "lab_ms", "vad_ms", "span_ms", "gaps", "rel",
            "edge", "voiced", "hf", "hf_sd", "nuc", "pause", "cancel"]
    if a.csv:
        with open(a.csv, "w") as f:
            f.write(",".join(cols) + "\n")
            for r in rows:
                f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")

    def fmt(r: dict) -> str:
        return " ".join(f"{c}={r[c]:.1f}" if isinstance(r.get(c), float) else f"{c}={r.get(c)}"
                        for c in cols)

    print("== failures ==")
    for r in rows:
        bad = (r["kind"] == "backchannel" and (r.get("pause") or r.get("cancel"))) or \
              (r["kind"] == "interruption" and not r.get("cancel"))
        if bad:
            print(fmt(r))
    print("\n== distributions (median [p10, p90]) ==")
    bc = [r for r in rows if r["kind"] == "backchannel" and r["vad_ms"]]
    it = [r for r in rows if r["kind"] == "interruption" and r["vad_ms"]]
    soft = [r for r in it if r["rel"] < -2.0]
    for c in ("lab_ms", "vad_ms", "span_ms", "gaps", "rel", "edge", "voiced", "hf", "hf_sd", "nuc"):
        out = []
        for name, grp in (("bc", bc), ("int", it), ("soft int", soft)):
            v = np.array([r[c] for r in grp], dtype=float)
            v = v[np.isfinite(v)]
            if len(v):
                out.append(f"{name} {np.median(v):.1f} [{np.percentile(v, 10):.1f}, "
                           f"{np.percentile(v, 90):.1f}]")
        print(f"{c:8s} n={len(bc)}/{len(it)}/{len(soft)}  " + " | ".join(out))


if __name__ == "__main__":
    main()
