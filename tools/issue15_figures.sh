#!/bin/bash
# Reproduce issue 15's figures (follow-up 3, r15): the product default before (main at
# bc41134: the 300 ms confirm for every burst that is not backchannel-like, 100 ms burst gap,
# no follow) vs now (cancel when sure: evidence_mid_confirm_ms 600, burst_gap_ms 200,
# evidence_follow_ms 300), and the seed's threshold preset, on corpus v3 (traces/corpus) and
# corpus v2 (the one at 4d5cd11, extracted from git). Scored with the strict interruption
# score of sim/metrics.py (a pause alone never catches an interruption).
# Usage, from the repo root: bash tools/issue15_figures.sh [train|test]   (tune on train!)
set -euo pipefail
split=${1:-train}
v2=${V2_DIR:-/tmp/clutchcall_corpus_v2}
if [ ! -f "$v2/MANIFEST.json" ]; then
  mkdir -p "$v2"
  git archive 4d5cd11 traces/corpus | tar -x -C "$v2" --strip-components=2
fi
keys="false_barge_in_rate missed_barge_in_rate missed_reply_rate noise_wakeup_rate yield_latency_ms_p50
yield_latency_ms_p95 cancel_latency_ms_p50 backchannel_disruption_rate backchannel_disruption_ms_p50
premature_reply_rate turn_latency_from_speech_end_ms_p50"
row() {  # row LABEL CORPUS [eval args]
  label=$1; corpus=$2; shift 2
  python -m clutchcall eval "$corpus" --split "$split" --json "$@" | KEYS="$keys" LABEL="$label" python -c '
import json, os, sys
d = json.load(sys.stdin)
print(os.environ["LABEL"], " ".join(f"{k}={d[k]}" for k in os.environ["KEYS"].split()),
      "false=%d/%d missed=%d/%d resumed=%d disrupted=%d noise_barge_ins=%d" % (
      d["false_barge_ins"], d["backchannels_over_agent"], d["missed_barge_ins"], d["interruptions"],
      d["interruptions_resumed"], d["disrupted_backchannels"], d["noise_barge_ins"]))'
}
for c in traces/corpus "$v2"; do
  row "before $c" "$c" --evidence-mid-confirm-ms 0 --burst-gap-ms 100 --evidence-follow-ms 0
  row "now    $c" "$c"
  row "seed threshold $c" "$c" --preset threshold
done
