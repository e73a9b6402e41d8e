"""Whole-frame image statistics: low-variance summaries that pin down width, blur, density and noise.

``realism_gap`` compares distributions of tile features and needs many tiles before small parameter changes
rise above its sampling noise. These statistics average over every pixel of every frame, so a few frames
already measure them well (the summary statistics of approximate Bayesian computation). Per frame,
normalised on its own percentiles to [0, 1] as the tiles are:

fg            share of pixels in the Otsu foreground (density x length x width)
acf1..acf8    spatial autocorrelation at lags 1, 2, 4, 8 px (mean of x and y): tube width and PSF blur;
              pixel noise lowers acf1
q10, q50, q90 intensity quantiles: background level and contrast
noise         sd of the high-pass residual (frame minus its 1 px Gaussian blur) in the background, relative
              to the foreground-background contrast: the inverse signal-to-noise ratio
"""

from __future__ import annotations

import cv2
import numpy as np

from mitogan.simfit.temporal import _foreground, _norm, relative_gap

__all__ = ["IMAGE_STATS", "frame_stats", "image_stats", "image_gap"]

LAGS = (1, 2, 4, 8)
IMAGE_STATS = ("fg", *(f"acf{k}" for k in LAGS), "q10", "q50", "q90", "noise")
_FLOOR = {**{k: 0.02 for k in IMAGE_STATS}, "noise": 0.01}


def frame_stats(frame: np.ndarray) -> dict:
    """:data:`IMAGE_STATS` of one frame ``(H, W)`` (uint8/uint16/float, H, W > 16)."""
    n = _norm(frame).astype(np.float64)
    mask = _foreground(n.astype(np.float32))
    c = n - n.mean()
    var = max(float((c * c).mean()), 1e-12)
    out = {"fg": float(mask.mean())}
    for k in LAGS:
        out[f"acf{k}"] = float(((c[:, k:] * c[:, :-k]).mean() + (c[k:] * c[:-k]).mean()) / (2 * var))
    out.update(zip(("q10", "q50", "q90"), map(float, np.quantile(n, (0.1, 0.5, 0.9)))))
    resid = n - cv2.GaussianBlur(n, (0, 0), 1.0)
    contrast = n[mask].mean() - n[~mask].mean() if mask.any() and (~mask).any() else 1.0
    out["noise"] = float(resid[~mask].std() / max(contrast, 1e-3)) if (~mask).any() else 0.0
    return out


def image_stats(videos, max_frames: int = 400, seed: int = 0) -> dict:
    """Mean :func:`frame_stats` over the frames of ``videos`` (arrays ``(T, H, W)`` or objects with
    ``.frames``); at most ``max_frames`` frames, a seeded subset, so big datasets stay quick."""
    frames = [f for v in videos for f in np.asarray(getattr(v, "frames", v))]
    if len(frames) > max_frames:
        pick = np.random.default_rng(seed).choice(len(frames), max_frames, replace=False)
        frames = [frames[i] for i in np.sort(pick)]
    per = [frame_stats(f) for f in frames]
    return {k: float(np.mean([p[k] for p in per])) for k in IMAGE_STATS}


def image_gap(sim: dict | None, real: dict | None) -> tuple[float, dict]:
    """:func:`~mitogan.simfit.temporal.relative_gap` over :data:`IMAGE_STATS`."""
    return relative_gap(sim, real, _FLOOR)
