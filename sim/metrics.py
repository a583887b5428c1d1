"""Scoring simulated calls against their labels: per-turn, per-segment and per-call tables.

Theory of operation: a :class:`~clutchcall.sim.world.CallRun` holds what the edge did
(commits with their turn's timing, cancels and soft yields with when the caller heard them);
the labelled call holds what *should* have happened (segments with kind / expect). Each
commit is matched to the labelled segment whose speech it closed (its end of speech, on the
caller's clock, lies within ``[start - 60 ms, end + 300 ms]``; the closest end wins; else
up to ``RUN_ON_MS`` = 1 s past the end of the latest segment started before it: the turn ran
on over line noise, and the caller was still answered, late -- see :func:`_match_commit`); each
cancel and each yield (duck / pause) to the segment it reacted to (the deciding caller frame
lies within ``[start - 60 ms, end + 500 ms]``; the latest start wins).

*Over the agent*: a segment overlaps the agent's speech at the caller -- with the scripted
agent the labelled ``agent_speech`` timeline (fixed, the same for every policy), with the
reactive agent what actually played (its edge intervals shifted by the downlink's one-way
delay).

Metric definitions (``clutchcall eval --json`` prints each; a rate is 0.0 when its
denominator is 0; percentiles are over the segments that have the value):

* ``false_barge_in_rate`` = backchannels over the agent that led to a Cancel / backchannels
  over the agent. Noise is scored apart. (Before: cancels per backchannel *plus noise*
  segment plus unlabelled cancel.)
* ``noise_barge_in_rate`` = noise segments over the agent that led to a Cancel / noise
  segments over the agent.
* ``missed_barge_in_rate`` = interruptions the agent did not yield to / interruptions.
  *Yielded to* (strict, issue 15 follow-up 3): a ``Cancel`` matched to the interruption
  stopped the agent, or the agent had no audio left to play at the caller
  ``MISSED_BARGE_GRACE_MS`` (1 s) after the interruption's start (it finished on its own).
  A soft yield alone never counts: an agent paused or ducked at the grace point still holds
  audio -- it resumes / restores once the barge-in is dismissed and talks on over the caller
  -- so an interruption with a Pause / Duck but no Cancel is missed, whatever the grace point
  catches (checked twice: the playout counts a paused agent as playing, and a yield open at
  the grace point counts as the agent holding audio). ``interruptions_resumed`` counts the
  interruptions inside which the agent yielded and then resumed / restored (it talked on
  over the caller for a while; caught or not).
* ``missed_reply_rate`` = reply segments (turn, short_answer) no commit closed / reply segments.
* ``backchannel_wakeup_rate`` = backchannels a commit closed (the model was woken) /
  backchannels. (Before: over backchannels plus noise.)
* ``noise_wakeup_rate`` = noise segments a commit closed / noise segments.
* ``premature_commit_rate`` = reply segments in which a commit fired before the segment's
  labelled end (on the call's audio clock: the agent would talk into the caller's pause) /
  reply segments.
* ``backchannel_disruption_rate`` = backchannels over the agent that made it audibly yield
  (duck, pause or cancel) / backchannels over the agent;
  ``backchannel_disruption_ms_p50`` = how long such a soft yield (duck or pause) lasted at
  the caller (yield heard -> restore / resume / cancel heard).
* ``yield_latency_ms_p50/p95`` = interruption start -> the agent audibly yields *for good*
  at the caller: the Duck / Pause that the Cancel closed (the agent stayed yielded until it
  stopped), else the Cancel itself; a yield that was resumed / restored does not count (an
  interruption never cancelled has no yield latency; strict since issue 15 follow-up 3,
  before: the first duck / pause whatever followed); ``cancel_latency_ms_p50`` = interruption start ->
  the agent stops at the caller because of the Cancel; ``barge_latency_ms_p50`` (kept) is the
  cancel latency.
* ``turn_latency_ms_p50/p95/p99`` = per reply segment closed by a commit (the last commit
  matched to it): the end of the caller's last VAD speech frame -> first agent audio at the
  caller. ``turn_latency_from_speech_end_ms_p50/p95/p99`` (the headline, caller-felt) = the
  segment's labelled end of speech -> first agent audio at the caller. With the scripted
  agent the first audio is predicted (:mod:`clutchcall.sim.world`), not played. A segment
  whose last commit fired before its labelled end (premature) has no turn latency.

Per turn (ms), as before: ``turn_latency_edge_ms`` (last speech frame fed to the engine ->
first agent audio frame sent), ``commit_delay_ms`` (end of speech at the caller -> commit at
the edge) and ``edge_added_ms``: turn latency at the caller minus what ClutchCall cannot
remove -- the end-of-turn silence, the model's time to first audio and its leg both ways,
and the caller leg's base one-way delay both ways.

A cancel that matches no segment is an *unlabelled cancel* and a commit that matches none an
*unlabelled commit*: both are counted, not folded into the rates (a call with no segments at
all -- a recorded trace used as the caller -- is scored for latencies only).
``*_per_hour`` divide counts by the hours of call simulated. Tables are polars DataFrames with
fixed schemas, so equal runs write byte-identical Parquet.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from clutchcall.sim.calls import Segment, segment_for_commit
from clutchcall.sim.config import SimConfig
from clutchcall.sim.speculation_metrics import SPECULATION_COUNTS, score_replies
from clutchcall.sim.world import CallRun

EVAL_KEYS = (
    "false_barge_in_rate",
    "missed_barge_in_rate",
    "missed_reply_rate",
    "backchannel_wakeup_rate",
    "noise_wakeup_rate",
    "noise_barge_in_rate",
    "premature_commit_rate",
    "backchannel_disruption_rate",
    "backchannel_disruption_ms_p50",
    "yield_latency_ms_p50",
    "yield_latency_ms_p95",
    "cancel_latency_ms_p50",
    "barge_latency_ms_p50",
    "turn_latency_ms_p50",
    "turn_latency_ms_p95",
    "turn_latency_ms_p99",
    "turn_latency_from_speech_end_ms_p50",
    "turn_latency_from_speech_end_ms_p95",
    "turn_latency_from_speech_end_ms_p99",
)
"""The headline keys of ``clutchcall eval --json``, in order (definitions: module docstring)."""

KINDS = ("turn", "short_answer", "backchannel", "interruption", "noise")

TURN_SCHEMA = {
    "call": pl.Utf8, "turn": pl.Int64, "segment": pl.Int64, "kind": pl.Utf8, "expect": pl.Utf8,
    "speech_ms": pl.Int64, "end_of_speech_ms": pl.Float64, "commit_delay_ms": pl.Float64,
    "commit_audio_ms": pl.Float64,
    "turn_latency_ms": pl.Float64, "turn_latency_edge_ms": pl.Float64,
    "edge_added_ms": pl.Float64, "ttfa_ms": pl.Float64, "cancelled": pl.Boolean,
}
SEGMENT_SCHEMA = {
    "call": pl.Utf8, "segment": pl.Int64, "kind": pl.Utf8, "expect": pl.Utf8,
    "start_ms": pl.Float64, "end_ms": pl.Float64, "over_agent": pl.Boolean, "committed": pl.Boolean,
    "premature": pl.Boolean, "cancelled": pl.Boolean, "yielded": pl.Boolean, "outcome": pl.Utf8,
    "turn_latency_ms": pl.Float64, "turn_latency_from_speech_end_ms": pl.Float64,
    "barge_latency_ms": pl.Float64, "yield_latency_ms": pl.Float64,
    "disruption_ms": pl.Float64,
}
CALL_COUNTS = (
    "commits", "cancels", "primes", "yields", "reply_segments", "missed_replies",
    "premature_commits", "short_answers", "missed_short_answers", "ignore_segments",
    "backchannels", "backchannels_over_agent", "backchannel_wakeups", "false_barge_ins",
    "disrupted_backchannels", "noise_segments", "noise_over_agent", "noise_wakeups",
    "noise_barge_ins", "unlabelled_commits", "unlabelled_cancels", "interruptions",
    "missed_barge_ins", "interruptions_resumed", "frames_skipped", "retransmissions", "packets_lost",
)
PER_HOUR = ("backchannel_wakeups", "false_barge_ins", "missed_barge_ins", "missed_replies",
            "missed_short_answers", "noise_wakeups", "noise_barge_ins")
CALL_SCHEMA: dict[str, Any] = {"call": pl.Utf8, "duration_s": pl.Float64, "connect_ms": pl.Float64}
CALL_SCHEMA.update(dict.fromkeys(CALL_COUNTS, pl.Int64))
# replies and speculation (sim/speculation_metrics.py)
CALL_SCHEMA.update(dict.fromkeys(SPECULATION_COUNTS, pl.Int64))
CALL_SCHEMA["speculation_wasted_model_s"] = pl.Float64
SPECULATION_KEYS = ("premature_reply_rate", "speculations_started", "speculations_released", "speculations_retracted",
                    "speculation_wasted_model_s")
"""Eval keys of replies and speculation (definitions in sim/speculation_metrics.py; turn latency
from the end of speech is an EVAL_KEYS key, defined above)."""
CALL_SCHEMA.update({f"{k}_per_hour": pl.Float64 for k in PER_HOUR})


MISSED_BARGE_GRACE_MS = 1000


def _playing_at(run: CallRun, t_caller: float, owd_down: float) -> bool:
    t = t_caller - owd_down
    return any(a <= t < b for a, b in run.agent_playing)


RUN_ON_MS = 1000
"""A committed turn whose speech, as the engine heard it, ran on up to this long past a
segment's labelled end still closed that segment (see :func:`_match_commit`)."""


