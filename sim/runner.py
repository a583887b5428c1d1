"""Running the simulator over many calls and configs: one run, a parallel grid, tables.

Theory of operation: :func:`run` simulates every call under one :class:`SimConfig` and scores
them (:mod:`clutchcall.sim.metrics`). :func:`sweep` runs a grid of configs through an executor
(:mod:`clutchcall.sim.executor`: this process, a ``multiprocessing`` pool on all cores, or a
Dask cluster; results are put back in grid order, so the output does not depend on which
worker finished first) with a progress bar on a terminal. :func:`pareto` and :func:`recommend`
turn a sweep table into its trade-off fronts and a suggested config.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl

from clutchcall.engine import TurnConfig
from clutchcall.engine.errors import ConfigError
from clutchcall.progress import bar, wanted
from clutchcall.sim.calls import Call, call_from_trace, find_calls, load_call, synthetic_call
from clutchcall.sim.config import SimConfig
from clutchcall.sim.executor import CallFailure, ExecutorSpec, Point, SimulationFailed, run_grid
from clutchcall.sim.metrics import summarize, tables
from clutchcall.sim.world import simulate_call


def default_corpus() -> Path:
    """Return the checked-in corpus directory (``traces/corpus`` in the source tree)."""
    import clutchcall

    return Path(clutchcall.__file__).resolve().parent.parent / "traces" / "corpus"


SPLITS = ("train", "test", "all")


def split_names(paths: Iterable[str], split: str) -> set[str] | None:
    """Return the call names of ``split`` listed by the ``MANIFEST.json`` of the directories
    in ``paths``, or None when ``split`` is "all" or no manifest there assigns splits (then
    every call is used). Raises ConfigError for an unknown split."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    if split == "all":
        return None
    import json

    names: set[str] = set()
    found = False
    for item in paths:
        m = Path(item) / "MANIFEST.json"
        if not m.is_file():
            continue
        for e in json.loads(m.read_text(encoding="utf-8")).get("entries", []):
            if "split" in e:
                found = True
                if e["split"] == split:
                    names.add(str(e["name"]))
    return names if found else None


def load_calls(paths: Iterable[str], *, frame_ms: int = 20, aggressiveness: int = 2,
               synthetic: int = 0, synthetic_seconds: float = 120.0,
               split: str = "all", smart_turn: bool = False, vad: str = "webrtc") -> list[Call]:
    """Load labelled calls from files/directories (the checked-in corpus if none are given
    and ``synthetic`` is 0), plus ``synthetic`` generated calls. ``split`` ("train", "test"
    or "all") keeps only that split of a corpus directory whose MANIFEST.json assigns splits
    (:func:`split_names`). ``smart_turn``: run the smart-turn model on each pause of the
    labelled calls (``end_of_turn_rule = "smart-turn"``, :func:`~clutchcall.sim.calls.load_call`).
    Raises CallFormatError (ConfigError for an unknown split)."""
    paths = list(paths)
    model = None
    if smart_turn:
        from clutchcall.traces.smart_turn_model import shared_model

        model = shared_model()
    calls: list[Call] = []
    if paths or not synthetic:
        if not paths:
            paths = [str(default_corpus())]
        keep = split_names(paths, split)
        calls += [call_from_trace(p) if p.suffix == ".parquet"
                  else load_call(p, frame_ms=frame_ms, aggressiveness=aggressiveness,
                                 smart_turn=model, vad=vad)
                  for p in find_calls(paths)
                  if keep is None or p.suffix == ".parquet" or p.name in keep]
    calls += [synthetic_call(1000 + i, synthetic_seconds, frame_ms) for i in range(synthetic)]
    return calls


def run(calls: list[Call], cfg: SimConfig, *, progress: Callable[[int], object] | None = None,
        ) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Simulate ``calls`` under ``cfg``; return (tables, summary). ``progress`` is called with
    1 after each call's simulation."""
    runs = []
    for c in calls:
        runs.append(simulate_call(c, cfg))
        if progress is not None:
            progress(1)
    t = tables(runs, cfg)
    return t, summarize(t)


def parse_range(text: str) -> list[int]:
    """Parse ``A:B:STEP`` (inclusive of B when on the grid), ``A,B,C`` or ``A`` into ints.
    Raises ConfigError on malformed text."""
    try:
        if ":" in text:
            parts = [int(x) for x in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            return list(range(parts[0], parts[1] + 1, parts[2]))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"bad range {text!r}: use START:STOP:STEP or A,B,C") from None


def grid_points(base: SimConfig, grid: dict[str, list[int]]) -> list[Point]:
    """Return one :class:`~clutchcall.sim.executor.Point` per valid combination of ``grid``
    (TurnConfig field -> values) over ``base``, labelled with the combination, in grid
    order. Invalid combinations (e.g. a prime silence not below the end of turn) are
    skipped. Raises ConfigError for an unknown field."""
    known = set(TurnConfig().to_dict())
    for k in grid:
        if k not in known:
            raise ConfigError(f"sweep: unknown TurnConfig field {k!r}")
    keys = list(grid)
    points: list[Point] = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        changes = dict(zip(keys, combo))
        try:
            turn = base.turn.replace(**changes)
        except ConfigError:
            continue
        points.append(Point(cfg=SimConfig(turn=turn, net=base.net, model=base.model,
                                          seed=base.seed, agent=base.agent), labels=changes))
    return points


