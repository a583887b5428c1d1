"""Write tuning.ipynb and latency.ipynb (run: python notebooks/build_notebooks.py).

The notebooks are generated from the cell sources below so that they stay reviewable as code;
they are committed without outputs and executed in CI (tests/twin/test_notebooks.py) with
CLUTCHCALL_NB_SMALL=1.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

TUNING = [
    ("md", """# Tuning the turn engine on the corpus

The simulator (`clutchcall.sim`) replays every labelled corpus call through the real
`TurnEngine` over a modelled caller leg (QUIC, RTT 50 ms, 1 % loss) and scores it against the
labels. Here we sweep the two thresholds of the seed -- the backchannel filter
`response_min_speech_ms` and the barge-in confirmation `barge_confirm_ms` -- and look at
heatmaps, the two Pareto fronts, and the recommended defaults.
Set `CLUTCHCALL_NB_SMALL=1` for the small configuration CI runs."""),
    ("code", """import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl
from clutchcall.engine import TurnConfig
from clutchcall.sim.runner import sweep, pareto, recommend, cost
from clutchcall.sim.config import NetConfig, SimConfig
from clutchcall.twin import notebook as nbh

SMALL = nbh.small()
calls = nbh.corpus_calls()
grid = ({"response_min_speech_ms": [300, 600, 900], "barge_confirm_ms": [100, 300, 500]} if SMALL else
        {"response_min_speech_ms": list(range(200, 1201, 100)), "barge_confirm_ms": list(range(0, 801, 50))})
base = SimConfig(turn=TurnConfig(), net=NetConfig.symmetric(transport="quic", rtt_ms=50, loss=0.01))
print(len(calls), "calls,", sum(c.duration_s for c in calls) / 60, "min of audio;",
      len(grid["response_min_speech_ms"]) * len(grid["barge_confirm_ms"]), "grid points")"""),
    ("md", """The sweep runs on this machine (a process pool on all cores) by default. To run it on Dask
set `CLUTCHCALL_EXECUTOR=dask` before starting the kernel: a `distributed.LocalCluster` here, or
the cluster at `CLUTCHCALL_DASK_SCHEDULER=tcp://HOST:PORT` (see sim/README.md). The results are
the same, byte for byte, on every executor."""),
    ("code", """import os
from clutchcall.sim.executor import ExecutorSpec

kind = os.environ.get("CLUTCHCALL_EXECUTOR", "local")
executor = ExecutorSpec(kind=kind, scheduler=os.environ.get("CLUTCHCALL_DASK_SCHEDULER") or None,
                        workers=1 if SMALL and kind == "local" else None)
df = sweep(calls, base, grid, executor=executor, progress=False)
keys = list(grid)
df.select(keys + ["false_barge_in_rate", "missed_barge_in_rate", "backchannel_wakeup_rate",
                  "missed_reply_rate", "barge_latency_ms_p50", "turn_latency_ms_p95"]).head(10)"""),
    ("md", "## Heatmaps\nEach cell is one grid point; colour is the metric (lower is better)."),
    ("code", """metrics = ["false_barge_in_rate", "missed_barge_in_rate", "backchannel_wakeup_rate", "missed_reply_rate",
           "barge_latency_ms_p50", "turn_latency_ms_p95"]
fig, axes = plt.subplots(2, 3, figsize=(14, 8))
for ax, m in zip(axes.flat, metrics):
    xs, ys, g = nbh.heatmap_grid(df, "response_min_speech_ms", "barge_confirm_ms", m)
    im = ax.imshow(g, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=90, fontsize=7)
    ax.set_yticks(range(len(ys)), [str(y) for y in ys], fontsize=7)
    ax.set_xlabel("response_min_speech_ms"); ax.set_ylabel("barge_confirm_ms"); ax.set_title(m)
    fig.colorbar(im, ax=ax)
