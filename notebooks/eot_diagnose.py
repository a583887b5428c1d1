"""Every premature reply of a corpus split, classified by what the caller was doing (issue 16).

Run (from the checkout root; needs espeak-ng and the cached ARCTIC clips, like the generator)::

    python notebooks/eot_diagnose.py traces/corpus --split train [EVAL FLAGS...]
    python notebooks/eot_diagnose.py traces/corpus --split train --end-of-turn-rule prosodic

Each call of the split is simulated exactly as ``clutchcall eval CORPUS --split SPLIT [EVAL
FLAGS]`` does (same config, same scripted agent, same seed), and every premature reply
(``sim/speculation_metrics.py``: a released reply after which the caller went on with the same
labelled segment within 1 s of hearing it) is put in one class:

* ``hold: <cue>`` -- a pause between two phrases of a caller turn; ``<cue>`` is how the
  generator rendered the phrase before it (``traces/generator.py`` ``HOLD_CUES``: ``none``,
  ``comma``, ``conjunction``, ``filled``), with the pause's length;
* ``barge-in then more`` -- the pause between an interruption and the speech the caller went on
  with (an interruption that goes on is, to the end-of-turn rule, a turn with a pause);
* ``other`` -- anything else (e.g. a gap inside one phrase).

The phrase boundaries come from re-planning the call with the generator
(``traces.generator.plan_call`` with the manifest's seed: deterministic, the same plan the
corpus was rendered from) -- a *diagnosis* of the corpus, never an input to a rule. Only for
corpora built by this generator version (v3; for corpus v2 it prints the premature replies
without classes). Per hold the script also prints the engine-side prosody of its final burst
(``ProsodyTrack`` on the frames' features) and the prosodic rule's reading of it.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any

from clutchcall.engine.config import TurnConfig
from clutchcall.engine.endpoint import ProsodicRule, ProsodyTrack
from clutchcall.sim import cli_common as cc
from clutchcall.sim import cmd_eval
from clutchcall.sim.calls import Call
from clutchcall.sim.runner import default_corpus
from clutchcall.sim.speculation_metrics import released_turns
from clutchcall.sim.world import simulate_call
from clutchcall.traces.generator import GENERATOR_VERSION, SpeechBank, plan_call

FRAME_MS = 20


def boundaries(call_name: str, seed: int, holds: list[str], bank: SpeechBank) -> list[dict[str, Any]]:
    """The pauses between the phrases of each caller turn / interruption of one call:
    ``end_ms`` (the phrase before), ``next_ms`` (the phrase after), ``cls``."""
    plan = plan_call(seed, int(call_name[4:8]), bank)
    out, hi = [], 0
    for s in plan.labels.segments:
        if s.kind not in ("turn", "interruption"):
            continue
        ps = sorted((p.start_ms, p.start_ms + round(len(p.clip) / 16.0)) for p in plan.placed
                    if s.start_ms <= p.start_ms < s.end_ms)
        for k in range(len(ps) - 1):
            if s.kind == "interruption":
                cls = "barge-in then more"
            else:
                cls = f"hold: {holds[hi]}"
                hi += 1
            out.append({"end_ms": ps[k][1], "next_ms": ps[k + 1][0], "cls": cls})
    return out


def final_prosody(call: Call, end_s: float) -> dict[str, Any]:
    """The prosodic rule's reading of the burst that ended at ``end_s`` (VAD frames)."""
    sp, feats = call.speech, call.features
    assert feats is not None
    k = min(len(sp) - 1, round(end_s * 1000 / FRAME_MS) - 1)
    while k > 0 and not sp[k]:
        k -= 1
    j, gap = k, 0
    while j > 0 and gap < 10:  # back to >= 200 ms of silence: the burst's start
        gap = gap + 1 if not sp[j - 1] else 0
        j -= 1
    track = ProsodyTrack()
    for f in range(j, k + 1):
        if sp[f]:
            track.add((f + 1) * FRAME_MS / 1000.0, feats[f])
    fin = track.final(j * FRAME_MS / 1000.0 - 1e-9, (k + 1) * FRAME_MS / 1000.0)
    if fin is None:
        return {"p_end": None}
    rule = ProsodicRule(TurnConfig(end_of_turn_rule="prosodic"))
    return {"p_end": round(rule.p_end(fin), 2), "slope": round(fin.slope_st_per_s, 1),
            "drop_st": round(fin.drop_st, 1), "range_st": round(fin.range_st, 1),
            "plateau": rule.plateau(fin)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cmd_eval.configure(ap)
    a = ap.parse_args()
    a.calls = [a.dir] if a.dir else []
    cfg = cc.sim_config(a)
    calls = cc.calls_from(a, cfg.turn.frame_ms, cfg.turn.vad_aggressiveness)
    root = Path(a.dir) if a.dir else default_corpus()
    man = json.loads((root / "MANIFEST.json").read_text())
    entries = {e["name"]: e for e in man["entries"]}
    classify = man.get("generator_version") == GENERATOR_VERSION
    bank = SpeechBank() if classify else None
    released, rows = 0, []
    for c in calls:
        run = simulate_call(c, cfg)
        bounds = (boundaries(c.name, man["seed"], list(entries[c.name].get("holds", [])), bank)
                  if bank is not None else [])
        replies = released_turns(run)
        released += len(replies)
        for t, premature in replies:
            if not premature:
                continue
            heard, end = t["first_audio_caller_s"], t["end_of_speech_caller_s"]
            b = min(bounds, key=lambda b: abs(b["end_ms"] / 1000.0 - end), default=None)
            near = b is not None and abs(b["end_ms"] / 1000.0 - end) < 0.4
            rows.append({"call": c.name, "end_s": round(end, 2),
                         "reply_heard_s": round(heard, 2),
                         "class": (b["cls"] if near else "other") if classify else "?",
                         "pause_ms": b["next_ms"] - b["end_ms"] if near else None,
                         **final_prosody(c, end)})
    print(f"{root} --split {a.split}: {len(rows)} premature of {released} released replies")
    for r in rows:
        print("  " + json.dumps(r))
    print("  by class: " + json.dumps(collections.Counter(r["class"] for r in rows)))


if __name__ == "__main__":
    main()