def point_row(labels: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Return one sweep-table row: the point's labels, then its summary's flat values (the
    nested breakdowns ``counts`` / ``by_kind`` stay out of the table)."""
    return {**labels, **{k: v for k, v in summary.items() if not isinstance(v, dict)}}


def sweep_grid(calls: list[Call], base: SimConfig, grid: dict[str, list[int]], *,
               executor: ExecutorSpec | None = None, out_dir: str | None = None,
               progress: bool = True, client: Any = None,
               ) -> tuple[pl.DataFrame, list[CallFailure]]:
    """Run every combination of ``grid`` on ``calls`` with ``executor`` (default: local, all
    cores); return (one row per point: the grid values, then the summary; the calls whose
    simulation raised, by name -- they are left out of their point's summary). With
    ``out_dir``, per-turn/segment/call tables go to ``OUT_DIR/{turns,segments,calls}/KNOB=V/
    .../part-0.parquet`` and each summary is computed from them. ``progress``: a bar on a
    terminal. Raises ConfigError for an unknown field or a bad executor."""
    points = grid_points(base, grid)
    spec = executor or ExecutorSpec()
    n = len(points) * len(calls)
    with bar(n, "sim sweep", enabled=progress and wanted(), unit="call") as b:
        res = run_grid(calls, points, spec, out_dir=out_dir, progress=b.update, client=client)
    rows = [point_row(pt.labels, s) for pt, s in zip(points, res.summaries, strict=True)]
    return pl.DataFrame(rows, infer_schema_length=None), res.failures


def sweep(calls: list[Call], base: SimConfig, grid: dict[str, list[int]], *,
          processes: int | None = None, progress: bool = True,
          executor: ExecutorSpec | None = None, out_dir: str | None = None) -> pl.DataFrame:
    """Run every combination of ``grid`` (TurnConfig field -> values) on ``calls``; return
    one row per point (the grid values, then the summary), as :func:`sweep_grid` does.
    ``processes`` is the local executor's worker count when no ``executor`` is given.
    Raises ConfigError for an unknown field and SimulationFailed if any call raised."""
    spec = executor or ExecutorSpec(workers=processes)
    df, failures = sweep_grid(calls, base, grid, executor=spec, out_dir=out_dir,
                              progress=progress)
    if failures:
        raise SimulationFailed(failures)
    return df


def pareto(df: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Return the rows of ``df`` not dominated in (x, y), both minimised, sorted by x (of
    rows with equal (x, y), the first in grid order)."""
    rows = df.select(pl.all()).to_dicts()

    def val(r: dict[str, Any], k: str) -> float:
        v = r.get(k)
        return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    front = []
    seen: set[tuple[float, float]] = set()
    for r in rows:
        rx, ry = val(r, x), val(r, y)
        if (rx, ry) in seen:  # equal trade-off: keep the first grid point only
            continue
        dominated = any(val(o, x) <= rx and val(o, y) <= ry and (val(o, x) < rx or val(o, y) < ry)
                        for o in rows)
        if not dominated:
            front.append(r)
            seen.add((rx, ry))
    front.sort(key=lambda r: (val(r, x), val(r, y)))
    return pl.DataFrame(front, schema=df.schema) if front else df.clear()


COST_WEIGHTS = {
    "false_barge_in_rate": 1.0,
    "missed_barge_in_rate": 1.0,
    "backchannel_wakeup_rate": 1.0,
    "missed_reply_rate": 1.0,
}
"""Weights of :func:`recommend`'s cost; plus 0.5 per second of p50 barge-in latency."""


def cost(row: dict[str, Any]) -> float:
    """Return the scalar cost :func:`recommend` minimises for one sweep row."""
    c = sum(w * float(row.get(k) or 0.0) for k, w in COST_WEIGHTS.items())
    lat = row.get("barge_latency_ms_p50")
    c += 0.5 * (float(lat) / 1000.0 if lat is not None else 1.0)
    return c


def recommend(df: pl.DataFrame, keys: list[str]) -> dict[str, Any]:
    """Return the grid values of the lowest-cost row and its cost (ties: first in order)."""
    rows = df.to_dicts()
    best = min(rows, key=cost)
    return {**{k: best[k] for k in keys}, "cost": round(cost(best), 6)}


def heatmaps(df: pl.DataFrame, xkey: str, ykey: str, metrics: list[str], out_dir: str,
             fixed: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> list[str]:
    """Write one PNG heatmap per metric over (xkey, ykey); return the paths. Other swept
    parameters are reduced by taking the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = sorted(df[xkey].unique().to_list())
    ys = sorted(df[ykey].unique().to_list())
    paths = []
    for m in metrics:
        agg = df.group_by(xkey, ykey).agg(pl.col(m).cast(pl.Float64).mean())
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in agg.to_dicts():
            if r[m] is not None:
                grid[ys.index(r[ykey]), xs.index(r[xkey])] = r[m]
        fig, ax = plt.subplots(figsize=(7, 5))
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=90, fontsize=7)
        ax.set_yticks(range(len(ys)), [str(y) for y in ys], fontsize=7)
        ax.set_xlabel(xkey)
        ax.set_ylabel(ykey)
        ax.set_title(m)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        p = os.path.join(out_dir, f"heatmap_{m}.png")
        fig.savefig(p, dpi=80, metadata={"Software": None})
        plt.close(fig)
        paths.append(p)
    return paths