fig.tight_layout()
assert all(not pl.Series(nbh.heatmap_grid(df, "response_min_speech_ms", "barge_confirm_ms", m)[2].ravel()).is_nan().all()
           for m in metrics[:4])"""),
    ("md", "## Pareto fronts\nFalse barge-ins vs barge-in latency (the confirm window's trade-off), and backchannel wake-ups vs missed replies (the filter's)."),
    ("code", """fronts = {}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, (x, y) in zip(axes, [("false_barge_in_rate", "barge_latency_ms_p50"),
                             ("backchannel_wakeup_rate", "missed_reply_rate")]):
    front = pareto(df, x, y)
    fronts[(x, y)] = front
    ax.scatter(df[x].to_list(), df[y].to_list(), s=14, alpha=0.4, label="grid points")
    ax.plot(front[x].to_list(), front[y].to_list(), "o-", color="C3", label="Pareto front")
    for r in front.to_dicts():
        ax.annotate(f"{r['response_min_speech_ms']}/{r['barge_confirm_ms']}", (r[x], r[y]), fontsize=7)
    ax.set_xlabel(x); ax.set_ylabel(y); ax.legend()
fig.tight_layout()
for k, f in fronts.items():
    assert f.height >= 1, k
    print(k, f.select(keys + list(k)).to_dicts())"""),
    ("md", "## Recommended defaults\nThe lowest cost (sum of the four error rates + 0.5 per second of p50 barge-in latency), against the seed's 600 / 300."),
    ("code", """rec = recommend(df, keys)
seed = df.filter((pl.col("response_min_speech_ms") == 600) & (pl.col("barge_confirm_ms") == 300)).to_dicts()
print("recommended:", json.dumps(rec))
if seed:
    print("seed 600/300 cost:", round(cost(seed[0]), 6))
    assert rec["cost"] <= cost(seed[0]) + 1e-12"""),
    ("md", """## Issue 15: the evidence policy against the threshold policy and the peers
Honest scoring (sim/README.md): the scripted agent plays every labelled agent interval, on the
corpus **train** split (the test split is only for the final figures). The trade-off that
matters is false barge-ins (backchannels that cancel the agent) against how fast the agent
yields to a real interruption. The threshold policy moves along one curve with
`barge_confirm_ms`; the `clutchcall` preset (evidence policy, pause) along another with
`evidence_soft_confirm_ms`; the peer presets are points, and so are the real peers
(`clutchcall eval --peer`, run from their own libraries) when the `[peers]` extra is installed
(not in the small configuration)."""),
    ("code", """import dataclasses
from clutchcall.sim.metrics import summarize, tables
from clutchcall.sim.presets import preset
from clutchcall.sim.runner import load_calls
from clutchcall.sim.world import simulate_call

train = load_calls([], split="train")
if SMALL:
    train = train[:12]

def score(turn, calls=train):
    cfg = SimConfig(turn=turn, agent="scripted")
    return summarize(tables([simulate_call(c, cfg) for c in calls], cfg))

X, Y = "yield_latency_ms_p50", "false_barge_in_rate"
thr = [score(TurnConfig(barge_confirm_ms=ms)) for ms in ([200, 400, 600] if SMALL else range(100, 901, 100))]
ev = [score(dataclasses.replace(preset("clutchcall"), evidence_soft_confirm_ms=ms))
      for ms in ([700, 1000] if SMALL else range(600, 1301, 100))]
points = {name: score(preset(name)) for name in ("clutchcall", "livekit", "pipecat", "threshold")}
real = {}
if not SMALL:
    from clutchcall.sim.peers import PEER_NAMES, PEER_TURN, load_peer_calls
    for peer in PEER_NAMES:
        try:
            real[peer] = score(PEER_TURN[peer], load_peer_calls([], peer, split="train"))
        except Exception as exc:  # the optional [peers] extra is not installed
            print(peer, "not run:", exc)
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.plot([r[X] for r in thr], [r[Y] for r in thr], "o-", label="threshold (barge_confirm_ms)")
ax.plot([r[X] for r in ev], [r[Y] for r in ev], "s-", label="clutchcall (evidence_soft_confirm_ms)")
for name, r in points.items():
    ax.scatter([r[X]], [r[Y]], marker="^", s=60)
    ax.annotate(f"preset {name}", (r[X], r[Y]), fontsize=8)
for name, r in real.items():
    ax.scatter([r[X]], [r[Y]], marker="*", s=120)
    ax.annotate(f"real {name}", (r[X], r[Y]), fontsize=8)
