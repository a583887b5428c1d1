#!/bin/bash
# Reproduce issue 15's follow-up figures (b15): product default before (the old knobs,
# evidence_soft_yield_ms = 0, i.e. the product of 4d5cd11) vs now, plus the rejected
# evidence_follow_ms = 400 variant, on
# corpus v3 (traces/corpus) and on corpus v2 (the one at 4d5cd11, extracted from git).
# Usage, from the repo root: bash tools/issue15_figures.sh [train|test]   (tune on train!)
set -euo pipefail
split=${1:-train}
v2=${V2_DIR:-/tmp/clutchcall_corpus_v2}
if [ ! -f "$v2/MANIFEST.json" ]; then
  mkdir -p "$v2"
  git archive 4d5cd11 traces/corpus | tar -x -C "$v2" --strip-components=2
fi
keys="false_barge_in_rate missed_barge_in_rate missed_reply_rate noise_wakeup_rate yield_latency_ms_p50
backchannel_disruption_rate premature_reply_rate turn_latency_from_speech_end_ms_p50"
row() {  # row LABEL CORPUS [eval args]
  label=$1; corpus=$2; shift 2
  python -m clutchcall eval "$corpus" --split "$split" --json "$@" | KEYS="$keys" LABEL="$label" python -c '
import json, os, sys
d = json.load(sys.stdin)
print(os.environ["LABEL"], " ".join(f"{k}={d[k]}" for k in os.environ["KEYS"].split()),
      "false=%d/%d missed=%d/%d disrupted=%d" % (d["false_barge_ins"], d["backchannels_over_agent"],
      d["missed_barge_ins"], d["interruptions"], d["disrupted_backchannels"]))'
}
for c in traces/corpus "$v2"; do
  row "before $c" "$c" --evidence-soft-yield-ms 0
  row "now    $c" "$c"
  row "now+follow400 $c" "$c" --evidence-follow-ms 400
  row "seed threshold $c" "$c" --preset threshold
done
