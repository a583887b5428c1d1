"""Scoring simulated calls against their labels: per-turn, per-segment and per-call tables.

Theory of operation: a :class:`~clutchcall.sim.world.CallRun` holds what the edge did
(commits with their turn's timing, cancels with when the agent stopped at the caller); the
labelled call holds what *should* have happened (segments with kind / expect). Each commit
is matched to the labelled segment whose speech it closed (its end of speech, on the caller's
clock, lies within ``[start - 60 ms, end + 300 ms]``; the closest end wins), each cancel to
the segment it interrupted with (the cancelling frame lies within ``[start - 60 ms, end +
500 ms]``; the latest start wins). Then, per segment:

* expect ``reply`` (turn, short_answer): *missed reply* if no commit matched;
* expect ``ignore`` (backchannel, noise): *backchannel wake-up* if a commit matched (the model
  was woken), *false barge-in* if a cancel matched (an agent reply was cut by it);
* expect ``yield`` (interruption): *missed barge-in* if no cancel matched while the agent was
  still talking at the caller ``MISSED_BARGE_GRACE_MS`` (1 s) after the segment's start (an
  agent that stopped by itself sooner, or was already stopped, was not missed); else the
  *barge-in latency* is when the agent stopped at the caller minus the segment's start.

A cancel that matches no segment is a false barge-in too (an *unlabelled cancel*); a commit
that matches none is an *unlabelled commit* (a call with no segments at all -- a recorded
trace used as the caller -- is scored for latencies only). Latencies per turn (ms): ``turn_latency_ms`` at the caller (end of the
last speech frame sent -> first agent audio frame received), ``turn_latency_edge_ms`` (last
speech frame fed to the engine -> first agent audio frame sent), ``commit_delay_ms`` (end of
speech at the caller -> commit at the edge), and ``edge_added_ms``: turn latency at the caller
minus what ClutchCall cannot remove -- the end-of-turn silence, the model's time to first
audio and its leg both ways, and the caller leg's base one-way delay both ways -- i.e. the
time lost to loss recovery, head-of-line blocking, jitter buffering and frame timing.

Rates: ``*_rate`` are fractions of the opportunities, 0.0 when there were none: false
barge-ins per (ignore segments + cancels that match no segment; the reactive agent may be
talking where the recording's was not, so every ignore segment is an opportunity), missed
barge-ins per interruption, wake-ups per ignore segment, missed replies per reply segment; ``*_per_hour`` divide counts by the hours of call simulated.
Tables are polars DataFrames with fixed schemas, so equal runs write byte-identical Parquet.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from clutchcall.sim.calls import Segment, segment_for_commit
from clutchcall.sim.speculation_metrics import SPECULATION_COUNTS, score_replies
from clutchcall.sim.world import CallRun, SimConfig

EVAL_KEYS = (
    "false_barge_in_rate",
    "missed_barge_in_rate",
    "backchannel_wakeup_rate",
    "missed_reply_rate",
    "barge_latency_ms_p50",
    "turn_latency_ms_p50",
    "turn_latency_ms_p95",
    "turn_latency_ms_p99",
)

TURN_SCHEMA = {
    "call": pl.Utf8, "turn": pl.Int64, "segment": pl.Int64, "kind": pl.Utf8, "expect": pl.Utf8,
    "speech_ms": pl.Int64, "end_of_speech_ms": pl.Float64, "commit_delay_ms": pl.Float64,
    "turn_latency_ms": pl.Float64, "turn_latency_edge_ms": pl.Float64,
    "edge_added_ms": pl.Float64, "ttfa_ms": pl.Float64, "cancelled": pl.Boolean,
}
SEGMENT_SCHEMA = {
    "call": pl.Utf8, "segment": pl.Int64, "kind": pl.Utf8, "expect": pl.Utf8,
    "start_ms": pl.Float64, "end_ms": pl.Float64, "over_agent": pl.Boolean, "committed": pl.Boolean,
    "cancelled": pl.Boolean, "outcome": pl.Utf8, "turn_latency_ms": pl.Float64,
    "barge_latency_ms": pl.Float64, "from_speech_end_ms": pl.Float64,
}
CALL_COUNTS = (
    "commits", "cancels", "primes", "reply_segments", "missed_replies", "short_answers",
    "missed_short_answers", "ignore_segments", "backchannel_wakeups", "unlabelled_commits",
    "false_barge_ins", "unlabelled_cancels", "interruptions", "missed_barge_ins",
    "frames_skipped",
    "retransmissions", "packets_lost",
)
PER_HOUR = ("backchannel_wakeups", "false_barge_ins", "missed_barge_ins", "missed_replies",
            "missed_short_answers")
CALL_SCHEMA: dict[str, Any] = {"call": pl.Utf8, "duration_s": pl.Float64, "connect_ms": pl.Float64}
CALL_SCHEMA.update(dict.fromkeys(CALL_COUNTS, pl.Int64))
# replies and speculation (sim/speculation_metrics.py)
CALL_SCHEMA.update(dict.fromkeys(SPECULATION_COUNTS, pl.Int64))
CALL_SCHEMA["speculation_wasted_model_s"] = pl.Float64
SPECULATION_KEYS = ("premature_reply_rate", "turn_latency_from_speech_end_ms_p50",
                    "turn_latency_from_speech_end_ms_p95", "turn_latency_from_speech_end_ms_p99",
                    "speculations_started", "speculations_released", "speculations_retracted",
                    "speculation_wasted_model_s")
"""Eval keys of replies and speculation (definitions in sim/speculation_metrics.py)."""
CALL_SCHEMA.update({f"{k}_per_hour": pl.Float64 for k in PER_HOUR})


MISSED_BARGE_GRACE_MS = 1000


def _playing_at(run: CallRun, t_caller: float, owd_down: float) -> bool:
    t = t_caller - owd_down
    return any(a <= t < b for a, b in run.agent_playing)


def _match_commit(segs: tuple[Segment, ...], t_ms: float) -> int:
    return segment_for_commit(segs, t_ms)


def _match_cancel(segs: tuple[Segment, ...], t_ms: float) -> int:
    best, best_start = -1, -math.inf
    for i, s in enumerate(segs):
        if s.start_ms - 60 <= t_ms <= s.end_ms + 500 and s.start_ms > best_start:
            best, best_start = i, s.start_ms
    return best


def _overlaps(seg: Segment, intervals: tuple[tuple[float, float], ...]) -> bool:
    return any(a < seg.end_ms and seg.start_ms < b for a, b in intervals)


def score_call(run: CallRun, cfg: SimConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                       dict[str, Any]]:
    """Return (turn rows, segment rows, call row) for one simulated call."""
    call = run.call
    segs = call.segments
    fs_ms = call.frame_ms
    floor_ms = (cfg.turn.end_of_turn_silence_ms + 2 * cfg.model.model_leg_ms
                + 1000 * (cfg.net.uplink.one_way_s + cfg.net.downlink.one_way_s))
    turn_rows: list[dict[str, Any]] = []
    seg_commit: dict[int, float] = {}
    unlabelled = 0
    for t in run.turns:
        end_ms = t["end_of_speech_caller_s"] * 1000.0
        i = _match_commit(segs, end_ms)
        lat = (t["first_audio_caller_s"] - t["end_of_speech_caller_s"]) * 1000.0
        lat_edge = (t["reply_start_edge_s"] - t["last_speech_edge_s"]) * 1000.0
        if not math.isfinite(lat):
            lat = math.nan
        if not math.isfinite(lat_edge):
            lat_edge = math.nan
        if i < 0:
            unlabelled += 1
        elif i not in seg_commit:
            seg_commit[i] = lat
        turn_rows.append({
            "call": call.name, "turn": t["turn"], "segment": i,
            "kind": segs[i].kind if i >= 0 else "", "expect": segs[i].expect if i >= 0 else "",
            "speech_ms": t["speech_ms"], "end_of_speech_ms": end_ms,
            "commit_delay_ms": t["commit_s"] * 1000.0 - end_ms,
            "turn_latency_ms": lat, "turn_latency_edge_ms": lat_edge,
            "edge_added_ms": lat - floor_ms - t["ttfa_s"] * 1000.0,
            "ttfa_ms": t["ttfa_s"] * 1000.0, "cancelled": bool(t["cancelled"]),
        })
    seg_cancel: dict[int, float] = {}
    unmatched_cancels = 0
    for c in run.cancels:
        t_ms = (c["cancel_seq"] + 1) * fs_ms
        i = _match_cancel(segs, t_ms)
        if i < 0:
            unmatched_cancels += 1
        elif i not in seg_cancel:
            seg_cancel[i] = c["agent_stop_caller_s"] * 1000.0 - segs[i].start_ms
    seg_rows: list[dict[str, Any]] = []
    reply_counts, from_end = score_replies(run)
    counts = dict.fromkeys(CALL_COUNTS, 0)
    for i, s in enumerate(segs):
        committed, cancelled = i in seg_commit, i in seg_cancel
        outcome = "ok"
        if s.expect == "reply":
            counts["reply_segments"] += 1
            if s.kind == "short_answer":
                counts["short_answers"] += 1
            if not committed:
                outcome = "missed_reply"
                counts["missed_replies"] += 1
                counts["missed_short_answers"] += s.kind == "short_answer"
        elif s.expect == "ignore":
            counts["ignore_segments"] += 1
            if cancelled:
                outcome = "false_barge_in"
                counts["false_barge_ins"] += 1
            if committed:
                outcome = "backchannel_wakeup" if not cancelled else outcome
                counts["backchannel_wakeups"] += 1
        else:
            counts["interruptions"] += 1
            if not cancelled and _playing_at(run, (s.start_ms + MISSED_BARGE_GRACE_MS) / 1000.0,
                                             cfg.net.downlink.one_way_s):
                outcome = "missed_barge_in"
                counts["missed_barge_ins"] += 1
        seg_rows.append({
            "call": call.name, "segment": i, "kind": s.kind, "expect": s.expect,
            "start_ms": s.start_ms, "end_ms": s.end_ms,
            "over_agent": _overlaps(s, call.agent_speech), "committed": committed,
            "cancelled": cancelled, "outcome": outcome,
            "turn_latency_ms": seg_commit.get(i, math.nan) if s.expect == "reply" else math.nan,
            "barge_latency_ms": seg_cancel.get(i, math.nan) if s.expect == "yield" else math.nan,
            "from_speech_end_ms": from_end.get(i, math.nan),
        })
    if segs:  # a call without labels (a recorded trace) scores latencies only
        counts["false_barge_ins"] += unmatched_cancels
        counts["unlabelled_cancels"] = unmatched_cancels
    counts["unlabelled_commits"] = unlabelled
    counts["commits"] = len(run.turns)
    counts["cancels"] = len(run.cancels)
    counts["primes"] = run.primes
    counts["frames_skipped"] = run.frames_skipped
    counts["retransmissions"] = run.retransmissions
    counts["packets_lost"] = run.packets_lost
    call_row: dict[str, Any] = {"call": call.name, "duration_s": call.duration_s,
                                "connect_ms": run.connect_s * 1000.0}
    call_row.update(counts)
    call_row.update(reply_counts)
    hours = call.duration_s / 3600.0
    for k in PER_HOUR:
        call_row[f"{k}_per_hour"] = counts[k] / hours if hours else 0.0
    return turn_rows, seg_rows, call_row


def tables(runs: list[CallRun], cfg: SimConfig) -> dict[str, pl.DataFrame]:
    """Return {"turns", "segments", "calls"} DataFrames for the runs (fixed schemas)."""
    turns: list[dict[str, Any]] = []
    segs: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for r in runs:
        t, s, c = score_call(r, cfg)
        turns += t
        segs += s
        calls.append(c)
    return {
        "turns": pl.DataFrame(turns, schema=TURN_SCHEMA, orient="row") if turns
        else pl.DataFrame(schema=TURN_SCHEMA),
        "segments": pl.DataFrame(segs, schema=SEGMENT_SCHEMA, orient="row") if segs
        else pl.DataFrame(schema=SEGMENT_SCHEMA),
        "calls": pl.DataFrame(calls, schema=CALL_SCHEMA, orient="row") if calls
        else pl.DataFrame(schema=CALL_SCHEMA),
    }


def _pct(values: list[float], q: float) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None
    return round(float(np.percentile(np.asarray(v, dtype=np.float64), q)), 3)


def summarize(t: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """Return the eval summary: EVAL_KEYS, the counts, per-hour rates and more percentiles."""
    calls = t["calls"]
    hours = float(calls["duration_s"].sum()) / 3600.0 if calls.height else 0.0
    c = {k: int(calls[k].sum()) if calls.height else 0 for k in CALL_COUNTS}

    def rate(num: int, den: int) -> float:
        return round(num / den, 6) if den else 0.0

    ignore_over_agent = int(t["segments"].filter(
        (pl.col("expect") == "ignore") & pl.col("over_agent")).height)
    turns = t["turns"]
    lat = turns["turn_latency_ms"].to_list()
    barge = t["segments"]["barge_latency_ms"].to_list()
    out: dict[str, Any] = {
        "false_barge_in_rate": rate(c["false_barge_ins"],
                                    c["ignore_segments"] + c["unlabelled_cancels"]),
        "missed_barge_in_rate": rate(c["missed_barge_ins"], c["interruptions"]),
        "backchannel_wakeup_rate": rate(c["backchannel_wakeups"], c["ignore_segments"]),
        "missed_reply_rate": rate(c["missed_replies"], c["reply_segments"]),
        "barge_latency_ms_p50": _pct(barge, 50),
        "turn_latency_ms_p50": _pct(lat, 50),
        "turn_latency_ms_p95": _pct(lat, 95),
        "turn_latency_ms_p99": _pct(lat, 99),
    }
    out["calls"] = calls.height
    out["call_hours"] = round(hours, 6)
    out.update(c)
    out["ignore_segments_over_agent"] = ignore_over_agent
    for col in ("turn_latency_edge_ms", "edge_added_ms", "commit_delay_ms"):
        vals = turns[col].to_list()
        for q in (50, 95, 99):
            out[f"{col.removesuffix('_ms')}_ms_p{q}"] = _pct(vals, q)
    out["barge_latency_ms_p95"] = _pct(barge, 95)
    out["barge_latency_ms_p99"] = _pct(barge, 99)
    for k in PER_HOUR:
        out[f"{k}_per_hour"] = round(c[k] / hours, 3) if hours else 0.0
    out.update(_speculation_summary(t))
    return out


def _speculation_summary(t: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """The :data:`SPECULATION_KEYS` (and the reply counts) of the tables."""
    calls = t["calls"]
    s = {k: int(calls[k].sum()) if calls.height else 0 for k in SPECULATION_COUNTS}
    from_end = t["segments"]["from_speech_end_ms"].to_list()
    out: dict[str, Any] = {
        "premature_reply_rate": round(s["premature_replies"] / s["released_replies"], 6)
        if s["released_replies"] else 0.0,
        "turn_latency_from_speech_end_ms_p50": _pct(from_end, 50),
        "turn_latency_from_speech_end_ms_p95": _pct(from_end, 95),
        "turn_latency_from_speech_end_ms_p99": _pct(from_end, 99),
    }
    out.update(s)
    out["speculation_wasted_model_s"] = round(float(calls["speculation_wasted_model_s"].sum()), 3) \
        if calls.height else 0.0
    n = s["released_replies"]
    out["speculation_wasted_model_s_per_turn"] = round(out["speculation_wasted_model_s"] / n, 4) if n else 0.0
    return out


def write_tables(t: dict[str, pl.DataFrame], out_dir: str) -> list[str]:
    """Write each table as ``OUT/NAME.parquet`` (no statistics, uncompressed-deterministic
    settings); return the paths written."""
    import os

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in ("turns", "segments", "calls"):
        p = os.path.join(out_dir, f"{name}.parquet")
        t[name].write_parquet(p, compression="zstd", statistics=False)
        paths.append(p)
    return paths