ax.axhline(0.03, ls=":", c="grey"); ax.axvline(350, ls=":", c="grey")
ax.set_xlabel(X + " (ms)"); ax.set_ylabel(Y); ax.legend(fontsize=8)
fig.tight_layout()
assert all(r[Y] is not None for r in thr + ev)
print({k: (v[X], v[Y]) for k, v in {**points, **{"real " + k: v for k, v in real.items()}}.items()})"""),
    ("md", """### The soft-yield point (issue 15 follow-up 2)
When a backchannel-like burst pauses the agent (`evidence_soft_yield_ms`; 0 = half the soft
confirm, i.e. 500 ms): a pause on a backchannel is a disruption, on a soft interruption the
first audible reaction. Train split; the product uses 700 ms (sim/README.md)."""),
    ("code", """sy = [500, 700] if SMALL else [500, 600, 700, 800, 900]
rows = [score(dataclasses.replace(preset("clutchcall"), evidence_soft_yield_ms=ms)) for ms in sy]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(sy, [r["backchannel_disruption_rate"] for r in rows], "o-", label="backchannel_disruption_rate")
ax.plot(sy, [r["missed_barge_in_rate"] for r in rows], "s-", label="missed_barge_in_rate")
ax.plot(sy, [r["false_barge_in_rate"] for r in rows], "^-", label="false_barge_in_rate")
ax.axhline(0.25, ls=":", c="grey")
ax.set_xlabel("evidence_soft_yield_ms"); ax.legend(fontsize=8); fig.tight_layout()
assert all(r["backchannel_disruption_rate"] is not None for r in rows)
print({ms: (r["backchannel_disruption_rate"], r["yield_latency_ms_p50"]) for ms, r in zip(sy, rows)})"""),
]

LATENCY = [
    ("md", """# Turn latency: QUIC vs TCP+TLS, and the simulator against the real edge

1. The simulator's mouth-to-ear turn latency CDFs over QUIC and over TCP+TLS (the WebSocket
   leg) on the corpus calls, for a few loss rates at RTT 50 ms.
2. Predicted vs measured: a `clutchcall twin check --out FILE` result -- the real edge and real
   callers over the userspace WAN emulator next to the simulator's prediction on the same calls
   (`$CLUTCHCALL_TWIN_RESULT`, else the run saved in `notebooks/twin_result.json`).
3. Speculative commit: the curve of `speculate_silence_ms` x end-of-turn rule -> latency vs
   premature replies on the corpus train split.
Set `CLUTCHCALL_NB_SMALL=1` for the small configuration CI runs."""),
    ("code", """import math
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from clutchcall.sim.runner import run
from clutchcall.sim.config import ModelConfig, NetConfig, SimConfig
from clutchcall.twin import notebook as nbh

SMALL = nbh.small()
calls = nbh.corpus_calls(8)
losses = [0.0, 0.02] if SMALL else [0.0, 0.01, 0.03, 0.05]
lat, summary = {}, []
for transport in ("quic", "tcp"):
    for loss in losses:
        cfg = SimConfig(net=NetConfig.symmetric(transport=transport, rtt_ms=50, loss=loss),
                        model=ModelConfig(ttfa_sigma=0.0))
        tables, s = run(calls, cfg)
        lat[(transport, loss)] = tables["turns"]["turn_latency_ms"].to_list()
        summary.append({"transport": transport, "loss": loss, "turns": tables["turns"].height,
                        **{k: s[f"turn_latency_ms_{k}"] for k in ("p50", "p95", "p99")}})
for r in summary:
    print(r)"""),
    ("code", """fig, ax = plt.subplots(figsize=(8, 5))
for (transport, loss), v in lat.items():
    x, y = nbh.ecdf(v)
    ax.step(x, y, where="post", label=f"{transport}, loss {loss:.0%}",
            linestyle="-" if transport == "quic" else "--")