def _match_commit(segs: tuple[Segment, ...], t_ms: float) -> int:
    """The segment a commit whose turn's speech ended at caller time ``t_ms`` closed.

    First the tight rule (:func:`~clutchcall.sim.calls.segment_for_commit`: the turn's end
    within ``[start - 60, end + 300]`` ms of a segment, the closest end wins). Failing that,
    the *run-on* rule, the caller-felt definition: the caller spoke the segment and then got
    a reply, so the segment was answered -- late, and its turn latency from the labelled end
    of speech counts the wait. It takes the latest segment that started (``start - 60``) before
    ``t_ms``, if ``t_ms`` is at most :data:`RUN_ON_MS` past its end and no other segment
    started in between. It covers the engine hearing line noise that passes the VAD and the
    noise gate (5 dB SNR calls) as the turn going on: the commit then comes ~0.5 s late and
    its end of speech lies past the tight window, which used to score a *missed* reply plus
    an unlabelled commit although the caller was answered. Backchannels and noise are matched
    the same way (a run-on commit on a backchannel woke the model)."""
    i = segment_for_commit(segs, t_ms)
    if i >= 0:
        return i
    best = -1
    for j, sg in enumerate(segs):
        if sg.start_ms - 60 <= t_ms and (best < 0 or sg.start_ms > segs[best].start_ms):
            best = j
    if best >= 0 and t_ms <= segs[best].end_ms + RUN_ON_MS:
        return best
    return -1


