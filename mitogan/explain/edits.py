"""Controlled edits of real tiles, and how D's score changes: causes, where the regression gives correlations.

Each edit changes one thing in the tiles where it applies, using the structures of ``geometry``:

==================  ==============================================================================
remove_branch       the shortest branch that leaves a junction is erased (filled with background)
smooth_beads        pixels on beads are clamped to the tile's median tubule (skeleton) brightness
thin                grey erosion (3x3) on and around the mask: tubules ~2 px narrower
thicken             grey dilation (3x3) on and around the mask: tubules ~2 px wider
fragment            a gap (disk of the local tube width + 3 px) is cut in the middle of the longest branch
==================  ==============================================================================

Erased pixels get the tile's background level plus Gaussian noise of the background's spread (seeded),
so an erased region looks like background, not like a flat hole. Result per edit: the change in D's score
``D(edited) - D(original)`` over the tiles where it applies, its mean with a bootstrap 95 % interval, and
the effect size = mean change / standard deviation of D's scores of the real tiles.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from mitogan.explain.geometry import Structures, bootstrap_ci

__all__ = ["EDITS", "apply_edit", "edit_effects"]

EDITS = ("remove_branch", "smooth_beads", "thin", "thicken", "fragment")
_TILE_ONLY = np.zeros((3, 3, 3), bool)
_TILE_ONLY[1] = True  # 8-connected within a tile, never across tiles


def _background(x: np.ndarray, st: Structures) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile background median and spread: (N,), (N,)."""
    bg = st["background"]
    med, sd = np.zeros(len(x)), np.zeros(len(x))
    for i in range(len(x)):
        v = x[i][bg[i]] if bg[i].any() else x[i].ravel()
        med[i], sd[i] = np.median(v), v.std()
    return med, sd


def _fill(x, region, med, sd, rng):
    out = x.copy()
    for i in np.flatnonzero(region.reshape(len(x), -1).any(1)):
        r = region[i]
        out[i][r] = np.clip(med[i] + rng.normal(0, sd[i], int(r.sum())), -1, 1)
    return out


def _segments(st: Structures):
    """Branches (skeleton cut at junction zones), labelled per tile, and their lengths in pixels."""
    skel = st.skel_width > 0
    seg = skel & ~st["branch_points"]
    lab, n = ndimage.label(seg, _TILE_ONLY)
    return lab, np.bincount(lab.ravel(), minlength=n + 1)


def _near_segment(st: Structures, lab: np.ndarray, i: int, k: int) -> np.ndarray:
    """Mask pixels of tile i closer to segment k than to any other skeleton pixel."""
    skel = st.skel_width[i] > 0
    _, (iy, ix) = ndimage.distance_transform_edt(~skel, return_indices=True)
    return st.mask[i] & (lab[i][iy, ix] == k) & ~st["branch_points"][i]


def _remove_branch(x, st, rng, med, sd):
    lab, size = _segments(st)
    touch = cv2.dilate(st["branch_points"].astype(np.uint8).reshape(-1, x.shape[-1]), np.ones((3, 3), np.uint8))
    touch = touch.reshape(st.mask.shape).astype(bool)
    region, ok = np.zeros_like(st.mask), np.zeros(len(x), bool)
    for i in range(len(x)):
        ks = np.unique(lab[i][touch[i] & (lab[i] > 0)])
        ks = ks[size[ks] >= 3]
        if ks.size:
            region[i] = _near_segment(st, lab, i, ks[np.argmin(size[ks])])
            ok[i] = region[i].any()
    return _fill(x, region, med, sd, rng), ok


def _fragment(x, st, rng, med, sd):
    lab, size = _segments(st)
    region, ok = np.zeros_like(st.mask), np.zeros(len(x), bool)
    for i in range(len(x)):
        ks = np.unique(lab[i][lab[i] > 0])
        ks = ks[size[ks] >= 12]
        if not ks.size:
            continue
        k = ks[np.argmax(size[ks])]
        ys, xs = np.nonzero(lab[i] == k)
        order = np.lexsort((xs, ys))
        cy, cx = ys[order[len(order) // 2]], xs[order[len(order) // 2]]
        r = st.skel_width[i][cy, cx] / 2 + 3
        yy, xx = np.ogrid[:x.shape[-2], :x.shape[-1]]
        region[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & cv2.dilate(st.mask[i].astype(np.uint8),
                                                                           np.ones((5, 5), np.uint8)).astype(bool)
        ok[i] = True
    return _fill(x, region, med, sd, rng), ok


def _smooth_beads(x, st, rng, med, sd):
    beads, skel = st["beads"], st.skel_width > 0
    out, ok = x.copy(), beads.reshape(len(x), -1).any(1)
    for i in np.flatnonzero(ok):
        tube = skel[i] & ~beads[i]
        level = np.median(x[i][tube]) if tube.any() else med[i]
        out[i] = np.where(beads[i], np.minimum(x[i], level), x[i])
    return out, ok


def _morph(x, st, grow: bool):
    k = np.ones((3, 3), np.uint8)
    near = cv2.dilate(st.mask.astype(np.uint8).reshape(-1, x.shape[-1]), np.ones((5, 5), np.uint8))
    near = near.reshape(st.mask.shape).astype(bool)
    out = x.copy()
    for i in range(len(x)):
        y = cv2.dilate(x[i], k) if grow else cv2.erode(x[i], k)
        out[i] = np.where(near[i], y, x[i])
    return out, st.mask.reshape(len(x), -1).any(1)


def apply_edit(name: str, tiles: np.ndarray, st: Structures, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Edit ``tiles`` (N, 1, S, S) in [-1, 1] (their ``structures`` given): (edited (N, 1, S, S), applies (N,))."""
    x = np.asarray(tiles, np.float32)[:, 0]
    rng = np.random.default_rng(seed)
    if name in ("thin", "thicken"):
        out, ok = _morph(x, st, grow=name == "thicken")
    else:
        med, sd = _background(x, st)
        fn = {"remove_branch": _remove_branch, "fragment": _fragment, "smooth_beads": _smooth_beads}[name]
        out, ok = fn(x, st, rng, med, sd)
    return out[:, None].astype(np.float32), ok


def edit_effects(score_fn, tiles: np.ndarray, st: Structures, edits=EDITS, seed: int = 0,
                 base: np.ndarray | None = None) -> list[dict]:
    """For each edit: ``edit, n_tiles, delta, ci_low, ci_high, effect`` (see the module docstring), ranked
    by |effect|. ``score_fn``: tiles -> D's scores (N,); ``base``: ``score_fn(tiles)`` when already known."""
    base = score_fn(tiles) if base is None else base
    spread = float(base.std()) or 1.0
    rows = []
    for name in edits:
        edited, ok = apply_edit(name, tiles, st, seed)
        if not ok.any():
            rows.append({"edit": name, "n_tiles": 0, "delta": float("nan"), "ci_low": float("nan"),
                         "ci_high": float("nan"), "effect": float("nan")})
            continue
        delta = score_fn(edited[ok]) - base[ok]
        lo, hi = bootstrap_ci(delta, seed=seed)
        rows.append({"edit": name, "n_tiles": int(ok.sum()), "delta": float(delta.mean()), "ci_low": lo,
                     "ci_high": hi, "effect": float(delta.mean() / spread)})
    return sorted(rows, key=lambda r: -abs(r["effect"]) if np.isfinite(r["effect"]) else np.inf)