ax.set_xlabel("mouth-to-ear turn latency (ms)"); ax.set_ylabel("fraction of turns")
ax.set_title("Simulated turn latency CDF, RTT 50 ms"); ax.legend(); ax.grid(alpha=0.3)
assert all(len(nbh.ecdf(v)[0]) > 0 for v in lat.values())"""),
    ("md", """## Speculative commit: latency vs premature replies (corpus train split)

`speculate_silence_ms` x end-of-turn rule x end-of-turn silence, product config otherwise,
model TTFA lognormal (the simulator's default: median 350 ms, sigma 0.35), on the corpus *train* split (the
manifest's `split`; the test split is only for reporting). Rules: `fixed`, `adaptive` (short answers end
after 250 ms) and `prosodic` (the product's rule since 2026-12-08: continuation prosody -- a rise, a plateau, a level ending -- waits up
to 1 s, and a short answer that sounds unfinished is not ended early; here with `end_of_turn_final_ms` = the
silence, i.e. it never shortens, as by default). `fixed` at 500 ms was the product's rule before. *Turn latency from end of speech*: the labelled end of
a reply segment -> first agent audio at the caller. *Premature reply rate*: released replies
after which the caller went on with the same turn within 1 s / released replies (a retracted
speculation played nothing and is not counted). Definitions: `sim/speculation_metrics.py`."""),
    ("code", """from clutchcall.engine.config import PRODUCT_TURN

import json as _json
from pathlib import Path as _Path
import clutchcall as _cc
_man = _json.loads((_Path(_cc.__file__).resolve().parent.parent / "traces" / "corpus" / "MANIFEST.json").read_text())
_train = {e["name"] for e in _man["entries"] if e["split"] == "train"}
train = [c for c in nbh.corpus_calls(12) if c.name in _train]
eots = [500] if SMALL else [300, 400, 500, 600, 800]
specs = [None, 60, 120] if SMALL else [None, 60, 120, 200]
curve = []
for rule in ("fixed", "adaptive", "prosodic"):
    for eot in eots:
        for spec in specs:
            kw = {"end_of_turn_rule": rule, "end_of_turn_silence_ms": eot,
                  "end_of_turn_min_ms": min(250, eot), "end_of_turn_final_ms": eot,
                  "speculate": spec is not None}
            if spec:
                kw["speculate_silence_ms"] = spec
            _t, s = run(train, SimConfig(turn=PRODUCT_TURN.replace(**kw)))
            curve.append({"rule": rule, "eot_ms": eot, "speculate_ms": spec,
                          "from_end_p50": s["turn_latency_from_speech_end_ms_p50"],
                          "from_end_p95": s["turn_latency_from_speech_end_ms_p95"],
                          "premature": s["premature_reply_rate"], "missed": s["missed_reply_rate"],
                          "wasted_s_per_turn": s["speculation_wasted_model_s_per_turn"]})
for r in curve:
    print(r)"""),
    ("code", """fig, ax = plt.subplots(figsize=(8, 5))
for rule, marker in (("fixed", "o"), ("adaptive", "x"), ("prosodic", "s")):
    for spec in specs:
        pts = sorted((r["premature"], r["from_end_p50"], r["eot_ms"]) for r in curve
                     if r["rule"] == rule and r["speculate_ms"] == spec)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                label=f"{rule}, speculate {spec if spec else 'off'}")
        for x, y, eot in pts:
            ax.annotate(str(eot), (x, y), fontsize=7)
ax.set_xlabel("premature reply rate (train split)"); ax.set_ylabel("turn latency from end of speech p50 (ms)")
ax.set_title("Speculation hides the model's wait; the end-of-turn silence sets premature replies")
ax.legend(fontsize=8); ax.grid(alpha=0.3)
assert all(math.isfinite(r["from_end_p50"]) for r in curve)"""),
    ("md", """### The asymmetric wait (issue 16, third pass)

The `prosodic` rule with a short wait after a confident final fall (`end_of_turn_final_ms` at
P(end) >= `end_of_turn_final_pct` %) and a longer one when the burst sounds neither final nor
continuing (`end_of_turn_neutral_ms`), speculation at 60 ms, on the same train calls. The full
80-point grid on both train splits (v3 and v2) is `notebooks/eot_grid.py`; the chosen point
(80 % / 400 / 700) and why it is not the default (the test splits) are in sim/README.md
("Asymmetric wait, third pass")."""),
    ("code", """asym_pts = [(80, 400, 700)] if SMALL else [(p, f, n) for p in (70, 80) for f in (350, 400, 450) for n in (500, 700)]
