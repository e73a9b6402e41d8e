"""The files ``evaluate(..., out_dir=...)`` writes: metrics.json (+ a line in metrics.jsonl),
histograms.png (the features that separate generated from held-out real tiles the most, real vs
generated) and nearest_neighbours.png (generated tiles beside their nearest TRAINING tile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mitogan.metrics.distances import nearest_distances
from mitogan.metrics.registry import MetricContext

__all__ = ["write_report", "save_histograms", "save_nn_panel"]


def write_report(out: Path, result: dict, ctx: MetricContext) -> None:
    from mitogan.fsutil import json_safe

    out.mkdir(parents=True, exist_ok=True)
    safe = json_safe(result)  # NaN/Inf are not JSON: a metric that has no value is written as null
    (out / "metrics.json").write_text(json.dumps(safe, indent=1, sort_keys=True, allow_nan=False))
    with open(out / "metrics.jsonl", "a") as f:  # history of evaluations into this folder
        f.write(json.dumps(safe, sort_keys=True, allow_nan=False) + "\n")
    names = ctx.ref.names
    cols = [names.index(t["feature"]) for t in result["top_features"]]
    save_histograms(ctx.ref.f_heldout[:, cols], ctx.fake_raw[:, cols], [names[c] for c in cols],
                    [t["share"] for t in result["top_features"]], out / "histograms.png")
    save_nn_panel(ctx, out / "nearest_neighbours.png")


def save_histograms(real: np.ndarray, fake: np.ndarray, names, shares, path: Path, bins: int = 30) -> Path:
    """One panel per feature: held-out real and generated histograms (densities) overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 4
    nrow = max(1, -(-len(names) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(names):
            ax.axis("off")
            continue
        both = np.concatenate([real[:, i], fake[:, i]])
        lo, hi = np.percentile(both, [0.5, 99.5])
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        ax.hist(np.clip(real[:, i], lo, hi), edges, density=True, alpha=0.5, label=f"held-out real ({len(real)})")
        ax.hist(np.clip(fake[:, i], lo, hi), edges, density=True, alpha=0.5, label=f"generated ({len(fake)})")
        ax.set_title(f"{names[i]} ({100 * shares[i]:.0f} % of the gap)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def save_nn_panel(ctx: MetricContext, path: Path, n: int = 8) -> Path:
    """Generated tiles beside their nearest real TRAINING tile (pixel distance): the ``n`` closest
    (most copy-like) and ``n`` random ones."""
    from mitogan.viz import contact_sheet

    train = ctx.ref.train
    flat = lambda a: np.asarray(a, np.float64).reshape(len(a), -1) / np.sqrt(a[0].size)  # noqa: E731
    dist, idx = nearest_distances(flat(ctx.fake_tiles), flat(train))
    closest = np.argsort(dist, kind="stable")[:n]
    rand = np.random.default_rng(ctx.seed).choice(len(dist), min(n, len(dist)), replace=False)
    s = ctx.fake_tiles.shape[-1]
    img = lambda a, i: a[i].reshape(s, s)  # noqa: E731
    rows = [("closest generated", [img(ctx.fake_tiles, i) for i in closest]),
            ("their nearest training tile", [img(train, idx[i]) for i in closest]),
            ("random generated", [img(ctx.fake_tiles, i) for i in rand]),
            ("their nearest training tile", [img(train, idx[i]) for i in rand])]
    title = "nearest training tile (RMS distance): " + ", ".join(f"{dist[i]:.3f}" for i in closest[:4]) + " ..."
    return contact_sheet(rows, path, title=title)
