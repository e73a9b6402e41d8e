"""The damage ladder that proves the metrics measure what they claim, and frame -> tile helpers.

``damage_ladder`` turns a held-out real set into sets of increasing damage: light noise, blur,
binarised, a few images repeated (mode collapse), pure noise. A trustworthy primary metric ranks the
untouched held-out half best and then gets worse step by step (tests/mitogan/test_metrics_proof.py,
table in docs/metrics.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["DAMAGE_LEVELS", "damage", "damage_ladder", "frames_to_tiles", "split_halves"]

DAMAGE_LEVELS = ("halves", "light_noise", "blur", "binarised", "collapse", "pure_noise")


def damage(tiles: np.ndarray, level: str, seed: int = 0, n_modes: int = 4) -> np.ndarray:
    """One damaged copy of ``tiles`` ((N, 1, S, S) float32 in [-1, 1]); same shape, same range.

    light_noise: + N(0, 0.1) · blur: Gaussian sigma 1.5 px · binarised: each tile's Otsu mask as
    -1 / +1 · collapse: ``n_modes`` tiles repeated to N · pure_noise: uniform [-1, 1].
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(tiles, np.float32)
    if level == "halves":
        out = x.copy()
    elif level == "light_noise":
        out = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    elif level == "blur":
        out = ndimage.gaussian_filter(x, sigma=(0, 0, 1.5, 1.5))
    elif level == "binarised":
        from mitogan.metrics.morphology import otsu_masks

        mask, _ = otsu_masks(x.reshape(len(x), x.shape[-2], x.shape[-1]))
        out = np.where(mask, 1.0, -1.0).reshape(x.shape)
    elif level == "collapse":
        modes = x[rng.choice(len(x), min(n_modes, len(x)), replace=False)]
        out = modes[np.arange(len(x)) % len(modes)]
    elif level == "pure_noise":
        out = rng.uniform(-1, 1, x.shape)
    else:
        raise ValueError(f"unknown damage level {level!r}; choose from {DAMAGE_LEVELS}")
    return np.clip(out, -1, 1).astype(np.float32)


def split_halves(tiles: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of ``tiles``."""
    order = np.random.default_rng(seed).permutation(len(tiles))
    h = len(tiles) // 2
    return tiles[order[:h]], tiles[order[h:2 * h]]


def damage_ladder(tiles: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Split ``tiles`` into halves; return (reference half, {level: damaged copy of the other half})."""
    a, b = split_halves(tiles, seed)
    return a, {lvl: damage(b, lvl, seed=seed + 1) for lvl in DAMAGE_LEVELS}


def frames_to_tiles(frames: np.ndarray, size: int, max_tiles: int | None = None,
                    seed: int = 0) -> np.ndarray:
    """Cut frames into tiles comparable with training tiles.

    Each frame (T, H, W) (any dtype) is normalised on its own 0.5 / 99.8 percentiles to [-1, 1], then cut
    into the non-overlapping ``size`` x ``size`` grid at native resolution (frames smaller than ``size``
    are resized up with area/linear interpolation). ``max_tiles`` keeps a seeded random subset.
    Returns (N, 1, size, size) float32.
    """
    import cv2

    out = []
    for f in np.asarray(frames):
        f = f.astype(np.float32)
        lo, hi = np.percentile(f, [0.5, 99.8])
        f = np.clip((f - lo) / (hi - lo), 0, 1) * 2 - 1 if hi > lo else np.zeros_like(f) - 1
        h, w = f.shape
        if min(h, w) < size:
            scale = size / min(h, w)
            f = cv2.resize(f, (max(size, round(w * scale)), max(size, round(h * scale))),
                           interpolation=cv2.INTER_LINEAR)
            h, w = f.shape
        for y in range(0, h - size + 1, size):
            for x in range(0, w - size + 1, size):
                out.append(f[y:y + size, x:x + size])
    tiles = np.asarray(out, np.float32)[:, None]
    if max_tiles is not None and len(tiles) > max_tiles:
        keep = np.sort(np.random.default_rng(seed).choice(len(tiles), max_tiles, replace=False))
        tiles = tiles[keep]
    return np.clip(tiles, -1, 1)
