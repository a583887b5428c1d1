"""Issue 15 analysis (follow-up 3): how the engine's noise-gated VAD splits each backchannel /
interruption over the agent into bursts, and the silences between them (train split only).

For every backchannel / interruption overlapping the labelled agent speech: the speech
frames the engine counts (VAD speech at least ``evidence_min_snr_db`` = 6 dB above the noise
floor) from the segment's start - 40 ms to its end + 400 ms, as runs joined across silences
shorter than ``--gap`` ms (the engine's ``burst_gap_ms``), printed ``speech|silence|speech...``
(ms). This is what chose ``evidence_mid_confirm_ms = 600`` with ``burst_gap_ms = 200`` and
``evidence_follow_ms = 300``: single backchannels reach at most ~660 ms of speech (one 900 ms
outlier), while interruptions add up past 600 ms across silences of 100-340 ms.

Usage: python tools/burst_split.py traces/corpus [--split train] [--gap 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from burst_failures import over_agent_segments

MIN_SNR_DB = 6.0


def bursts(speech: list[bool], frame_ms: int, gap_ms: int) -> list[tuple[int, int, int]]:
    """Return ``(first frame, end frame, speech frames)`` of the runs of ``speech`` joined
    across silences shorter than ``gap_ms``."""
    out: list[tuple[int, int, int]] = []
    k = 0
    while k < len(speech):
        if not speech[k]:
            k += 1
            continue
        j = k
        while j < len(speech) and speech[j]:
            j += 1
        if out and (k - out[-1][1]) * frame_ms < gap_ms:
            a, _b, n = out[-1]
            out[-1] = (a, j, n + j - k)
        else:
            out.append((k, j, j - k))
        k = j
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--split", default="train")
    ap.add_argument("--gap", type=int, default=100)
    a = ap.parse_args()
    if a.split == "test":
        print("note: analysis on TEST is for the final report only", file=sys.stderr)
    for e, c, s in over_agent_segments(Path(a.corpus), a.split):
        fm = c.frame_ms
        f = c.features or ()
        k0 = max(0, int((s.start_ms - 40) // fm))
        k1 = min(len(c.speech), int((s.end_ms + 400) // fm) + 1)
        sp = [bool(c.speech[k]) and (not f or f[k].snr_db >= MIN_SNR_DB) for k in range(k0, k1)]
        parts = bursts(sp, fm, a.gap)
        desc = ""
        for i, (_x, end, n) in enumerate(parts):
            desc += str(n * fm)
            if i + 1 < len(parts):
                desc += f"|{(parts[i + 1][0] - end) * fm}|"
        total = sum(n for _x, _y, n in parts) * fm
        print(f"{s.kind:12s} {e['name']:18s} start={s.start_ms:7.0f} lab={s.end_ms - s.start_ms:5.0f} "
              f"speech={total:5d} bursts: {desc}")


if __name__ == "__main__":
    main()
