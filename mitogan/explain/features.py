"""From images to features: how D's score depends on the morphology features of the tiles.

D's score of each tile is regressed (ridge, on standardised features, so each coefficient is "score
standard deviations per feature standard deviation") on the features of ``mitogan.metrics.morphology``
and the structure densities of ``geometry`` (beads, junctions, ends per 10 px of skeleton).
Importance of a feature = the drop in R^2 when its column is permuted (Breiman 2001), averaged over
``repeats`` permutations. Intervals: percentile bootstrap over tiles (the regression refitted on each
resample). Correlated features share their importance (permuting one leaves the other to carry the
signal): read the coefficients and the importances together, and the edits (``edits``) for causes.
"""

from __future__ import annotations

import numpy as np

from mitogan.explain.geometry import DENSITY_NAMES, densities, structures
from mitogan.metrics.morphology import FEATURE_NAMES, morphology_features

__all__ = ["GEOMETRIC", "ALL_FEATURES", "feature_importance", "geometric_importance", "ridge_fit", "tile_features"]

# the features that describe shape (the rest are intensity statistics, reported too but marked)
GEOMETRIC = ("n_objects", "area_fraction", "skeleton_length", "branch_len_mean", "branch_len_median",
             "branch_points_per_object", "end_points_per_object", "width_mean", "width_std", "tortuosity",
             "solidity", "eccentricity", "bead_density") + DENSITY_NAMES
ALL_FEATURES = FEATURE_NAMES + DENSITY_NAMES
_RIDGE = 1e-2  # relative to n: a little shrinkage keeps collinear features finite


def ridge_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge regression of y (n,) on x (n, p) (both already centred/standardised): (coef (p,), intercept)."""
    n, p = x.shape
    xm, ym = x.mean(0), y.mean()
    xc, yc = x - xm, y - ym
    coef = np.linalg.solve(xc.T @ xc + _RIDGE * n * np.eye(p), xc.T @ yc)
    return coef, float(ym - xm @ coef)


def _r2(x, y, coef, b) -> float:
    res = y - x @ coef - b
    tot = ((y - y.mean()) ** 2).sum()
    return float(1 - (res ** 2).sum() / tot) if tot > 0 else 0.0


def _importance(x, y, coef, b, rng, repeats: int) -> np.ndarray:
    base = _r2(x, y, coef, b)
    out = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        drops = []
        for _ in range(repeats):
            xp = x.copy()
            xp[:, j] = xp[rng.permutation(len(x)), j]
            drops.append(base - _r2(xp, y, coef, b))
        out[j] = np.mean(drops)
    return out


def tile_features(tiles: np.ndarray, threshold=None, st=None) -> np.ndarray:
    """The morphology features and the structure densities of each tile: (N, len(ALL_FEATURES))."""
    st = structures(tiles, threshold=threshold) if st is None else st
    return np.concatenate([morphology_features(tiles, threshold=threshold), densities(st)], axis=1)


def geometric_importance(tiles: np.ndarray, d_scores: np.ndarray, threshold=None, st=None, **kw) -> list[dict]:
    """``feature_importance`` on the geometric features only (``GEOMETRIC``): the ranked table of
    ``mitogan explain``. Intensity statistics are left out, so that a discriminator that also reads
    brightness does not push every shape feature down the list (they are still in ``tile_features``)."""
    f = tile_features(tiles, threshold, st)
    geo = [i for i, n in enumerate(ALL_FEATURES) if n in GEOMETRIC]
    return feature_importance(tiles, d_scores, features=f[:, geo], names=[ALL_FEATURES[i] for i in geo], **kw)


def feature_importance(tiles: np.ndarray, d_scores: np.ndarray, features: np.ndarray | None = None,
                       names=ALL_FEATURES, threshold=None, repeats: int = 5, n_boot: int = 100,
                       seed: int = 0) -> list[dict]:
    """Rank the morphology features by how much D's score depends on them.

    ``tiles`` (N, 1, S, S) in [-1, 1]; ``d_scores`` (N,); ``features``: precomputed (N, F) in ``names``
    order. Constant features are left out. Returns rows ranked by importance: ``feature, kind (geometric |
    intensity), coef, coef_low, coef_high, importance, imp_low, imp_high, r2``.
    """
    f = tile_features(tiles, threshold) if features is None else np.asarray(features, np.float64)
    y = np.asarray(d_scores, np.float64)
    sd = f.std(0)
    keep = sd > 1e-12
    z = (f[:, keep] - f[:, keep].mean(0)) / sd[keep]
    kept = [n for n, k in zip(names, keep) if k]
    if not kept:  # every feature is the same on every tile: nothing to rank (and nothing to reshape)
        return []
    ys = (y - y.mean()) / (y.std() or 1.0)
    rng = np.random.default_rng(seed)
    coef, b = ridge_fit(z, ys)
    imp = _importance(z, ys, coef, b, rng, repeats)
    boot_c, boot_i = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(z), len(z))
        c, bb = ridge_fit(z[idx], ys[idx])
        boot_c.append(c)
        boot_i.append(_importance(z[idx], ys[idx], c, bb, rng, 1))
    bc, bi = np.array(boot_c).reshape(-1, len(kept)), np.array(boot_i).reshape(-1, len(kept))
    r2 = _r2(z, ys, coef, b)
    rows = [{"feature": name, "kind": "geometric" if name in GEOMETRIC else "intensity", "coef": float(coef[j]),
             "coef_low": float(np.percentile(bc[:, j], 2.5)) if n_boot else float("nan"),
             "coef_high": float(np.percentile(bc[:, j], 97.5)) if n_boot else float("nan"),
             "importance": float(imp[j]),
             "imp_low": float(np.percentile(bi[:, j], 2.5)) if n_boot else float("nan"),
             "imp_high": float(np.percentile(bi[:, j], 97.5)) if n_boot else float("nan"), "r2": r2}
            for j, name in enumerate(kept)]
    return sorted(rows, key=lambda r: -r["importance"])
