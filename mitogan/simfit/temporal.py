"""Temporal statistics of a movie, so that a fit sees the dynamics the tile objective cannot.

Tiles are judged one by one, so motion, fission/fusion and bleaching are invisible to ``realism_gap``. Per
video (frames ``(T, H, W)``, any real dtype, T >= 2), all per frame and in pixels of the data:

change    mean |f(t+1) - f(t)| / sd(f(t)) of percentile-normalised frames: how much a frame differs from
          the next (motion and noise together)
flow      median optical-flow speed (Farneback) over the structure (Otsu foreground), px/frame
bleach    -slope of log(structure - background intensity) over frames (raw units), per frame
turnover  mean |n(t+1) - n(t)| / mean n(t) of connected structures n: fission/fusion-like changes

A dataset's statistics are the frame-pair-weighted means over its videos.
"""

from __future__ import annotations

import cv2
import numpy as np

from mitogan.metrics.proof import EVAL_PERCENTILES
from mitogan.preprocess import normalize_percentile

__all__ = ["STATS", "video_stats", "dataset_stats", "temporal_gap", "relative_gap"]

STATS = ("change", "flow", "bleach", "turnover")
# below these a difference is noise: the gap of a statistic is |sim - real| / (|real| + floor)
_FLOOR = {"change": 0.05, "flow": 0.05, "bleach": 0.005, "turnover": 0.05}
_CAP = 2.0  # one statistic alone never outweighs the tile objective


def _norm(frame: np.ndarray) -> np.ndarray:
    return normalize_percentile(frame, *EVAL_PERCENTILES)


def _foreground(n: np.ndarray) -> np.ndarray:
    """Otsu mask of a [0, 1] frame (lightly smoothed so that noise does not make speckle objects)."""
    u8 = (cv2.GaussianBlur(n, (0, 0), 1.0) * 255).astype(np.uint8)
    _, mask = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask.astype(bool)


def _flow_speed(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Median Farneback speed (px/frame) over ``mask`` between two [0, 1] frames."""
    u8 = [(cv2.GaussianBlur(x, (0, 0), 1.0) * 255).astype(np.uint8) for x in (a, b)]
    flow = cv2.calcOpticalFlowFarneback(u8[0], u8[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)  # (H, W, 2)
    speed = np.hypot(flow[..., 0], flow[..., 1])
    return float(np.median(speed[mask])) if mask.any() else 0.0


def _bleach(frames: np.ndarray, masks: list) -> float:
    """-d log(foreground - background)/dt from raw frames; 0 when the signal is not positive throughout."""
    raw = frames.astype(np.float64)
    signal = [f[m].mean() - f[~m].mean() if m.any() and (~m).any() else 0.0 for f, m in zip(raw, masks)]
    signal = np.asarray(signal)
    if len(signal) < 2 or (signal <= 0).any():
        return 0.0
    return float(-np.polyfit(np.arange(len(signal)), np.log(signal), 1)[0])


def video_stats(frames: np.ndarray) -> dict | None:
    """{stat: float} of one video ``(T, H, W)`` (uint8/uint16/float); None when it has fewer than 2 frames."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) < 2:
        return None
    norm = [_norm(f) for f in frames]
    masks = [_foreground(n) for n in norm]
    change = [np.abs(b - a).mean() / max(float(a.std()), 1e-6) for a, b in zip(norm, norm[1:])]
    flow = [_flow_speed(a, b, m) for a, b, m in zip(norm, norm[1:], masks)]
    counts = np.array([cv2.connectedComponents(m.astype(np.uint8))[0] - 1 for m in masks], float)
    turnover = float(np.abs(np.diff(counts)).mean() / max(counts.mean(), 1.0))
    return {"change": float(np.mean(change)), "flow": float(np.median(flow)), "bleach": _bleach(frames, masks),
            "turnover": turnover, "pairs": len(frames) - 1}


def dataset_stats(videos) -> dict | None:
    """Frame-pair-weighted means of :func:`video_stats` over ``videos`` (arrays or objects with ``.frames``);
    None when no video has two frames (the fit then judges tiles only)."""
    per = [s for s in (video_stats(getattr(v, "frames", v)) for v in videos) if s]
    if not per:
        return None
    w = np.array([s["pairs"] for s in per], float)
    out = {k: float(np.average([s[k] for s in per], weights=w)) for k in STATS}
    out["pairs"] = int(w.sum())
    return out


def relative_gap(sim: dict | None, real: dict | None, floors: dict) -> tuple[float, dict]:
    """(mean gap over ``floors``' keys, {stat: gap}); each gap = min(|sim - real| / (|real| + floor), 2).
    (0.0, {}) when either side has no statistics."""
    if not sim or not real:
        return 0.0, {}
    gaps = {k: min(abs(sim[k] - real[k]) / (abs(real[k]) + f), _CAP) for k, f in floors.items()}
    return float(np.mean(list(gaps.values()))), gaps


def temporal_gap(sim: dict | None, real: dict | None) -> tuple[float, dict]:
    """:func:`relative_gap` over the temporal :data:`STATS`."""
    return relative_gap(sim, real, _FLOOR)