asym = []
for pct, fin, neu in asym_pts:
    kw = {"end_of_turn_rule": "prosodic", "end_of_turn_final_pct": pct, "end_of_turn_final_ms": fin,
          "end_of_turn_neutral_ms": neu, "speculate": True, "speculate_silence_ms": 60}
    _t, s = run(train, SimConfig(turn=PRODUCT_TURN.replace(**kw)))
    asym.append({"final_pct": pct, "final_ms": fin, "neutral_ms": neu,
                 "from_end_p50": s["turn_latency_from_speech_end_ms_p50"],
                 "from_end_p95": s["turn_latency_from_speech_end_ms_p95"],
                 "premature": s["premature_reply_rate"], "missed": s["missed_reply_rate"]})
for r in asym:
    print(r)
fig, ax = plt.subplots(figsize=(8, 5))
base = sorted((r["premature"], r["from_end_p50"], r["eot_ms"]) for r in curve
              if r["rule"] == "fixed" and r["speculate_ms"] == 60)
ax.plot([b[0] for b in base], [b[1] for b in base], marker="o", label="fixed, speculate 60")
ax.scatter([r["premature"] for r in asym], [r["from_end_p50"] for r in asym], marker="^", color="C3",
           label="prosodic, asymmetric (final % / final ms / neutral ms)")
for r in asym:
    ax.annotate(f"{r['final_pct']}/{r['final_ms']}/{r['neutral_ms']}", (r["premature"], r["from_end_p50"]), fontsize=7)
ax.set_xlabel("premature reply rate (train split)"); ax.set_ylabel("turn latency from end of speech p50 (ms)")
ax.legend(fontsize=8); ax.grid(alpha=0.3)
assert all(math.isfinite(r["from_end_p50"]) for r in asym)"""),
    ("md", "## Predicted vs measured (the twin check)"),
    ("code", """res = nbh.twin_result()
print(f"rtt {res['rtt_ms']} ms, loss {res['loss']}, {res['calls']} calls, model ttfa {res['ttfa_ms']} ms")
qs = ["p50", "p95", "p99"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, (name, t) in zip(axes, res["transports"].items()):
    m = [t["measured"][q] for q in qs]; p = [t["predicted"][q] for q in qs]
    xs = np.arange(len(qs))
    ax.bar(xs - 0.2, m, 0.4, label="measured (real edge over netem)")
    ax.bar(xs + 0.2, p, 0.4, label=f"predicted (sim, {t['sim_transport']})")
    ax.set_xticks(xs, qs); ax.set_ylabel("ms"); ax.set_ylim(min(m + p) * 0.9, max(m + p) * 1.05)
    ax.set_title(f"{name}: max rel error {100 * t['max_rel_error']:.1f}%"); ax.legend(loc="lower right")
    print(name, "measured", t["measured"], "predicted", t["predicted"], "rel", t["rel_error"])
fig.tight_layout()"""),
    ("code", """fig, ax = plt.subplots(figsize=(6, 6))
for name, t in res["transports"].items():
    rows = t.get("rows")
    if not rows:
        continue
    for side, marker in (("measured", "o"), ("predicted", "x")):
        x, y = nbh.ecdf([r["turn_latency_ms"] for r in rows[side]])
        ax.step(x, y, where="post", label=f"{name} {side}")
ax.set_xlabel("mouth-to-ear turn latency (ms)"); ax.set_ylabel("fraction of turns"); ax.legend(); ax.grid(alpha=0.3)
assert all(math.isfinite(t["max_rel_error"]) for t in res["transports"].values())"""),
]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    for name, cells in (("tuning.ipynb", TUNING), ("latency.ipynb", LATENCY)):
        nb = build(cells)
        for i, c in enumerate(nb.cells):
            c["id"] = f"{name.split('.')[0]}-{i}"
        nbformat.write(nb, str(HERE / name))


if __name__ == "__main__":
    main()
