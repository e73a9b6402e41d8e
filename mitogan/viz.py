"""Pictures: image grids, labelled contact sheets and line plots, written as PNG files.

Everything here takes plain arrays and writes PNGs (PIL for images, matplotlib's Agg backend for plots),
so the same figures can go to disk and to W&B (``wandb.Image(path)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["to_uint8", "image_grid", "save_png", "save_image_grid", "contact_sheet", "save_line_plot",
           "save_bar_plot"]


def to_uint8(img: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Map an image to uint8 for display.

    ``value_range=(lo, hi)`` maps lo→0, hi→255 (clipped); ``None`` stretches the 0.5–99.5 percentiles.
    NaN/Inf show as 0. A constant image becomes mid-grey rather than dividing by zero.
    """
    a = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if value_range is None:
        lo, hi = np.percentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
    else:
        lo, hi = value_range
    if hi <= lo:
        return np.full(a.shape, 128, np.uint8)
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def image_grid(images: np.ndarray, nrow: int = 8, pad: int = 2, value_range=(-1.0, 1.0)) -> np.ndarray:
    """Tile ``images`` ((N, 1, S, S), (N, H, W) or a list of (H, W)) into one uint8 (H', W') grid.

    ``value_range=None`` stretches each image on its own (useful for raw frames of varying brightness).
    """
    imgs = [np.asarray(i).reshape(np.asarray(i).shape[-2:]) for i in images]
    if not imgs:
        raise ValueError("image_grid: no images")
    h = max(i.shape[0] for i in imgs)
    w = max(i.shape[1] for i in imgs)
    ncol = min(nrow, len(imgs))
    nrows = -(-len(imgs) // ncol)
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad), 255, np.uint8)
    for k, img in enumerate(imgs):
        r, c = divmod(k, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + img.shape[0], x:x + img.shape[1]] = to_uint8(img, value_range)
    return grid


def save_png(array: np.ndarray, path) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, creating parent folders."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path


def save_image_grid(images, path, nrow: int = 8, pad: int = 2, value_range=(-1.0, 1.0)) -> Path:
    """``image_grid`` straight to a PNG file."""
    return save_png(image_grid(images, nrow=nrow, pad=pad, value_range=value_range), path)


def contact_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path, title: str | None = None,
                  cell: float = 1.6) -> Path:
    """A labelled grid: one row per (label, images), each image stretched on its own. Written as PNG."""
    plt = _pyplot()
    ncol = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(cell * ncol + 1.2, cell * len(rows) + 0.4),
                             squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(to_uint8(imgs[c]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


def save_line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path, title: str = "",
                   xlabel: str = "step", ylabel: str = "", logy: bool = False) -> Path:
    """Plot named (x, y) series on one axis and write a PNG. Non-finite points are dropped."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 3.6))
    for name, (x, y) in series.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[ok], y[ok], label=name, lw=1.2)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    if logy:
        ax.set_yscale("symlog")
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def save_bar_plot(values: Mapping[str, float], path, xlabel: str = "", title: str = "") -> Path:
    """Horizontal bars, largest at the top, written as PNG."""
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = _pyplot().subplots(figsize=(6.4, 0.3 * len(items) + 1.0))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4a7ab5")
    ax.set_xlabel(xlabel), ax.set_title(title)
    return _save_figure(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes and CI
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path
