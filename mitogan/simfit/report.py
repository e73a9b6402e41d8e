"""Figures of a fit: real vs simulated frames, and what the trials say about each parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mitogan.simfit.space import FIT_SPACE

__all__ = ["frames_figure", "fit_figure", "top_spread"]


def _crops(videos, n: int, size: int) -> list[np.ndarray]:
    """Up to ``n`` frames, one per video in turn (middle frame), centre-cropped to ``size`` and normalised to
    [0, 1] as the tiles are (per-frame percentiles)."""
    from mitogan.simfit.temporal import _norm

    out = []
    for v in list(videos)[:n]:
        f = np.asarray(getattr(v, "frames", v))
        f = f[len(f) // 2]
        y, x = max(0, (f.shape[0] - size) // 2), max(0, (f.shape[1] - size) // 2)
        out.append(_norm(f[y:y + size, x:x + size]))
    return out


def frames_figure(path, rows: dict, n: int = 4, size: int = 128) -> Path:
    """Rows of frames side by side: {label: videos}; e.g. real, fitted simulator, default simulator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), n, figsize=(2.2 * n, 2.3 * len(rows)), squeeze=False)
    for r, (label, videos) in enumerate(rows.items()):
        crops = _crops(videos, n, size)
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(crops):
                ax.imshow(crops[c], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(label, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def top_spread(rows: list[dict], space=FIT_SPACE, top: int = 5) -> dict:
    """{param: {"best", "median", "lo", "hi"}} of the ``top`` finished trials by objective (values in the
    parameter's units): how tightly the good settings agree on each parameter."""
    done = sorted((r for r in rows if r["finished"]), key=lambda r: r["objective"])[:top]
    out = {}
    for p in space:
        vals = np.array([r["config"][p.name] for r in done if p.name in r["config"]], float)
        if len(vals):
            out[p.name] = {"best": float(vals[0]), "median": float(np.median(vals)), "lo": float(vals.min()),
                           "hi": float(vals.max())}
    return out


def fit_figure(path, rows: list[dict], importance: dict, space=FIT_SPACE, top: int = 5) -> Path:
    """Three panels: parameter importance (Optuna PED-ANOVA), the top trials' values of each parameter on its
    range (log or linear; the best in red), and the objective's parts for the finished trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 0.32 * len(space) + 1.8))
    names = [p.name for p in space]
    a.barh(names, [importance.get(nm, 0.0) for nm in names], color="tab:blue")
    a.invert_yaxis()
    a.set_title("importance (Optuna PED-ANOVA, finished trials)" if importance else "importance: too few finished trials",
                fontsize=9)
    done = sorted((r for r in rows if r["finished"]), key=lambda r: r["objective"])[:top]
    for i, p in enumerate(space):
        u = [p.to_unit(r["config"][p.name]) for r in done if p.name in r["config"]]
        b.scatter(u, [i] * len(u), s=14, color="grey")
        if u:
            b.scatter([u[0]], [i], s=30, color="red", zorder=3)
        b.text(1.02, i, f"{p.lo:g}-{p.hi:g}{' log' if p.log else ''}", fontsize=7, va="center")
    b.set_yticks(range(len(space)), names)
    b.set_xlim(0, 1.25)
    b.invert_yaxis()
    b.set_title(f"top {len(done)} finished trials on each range (best: red)", fontsize=9)
    _components(c, rows)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def _components(ax, rows: list[dict]) -> None:
    """The objective and its three weighted parts for the finished trials, best first (lines: realism_gap
    can be below 0, so stacked bars would mislead)."""
    from mitogan.simfit.objective import IMAGE_WEIGHT, TEMPORAL_WEIGHT

    done = sorted((r for r in rows if r["finished"]), key=lambda r: r["objective"])
    x = np.arange(len(done))
    part = lambda key, w=1.0: w * np.array([r["metrics"].get(key, np.nan) for r in done], float)  # noqa: E731
    ax.plot(x, [r["objective"] for r in done], "k-", lw=2, label="objective")
    ax.plot(x, part("realism_gap"), ".-", color="tab:blue", label="realism_gap")
    ax.plot(x, part("temporal_gap", TEMPORAL_WEIGHT), ".-", color="tab:orange",
            label=f"{TEMPORAL_WEIGHT:g} x temporal_gap")
    ax.plot(x, part("image_gap", IMAGE_WEIGHT), ".-", color="tab:green", label=f"{IMAGE_WEIGHT:g} x image_gap")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("finished trials, best first")
    ax.set_title("objective and its parts (last rung)", fontsize=9)
    ax.legend(fontsize=8)
