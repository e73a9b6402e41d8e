"""Plots of a search for its report (PNG, matplotlib's Agg backend): parallel coordinates.

``parallel_coordinates(rows, params, objective, path)`` draws one polyline per trial across one vertical
axis per searched parameter plus the objective. Numeric axes are scaled to [0, 1] between their min and
max (log-scaled when the values span more than a decade and are all positive); categorical axes place
their choices evenly. A trial's line skips the axis of a conditional parameter it did not sample. Finished
trials are coloured by objective value; stopped or failed ones are grey and dashed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["parallel_coordinates"]


def _axis(values: list):
    """(positions in [0, 1] or NaN, tick positions, tick labels) for one axis's values (None = absent)."""
    present = [v for v in values if v is not None]
    numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and len(set(present)) > 1:
        arr = np.array([math.nan if v is None else float(v) for v in values])
        finite = arr[np.isfinite(arr)]
        lo, hi = float(finite.min()), float(finite.max())
        use_log = lo > 0 and hi / lo > 10
        f = np.log10 if use_log else (lambda x: x)
        span = (f(hi) - f(lo)) or 1.0
        pos = (f(arr) - f(lo)) / span
        return pos, [0.0, 1.0], [f"{lo:.3g}", f"{hi:.3g}"]
    choices = sorted(set(present), key=str)
    if not choices:
        return np.full(len(values), math.nan), [], []
    where = {c: (i / (len(choices) - 1) if len(choices) > 1 else 0.5) for i, c in enumerate(choices)}
    pos = np.array([math.nan if v is None else where[v] for v in values])
    return pos, list(where.values()), [str(c) for c in choices]


def parallel_coordinates(rows: list[dict], params: list[str], objective: str, path, mode: str = "min") -> Path | None:
    """``rows``: one dict per trial with the ``params`` (absent = not sampled), ``objective`` (None if
    the trial has no value) and ``finished`` (bool). Returns the PNG path, or None with no rows/params."""
    if not rows or not params:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [*params, objective]
    cols = [_axis([r.get(k) for r in rows]) for k in axes]
    obj = np.array([math.nan if r.get(objective) is None else float(r[objective]) for r in rows])
    ok = np.isfinite(obj) & np.array([bool(r.get("finished")) for r in rows])  # coloured: finished with a value
    cmap = plt.get_cmap("viridis_r" if mode == "min" else "viridis")
    lo, hi = (float(obj[ok].min()), float(obj[ok].max())) if ok.any() else (0.0, 1.0)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(axes)), 4.2))
    x = np.arange(len(axes))
    for i, r in enumerate(rows):
        y = np.array([c[0][i] for c in cols], float)
        has = np.isfinite(y)  # a conditional parameter the trial did not sample: the line skips its axis
        if ok[i]:
            color = cmap((obj[i] - lo) / ((hi - lo) or 1.0))
            ax.plot(x[has], y[has], color=color, lw=1.6, alpha=0.9, marker="o", ms=3)
        else:
            ax.plot(x[has], y[has], color="0.6", lw=1.0, ls="--", alpha=0.8)
    if ok.any():
        bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi)), ax=ax, pad=0.08)
        bar.set_label(objective, fontsize=8)
    for j, (_, ticks, labels) in enumerate(cols):
        ax.axvline(j, color="0.3", lw=0.8)
        for t, label in zip(ticks, labels):
            ax.text(j + 0.03, t, label, fontsize=7, va="center")
    ax.set_xticks(x, [a.split(".", 1)[-1] for a in axes], rotation=20, fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.5)
    ax.set_title(f"parameters vs {objective} (grey dashed: stopped trials)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
