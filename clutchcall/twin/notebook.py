"""Small helpers the notebooks in ``notebooks/`` import (so their cells stay short).

Theory of operation: the notebooks run in two sizes. ``CLUTCHCALL_NB_SMALL=1`` (what CI sets)
picks a handful of corpus calls and a coarse grid so both notebooks execute in seconds; unset,
they use the whole checked-in corpus and the full grid. :func:`twin_result` loads a saved
``clutchcall twin check --out FILE`` result (``CLUTCHCALL_TWIN_RESULT``, else the one saved
next to the notebooks). The plotting helpers return matplotlib figures.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def small() -> bool:
    """Return True when the notebooks should run their small (CI) configuration."""
    return os.environ.get("CLUTCHCALL_NB_SMALL", "") not in ("", "0")


def corpus_calls(n_small: int = 12) -> list[Any]:
    """Return the checked-in corpus as simulator calls (the first ``n_small`` when small)."""
    from clutchcall.sim.runner import load_calls

    calls = load_calls([])
    return calls[:n_small] if small() else calls


def twin_result(path: str | None = None) -> dict[str, Any]:
    """Return a saved twin-check result: ``path``, else ``$CLUTCHCALL_TWIN_RESULT``, else
    ``notebooks/twin_result.json``. Raises FileNotFoundError if none exists."""
    p = path or os.environ.get("CLUTCHCALL_TWIN_RESULT")
    if not p:
        import clutchcall

        p = str(Path(clutchcall.__file__).resolve().parent.parent / "notebooks" / "twin_result.json")
    return json.loads(Path(p).read_text())


def ecdf(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Return (sorted finite values, cumulative fraction) of ``values``."""
    v = np.sort(np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float))
    return v, (np.arange(1, v.size + 1) / v.size if v.size else v)


def heatmap_grid(df: Any, xkey: str, ykey: str, metric: str) -> tuple[list[Any], list[Any], np.ndarray]:
    """Return (xs, ys, grid[y, x]) of ``metric`` over a sweep table (other keys averaged)."""
    import polars as pl

    xs = sorted(df[xkey].unique().to_list())
    ys = sorted(df[ykey].unique().to_list())
    grid = np.full((len(ys), len(xs)), np.nan)
    agg = df.group_by(xkey, ykey).agg(pl.col(metric).cast(pl.Float64).mean())
    for r in agg.to_dicts():
        if r[metric] is not None:
            grid[ys.index(r[ykey]), xs.index(r[xkey])] = r[metric]
    return xs, ys, grid