def _match_cancel(segs: tuple[Segment, ...], t_ms: float) -> int:
    best, best_start = -1, -math.inf
    for i, s in enumerate(segs):
        if s.start_ms - 60 <= t_ms <= s.end_ms + 500 and s.start_ms > best_start:
            best, best_start = i, s.start_ms
    return best


def _overlaps(seg: Segment, intervals: tuple[tuple[float, float], ...]) -> bool:
    return any(a < seg.end_ms and seg.start_ms < b for a, b in intervals)


def agent_timeline_ms(run: CallRun, cfg: SimConfig) -> tuple[tuple[float, float], ...]:
    """Return the agent's speech at the caller (ms) that "over the agent" is judged against:
    the labelled timeline with the scripted agent, what played with the reactive one."""
    if cfg.agent == "scripted":
        return run.call.agent_speech
    owd = cfg.net.downlink.one_way_s
    return tuple(((a + owd) * 1000.0, (b + owd) * 1000.0) for a, b in run.agent_playing)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.nan


def score_call(run: CallRun, cfg: SimConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                       dict[str, Any]]:
    """Return (turn rows, segment rows, call row) for one simulated call."""
    call = run.call
    segs = call.segments
    fs_ms = call.frame_ms
    floor_ms = (cfg.turn.end_of_turn_silence_ms + 2 * cfg.model.model_leg_ms
                + 1000 * (cfg.net.uplink.one_way_s + cfg.net.downlink.one_way_s))
    turn_rows: list[dict[str, Any]] = []
    seg_commit: dict[int, dict[str, Any]] = {}  # the last commit matched to each segment
    premature: set[int] = set()
    unlabelled = 0
    for t in run.turns:
        end_ms = t["end_of_speech_caller_s"] * 1000.0
        i = _match_commit(segs, end_ms)
        lat = _finite((t["first_audio_caller_s"] - t["end_of_speech_caller_s"]) * 1000.0)
        lat_edge = _finite((t["reply_start_edge_s"] - t["last_speech_edge_s"]) * 1000.0)
        commit_audio_ms = t.get("commit_audio_s", math.nan) * 1000.0
        if i < 0:
            unlabelled += 1
        else:
            if commit_audio_ms < segs[i].end_ms:
                premature.add(i)
            seg_commit[i] = t
        turn_rows.append({
            "call": call.name, "turn": t["turn"], "segment": i,
            "kind": segs[i].kind if i >= 0 else "", "expect": segs[i].expect if i >= 0 else "",
            "speech_ms": t["speech_ms"], "end_of_speech_ms": end_ms,
            "commit_delay_ms": t["commit_s"] * 1000.0 - end_ms,
            "commit_audio_ms": commit_audio_ms,
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
    seg_yield: dict[int, tuple[float, float]] = {}  # (latency ms, duration ms) of the first
    seg_final: dict[int, float] = {}  # latency (ms) of the yield a Cancel closed
    seg_resumed: set[int] = set()  # segments with a yield that was resumed / restored
    held: list[tuple[float, float]] = []  # (audible, end) ms at the caller of every yield
    for y in run.yields:
        a_ms, e_ms = y["audible_caller_s"] * 1000.0, y["end_caller_s"] * 1000.0
        held.append((a_ms, e_ms))
        i = _match_cancel(segs, (y["seq"] + 1) * fs_ms)
        if i < 0:
            continue
        if i not in seg_yield:
            seg_yield[i] = (a_ms - segs[i].start_ms, e_ms - a_ms)
        if y["outcome"] == "cancel":
            seg_final.setdefault(i, a_ms - segs[i].start_ms)
        elif y["outcome"]:
            seg_resumed.add(i)
    timeline = agent_timeline_ms(run, cfg)
    seg_rows: list[dict[str, Any]] = []
    reply_counts = score_replies(run)
    counts = dict.fromkeys(CALL_COUNTS, 0)
    for i, s in enumerate(segs):
        committed, cancelled, yielded = i in seg_commit, i in seg_cancel, i in seg_yield
        over = _overlaps(s, timeline)
        outcome = "ok"
        lat = lat_end = barge = ylat = disrupt = math.nan
        if s.expect == "reply":
            counts["reply_segments"] += 1
            if s.kind == "short_answer":
                counts["short_answers"] += 1
            if not committed:
                outcome = "missed_reply"
                counts["missed_replies"] += 1
                counts["missed_short_answers"] += s.kind == "short_answer"
            else:
                t = seg_commit[i]
                if not t.get("commit_audio_s", math.inf) * 1000.0 < s.end_ms:
                    # only a commit at the turn's real end has a turn latency
                    lat = _finite((t["first_audio_caller_s"] - t["end_of_speech_caller_s"])
                                  * 1000.0)
                    lat_end = _finite(t["first_audio_caller_s"] * 1000.0 - s.end_ms)
                if i in premature:
                    outcome = "premature_commit"
                    counts["premature_commits"] += 1
        elif s.expect == "ignore":
            counts["ignore_segments"] += 1
            noise = s.kind == "noise"
            pre = "noise" if noise else "backchannel"
            counts["noise_segments" if noise else "backchannels"] += 1
            counts["noise_over_agent" if noise else "backchannels_over_agent"] += over
            if committed:
                outcome = f"{pre}_wakeup"
                counts["noise_wakeups" if noise else "backchannel_wakeups"] += 1
            if cancelled and over:
                outcome = "noise_barge_in" if noise else "false_barge_in"
                counts["noise_barge_ins" if noise else "false_barge_ins"] += 1
            if over and (cancelled or yielded) and not noise:
                counts["disrupted_backchannels"] += 1
            if yielded:
                d = seg_yield[i][1]
                disrupt = d if math.isfinite(d) else math.nan
        else:
            counts["interruptions"] += 1
            if cancelled:
                barge = seg_cancel[i]
                ylat = _finite(min(seg_final.get(i, math.inf), barge))
            counts["interruptions_resumed"] += i in seg_resumed
            grace = s.start_ms + MISSED_BARGE_GRACE_MS
            if not cancelled and (
                    _playing_at(run, grace / 1000.0, cfg.net.downlink.one_way_s)
                    or any(a <= grace < e for a, e in held)):
                outcome = "missed_barge_in"
                counts["missed_barge_ins"] += 1
        seg_rows.append({
            "call": call.name, "segment": i, "kind": s.kind, "expect": s.expect,
            "start_ms": s.start_ms, "end_ms": s.end_ms, "over_agent": over,
            "committed": committed, "premature": i in premature, "cancelled": cancelled,
            "yielded": yielded, "outcome": outcome, "turn_latency_ms": lat,
            "turn_latency_from_speech_end_ms": lat_end, "barge_latency_ms": barge,
            "yield_latency_ms": ylat, "disruption_ms": disrupt,
        })
    counts["unlabelled_cancels"] = unmatched_cancels if segs else 0
    counts["unlabelled_commits"] = unlabelled
    counts["commits"] = len(run.turns)
    counts["cancels"] = len(run.cancels)
    counts["yields"] = len(run.yields)
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


def _rate(num: int, den: int) -> float:
    return round(num / den, 6) if den else 0.0


def by_kind(segments: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Return the per-kind breakdown of ``clutchcall eval --json``: for each segment kind,
    ``segments``, ``over_agent``, ``committed``, ``cancelled``, ``yielded``, ``premature``
    (counts), ``commit_rate`` / ``cancel_rate`` / ``yield_rate`` (per segment of the kind),
    and latencies (ms p50) where they apply."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        d = segments.filter(pl.col("kind") == kind)
        n = d.height
        row: dict[str, Any] = {"segments": n}
        for col in ("over_agent", "committed", "cancelled", "yielded", "premature"):
            row[col] = int(d[col].sum()) if n else 0
        row["commit_rate"] = _rate(row["committed"], n)
        row["cancel_rate"] = _rate(row["cancelled"], n)
        row["yield_rate"] = _rate(row["yielded"], n)
        if kind in ("turn", "short_answer"):
            row["turn_latency_from_speech_end_ms_p50"] = _pct(
                d["turn_latency_from_speech_end_ms"].to_list(), 50)
        elif kind == "interruption":
            row["yield_latency_ms_p50"] = _pct(d["yield_latency_ms"].to_list(), 50)
            row["cancel_latency_ms_p50"] = _pct(d["barge_latency_ms"].to_list(), 50)
        else:
            row["disruption_ms_p50"] = _pct(d["disruption_ms"].to_list(), 50)
        out[kind] = row
    return out


def summarize(t: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """Return the eval summary: EVAL_KEYS first, then the counts (flat, and as ``counts``),
    ``by_kind``, per-hour rates and more percentiles."""
    calls = t["calls"]
    hours = float(calls["duration_s"].sum()) / 3600.0 if calls.height else 0.0
    c = {k: int(calls[k].sum()) if calls.height else 0 for k in CALL_COUNTS}
    segs = t["segments"]
    turns = t["turns"]
    reply = segs.filter(pl.col("expect") == "reply")
    lat = reply["turn_latency_ms"].to_list()
    # calls without labels (recorded traces) are scored for latencies only: per commit
    unlabelled = turns.filter(~pl.col("call").is_in(segs["call"].unique().to_list()))
    lat += unlabelled["turn_latency_ms"].to_list()
    lat_end = reply["turn_latency_from_speech_end_ms"].to_list()
    barge = segs["barge_latency_ms"].to_list()
    ylat = segs["yield_latency_ms"].to_list()
    disrupt = segs.filter(pl.col("kind") == "backchannel")["disruption_ms"].to_list()
    out: dict[str, Any] = {
        "false_barge_in_rate": _rate(c["false_barge_ins"], c["backchannels_over_agent"]),
        "missed_barge_in_rate": _rate(c["missed_barge_ins"], c["interruptions"]),
        "missed_reply_rate": _rate(c["missed_replies"], c["reply_segments"]),
        "backchannel_wakeup_rate": _rate(c["backchannel_wakeups"], c["backchannels"]),
        "noise_wakeup_rate": _rate(c["noise_wakeups"], c["noise_segments"]),
        "noise_barge_in_rate": _rate(c["noise_barge_ins"], c["noise_over_agent"]),
        "premature_commit_rate": _rate(c["premature_commits"], c["reply_segments"]),
        "backchannel_disruption_rate": _rate(c["disrupted_backchannels"],
                                             c["backchannels_over_agent"]),
        "backchannel_disruption_ms_p50": _pct(disrupt, 50),
        "yield_latency_ms_p50": _pct(ylat, 50),
        "yield_latency_ms_p95": _pct(ylat, 95),
        "cancel_latency_ms_p50": _pct(barge, 50),
        "barge_latency_ms_p50": _pct(barge, 50),
        "turn_latency_ms_p50": _pct(lat, 50),
        "turn_latency_ms_p95": _pct(lat, 95),
        "turn_latency_ms_p99": _pct(lat, 99),
        "turn_latency_from_speech_end_ms_p50": _pct(lat_end, 50),
        "turn_latency_from_speech_end_ms_p95": _pct(lat_end, 95),
        "turn_latency_from_speech_end_ms_p99": _pct(lat_end, 99),
    }
    out["calls"] = calls.height
    out["call_hours"] = round(hours, 6)
    out.update(c)
    out["counts"] = dict(c)
    out["by_kind"] = by_kind(segs)
    out["ignore_segments_over_agent"] = c["backchannels_over_agent"] + c["noise_over_agent"]
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
    out: dict[str, Any] = {
        "premature_reply_rate": round(s["premature_replies"] / s["released_replies"], 6)
        if s["released_replies"] else 0.0,
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
